"""Choose the DiffEdit settings recorded with the toy model (``diffedit_lab.json``).

    python -m diffedit_lab.toy.tune [--model DIR] [--edits 24] [--mask-edits 48] [--steps 25] [--write]
    python -m diffedit_lab.toy.tune --steps-curve 10 15 20 25 [--out DIR] [--model DIR] [--edits N] [--write]

Two stages, both on *validation* edits of the model's world (seeds from ``VALIDATION_SEED``:
disjoint from training, < 10 000 000, and from the held-out seeds of
:mod:`diffedit_lab.toy.quality`; the world read from the model's tokenizer, or ``--world``; the
rich world's every kind in turn, and each kind's mask IoU printed beside the mean):

1. **the mask** — mask noise ``s`` (``mask_noise``), clamp ratio ``κ``, threshold ``τ``, the
   rescale of ``D`` (``rescale``: ``"mean"``, diffusers' division by ``κ·mean D``, or
   ``"range"``, the paper's min–max; κ = 100 is "range" without clamping) and hole
   filling are chosen for the mean IoU between the inferred mask at 64×64
   (:meth:`~diffedit_lab.mask.MaskResult.upsampled`) and the true edited region. Only the mask
   pass runs (``n`` draws per strength, at ``--steps``: ``s`` picks a timestep of that DDIM grid,
   so the masks are those the edits will use); each ``(κ, τ, rescale, fill, close)`` re-thresholds. A
   background edit changes most of the image, so ``mean(D)`` is the background's own level and
   ``"mean"`` finds it only with ``κτ < 1`` (which takes nearly everything for an object edit);
   ``"range"`` can find both kinds with one setting. A shape change
   gives a *ring* of disagreement on the object's outline (inside, both texts agree on the
   colour): filling the ring's hole gives the whole object. The paper's
   ``τ = 0.5`` was found on Stable Diffusion's 64×64 latents; on a small model the difference
   map ``D`` spreads over the neighbouring latent cells, and a higher cut keeps only the cells
   where the two texts really disagree.
2. **the edit** — a grid over decoding guidance ``w`` and encoding ratio ``r``, with that mask
   and with the paper's (``s = 0.5, κ = 3, τ = 0.5``), each point scored by

       score = P(target object present) · P(untouched object kept)

   (ties: the higher background PSNR). A tighter mask is kept only if it edits as well.

``--write`` stores the best point in the model folder's ``diffedit_lab.json`` (the other
recorded settings are kept).

**The steps curve** (``--steps-curve T1 T2 …``, instead of the two stages): for each number of
DDIM steps ``T``, every other setting as the model records it, the validation edits (of the
model's world, :func:`diffedit_lab.toy.texts.model_world`; the rich world's every kind in
turn) are run with ``edit()`` and scored: edit success, untouched kept, mask IoU at image
resolution, background PSNR, seconds per edit (wall clock, this machine). The rule
(:func:`choose_steps`): **the fewest steps within ``--success-tolerance`` (2 points) of the best
success and within ``--iou-tolerance`` (0.02) of the best IoU measured**; if no count is within
both, the one of best success (then IoU). Written to ``--out``: ``steps_curve.json`` (rows, rule,
choice) and ``steps_curve.png`` (success and IoU against steps, seconds on a second axis);
``--write`` records the chosen ``steps`` in ``diffedit_lab.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..settings import DEPRECATED_NAMES, EditSettings
from .quality import alternating_edits, balanced_edits
from .world import WHOLE_IMAGE_KINDS, Edit

if TYPE_CHECKING:
    from ..models import Components

VALIDATION_SEED = 500_000_000
MASK_GRID = dict(mask_noise=(0.5, 0.6, 0.7, 0.8, 0.9), clamp_ratio=(2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 100.0),
                 threshold=(0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95), rescale=("mean", "range"),
                 fill_holes=(False, True), close=(0, 1, 2))  # close 2: gaps of 8 px on 32×32 latents
EDIT_GRID = dict(guidance=(3.0, 5.0, 7.5), encoding_ratio=(0.6, 0.8, 0.9, 1.0))
PAPER_MASK = {k: getattr(EditSettings(), k) for k in MASK_GRID}  # the defaults: paper's s, κ, τ; diffusers' rescale; no fill


def validation_edits(n: int, world: str = "classic", size: int = 64) -> list[Edit]:
    """Edits from seeds ``VALIDATION_SEED + i``: classic — even i change a shape, odd i a
    colour; rich — every kind in turn (:func:`~diffedit_lab.toy.quality.balanced_edits`, images
    of ``size`` px)."""
    if world == "rich":
        return balanced_edits(VALIDATION_SEED, n, size)
    return alternating_edits(VALIDATION_SEED, n)


def model_validation_edits(c: Components, n: int, world: str | None = None) -> tuple[list[Edit], str, str]:
    """:func:`validation_edits` of the model's world (read from its tokenizer), or of ``world``
    if given, at the model's image size: ``(edits, world, why)``."""
    from ..inputs import model_side
    from .texts import model_world

    world, why = (world, "--world") if world else model_world(c)
    return validation_edits(n, world, model_side(c)), world, why


def mask_ious(c: Components, edits: list[Edit], *, guidance: float, n: int, grid: dict | None = None,
              steps: int | None = None, progress: bool = True) -> list[dict]:
    """Mean IoU of the mask at 64×64 against the true region for every (mask strength, clamp
    ratio, threshold, rescale, fill holes, closing) of ``grid`` (default :data:`MASK_GRID`; a grid
    without ``rescale`` tries ``"mean"`` only, without ``close`` 0 only), best first. The mean leaves out the whole-image kinds
    (:data:`~diffedit_lab.toy.world.WHOLE_IMAGE_KINDS`, where no mask can help) unless every edit
    is of one; each kind's own mean is in ``mask_iou_<kind>``. ``steps``: the DDIM steps the edits
    will run (None: the paper's 50) — the mask's noise level is a timestep of that grid (the first
    of its last ``⌊steps·s⌋``), so a strength ``s`` means a different ``t`` at another count."""
    grid = dict(dict(rescale=("mean",), close=(0,)), **(grid or MASK_GRID))
    from ..mask import noise_diff_mask
    from ..metrics import mask_iou

    ious: dict[tuple, list] = {}
    for i, e in enumerate(tqdm(edits, desc="masks", disable=not progress)):
        for s in grid["mask_noise"]:
            m = noise_diff_mask(c, Image.fromarray(e.scene.image), e.source, e.target, n=n, mask_noise=s,
                                guidance=guidance, steps=steps, seed=i, progress=False)
            for kappa, tau, how, fill, k in itertools.product(grid["clamp_ratio"], grid["threshold"], grid["rescale"],
                                                              grid["fill_holes"], grid["close"]):
                mask = m.rethreshold(clamp_ratio=kappa, threshold=tau, rescale=how,
                                     fill_holes=fill, close=k).upsampled()[0].cpu().numpy()
                ious.setdefault((s, kappa, tau, how, fill, k), []).append((e.kind, float(mask_iou(mask, e.mask))))
    rows = []
    for (s, kappa, tau, how, fill, k), v in ious.items():
        masked = [iou for kind, iou in v if kind not in WHOLE_IMAGE_KINDS] or [iou for _, iou in v]
        row = dict(mask_noise=s, clamp_ratio=kappa, threshold=tau, rescale=how, fill_holes=fill, close=k,
                   mask_iou=float(np.mean(masked)))
        for kind in dict.fromkeys(kind for kind, _ in v):  # per kind, when the edits are of several
            row[f"mask_iou_{kind}"] = float(np.mean([iou for other, iou in v if other == kind]))
        rows.append(row)
    return sorted(rows, key=lambda r: -r["mask_iou"])


def format_masks(rows: list[dict]) -> str:
    """The mask grid's rows as a plain-text table: the settings, the mean IoU and, when the edits
    were of several kinds, each kind's."""
    kinds = [k[len("mask_iou_"):] for k in rows[0] if k.startswith("mask_iou_")] if rows else []
    lines = [f"{'s':>5} {'κ':>5} {'τ':>5} {'D̃':>5} {'fill':>5} {'close':>5} {'IoU':>6}" + "".join(f" {k[:10]:>10}" for k in kinds)]
    for r in rows:
        lines.append(f"{r['mask_noise']:5.2f} {r['clamp_ratio']:5.1f} {r['threshold']:5.2f} {r['rescale']:>5} "
                     f"{str(r['fill_holes']):>5} {r.get('close', 0):5d} "
                     f"{r['mask_iou']:6.3f}" + "".join(f" {r['mask_iou_' + k]:10.3f}" for k in kinds))
    return "\n".join(lines)


def edit_scores(c: Components, edits: list[Edit], steps: int, masks: list[dict], grid: dict | None = None,
                progress: bool = True) -> list[dict]:
    """Mean figures of every point of ``grid`` (default :data:`EDIT_GRID`) with each of the mask
    settings ``masks``, best first; one EditSession per image, so masks and inversions are
    computed once and shared across the grid."""
    from ..edit import EditSession
    from .quality import mean_of, score_edit

    grid = grid or EDIT_GRID
    points = [dict(m, **dict(zip(grid, values))) for m in masks for values in itertools.product(*grid.values())]
    scores = [[] for _ in points]
    for i, e in enumerate(tqdm(edits, desc="validation edits", disable=not progress)):
        session = EditSession(c, Image.fromarray(e.scene.image))
        for k, p in enumerate(points):
            res = session.run(e.source, e.target, seed=i, steps=steps, progress=False, **p)
            scores[k].append(score_edit(e, np.asarray(res.image.convert("RGB")), res.mask.upsampled()[0].cpu().numpy()))
    rows = []
    for p, s in zip(points, scores):
        mean = {key: mean_of(s, key) for key in s[0]}  # NaNs left out (a whole-image edit has no background)
        rows.append(dict(p, **mean, score=mean["edit_success"] * mean["untouched_kept"]))
    return sorted(rows, key=lambda r: (-r["score"], -r["background_psnr"]))


# --------------------------------------------------------------------------- the steps curve

CURVE_KEYS = ("edit_success", "untouched_kept", "mask_iou", "background_psnr", "seconds_per_edit")


def steps_curve(c: Components, edits: list[Edit], steps: list[int], progress: bool = True) -> list[dict]:
    """One row per number of DDIM steps: the mean figures of ``edits`` edited at the model's
    recorded settings with that many steps (``edit()``, seed ``i`` for edit ``i``), and the
    success per edit kind (``success_<kind>``)."""
    from .quality import mean_of, run_edits

    rows = []
    for t in steps:
        done = run_edits(c, edits, steps=t, seed=0, progress=progress)
        row = dict(steps=int(t), edits=len(done), **{k: mean_of(done, k) for k in CURVE_KEYS})
        for kind in dict.fromkeys(r["kind"] for r in done):
            row[f"success_{kind}"] = mean_of([r for r in done if r["kind"] == kind], "edit_success")
        rows.append(row)
    return rows


def choose_steps(rows: list[dict], success_tolerance: float = 0.02, iou_tolerance: float = 0.02) -> int:
    """The fewest steps whose success is within ``success_tolerance`` of the best row's and whose
    mask IoU is within ``iou_tolerance`` of the best; if none is within both, the steps of best
    success (ties: the higher IoU, then fewer steps)."""
    if not rows:
        raise ValueError("no rows: measure at least one number of steps")
    best_success = max(r["edit_success"] for r in rows)
    best_iou = max(r["mask_iou"] for r in rows)
    near = [r for r in rows if r["edit_success"] >= best_success - success_tolerance - 1e-12
            and r["mask_iou"] >= best_iou - iou_tolerance - 1e-12]
    if near:
        return min(r["steps"] for r in near)
    return min(rows, key=lambda r: (-r["edit_success"], -r["mask_iou"], r["steps"]))["steps"]


def format_curve(rows: list[dict], chosen: int | None = None) -> str:
    """The curve as a plain-text table, the chosen row marked ``◀``."""
    lines = [f"{'steps':>5} {'success':>8} {'kept':>6} {'IoU':>6} {'bg PSNR':>8} {'s/edit':>7}"]
    for r in rows:
        mark = "  ◀ chosen" if r["steps"] == chosen else ""
        lines.append(f"{r['steps']:5d} {100 * r['edit_success']:7.1f}% {100 * r['untouched_kept']:5.1f}% "
                     f"{r['mask_iou']:6.3f} {r['background_psnr']:8.2f} {r['seconds_per_edit']:7.2f}{mark}")
    return "\n".join(lines)


def plot_steps_curve(rows: list[dict], chosen: int, path: Path, title: str = "") -> Path:
    """Edit success and mask IoU against DDIM steps (left axis, 0–1), seconds per edit on a
    second axis (right); the chosen steps dashed. Saved as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    steps = [r["steps"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    ax.plot(steps, [r["edit_success"] for r in rows], "o-", color="tab:green", label="edit success")
    ax.plot(steps, [r["untouched_kept"] for r in rows], "^:", color="tab:olive", label="untouched kept")
    ax.plot(steps, [r["mask_iou"] for r in rows], "s-", color="tab:blue", label="mask IoU")
    ax.set_xlabel("DDIM steps")
    ax.set_ylabel("success, kept (fraction) · IoU")
    ax.set_ylim(0, 1.05)
    ax.set_xticks(steps)
    ax.axvline(chosen, color="grey", ls="--", lw=1)
    ax.annotate("chosen", (chosen, 1.02), xytext=(3, 0), textcoords="offset points", fontsize=8, color="grey")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(steps, [r["seconds_per_edit"] for r in rows], "D--", color="tab:red", label="seconds per edit")
    ax2.set_ylabel("seconds per edit", color="tab:red")
    ax2.set_ylim(0, 1.15 * max(r["seconds_per_edit"] for r in rows))
    ax2.tick_params(axis="y", colors="tab:red")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=4,
              fontsize=8, frameon=False)
    ax.set_title(title or f"DiffEdit against DDIM steps (chosen: {chosen})", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def record_settings(folder: Path, values: dict) -> dict:
    """Update the model folder's ``diffedit_lab.json`` with ``values`` (the other recorded
    settings kept; a deprecated name is renamed to today's); returns what was written."""
    path = Path(folder) / "diffedit_lab.json"
    settings = json.loads(path.read_text()) if path.exists() else {}
    for old, new in DEPRECATED_NAMES.items():  # the file's old names give way to today's
        if old in settings:
            value = settings.pop(old)
            settings.setdefault(new, value)
    settings.update(values)
    path.write_text(json.dumps(settings, indent=2) + "\n")
    return settings


def run_steps_curve(c: Components, a: argparse.Namespace) -> dict:
    """The ``--steps-curve`` command: measure, print, write JSON and PNG (and the settings)."""
    edits, world, why = model_validation_edits(c, a.edits, a.world)
    rows = steps_curve(c, edits, a.steps_curve, progress=not a.no_progress)
    chosen = choose_steps(rows, a.success_tolerance, a.iou_tolerance)
    recorded = EditSettings.for_model(c).as_dict()
    print(f"{a.model or 'embedded toy model'}: {len(edits)} validation edits of the {world} world ({why}), "
          f"recorded settings otherwise")
    print(format_curve(rows, chosen))
    rule = (f"the fewest steps within {100 * a.success_tolerance:g} points of the best success and "
            f"{a.iou_tolerance:g} of the best mask IoU")
    print(f"chosen: {chosen} steps ({rule})")
    report = dict(rows=rows, chosen=chosen, rule=rule, world=world, edits=len(edits),
                  kinds=sorted({e.kind for e in edits}), settings={k: v for k, v in recorded.items() if k != "steps"},
                  model=c.name)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "steps_curve.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_steps_curve(rows, chosen, a.out / "steps_curve.png",
                     f"DiffEdit against DDIM steps — {len(edits)} {world} validation edits (chosen: {chosen})")
    print(f"wrote {a.out / 'steps_curve.json'} and {a.out / 'steps_curve.png'}")
    if a.write:
        from ..models import DEFAULT_MODEL_DIR

        written = record_settings(Path(a.model or DEFAULT_MODEL_DIR), dict(steps=chosen))
        print(f"wrote {Path(a.model or DEFAULT_MODEL_DIR) / 'diffedit_lab.json'}: {written}")
    return report


def main(argv: list[str] | None = None) -> None:
    from .. import load_components

    p = argparse.ArgumentParser(prog="python -m diffedit_lab.toy.tune", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None)
    p.add_argument("--edits", type=int, default=24,
                   help="validation edits of stage 2 (the edit grid); 0: the mask grid only (a quick look at a new export)")
    p.add_argument("--mask-edits", type=int, default=48, help="validation edits of stage 1 (the mask grid; cheap)")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--write", action="store_true", help="record the best settings in the model's diffedit_lab.json")
    p.add_argument("--steps-curve", type=int, nargs="+", default=None, metavar="T",
                   help="instead of the two stages: success, IoU and seconds per edit for each number of DDIM steps")
    p.add_argument("--out", type=Path, default=Path("docs/results"), help="steps curve: folder for its JSON and PNG")
    p.add_argument("--world", choices=("classic", "rich"), default=None, help="the validation edits' world "
                   "(default: the model's own, read from its tokenizer)")
    p.add_argument("--success-tolerance", type=float, default=0.02, help="steps curve: success points given up")
    p.add_argument("--iou-tolerance", type=float, default=0.02, help="steps curve: mask IoU given up")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    if a.steps_curve is not None:
        bad = [t for t in a.steps_curve if t < 1]
        if bad or len(set(a.steps_curve)) != len(a.steps_curve):
            p.error(f"--steps-curve takes distinct positive step counts, got {a.steps_curve}")
        if a.edits < 1:
            p.error(f"--edits must be positive, got {a.edits}")
        a.steps_curve = sorted(a.steps_curve)
    if a.edits < 0 or a.mask_edits < 1:
        p.error(f"--edits must be 0 or more and --mask-edits positive, got {a.edits} and {a.mask_edits}")
    if a.edits == 0 and a.write:
        p.error("--write records the best edit settings: it needs stage 2 (--edits > 0)")
    if a.threads:
        torch.set_num_threads(a.threads)
    c = load_components(a.model, device="cpu")
    if a.steps_curve is not None:
        run_steps_curve(c, a)
        return
    edits, world, why = model_validation_edits(c, max(a.edits, a.mask_edits), a.world)
    print(f"{a.model or 'embedded toy model'}: validation edits of the {world} world ({why})")
    model = EditSettings.for_model(c)
    masks = mask_ious(c, edits[:a.mask_edits], guidance=model.guidance, n=model.n, steps=a.steps,
                      progress=not a.no_progress)  # the masks at the steps the edits run (their noise level)
    print(format_masks(masks[:10]))
    if not a.edits:
        return
    best_mask = {k: masks[0][k] for k in MASK_GRID}
    rows = edit_scores(c, edits[:a.edits], a.steps, [best_mask] + ([PAPER_MASK] if best_mask != PAPER_MASK else []),
                       progress=not a.no_progress)
    print(f"\n{'s':>5} {'κ':>5} {'τ':>5} {'D̃':>5} {'w':>5} {'r':>5} {'success':>8} {'kept':>6} {'IoU':>6} "
          f"{'bg PSNR':>8}")
    for r in rows:  # a mask grid without ``rescale`` leaves the model's
        print(f"{r['mask_noise']:5.2f} {r['clamp_ratio']:5.1f} {r['threshold']:5.2f} {r.get('rescale', model.rescale):>5} "
              f"{r['guidance']:5.1f} "
              f"{r['encoding_ratio']:5.2f} {r['edit_success']:8.2f} {r['untouched_kept']:6.2f} {r['mask_iou']:6.3f} "
              f"{r['background_psnr']:8.2f}")
    if a.write:
        from ..models import DEFAULT_MODEL_DIR

        path = Path(a.model or DEFAULT_MODEL_DIR) / "diffedit_lab.json"
        settings = record_settings(path.parent, {k: rows[0][k] for k in (*MASK_GRID, *EDIT_GRID)})  # the best row's
        print(f"wrote {path}: {settings}")


if __name__ == "__main__":
    main()
