#!/usr/bin/env python
"""Seconds per DiffEdit edit on this machine, at a model's recorded settings (the model card's figure).

    python scripts/time_edit.py [--model DIR] [--repeats 5] [--threads N]

One warm-up edit, then ``--repeats`` timed edits of held-out scenes (mask with n draws,
inversion and denoising at the recorded steps and r, decoding); prints the median wall time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from PIL import Image

import diffedit_lab as dl
from diffedit_lab.toy.quality import held_out_edits


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    dl.set_threads(a.threads)  # None: the shared-CPU default (DIFFEDIT_THREADS, OMP_NUM_THREADS, half the cores ≤ 4)
    c = dl.load_components(a.model)
    edits = held_out_edits(a.repeats + 1)
    times = []
    for i, e in enumerate(edits):
        start = time.perf_counter()
        dl.edit(c, Image.fromarray(e.scene.image), e.source, e.target, seed=i, progress=False)
        if i:  # the first is the warm-up
            times.append(time.perf_counter() - start)
    print(f"{c.name}: median {statistics.median(times):.2f} s per edit over {len(times)} edits "
          f"(min {min(times):.2f}, max {max(times):.2f}); {torch.get_num_threads()} torch thread(s); settings {c.defaults}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
