"""Reporting the quality benchmark (:mod:`diffedit_lab.bench.quality`): aggregation of the scored
rows (pure), results.json, the README's table, the trade-off and ablation figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..toy.quality import format_value, mean_of

METHODS = ("diffedit", "sdedit", "encode_decode", "oracle", "diffusers", "cross_attention", "intersection",
           "ledits_pp", "ledits_pp_own")
REFERENCES = ("caption", "empty")
ENCODINGS = ("empty, w=1", "caption, w=1", "caption, w=7.5")  # inversion prompt, guidance
METRICS = ("edit_success", "untouched_kept", "background_psnr", "background_ssim", "mask_iou",
           "mask_precision", "mask_recall", "psnr_unedited", "mse_unedited", "ssim_unedited")
"""Every row's figures; the first four are also the ceilings'. The last three are PIE-Bench's (the
unedited region, :mod:`~diffedit_lab.bench.pie`)."""
LEARNED = ("clip_score", "clip_score_edited", "lpips_unedited")
"""Learned figures (:data:`diffedit_lab.bench.pie.LEARNED`), summarized when the rows have them
(CLIP, LPIPS's weights on the machine)."""
RATES = ("edit_success", "untouched_kept")
LABELS = dict(
    diffedit="DiffEdit", sdedit="SDEdit", encode_decode="encode–decode", oracle="oracle (true mask)",
    diffusers="diffusers pipeline", cross_attention="cross-attention mask", intersection="DiffEdit ∩ attention",
    ledits_pp="LEDITS++ mask", ledits_pp_own="LEDITS++ (its own edit)",
)


def summarize(rows: list[dict]) -> dict:
    """Mean of each metric over ``rows`` (NaNs ignored), its standard error and the count.

    Rates (0/1): ``se = √(p(1 − p)/m)``; other figures: ``se = std/√m`` (sample std, ddof 1);
    ``m`` the number of finite values. PSNR is already capped (``score_edit``). A figure missing
    from the rows (rows of an older run) counts as NaN."""
    out: dict = {"count": len(rows)}
    keys = METRICS + tuple(k for k in LEARNED if any(k in r for r in rows))  # CLIP, LPIPS: when computed
    rows = [{k: r.get(k, math.nan) for k in keys} for r in rows]  # a figure a row lacks: NaN
    for k in keys:
        values = np.array([r[k] for r in rows], np.float64)
        finite = values[np.isfinite(values)]
        m = len(finite)
        out[k] = mean_of(rows, k) if rows else float("nan")
        if m == 0:
            out[f"{k}_se"] = float("nan")
        elif k in RATES:
            p = finite.mean()
            out[f"{k}_se"] = float(math.sqrt(p * (1 - p) / m))
        else:
            out[f"{k}_se"] = float(finite.std(ddof=1) / math.sqrt(m)) if m > 1 else float("nan")
    return out


def group(rows: list[dict], *keys: str) -> dict:
    """``rows`` grouped by the values of ``keys`` (a tuple key)."""
    out: dict = {}
    for row in rows:
        out.setdefault(tuple(_hashable(row[k]) for k in keys), []).append(row)
    return out


def _hashable(v):
    return tuple(v) if isinstance(v, list) else v


def rkey(r: float) -> str:
    """The JSON key of a ratio: ``0.8 → "0.8"``."""
    return f"{float(r):g}"


def report(rows: list[dict], settings: dict, ceilings: dict, checks: dict, timing: dict) -> dict:
    """The results.json content: ``methods[method][r]`` (figures of the main sweep), ``by_kind``,
    ``ablations`` (DiffEdit at ``ablation_r``), ``ceilings``, ``checks``, ``timing``, ``settings``."""
    main = [r for r in rows if r["variant"] is None]
    methods: dict = {}
    for (method, r), group_rows in sorted(group(main, "method", "r").items(), key=lambda kv: (_order(kv[0][0]), kv[0][1])):
        methods.setdefault(method, {})[rkey(r)] = summarize(group_rows)
    by_kind: dict = {}
    for (kind, method, r), group_rows in sorted(group(main, "kind", "method", "r").items(),
                                                key=lambda kv: (kv[0][0], _order(kv[0][1]), kv[0][2])):
        by_kind.setdefault(kind, {}).setdefault(method, {})[rkey(r)] = summarize(group_rows)
    return dict(
        methods=methods,
        by_kind=by_kind,
        ablations=ablations(rows, settings),
        ceilings=ceilings,
        checks=checks,
        timing=timing,
        settings=settings,
        plots=["tradeoff.png", "ablations.png"],
    )


def _order(method: str) -> int:
    return METHODS.index(method) if method in METHODS else len(METHODS)


def ablations(rows: list[dict], settings: dict) -> dict:
    """DiffEdit at ``ablation_r``: for each ablation, value → figures. The default setting's row
    (``n``, ``threshold``, caption reference, ∅ w=1 encoding) is the main sweep's output."""
    r = settings["ablation_r"]
    base = [x for x in rows if x["method"] == "diffedit" and x["r"] == r and x["variant"] is None]
    default = dict(n=settings["n"], threshold=settings["threshold"], reference="caption", encoding=ENCODINGS[0])
    out: dict = {"r": r}
    variants = group([x for x in rows if x["method"] == "diffedit" and x["r"] == r and x["variant"]], "variant")
    for name, value in [("n", v) for v in settings["n_values"]] + [("threshold", v) for v in settings["thresholds"]] \
            + [("reference", v) for v in REFERENCES] + [("encoding", v) for v in ENCODINGS]:
        chosen = base if value == default[name] else variants.get(((name, value),), [])
        if chosen:
            out.setdefault(name, {})[f"{value:g}" if isinstance(value, float) else str(value)] = summarize(chosen)
    return out


def tradeoff_points(results: dict, x: str = "background_psnr", y: str = "edit_success") -> dict:
    """Curve data per method: ``{method: [(r, x, y), …]}`` sorted by ``r`` (points with a NaN left out)."""
    out = {}
    for method, by_r in results["methods"].items():
        pts = sorted((float(r), v[x], v[y]) for r, v in by_r.items())
        out[method] = [p for p in pts if all(np.isfinite(p[1:]))]
    return out


# --------------------------------------------------------------------------- table and plots


def format_results_table(results: dict) -> str:
    """Method × r: edit success, untouched kept, background PSNR and SSIM, mask IoU (± one s.e.
    for the success rate)."""
    head = ("method", "r", "edit success", "untouched", "bg PSNR", "bg SSIM", "mask IoU")
    lines = [head]
    for method, by_r in results["methods"].items():
        for r, v in by_r.items():
            lines.append((
                method, r,
                f"{format_value(v['edit_success'], '%')} ± {100 * v['edit_success_se']:.1f}",
                format_value(v["untouched_kept"], "%"),
                format_value(v["background_psnr"], "dB"),
                format_value(v["background_ssim"], ""),
                format_value(v["mask_iou"], ""),
            ))
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(head))]
    text = ["  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
            for row in lines]
    return "\n".join([text[0], "  ".join("-" * w for w in widths), *text[1:]])


def markdown_table(results: dict) -> str:
    """The README's table: method × r → edit success (± s.e.), background PSNR, mask IoU."""
    s = results.get("settings", {})
    lines = ["| method | r | edit success | untouched kept | background PSNR | mask IoU |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for method, by_r in results["methods"].items():
        for r, v in by_r.items():
            iou = "—" if not np.isfinite(v["mask_iou"]) else f"{v['mask_iou']:.2f}"
            lines.append(f"| {method} | {r} | {100 * v['edit_success']:.0f} % ± {100 * v['edit_success_se']:.0f} "
                         f"| {100 * v['untouched_kept']:.0f} % | {v['background_psnr']:.1f} dB | {iou} |")
    vae = results.get("ceilings", {}).get("vae_psnr")
    if vae is not None:
        lines.append(f"\n{s.get('edits', '?')} held-out edits, {s.get('steps', '?')} DDIM steps, guidance "
                     f"{s.get('guidance', '?')}; the VAE round trip alone keeps the background at {vae:.1f} dB.")
    kinds = kind_table(results)
    return "\n".join(lines) + ("\n\n" + kinds if kinds else "")


def kind_table(results: dict) -> str:
    """Per kind of edit (a row each) and method (a column each), at the ablations' ``r``: edit
    success · background PSNR · mask IoU ("" with fewer than two kinds)."""
    by_kind = results.get("by_kind", {})
    if len(by_kind) < 2:
        return ""
    r = rkey(results["ablations"]["r"])
    methods = [m for m in results["methods"] if any(r in by_kind[k].get(m, {}) for k in by_kind)]
    lines = [f"Per kind of edit at r = {r} (edits of each kind; edit success · PSNR outside the true edited region "
             "· mask IoU):", "",
             "| kind | " + " | ".join(methods) + " |", "| --- |" + " ---: |" * len(methods)]
    for kind, by_method in by_kind.items():
        cells = []
        for m in methods:
            v = by_method.get(m, {}).get(r)
            if v is None:
                cells.append("")
                continue
            iou = "—" if not np.isfinite(v["mask_iou"]) else f"{v['mask_iou']:.2f}"
            psnr = "—" if not np.isfinite(v["background_psnr"]) else f"{v['background_psnr']:.1f} dB"
            cells.append(f"{100 * v['edit_success']:.0f} % · {psnr} · {iou}")
        count = by_method.get("diffedit", {}).get(r, {}).get("count", "?")
        lines.append(f"| {kind} ({count}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_ablation_table(results: dict) -> str:
    """Each ablation value: edit success, untouched kept, background PSNR, mask IoU."""
    ab = results["ablations"]
    lines = [("ablation", "value", "edit success", "untouched", "bg PSNR", "mask IoU")]
    for name in ("n", "threshold", "reference", "encoding"):
        for value, v in ab.get(name, {}).items():
            lines.append((name, value, format_value(v["edit_success"], "%"), format_value(v["untouched_kept"], "%"),
                          format_value(v["background_psnr"], "dB"), format_value(v["mask_iou"], "")))
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    text = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in lines]
    return f"DiffEdit ablations at r = {ab['r']}\n" + "\n".join([text[0], "  ".join("-" * w for w in widths), *text[1:]])


def tradeoff_figure(results: dict, *, metrics: tuple[str, ...]=("background_psnr", "background_ssim")):
    """Edit success against each background measure, one curve per method, ``r`` beside each point."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2 * len(metrics), 4.2), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    markers = dict(zip(METHODS, "osD^vPX*p"))
    for ax, metric in zip(axes, metrics):
        for method, pts in tradeoff_points(results, x=metric).items():
            if not pts:
                continue
            r, xs, ys = zip(*pts)
            ax.plot(xs, ys, marker=markers.get(method, "x"), label=LABELS.get(method, method))
            for ri, xi, yi in pts:
                ax.annotate(f"{ri:g}", (xi, yi), textcoords="offset points", xytext=(4, 3), fontsize=7)
        ceiling = results.get("ceilings", {}).get("vae_psnr") if metric == "background_psnr" else None
        if ceiling is not None and np.isfinite(ceiling):
            ax.axvline(ceiling, color="grey", lw=0.8, ls=":", label="VAE round trip")
        ax.set_xlabel({"background_psnr": "background PSNR (dB) →  kept better",
                       "background_ssim": "background SSIM →  kept better"}.get(metric, metric))
        ax.set_ylabel("edit success (target object present)")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    s = results.get("settings", {})
    fig.suptitle(f"Edit trade-off on the shapes world ({s.get('edits', '?')} edits, {s.get('steps', '?')} DDIM steps; "
                 "numbers: encoding ratio r)", fontsize=10)
    return fig


def ablation_figure(results: dict):
    """One panel per ablation: edit success, untouched kept and mask IoU (left axis), background
    PSNR (right axis, dashed)."""
    from matplotlib.figure import Figure

    ab = results["ablations"]
    names = [n for n in ("n", "threshold", "reference", "encoding") if n in ab]
    fig = Figure(figsize=(4.0 * len(names), 3.6), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    titles = dict(n="noise draws n", threshold="threshold τ", reference="reference text R",
                  encoding="encoding (prompt, guidance)")
    psnr = [v["background_psnr"] for name in names for v in ab[name].values() if np.isfinite(v["background_psnr"])]
    span = (min(psnr) - 0.5, max(psnr) + 0.5) if psnr else None  # one PSNR scale for every panel: honest slopes
    for ax, name in zip(axes, names):
        labels = list(ab[name])
        x = np.arange(len(labels))
        for key, marker, label in (("edit_success", "o", "edit success"), ("untouched_kept", "s", "untouched kept"),
                                   ("mask_iou", "^", "mask IoU")):
            ax.plot(x, [ab[name][v][key] for v in labels], marker=marker, label=label)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_title(titles[name], fontsize=10)
        ax.grid(alpha=0.3)
        right = ax.twinx()
        right.plot(x, [ab[name][v]["background_psnr"] for v in labels], "k--", marker="x", label="bg PSNR (dB)")
        right.set_ylabel("background PSNR (dB)", fontsize=8)
        if span:
            right.set_ylim(*span)
    axes[0].legend(fontsize=7, loc="lower left")
    right.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"DiffEdit ablations at r = {ab['r']}", fontsize=10)
    return fig


def load_results(path: str | Path) -> dict:
    """A results.json written by this module."""
    return json.loads(Path(path).read_text())


REPOSITORY_RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results" / "quality" / "results.json"
"""The committed full run in a checkout of the repository (``--out docs/results/quality``)."""

PACKAGED_RESULTS = "results/quality.json"
"""The same file shipped inside the package (``diffedit_lab/bench/results/quality.json``), so that
notebook 07 finds it wherever it is opened: Colab, a copy in a student's folder, a wheel install.
``tests/test_bench_quality.py`` checks that it equals the repository's copy."""


def committed_results() -> tuple[dict | None, str]:
    """The committed full run and where it was read: the repository's ``docs/results/quality`` if
    this is a checkout, else the copy packaged with the library; ``(None, reason)`` if neither
    is there (then a caller that recomputes must say so)."""
    if REPOSITORY_RESULTS.is_file():
        return load_results(REPOSITORY_RESULTS), str(REPOSITORY_RESULTS)
    from importlib import resources

    packaged = resources.files("diffedit_lab.bench").joinpath(PACKAGED_RESULTS)
    if packaged.is_file():
        return json.loads(packaged.read_text()), f"the copy packaged with diffedit_lab ({PACKAGED_RESULTS})"
    return None, f"neither {REPOSITORY_RESULTS} nor the packaged diffedit_lab/bench/{PACKAGED_RESULTS} exists"


def write(out: Path, results: dict, rows: list[dict] | None = None) -> list[Path]:
    """results.json, the plots, and (if given) rows.jsonl with every scored output."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.json", out / "table.md"]
    paths[0].write_text(json.dumps(results, indent=1, default=_jsonable, allow_nan=True) + "\n")
    paths[1].write_text(markdown_table(results) + "\n")
    for name, fig in (("tradeoff.png", tradeoff_figure(results)), ("ablations.png", ablation_figure(results))):
        fig.savefig(out / name, dpi=110)
        paths.append(out / name)
    if rows is not None:
        with open(out / "rows.jsonl", "w") as f:
            for row in rows:
                f.write(json.dumps(row, default=_jsonable) + "\n")
        paths.append(out / "rows.jsonl")
    return paths


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    return str(x)
