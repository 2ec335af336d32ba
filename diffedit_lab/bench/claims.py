"""The DiffEdit paper's claims, checked on a ``results.json`` of ``python -m diffedit_lab.bench quality``.

Each claim is a yes/no question about the measured figures, answered with the numbers that
decide it. Success rates are compared within two standard errors of their difference,
``|a − b| ≤ 2·√(se_a² + se_b²)`` ("the same, up to noise"); PSNR and IoU are compared as
measured (their standard errors are a tenth of the gaps that matter here).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Claim:
    """``statement`` (as the paper makes it, or as we test it), ``holds``, and ``evidence``."""

    key: str
    statement: str
    holds: bool
    evidence: str


def _noise(a: dict, b: dict, key: str = "edit_success") -> float:
    """Two standard errors of the difference of ``a[key]`` and ``b[key]``."""
    return 2 * (a[f"{key}_se"] ** 2 + b[f"{key}_se"] ** 2) ** 0.5


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def _curve(by_r: dict, key: str) -> str:
    return " / ".join(f"{v[key]:.1f}" if key == "background_psnr" else _pct(v[key]) for v in by_r.values())


def background_kept(m: dict) -> Claim:
    d, others = m["diffedit"], ("sdedit", "encode_decode")
    holds = all(d[r]["background_psnr"] > m[o][r]["background_psnr"] for o in others for r in d)
    return Claim("mask_keeps_background", "the mask keeps the background: DiffEdit's PSNR beats SDEdit's and "
                 "encode–decode's at every r", holds,
                 f"background PSNR (dB) at r = {' / '.join(d)}: DiffEdit {_curve(d, 'background_psnr')}, "
                 f"SDEdit {_curve(m['sdedit'], 'background_psnr')}, encode–decode {_curve(m['encode_decode'], 'background_psnr')}")


def dominates(m: dict, method: str = "sdedit") -> Claim:
    d, o = m["diffedit"], m[method]
    beaten = [r for r, p in o.items()
              if not any(q["background_psnr"] >= p["background_psnr"] and q["edit_success"] >= p["edit_success"] - _noise(q, p)
                         for q in d.values())]
    return Claim(f"dominates_{method}", f"DiffEdit's trade-off curve lies above/right of {method}'s: for each of its "
                 "points a DiffEdit point keeps as much background with as much success (up to noise)", not beaten,
                 f"{method} points not matched: {', '.join('r = ' + r for r in beaten) or 'none'}; success at each r: "
                 f"DiffEdit {_curve(d, 'edit_success')}, {method} {_curve(o, 'edit_success')}")


def encoding_beats_noising(m: dict) -> Claim:
    e, s = m["encode_decode"], m["sdedit"]
    holds = all(e[r]["background_psnr"] > s[r]["background_psnr"] for r in e)
    return Claim("encoding_beats_noising", "DDIM encoding keeps more of the input than noising: encode–decode's "
                 "PSNR beats SDEdit's at every r", holds,
                 f"background PSNR (dB): encode–decode {_curve(e, 'background_psnr')}, SDEdit {_curve(s, 'background_psnr')}")


def mask_as_good_as_oracle(m: dict) -> Claim:
    d, o = m["diffedit"], m["oracle"]
    holds = all(abs(d[r]["edit_success"] - o[r]["edit_success"]) <= _noise(d[r], o[r]) for r in d)
    return Claim("inferred_mask_costs_no_edits", "the inferred mask makes as many edits as the true mask "
                 "(oracle), up to noise, at every r", holds,
                 f"success: DiffEdit {_curve(d, 'edit_success')}, oracle {_curve(o, 'edit_success')}; mask IoU "
                 f"{next(iter(d.values()))['mask_iou']:.2f} against the oracle's {next(iter(o.values()))['mask_iou']:.2f}")


def caption_reference(ab: dict) -> Claim:
    c, e = ab["reference"]["caption"], ab["reference"]["empty"]
    return Claim("caption_reference", "a caption as reference text R gives a better mask than the empty text",
                 c["mask_iou"] > e["mask_iou"],
                 f"mask IoU {c['mask_iou']:.3f} (caption) against {e['mask_iou']:.3f} (∅); success "
                 f"{_pct(c['edit_success'])} against {_pct(e['edit_success'])}")


def averaging_draws(ab: dict) -> Claim:
    n = ab["n"]
    first, ten, last = n[min(n, key=int)], n.get("10"), n[max(n, key=int)]
    holds = ten is not None and ten["mask_iou"] > first["mask_iou"] and last["mask_iou"] - ten["mask_iou"] < 0.02
    return Claim("n_draws", "averaging n noise draws sharpens the mask, and n = 10 is enough (more adds < 0.02 IoU)",
                 holds, "mask IoU for n = " + ", ".join(f"{k}: {v['mask_iou']:.3f}" for k, v in n.items()))


def threshold_half(ab: dict) -> Claim:
    t = {k: v for k, v in ab["threshold"].items() if k in ("0.25", "0.5", "0.75")}
    best = max(t, key=lambda k: t[k]["mask_iou"])
    return Claim("threshold_0.5", "τ = 0.5 is the best threshold of 0.25 / 0.5 / 0.75 (by mask IoU)", best == "0.5",
                 "mask IoU, background PSNR for τ = " + ", ".join(
                     f"{k}: {v['mask_iou']:.3f}, {v['background_psnr']:.1f} dB" for k, v in ab["threshold"].items()))


def unguided_encoding(ab: dict) -> Claim:
    enc = ab["encoding"]
    free, guided = enc["empty, w=1"], enc["caption, w=7.5"]
    return Claim("unguided_encoding", "encoding without guidance edits more than diffusers' guided encoding (w = 7.5), beyond noise",
                 free["edit_success"] > guided["edit_success"] + _noise(free, guided),
                 "success / untouched kept: " + ", ".join(
                     f"{k}: {_pct(v['edit_success'])} / {_pct(v['untouched_kept'])}" for k, v in enc.items()))


def diffusers_as_is(m: dict) -> Claim:
    d, f = m["diffedit"], m["diffusers"]
    holds = all(d[r]["untouched_kept"] >= f[r]["untouched_kept"] and d[r]["background_psnr"] > f[r]["background_psnr"]
                for r in d)
    return Claim("diffusers_as_is", "diffusers' pipeline as is keeps less than our DiffEdit at every r (its guided "
                 "encoding and its blend one step too noisy)", holds,
                 f"background PSNR (dB): ours {_curve(d, 'background_psnr')}, diffusers {_curve(f, 'background_psnr')}; "
                 f"untouched kept: ours {_curve(d, 'untouched_kept')}, diffusers {_curve(f, 'untouched_kept')}")


def claims(results: dict) -> list[Claim]:
    """Every claim, in the order the notebook discusses them."""
    m, ab = results["methods"], results["ablations"]
    return [background_kept(m), dominates(m, "sdedit"), dominates(m, "encode_decode"), encoding_beats_noising(m),
            mask_as_good_as_oracle(m), caption_reference(ab), averaging_draws(ab), threshold_half(ab),
            unguided_encoding(ab), diffusers_as_is(m)]


def format_claims(results: dict, evidence: bool = True) -> str:
    """One line per claim: holds or not (and its numbers)."""
    lines = []
    for c in claims(results):
        lines.append(f"{'holds' if c.holds else 'NO':>5}  {c.statement}")
        if evidence:
            lines.append(f"       {c.evidence}")
    return "\n".join(lines)
