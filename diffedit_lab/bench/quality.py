"""The paper's edit trade-off, measured on the shapes world: DiffEdit against SDEdit,
encode–decode, the true-mask oracle and diffusers' pipeline as is.

    python -m diffedit_lab.bench quality [--quick] [--out DIR] [--edits N] [--steps S]
                                         [--model DIR] [--ratios R ...] [--workers N] [--threads N]
                                         [--batch B]

For every method and encoding ratio ``r`` (default 0.3, 0.5, 0.7, 0.8, 0.9), on ``N`` held-out
edits (half shape, half colour changes; scene seeds ``555 000 000 + 1 000 000 + i``: disjoint from
the training seeds, < 10 000 000, and from ``toy/quality.py``'s, ≥ 988 654 321):

* **edit success** — the pixel checker finds the target object at its place;
* **untouched kept** — it finds the other object unchanged at its place;
* **background PSNR / SSIM** — outside the true edited region dilated by 2 px (PSNR capped at
  100 dB, as in ``toy/quality.py``);
* **mask IoU** — against the true region, for the methods that have a mask: DiffEdit's mask at
  image resolution as ``MaskResult.upsampled`` makes it (the model's ``fill_holes`` setting
  applies, to it and to the latent mask of the blend), the oracle's and diffusers' latent masks
  with each cell a block (diffusers has no finer mask).

Ablations of DiffEdit at ``r = 0.8`` (the model's default): the number of noise draws
``n ∈ {1, 2, 5, 10, 20}``, the threshold ``τ ∈ {0.25, 0.5, 0.75}``, the reference text (source
caption vs the empty text ∅), and the encoding (unconditional as in the paper; conditioned on
the caption with guidance 1 and 7.5, the latter as diffusers' ``invert``).

**Why it is fast.** The library's functions take a batch of images with *one* text; here every
edit has its own texts, so this module drives the same pieces (``guided_noise``, the DDIM
schedulers, ``normalize_and_threshold``) on batches of edits with per-edit embeddings, many
edits and methods per UNet call; tests/test_bench_quality.py checks that each batched result
equals the library function run on one edit (``noise_diff_mask``, ``ddim_invert``,
``masked_denoise``, ``sdedit``). Each edit's mask is computed **once**, with 20 draws and both
reference texts in one UNet call (rows ``[∅, R, Q]``): the ``n`` ablation averages the first
``n`` draws (the same numbers as ``noise_diff_mask(n=n)`` with the same seed), the threshold
ablation re-thresholds (no model call). **One** DDIM encoding to the largest ``r`` holds the
smaller ``r``'s latents: checked at run time (the inverse timesteps of each ``r`` must be a
prefix of the largest's, and the denoising timesteps their reverse; otherwise that ``r`` gets
its own encoding) and numerically in the tests; diffusers' ``invert`` likewise. Everything is
decoded with the VAE once at the end. On a CPU the edits are split between two processes of one
torch thread each (``--workers``): on a shared 2-core machine two torch threads in one process
spin against other work and run ~17× slower (measured), one thread per process does not.

Full run (100 edits, 10 DDIM steps, 63 100 UNet rows with the embedded model's settings):
754 s (12.6 minutes) wall with 2 worker processes on the project's 2-core CPU, nothing else running
(1 121 s in a later run with a `toy.quality` job sharing the cores).

Writes ``results.json`` (every figure, with standard errors, per kind of edit, the settings and
the checks), ``table.md`` (the README's table), ``tradeoff.png``/``ablations.png`` and
``rows.jsonl`` (every scored output) into ``--out``; prints a progress bar (UNet
rows, one latent through the UNet each) and a table.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

import torch

from ..models import set_threads
from .quality_report import (  # noqa: F401  (the public API of the benchmark, re-exported)
    ENCODINGS,
    LABELS,
    METRICS,
    RATES,
    REFERENCES,
    ablation_figure,
    ablations,
    committed_results,
    format_ablation_table,
    format_results_table,
    group,
    load_results,
    markdown_table,
    report,
    rkey,
    summarize,
    tradeoff_figure,
    tradeoff_points,
    write,
)
from .quality_run import (  # noqa: F401
    BENCH_SEED,
    MASK_METHODS,
    METHODS,
    N_DRAWS,
    QUICK,
    RATIOS,
    SDEDIT_SEED_OFFSET,
    THRESHOLDS,
    Job,
    Plan,
    Progress,
    QualityRun,
    Settings,
    _diffusers_prefix_ok,
    _weighted,
    ablation_variants,
    decode_all,
    edit_masks,
    encode_all,
    masks_from,
    n_draws,
    plan_rows,
    prefix_ok,
    resolve,
    rows_per_step,
    run,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m diffedit_lab.bench quality", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="CI: 4 edits, r ∈ {0.5, 0.8}, 4 steps, n = 5 (ablation n ∈ {1, 5})")
    p.add_argument("--out", type=Path, default=Path("runs/bench/quality"), help="folder for results.json and plots")
    p.add_argument("--edits", type=int, default=None, help="held-out edits, half shape, half colour (100)")
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (10)")
    p.add_argument("--ratios", type=float, nargs="+", default=None, help="encoding ratios r (0.3 0.5 0.7 0.8 0.9)")
    p.add_argument("--model", default=None, help="model folder (default: the embedded toy model)")
    p.add_argument("--seed", type=int, default=BENCH_SEED, help="first held-out seed")
    p.add_argument("--batch", type=int, default=32, help="edits per UNet call")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (with --workers 1)")
    p.add_argument("--workers", type=int, default=None,
                   help="processes of one torch thread each, robust on a busy machine where torch's threads spin "
                        "(default: 2 on a CPU with 2+ cores, else 1; --quick: 1)")
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def settings_from(a: argparse.Namespace) -> Settings:
    s = replace(Settings(), **QUICK) if a.quick else Settings()
    given = dict(edits=a.edits, steps=a.steps, ratios=tuple(a.ratios) if a.ratios else None)
    s = replace(s, seed=a.seed, batch=a.batch, **{k: v for k, v in given.items() if v is not None})
    if s.ablation_r not in s.ratios and a.ratios:
        s = replace(s, ablation_r=max(s.ratios))
    return s


def main(argv: list[str] | None = None) -> int:
    from .. import load_components

    a = parse_args(argv)
    if a.threads:
        set_threads(a.threads)
    s = settings_from(a)
    c = load_components(a.model, device=a.device)
    if a.workers is None:
        a.workers = 1 if a.quick or c.device.type != "cpu" else max(1, min(2, os.cpu_count() or 1))
    print(f"model {a.model or 'embedded toy model'}: {s.edits} edits, r ∈ {list(s.ratios)}, {s.steps} DDIM steps, "
          + (f"{a.workers} worker processes" if a.workers > 1 else f"{torch.get_num_threads()} thread(s)"), flush=True)
    out = run(c, s, model_dir=a.model, progress=not a.no_progress, workers=a.workers)
    results = out["report"]
    paths = write(a.out, results, out["rows"])
    from .quality_report import PACKAGED_RESULTS, REPOSITORY_RESULTS

    if Path(a.out).resolve() == REPOSITORY_RESULTS.parent:  # the committed run: refresh the packaged copy too
        packaged = Path(__file__).resolve().parent / PACKAGED_RESULTS
        packaged.write_text(REPOSITORY_RESULTS.read_text())
        paths.append(packaged)
    print(format_results_table(results))
    print()
    print(format_ablation_table(results))
    t = results["timing"]
    print(f"\n{results['settings']['unet_rows']} UNet rows in {t['total_s']:.0f} s; wrote "
          + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
