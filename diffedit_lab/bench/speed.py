"""Time and memory of diffedit-lab against diffusers' ``StableDiffusionDiffEditPipeline``.

    python -m diffedit_lab.bench speed [--quick] [--model M] [--tiny-only] [--rounds K]
                                       [--threads T] [--json OUT] [--no-memory] [--no-cold]

Both sides load the **same model folder** (each its own copy of the networks) and run the same
settings, the model's recommended ones (its ``diffedit_lab.json``, else the library defaults) —
but in (f) and (g), where diffusers runs at its own documented defaults, what a user of the
pipeline would run.
Two models: a tiny random Stable Diffusion built in code (:mod:`diffedit_lab.testing`), and the
embedded toy model (``load_components()``'s default; copied first, since a running training
replaces it now and then) or ``--model M``. Scenarios:

(a) **one edit at identical settings** — diffusers' ``generate_mask`` + ``invert`` + ``__call__``
    as documented (the inversion guided with the source text), against our step functions with
    the same texts, guidance, seeds and VAE sampling. *Identical* means: the same binary mask,
    the same inversion (max |Δ| ≤ 1e-5), and ``masked_denoise`` with diffusers' blend (its encoded
    latent one level too noisy, docs/differences.md §1) gives diffusers' image (max |Δ| ≤ 1e-4 in
    [0, 1]); our own output blends at the right level and so differs by that fix (reported).
    diffusers' ``generate_mask`` binarises at 0.5 whatever the model's recorded τ, so ours does too.
    Ours is timed twice: as it runs (the UNet through :mod:`diffedit_lab.fast_unet`), and with
    ``Components.fast_unet`` off (diffusers' own UNet forward) — the difference is what the lean
    forward saves, the rest is what fewer UNet rows save.
(b) **one edit at our defaults** — ``edit()``: unguided inversion (one UNet row per step instead
    of two), the VAE mean; against diffusers' edit of (a) (diffusers has one way to edit).
(c) **five targets on one image** — one ``EditSession.run_many`` at our defaults (the encoded
    image, text embeddings, the mask's source branch and the inversion computed once; the five
    decodings batched, 10 UNet rows per step), against five separate diffusers edits.
(d) **re-thresholding** an existing mask — ``EditSession.mask`` with a new threshold and clamp
    ratio (no model call, checked with forward hooks), against ``generate_mask`` (diffusers
    returns only the binary mask, so a new threshold is a new mask pass); the goal is for a mask
    of 64×64 latents (Stable Diffusion's size at 512×512 pixels).
(e) **overhead** — the share of an edit's time spent outside the UNet, VAE and text-encoder
    forward passes (timed with forward hooks, one extra run per side).
(f) **a new target on a warm session** — what the explorer does when a student types a new
    target: ``EditSession.run`` on a session that already holds the image (encoded, its mask's
    draws and source branch, its inversion), with a target text it has never seen (a new one
    every call, :func:`fresh_targets`): the text's embedding, the mask's target branch (n UNet
    rows), the decoding and the VAE decoder — checked on every timed call (the new entries of
    each cache: nothing but the target's, never a cache hit), and profiled once. Against what a
    user would otherwise run: diffusers' whole edit (``generate_mask`` + ``invert`` +
    ``__call__``) at the **pipeline's documented defaults** (its example's calls, no setting
    passed: 50 steps, 10 draws, inpaint_strength 0.8, guidance 7.5). Goal ≤ 0.15.
(g) **cold start** — a fresh ``python -c`` per sample, from the interpreter's start to the first
    edited image saved, imports included: ``import diffedit_lab``, ``load_components(folder)``,
    ``edit()`` at the model's recorded settings, against ``StableDiffusionDiffEditPipeline
    .from_pretrained(folder)`` (the documented DDIM and inverse DDIM schedulers) and its edit at
    its defaults. ``$OMP_NUM_THREADS`` = ``--threads`` in both children; the child's CPU time
    (``RUSAGE_CHILDREN``) and the wall-clock time around it. Goal ≤ 0.6.
    Beside (b): **a full edit at the recorded settings** in seconds (goal ≤ 3.5 s on the
    project's 2-core CPU; judged only when ``--steps``/``--n`` do not override them).

**Method.** ``torch.set_num_threads(1)`` (``--threads``): on a shared machine, extra threads
spin against the other processes' load; with one thread that load slows both sides alike.
Every round runs all the measurements one after the other, alternating diffusers and ours (the
order reversed every other round); one warm-up round is not counted. Times are **CPU times** of
this process (``time.process_time``; for (g) the child's; with one thread, the work done — a busy machine makes a
process wait for the CPU, which wall-clock time counts and CPU time does not); the wall-clock
figures are in the JSON too. The figures are **medians** over the rounds, and a ratio is the
median over the rounds of ours / diffusers within the round (a drifting load cancels).

**Peak memory** is measured in a fresh subprocess per measurement (alternating sides): the
model is loaded and the inputs prepared, then the peak resident set size (VmHWM) is reset
through ``/proc/self/clear_refs`` and one edit (a cold one) runs; the figure is the peak minus the
resident size before the edit — the memory the edit itself needed. (tracemalloc cannot see
torch's tensor memory; where clear_refs is not available the peak since the process started is
used, and said so.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from ..models import set_threads
from .speed_report import environment, table
from .speed_run import *  # noqa: F403  (the benchmark's pieces, re-exported: speed.ours_identical, …)
from .speed_run import GOALS, bench_model, log, memory_child


# ------------------------------------------------------------------------------------------
# models, report, command line


@contextlib.contextmanager
def _quiet():
    """diffusers' and transformers' warnings and progress bars off (the pipeline's deprecation
    notice, weight-loading bars…), restored afterwards."""
    import warnings

    from diffusers.utils import logging as dlogging
    from transformers.utils import logging as tlogging

    levels = dlogging.get_verbosity(), tlogging.get_verbosity()
    dlogging.set_verbosity_error()
    tlogging.set_verbosity_error()
    dlogging.disable_progress_bar()
    tlogging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*all zeros.*")  # a random model may find nothing to edit
            yield
    finally:
        dlogging.set_verbosity(levels[0])
        tlogging.set_verbosity(levels[1])
        dlogging.enable_progress_bar()
        tlogging.enable_progress_bar()


def snapshot_embedded(into: Path) -> Path | None:
    """A private copy of the embedded toy model (a training may swap the folder at any time)."""
    from ..models import DEFAULT_MODEL_DIR

    for _ in range(5):
        if not DEFAULT_MODEL_DIR.is_dir():
            return None
        target = into / "embedded"
        shutil.rmtree(target, ignore_errors=True)
        try:
            shutil.copytree(DEFAULT_MODEL_DIR, target)
            return target
        except (OSError, shutil.Error):
            time.sleep(2)
    return None


def models(a: argparse.Namespace, tmp: Path) -> list[tuple[str, Path]]:
    from ..testing import save_tiny_model

    out = []
    save_tiny_model(tmp / "tiny")
    out.append(("tiny", tmp / "tiny"))
    if a.tiny_only:
        return out
    if a.model:
        from ..models import _resolve_folder

        out.append((Path(str(a.model)).name or str(a.model), _resolve_folder(a.model)[0]))
        return out
    folder = snapshot_embedded(tmp)
    if folder is None:
        from ..models import DEFAULT_MODEL_DIR

        log(f"the embedded toy model is missing ({DEFAULT_MODEL_DIR}; it is written by "
            "`python -m diffedit_lab.toy.train`): running on the tiny model only.")
    else:
        out.append(("embedded", folder))
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m diffedit_lab.bench speed", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI size: 10 steps, 4 draws, 2 rounds, 1 memory sample")
    p.add_argument("--model", default=None, help="a model folder instead of the embedded toy model")
    p.add_argument("--tiny-only", action="store_true", help="only the tiny random model built in code")
    p.add_argument("--rounds", type=int, default=None, help="counted rounds (default 5, --quick 2)")
    p.add_argument("--warmup", type=int, default=1, help="uncounted rounds first (default 1)")
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the model's, --quick 10)")
    p.add_argument("--n", type=int, default=None, help="mask noise draws (default: the model's, --quick 4)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1, see the method)")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory subprocesses")
    p.add_argument("--no-cold", dest="cold", action="store_false", help="skip (g), the cold-start subprocesses")
    p.add_argument("--memory-reps", type=int, default=None, help="memory samples per side (default 2, --quick 1)")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.quick:
        a.steps, a.n = a.steps or 10, a.n or 4
    a.rounds = a.rounds if a.rounds is not None else (2 if a.quick else 5)
    a.memory_reps = a.memory_reps or (1 if a.quick else 2)
    if a.rounds < 1 or a.warmup < 0 or a.threads < 1 or a.memory_reps < 1:
        p.error("--rounds, --threads and --memory-reps must be ≥ 1, --warmup ≥ 0")
    return a


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    a = parse_args(argv)
    with _quiet():
        if a.memory_child:
            print(json.dumps(memory_child(json.loads(a.memory_child))))
            return 0
        threads = torch.get_num_threads()
        set_threads(a.threads)
        try:
            report = run(a, argv)
        finally:
            torch.set_num_threads(threads)
    print(report["table"])
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(report, indent=2, default=float) + "\n")
        log(f"wrote {a.json}")
    return 0


def run(a: argparse.Namespace, argv: list[str]) -> dict:
    report = dict(argv=argv, rounds=a.rounds, warmup=a.warmup, environment=environment(a.threads), goals=GOALS,
                  models={})
    with tempfile.TemporaryDirectory(prefix="diffedit_bench_") as tmp:
        for label, folder in models(a, Path(tmp)):
            report["models"][label] = bench_model(label, folder, a)
    report["table"] = table(report)
    return report


if __name__ == "__main__":
    sys.exit(main())
