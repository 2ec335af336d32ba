"""Choose the DiffEdit settings recorded with the toy model (``diffedit_lab.json``).

    python -m diffedit_lab.toy.tune [--model DIR] [--edits 24] [--mask-edits 48] [--steps 25] [--write]

Two stages, both on *validation* edits (seeds from ``VALIDATION_SEED``: disjoint from training,
< 10 000 000, and from the held-out seeds of :mod:`diffedit_lab.toy.quality`):

1. **the mask** — mask noise ``s`` (``mask_noise``), clamp ratio ``κ``, threshold ``τ`` and hole
   filling are chosen for the mean IoU between the inferred mask at 64×64
   (:meth:`~diffedit_lab.mask.MaskResult.upsampled`) and the true edited region. Only the mask
   pass runs (``n`` draws per strength); each ``(κ, τ, fill)`` re-thresholds. A shape change
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
from .quality import alternating_edits
from .world import Edit

if TYPE_CHECKING:
    from ..models import Components

VALIDATION_SEED = 500_000_000
MASK_GRID = dict(mask_noise=(0.5, 0.6, 0.7, 0.8, 0.9), clamp_ratio=(2.0, 2.5, 3.0, 4.0, 5.0, 6.0),
                 threshold=(0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95), fill_holes=(False, True))
EDIT_GRID = dict(guidance=(3.0, 5.0, 7.5), encoding_ratio=(0.6, 0.8, 0.9))
PAPER_MASK = {k: getattr(EditSettings(), k) for k in MASK_GRID}  # the paper's s, κ, τ, no hole filling


def validation_edits(n: int) -> list[Edit]:
    """Edits ``make_edit(VALIDATION_SEED + i)``: even i change a shape, odd i a colour."""
    return alternating_edits(VALIDATION_SEED, n)


def mask_ious(c: Components, edits: list[Edit], *, guidance: float, n: int, grid: dict | None = None,
              progress: bool = True) -> list[dict]:
    """Mean IoU of the mask at 64×64 against the true region for every (mask strength, clamp
    ratio, threshold, fill holes) of ``grid`` (default :data:`MASK_GRID`), best first."""
    grid = grid or MASK_GRID
    from ..mask import noise_diff_mask
    from ..metrics import mask_iou

    ious: dict[tuple, list] = {}
    for i, e in enumerate(tqdm(edits, desc="masks", disable=not progress)):
        for s in grid["mask_noise"]:
            m = noise_diff_mask(c, Image.fromarray(e.scene.image), e.source, e.target, n=n, mask_noise=s,
                                guidance=guidance, seed=i, progress=False)
            for kappa, tau, fill in itertools.product(grid["clamp_ratio"], grid["threshold"], grid["fill_holes"]):
                mask = m.rethreshold(clamp_ratio=kappa, threshold=tau, fill_holes=fill).upsampled()[0].cpu().numpy()
                ious.setdefault((s, kappa, tau, fill), []).append(float(mask_iou(mask, e.mask)))
    rows = [dict(mask_noise=s, clamp_ratio=kappa, threshold=tau, fill_holes=fill, mask_iou=float(np.mean(v)))
            for (s, kappa, tau, fill), v in ious.items()]
    return sorted(rows, key=lambda r: -r["mask_iou"])


def edit_scores(c: Components, edits: list[Edit], steps: int, masks: list[dict], grid: dict | None = None,
                progress: bool = True) -> list[dict]:
    """Mean figures of every point of ``grid`` (default :data:`EDIT_GRID`) with each of the mask
    settings ``masks``, best first; one EditSession per image, so masks and inversions are
    computed once and shared across the grid."""
    from ..edit import EditSession
    from .quality import score_edit

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
        mean = {key: float(np.mean([r[key] for r in s])) for key in s[0]}
        rows.append(dict(p, **mean, score=mean["edit_success"] * mean["untouched_kept"]))
    return sorted(rows, key=lambda r: (-r["score"], -r["background_psnr"]))


def main(argv: list[str] | None = None) -> None:
    from .. import load_components

    p = argparse.ArgumentParser(prog="python -m diffedit_lab.toy.tune", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None)
    p.add_argument("--edits", type=int, default=24, help="validation edits of stage 2 (the edit grid)")
    p.add_argument("--mask-edits", type=int, default=48, help="validation edits of stage 1 (the mask grid; cheap)")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--write", action="store_true", help="record the best settings in the model's diffedit_lab.json")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    c = load_components(a.model, device="cpu")
    edits = validation_edits(max(a.edits, a.mask_edits))
    model = EditSettings.for_model(c)
    masks = mask_ious(c, edits[:a.mask_edits], guidance=model.guidance, n=model.n)
    print(f"{'s':>5} {'κ':>5} {'τ':>5} {'fill':>5} {'IoU':>6}")
    for r in masks[:10]:
        print(f"{r['mask_noise']:5.2f} {r['clamp_ratio']:5.1f} {r['threshold']:5.2f} {str(r['fill_holes']):>5} "
              f"{r['mask_iou']:6.3f}")
    best_mask = {k: masks[0][k] for k in MASK_GRID}
    rows = edit_scores(c, edits[:a.edits], a.steps, [best_mask] + ([PAPER_MASK] if best_mask != PAPER_MASK else []))
    print(f"\n{'s':>5} {'κ':>5} {'τ':>5} {'w':>5} {'r':>5} {'success':>8} {'kept':>6} {'IoU':>6} {'bg PSNR':>8}")
    for r in rows:
        print(f"{r['mask_noise']:5.2f} {r['clamp_ratio']:5.1f} {r['threshold']:5.2f} {r['guidance']:5.1f} "
              f"{r['encoding_ratio']:5.2f} {r['edit_success']:8.2f} {r['untouched_kept']:6.2f} {r['mask_iou']:6.3f} "
              f"{r['background_psnr']:8.2f}")
    if a.write:
        from ..models import DEFAULT_MODEL_DIR

        path = Path(a.model or DEFAULT_MODEL_DIR) / "diffedit_lab.json"
        settings = json.loads(path.read_text())
        for old in DEPRECATED_NAMES:  # the file's old names give way to today's
            settings.pop(old, None)
        settings.update({k: rows[0][k] for k in (*MASK_GRID, *EDIT_GRID)})
        path.write_text(json.dumps(settings, indent=2) + "\n")
        print(f"wrote {path}: {settings}")


if __name__ == "__main__":
    main()
