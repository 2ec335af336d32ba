"""DiffEdit and its successors' masks, measured against the shapes world's true edited region.

    python -m diffedit_lab.toy.successors [--edits 20] [--steps 10] [--json docs/results/successors.json]

For every held-out edit (:func:`~diffedit_lab.toy.quality.held_out_edits`: half shape, half
colour) :func:`~diffedit_lab.methods.run_methods` gives the four masks — DiffEdit's, the
cross-attention mask, their intersection, LEDITS++'s implicit mask — each decoded with
DiffEdit's decoding on the same DDIM encoding, and the **true** region's latent mask (every
cell the region touches, :func:`~diffedit_lab.baselines.latent_region`) decoded the same way.
Scored per method (:func:`score_mask`, :func:`score_image`):

* mask IoU, precision ``|M ∩ T| / |M|`` and recall ``|M ∩ T| / |T|`` of the image-resolution
  mask ``M`` against the true region ``T`` (64×64), and the IoU of the latent mask (each cell a
  block of pixels);
* edit success (the target object is there) and untouched kept (the other object is), read by
  the pixel checker (:func:`~diffedit_lab.toy.checker.check_edit`);
* background PSNR outside the true region dilated by 2 px (:func:`~diffedit_lab.metrics.background_psnr`,
  capped at 100 dB).

LEDITS++ is also scored on its *own* output (``ledits_pp_own``: diffusers' pipeline, DDPM
inversion and semantic guidance), with the same mask. Its concepts are the object names: the
new one added, the old one removed (``"+green square", "−red square"``); in the rich world
:func:`ledits_concepts` names what each kind of edit adds or takes away.

The bench (``diffedit_lab.bench``) can call :func:`measure` for its rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..metrics import background_psnr, mask_iou
from .checker import check_edit
from .quality import HELD_OUT_SEED, PSNR_CAP, held_out_edits, mean_of
from .world import Edit

ROWS = ("diffedit", "cross_attention", "intersection", "ledits_pp", "ledits_pp_own", "true")
"""The rows of the table: the four masks (DiffEdit's decoding), LEDITS++'s own edit, the true mask."""

KEYS = ("mask_iou", "mask_iou_latent", "precision", "recall", "edit_success", "untouched_kept", "background_psnr")


def precision_recall(pred, true) -> tuple[float, float]:
    """``(|P ∩ T| / |P|, |P ∩ T| / |T|)`` of two same-size binary masks; NaN for an empty P or T."""
    p, t = np.asarray(pred).astype(bool), np.asarray(true).astype(bool)
    if p.shape != t.shape:
        raise ValueError(f"masks differ in size: {p.shape} vs {t.shape}; upsample the predicted mask first.")
    inter = float((p & t).sum())
    return (inter / p.sum() if p.any() else float("nan"), inter / t.sum() if t.any() else float("nan"))


def score_mask(mask_image, mask_latent, true) -> dict[str, float]:
    """IoU, precision, recall of the image-resolution mask, and the IoU of the latent mask."""
    precision, recall = precision_recall(mask_image, true)
    return dict(mask_iou=float(mask_iou(np.asarray(mask_image), true)),
                mask_iou_latent=float(mask_iou(np.asarray(mask_latent), true)), precision=precision, recall=recall)


def ledits_concepts(e: Edit) -> dict:
    """LEDITS++'s editing concepts for a shapes-world edit: what the target adds (guided towards)
    and what it takes away (``reverse``: guided away from) — the object's name before and after
    (colour, shape, size), the removed object's name, the background's word, or "night"."""
    old = e.scene.objects[e.index]
    if e.kind == "remove":
        return dict(concepts=[old.name], reverse=[True])
    if e.kind == "background":
        added = [(e.target_scene.background, False), (e.scene.background, True)]
        pairs = [(word, rev) for word, rev in added if word != "plain"]  # "plain" is never named
        return dict(concepts=[w for w, _ in pairs], reverse=[r for _, r in pairs])
    if e.kind == "night":
        return dict(concepts=["night"], reverse=[False])
    new = e.target_scene.objects[e.index]
    return dict(concepts=[new.name, old.name], reverse=[False, True])


def score_image(e: Edit, output) -> dict[str, float]:
    """Edit success, untouched kept and background PSNR of an edited image (H, W, 3) uint8."""
    out = np.asarray(output.convert("RGB") if isinstance(output, Image.Image) else output)
    target_ok, kept = check_edit(out, e)  # a rich-world edit goes to the rich checker
    psnr = float(background_psnr(e.scene.image, out, e.mask, dilate=2))
    return dict(edit_success=float(target_ok), untouched_kept=float(kept), background_psnr=min(psnr, PSNR_CAP))


def score_edit(c, e: Edit, *, seed: int, progress: bool = False, **settings) -> list[dict]:
    """One row per entry of :data:`ROWS` for edit ``e`` (its masks, images' figures, seconds)."""
    from ..baselines import latent_region
    from ..methods import run_methods

    start = time.perf_counter()
    results = run_methods(c, Image.fromarray(e.scene.image), e.source, e.target, seed=seed, progress=progress,
                          ledits=ledits_concepts(e),
                          extra_masks=dict(true=latent_region(c, e.mask)), **settings)
    seconds = time.perf_counter() - start
    rows = []
    for name in ROWS:
        r = results["ledits_pp" if name == "ledits_pp_own" else name]
        image = r.image if name == "ledits_pp_own" else r.masked_images[0]
        mask_image = e.mask if name == "true" else r.mask_image[0].cpu().numpy()
        row = dict(method=name, kind=e.kind, source=e.source, target=e.target,
                   **score_mask(mask_image, r.mask[0].cpu().numpy(), e.mask), **score_image(e, image))
        rows.append(row)
    rows[0]["seconds_all_methods"] = seconds
    return rows


def summarize(rows: list[dict]) -> dict:
    """Per method: the mean of every figure over all edits and per edit kind (NaNs left out), and
    how many masks were empty (their precision is undefined)."""
    table = {}
    for name in ROWS:
        mine = [r for r in rows if r["method"] == name]
        entry = {k: mean_of(mine, k) for k in KEYS}
        for kind in ("shape", "colour"):
            entry[kind] = {k: mean_of([r for r in mine if r["kind"] == kind], k) for k in KEYS}
        entry["empty_masks"] = int(sum(np.isnan(r["precision"]) for r in mine))
        table[name] = entry
    return table


def best_by_iou(table: dict) -> str:
    """The inferred mask (not ``true``) with the highest mean IoU at image resolution."""
    candidates = [m for m in table if m not in ("true", "ledits_pp_own")]
    return max(candidates, key=lambda m: table[m]["mask_iou"])


def measure(c, *, edits: int = 20, steps: int = 10, seed: int = HELD_OUT_SEED, progress: bool = True,
            **settings) -> dict:
    """All the rows and their summary for ``edits`` held-out edits at ``steps`` DDIM steps
    (the other settings: the model's defaults, or ``settings`` in :func:`~diffedit_lab.edit`'s names)."""
    from tqdm.auto import tqdm

    if edits < 1:
        raise ValueError(f"edits must be at least 1, got {edits}.")
    todo = held_out_edits(edits, seed)
    rows = []
    for i, e in enumerate(tqdm(todo, desc="successors", disable=not progress)):
        rows.extend(score_edit(c, e, seed=seed + i, steps=steps, **settings))
    table = summarize(rows)
    return dict(table=table, best_by_iou=best_by_iou(table), rows=rows,
                settings=dict(edits=edits, steps=steps, seed=seed, model=c.name, defaults=c.defaults, **settings))


def format_table(table: dict) -> str:
    """Plain-text table of the summary: one line per method."""
    head = f"{'method':<16} {'IoU':>5} {'IoU lat':>7} {'prec':>5} {'recall':>6} {'success':>7} {'kept':>5} {'bg PSNR':>8}"
    lines = [head, "-" * len(head)]
    for name, t in table.items():
        lines.append(f"{name:<16} {t['mask_iou']:5.3f} {t['mask_iou_latent']:7.3f} {t['precision']:5.3f} "
                     f"{t['recall']:6.3f} {100 * t['edit_success']:6.0f}% {100 * t['untouched_kept']:4.0f}% "
                     f"{t['background_psnr']:6.2f}dB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from .. import load_components

    p = argparse.ArgumentParser(prog="python -m diffedit_lab.toy.successors", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model folder (default: the embedded toy model)")
    p.add_argument("--edits", type=int, default=20)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--seed", type=int, default=HELD_OUT_SEED)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    c = load_components(a.model, device="cpu")
    report = measure(c, edits=a.edits, steps=a.steps, seed=a.seed)
    print(format_table(report["table"]))
    print("best mask by IoU:", report["best_by_iou"])
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(report, indent=1, default=lambda x: x.item() if hasattr(x, "item") else str(x)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
