"""The paper's edit trade-off, measured on the shapes world: DiffEdit against SDEdit,
encode–decode, the true-mask oracle, diffusers' pipeline as is, and DiffEdit's successors.

    python -m diffedit_lab.bench quality [--quick] [--out DIR] [--edits N] [--steps S]
                                         [--model DIR] [--ratios R ...] [--threads N] [--batch B]
                                         [--dataset DIR] [--no-successors]
                                         [--clip-model ID_OR_DIR] [--lpips-weights FILE]
    accelerate launch [--num_processes N] -m diffedit_lab.bench quality [options]

For every method and encoding ratio ``r`` (default 0.3, 0.5, 0.7, 0.8, 0.9), on ``N`` held-out
edits of the model's world (``--world``; scene seeds ``555 000 000 + 1 000 000 + i``: disjoint from
the training seeds, < 10 000 000, and from ``toy/quality.py``'s, ≥ 988 654 321) — the rich world:
its kinds in turn (``--kinds``, default colour, shape, size, background, remove: 20 of each in
100), the classic world: shape and colour changes alternating; every figure also per kind
(``by_kind``):

* **edit success** — the pixel checker (``toy.rich_checker`` or ``toy.checker``) reads what the
  target text says at its place: the object's new colour, shape or size, the new background, the
  removed object gone;
* **untouched kept** — it finds every other object unchanged at its place;
* **background PSNR / SSIM** — outside the true edited region dilated by 2 px (PSNR capped at
  100 dB, as in ``toy/quality.py``);
* **mask IoU** — against the true region, for the methods that have a mask: DiffEdit's mask at
  image resolution as ``MaskResult.upsampled`` makes it (the model's ``rescale`` and
  ``fill_holes`` settings apply, to it and to the latent mask of the blend), the oracle's and diffusers' latent masks
  with each cell a block (diffusers has no finer mask).
* **mask precision / recall** — ``|M ∩ T| / |M|`` and ``|M ∩ T| / |T|`` of the same masks.

**DiffEdit's successors** (:mod:`diffedit_lab.methods`; ``--no-successors`` leaves them out), at
``r = 0.8`` only, each edit on its own (:func:`~diffedit_lab.bench.quality_run.successor_rows`):
the cross-attention mask, DiffEdit's mask ∩ the attention mask and LEDITS++'s implicit mask, each
decoded with DiffEdit's decoding (rows ``cross_attention``, ``intersection``, ``ledits_pp``), and
LEDITS++'s own edit scored with its mask (``ledits_pp_own``) — what ``toy.successors`` measures,
in the bench's rows. Their UNet calls are not in the progress bar's count.

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
decoded with the VAE once at the end.

**Real data** (``--dataset DIR``): a folder laid out as PIE-Bench (:mod:`~diffedit_lab.bench.pie`:
``mapping_file.json`` with run-length-encoded masks, ``annotation_images/``) — the real
PIE-Bench with a real checkpoint (``--model``), or held-out shapes-world edits exported by
``python -m diffedit_lab.toy.export_bench DIR`` (the same rows as the direct run). Every row also
has PIE-Bench's figures on the unedited region (PSNR, MSE, SSIM: ``psnr_unedited``,
``mse_unedited``, ``ssim_unedited``) and the mask's precision and recall; on real images the
pixel checker cannot run, so edit success and untouched kept are NaN. The CLIP score
(``clip_score``, ``clip_score_edited``: PIE-Bench's, 100·max(cos, 0) with CLIP ViT-L/14) is added to
every row when ``--clip-model`` (default ``openai/clip-vit-large-patch14``) is already on the
machine; PIE-Bench's LPIPS on the unedited region (``lpips_unedited``: both images × (1 − mask),
SqueezeNet 1.1, :mod:`~diffedit_lab.bench.lpips`) when torchvision's cached SqueezeNet 1.1 file
and LPIPS's linear layers (an installed ``lpips``'s or torchmetrics' copy, or ``--lpips-weights
FILE``) are. Otherwise ``settings.learned_metrics`` says which file is missing and where it was
looked for. Nothing is downloaded.

**Several processes** (CPU cores, GPUs, machines): ``accelerate launch --num_processes N -m
diffedit_lab.bench quality …`` splits the batches of edits between the processes (``accelerate``'s
``PartialState().split_between_processes``), gathers their rows (``gather_object``) and the main
process writes the report. Seeds and batches depend on the edit only: the results do not depend on
``N``. On a shared 2-core CPU give each process one torch thread (``OMP_NUM_THREADS=1``): two torch
threads in one process spin against other work and run ~17× slower (measured).

Full run (100 edits, 10 DDIM steps, 63 100 UNet rows with the embedded model's settings):
905 s (15.1 minutes) wall with ``accelerate launch --multi_gpu --num_processes 2`` (one torch thread
each, ``--batch 25``: two batches per process) on the project's 2-core CPU shared with other work;
754 s alone and 1 121 s shared in earlier runs with the worker pool it replaced (same figures within
0.01 standard errors) — all with the classic model. The rich-world model's run (its five kinds, the
successors included): 1 236 s in one process of one torch thread, the other core busy.

Writes ``results.json`` (every figure, with standard errors, per kind of edit, the settings and
the checks), ``table.md`` (the README's table), ``tradeoff.png``/``ablations.png`` and
``rows.jsonl`` (every scored output) into ``--out``; prints a progress bar (UNet
rows, one latent through the UNet each) and a table.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

from ..models import set_threads
from ..toy.quality import MASKED_KINDS, held_out_kinds
from ..toy.world import KINDS, WORLDS
from .pie import DEFAULT_CLIP
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
    SUCCESSORS,
    THRESHOLDS,
    Job,
    Plan,
    Progress,
    QualityRun,
    Settings,
    _diffusers_prefix_ok,
    _row_order,
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
    score_image,
    successor_rows,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m diffedit_lab.bench quality", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="CI: 4 edits, r ∈ {0.5, 0.8}, 4 steps, n = 5 (ablation n ∈ {1, 5})")
    p.add_argument("--out", type=Path, default=Path("runs/bench/quality"), help="folder for results.json and plots")
    p.add_argument("--edits", type=int, default=None, help="held-out edits, the kinds in turn (100)")
    p.add_argument("--world", choices=WORLDS, default=None,
                   help="the shapes world whose held-out edits are run (default: the model's own, from its words)")
    p.add_argument("--kinds", nargs="+", default=None, metavar="KIND",
                   help=f"rich world: the kinds of edit, in turn (default {' '.join(MASKED_KINDS)}; also "
                        f"{' '.join(k for k in KINDS if k not in MASKED_KINDS)})")
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (10)")
    p.add_argument("--ratios", type=float, nargs="+", default=None, help="encoding ratios r (0.3 0.5 0.7 0.8 0.9)")
    p.add_argument("--model", default=None, help="model folder (default: the embedded toy model)")
    p.add_argument("--seed", type=int, default=BENCH_SEED, help="first held-out seed")
    p.add_argument("--batch", type=int, default=32, help="edits per UNet call")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    p.add_argument("--no-successors", action="store_true",
                   help="leave out DiffEdit's successors (cross-attention, intersection, LEDITS++)")
    p.add_argument("--dataset", type=Path, default=None,
                   help="a folder laid out as PIE-Bench (mapping_file.json, annotation_images/): its edits instead "
                        "of the shapes world's (--edits N: the first N)")
    p.add_argument("--clip-model", default=None, metavar="ID_OR_DIR",
                   help=f"CLIP for PIE-Bench's CLIP score, a model id in the local Hugging Face cache or a folder "
                        f"(default {DEFAULT_CLIP}); not on this machine: skipped and the report says why "
                        "(nothing is downloaded); 'none': off")
    p.add_argument("--lpips-weights", default=None, metavar="FILE",
                   help="LPIPS v0.1's SqueezeNet linear layers (the lpips package's lpips/weights/v0.1/squeeze.pth); "
                        "default: the copy in an installed lpips or torchmetrics. LPIPS is computed only when this "
                        "file and torchvision's cached SqueezeNet 1.1 weights (<torch hub dir>/checkpoints/"
                        "squeezenet1_1-b8a52dc0.pth) are on the machine, else the report says which is missing "
                        "(nothing is downloaded); 'none': off")
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    if a.kinds:  # the model's world is checked in resolve(), once the model is loaded
        try:
            held_out_kinds(a.world or "rich", tuple(a.kinds))
        except ValueError as err:
            p.error(str(err))
    return a


def settings_from(a: argparse.Namespace) -> Settings:
    s = replace(Settings(), **QUICK) if a.quick else Settings()
    given = dict(edits=a.edits, steps=a.steps, ratios=tuple(a.ratios) if a.ratios else None)
    s = replace(s, seed=a.seed, batch=a.batch, successors=not a.no_successors, world=a.world,
                kinds=tuple(a.kinds) if a.kinds else None,
                clip_model=DEFAULT_CLIP if a.clip_model is None else a.clip_model, lpips_weights=a.lpips_weights,
                **{k: v for k, v in given.items() if v is not None})
    if s.ablation_r not in s.ratios and a.ratios:
        s = replace(s, ablation_r=max(s.ratios))
    return s


def process_state():
    """accelerate's ``PartialState`` of this process (one process without ``accelerate launch``).
    Processes on a machine without CUDA (or with ``ACCELERATE_USE_CPU``) join with gloo on the CPU:
    ``PartialState`` needs ``cpu=True`` for that, which ``accelerate launch`` does not pass on."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available())


def main(argv: list[str] | None = None) -> int:
    from .. import load_components
    from .pie import read_dataset

    a = parse_args(argv)
    if a.threads:
        set_threads(a.threads)
    if a.edits is not None and a.edits < 1:
        raise SystemExit(f"error: --edits must be at least 1, got {a.edits}.")
    items = None
    if a.dataset is not None:
        try:
            items = read_dataset(a.dataset)
        except (FileNotFoundError, ValueError) as err:
            raise SystemExit(f"error: {err}") from None
        if a.edits is not None:
            items = items[:a.edits]
        a.edits = len(items)
    s = settings_from(a)
    state = process_state()
    device = a.device  # several processes: each its own GPU (cuda:0, cuda:1, …) or the CPU
    if device is None and state.num_processes > 1:
        device = "cpu" if state.device.type == "cpu" else str(state.device)
    c = load_components(a.model, device=device)
    try:
        s = resolve(c, s)  # the world's kinds checked against the model's world, before any long work
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    if state.is_main_process:
        what = f" from {a.dataset}" if a.dataset else f" of the {s.world} world ({', '.join(s.kinds)} in turn)"
        print(f"model {a.model or 'embedded toy model'}: {s.edits} edits" + what + f", r ∈ {list(s.ratios)}, {s.steps} DDIM steps, "
              f"{state.num_processes} process(es) of {torch.get_num_threads()} thread(s)", flush=True)
        from .pie import learned_metrics

        for name, status in learned_metrics(s.clip_model, s.lpips_weights).items():
            print(f"{name}: {status}", flush=True)
    out = run(c, s, model_dir=a.model, progress=not a.no_progress, items=items,
              dataset=str(a.dataset) if a.dataset else None)
    if not state.is_main_process:
        return 0
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
