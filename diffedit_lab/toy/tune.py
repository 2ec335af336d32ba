"""Choose the DiffEdit settings recorded with the toy model (``diffedit_lab.json``).

    python -m diffedit_lab.toy.tune [--model DIR] [--edits 16] [--steps 25] [--write]

A small grid over decoding guidance w, encoding ratio r and mask threshold, on *validation*
edits (seeds from ``VALIDATION_SEED``: disjoint from training, < 10 000 000, and from the
held-out seeds of :mod:`diffedit_lab.toy.quality`). Each setting is scored by

    score = P(target object present) · P(untouched object kept)

with background PSNR reported beside it; ``--write`` stores the best setting in the model
folder's ``diffedit_lab.json`` (the other recorded settings are kept).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from .world import make_edit

VALIDATION_SEED = 500_000_000
GRID = dict(guidance=(3.0, 5.0, 7.5), strength=(0.6, 0.8), threshold=(0.4, 0.5))


def evaluate(c, n_edits: int, steps: int, grid: dict = GRID) -> list[dict]:
    """Mean figures of every grid point over the validation edits (one EditSession per image,
    so masks and inversions are computed once and shared across the grid)."""
    from ..edit import EditSession
    from .quality import score_edit

    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    scores = [[] for _ in points]
    for i in tqdm(range(n_edits), desc="validation edits"):
        e = make_edit(VALIDATION_SEED + i, "shape" if i % 2 == 0 else "colour")
        session = EditSession(c, Image.fromarray(e.scene.image))
        for k, p in enumerate(points):
            res = session.run(e.source, e.target, seed=i, steps=steps, progress=False, **p)
            scores[k].append(score_edit(e, np.asarray(res.image.convert("RGB")), res.mask.mask[0].float().cpu().numpy()))
    rows = []
    for p, s in zip(points, scores):
        mean = {key: float(np.mean([r[key] for r in s])) for key in s[0]}
        rows.append(dict(p, **mean, score=mean["edit_success"] * mean["untouched_kept"]))
    return sorted(rows, key=lambda r: (-r["score"], -r["background_psnr"]))


def main(argv: list[str] | None = None) -> None:
    from .. import load_components

    p = argparse.ArgumentParser(prog="python -m diffedit_lab.toy.tune", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None)
    p.add_argument("--edits", type=int, default=16)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--write", action="store_true", help="record the best setting in the model's diffedit_lab.json")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    c = load_components(a.model, device="cpu")
    rows = evaluate(c, a.edits, a.steps)
    print(f"{'w':>5} {'r':>5} {'thr':>5} {'success':>8} {'kept':>6} {'IoU':>6} {'bg PSNR':>8}")
    for r in rows:
        print(f"{r['guidance']:5.1f} {r['strength']:5.2f} {r['threshold']:5.2f} {r['edit_success']:8.2f} "
              f"{r['untouched_kept']:6.2f} {r['mask_iou']:6.3f} {r['background_psnr']:8.2f}")
    if a.write:
        from ..models import DEFAULT_MODEL_DIR

        path = Path(a.model or DEFAULT_MODEL_DIR) / "diffedit_lab.json"
        settings = json.loads(path.read_text())
        settings.update({k: rows[0][k] for k in GRID})
        path.write_text(json.dumps(settings, indent=2) + "\n")
        print(f"wrote {path}: {settings}")


if __name__ == "__main__":
    main()
