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
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..latents import decode, encode, encode_prompt, make_generator
from ..mask import noised_draws, normalize_and_threshold, upsample_and_threshold
from ..metrics import upsample_mask
from ..models import fresh_schedulers
from ..sampling import denoising_timesteps, guided_noise, inversion_timesteps, strength_steps, unet_caller, unet_output
from ..toy.quality import PSNR_CAP, format_value, held_out_edits, mean_of, score_edit, vae_ceiling
from ..toy.world import Edit

METHODS = ("diffedit", "sdedit", "encode_decode", "oracle", "diffusers")
MASK_METHODS = ("diffedit", "oracle", "diffusers")
RATIOS = (0.3, 0.5, 0.7, 0.8, 0.9)
N_DRAWS = (1, 2, 5, 10, 20)
THRESHOLDS = (0.25, 0.5, 0.75)
REFERENCES = ("caption", "empty")
ENCODINGS = ("empty, w=1", "caption, w=1", "caption, w=7.5")  # inversion prompt, guidance
METRICS = ("edit_success", "untouched_kept", "background_psnr", "background_ssim", "mask_iou")
RATES = ("edit_success", "untouched_kept")
BENCH_SEED = 555_000_000
SDEDIT_SEED_OFFSET = 2_000_000  # SDEdit's noise: seed + 2 000 000 + i (the mask draws use seed + i)
LABELS = dict(
    diffedit="DiffEdit", sdedit="SDEdit", encode_decode="encode–decode", oracle="oracle (true mask)",
    diffusers="diffusers pipeline",
)


@dataclass
class Settings:
    """Everything a run depends on (written to results.json). DiffEdit's settings left None are
    the model's recorded ones (``edit()``'s defaults for it; see :func:`resolve`)."""

    edits: int = 100
    steps: int = 10
    ratios: tuple = RATIOS
    seed: int = BENCH_SEED
    guidance: float | None = None
    n: int | None = None
    threshold: float | None = None
    clamp_ratio: float | None = None
    mask_strength: float | None = None
    fill_holes: bool | None = None
    ablation_r: float = 0.8
    n_values: tuple = N_DRAWS
    thresholds: tuple = THRESHOLDS
    inversion_guidance: float = 7.5  # the guided encoding of the ablation, and diffusers' invert default
    oracle_cover: float = 0.0
    batch: int = 32
    first: int = 0  # the first edit (a worker's slice)
    dilate: int = 2


QUICK = dict(edits=4, steps=4, ratios=(0.5, 0.8), n=5, n_values=(1, 5))
"""CI: a smoke test of every path (same methods, ablations, outputs), figures meaningless."""


# --------------------------------------------------------------------------- batched pieces


class Progress:
    """Counts UNet rows (one latent through the UNet) on a tqdm bar."""

    def __init__(self, total: int, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="row", desc="quality", disable=not enabled, smoothing=0.05)
        self.rows = 0

    def __call__(self, rows: int) -> None:
        self.rows += rows
        self.bar.update(rows)

    def close(self) -> None:
        self.bar.close()


def rows_per_step(batch: int, guidance: float) -> int:
    """UNet rows of one guided step on ``batch`` latents: 2 per latent with guidance, else 1."""
    return batch * (2 if guidance > 1 else 1)


@torch.inference_mode()
def ddim_loop(c, z, timesteps, scheduler, cond, uncond, guidance: float, blend=None, tick=None) -> list:
    """``z ← step(ε̂(z, t, cond_i), t, z)`` over ``timesteps`` for a batch whose item ``i`` has its
    own embedding ``cond[i]`` (B, L, D); ``blend(i, z)`` after step ``i``. Returns every latent."""
    out, unet = [z], unet_caller(c)
    uncond = uncond if guidance > 1 else None
    for i, t in enumerate(timesteps):
        eps = guided_noise(c, z, t, cond, uncond, guidance, unet=unet)
        z = scheduler.step(eps, t, z).prev_sample
        if blend is not None:
            z = blend(i, z)
        out.append(z)
        if tick is not None:
            tick(rows_per_step(len(z), guidance))
    return out


def invert_batch(c, z0, cond, uncond, *, steps: int, strength: float, guidance: float, batch: int, tick=None):
    """DDIM encoding of every latent (its own ``cond``) to ``strength``: ``(trajectory (T+1, B, C, h, w),
    timesteps)`` — ``ddim_invert`` on each edit, ``batch`` edits per UNet call."""
    parts = []
    for s in range(0, len(z0), batch):
        _, inverse = fresh_schedulers(c)
        timesteps = inversion_timesteps(inverse, steps, strength)
        parts.append(torch.stack(ddim_loop(c, z0[s:s + batch], timesteps, inverse, cond[s:s + batch], uncond,
                                           guidance, tick=tick)))
    return torch.cat(parts, 1), timesteps.cpu()


def decode_batch(c, start, cond, uncond, masks, encoded, *, steps: int, strength: float, guidance: float,
                 batch: int, tick=None) -> torch.Tensor:
    """DiffEdit's decoding of a batch of jobs from ``start`` (B, C, h, w), each with its own text,
    mask (B, 1, h, w) and encoding trajectory ``encoded`` (T+1, B, C, h, w): after step ``i``,
    ``ỹ = M·y + (1 − M)·encoded[T − 1 − i]`` — ``masked_denoise``. An all-ones mask gives exactly
    the unmasked loop (encode–decode, SDEdit: ``1·y + 0·x = y``)."""
    out = []
    for s in range(0, len(start), batch):
        scheduler, _ = fresh_schedulers(c)
        timesteps = denoising_timesteps(scheduler, steps, strength)
        m, enc, last = masks[s:s + batch], encoded[:, s:s + batch], len(timesteps) - 1

        def blend(i, y, m=m, enc=enc, last=last):
            return (m * y + (1 - m) * enc[last - i]).contiguous()

        out.append(ddim_loop(c, start[s:s + batch], timesteps, scheduler, cond[s:s + batch], uncond, guidance,
                             blend, tick)[-1])
    return torch.cat(out)


@torch.inference_mode()
def mask_deltas(c, z0, source, target, uncond, seeds, *, n: int, strength: float, steps: int, guidance: float,
                tick=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``|ε̂(Q) − ε̂(R)|`` and ``|ε̂(Q) − ε̂(∅)|`` per draw, each (B, n, C, h, w), from one UNet call per
    edit on rows ``[∅, R, Q] × n`` (edit ``i``'s draws from ``seeds[i]``, as ``noise_diff_mask``)."""
    scheduler, _ = fresh_schedulers(c)
    t = denoising_timesteps(scheduler, steps, strength)[0]
    to_caption, to_empty = [], []
    for i in range(len(z0)):
        z_t = noised_draws(c, z0[i:i + 1], n, t, make_generator(seeds[i]))
        emb = torch.cat([uncond, source[i:i + 1], target[i:i + 1]]).repeat_interleave(n, dim=0)
        u, r, q = unet_output(c, z_t.repeat(3, 1, 1, 1), t, emb).chunk(3)
        if guidance > 1:
            r, q = u + guidance * (r - u), u + guidance * (q - u)
        to_caption.append((q - r).abs())
        to_empty.append((q - u).abs())
        if tick is not None:
            tick(3 * n)
    return torch.stack(to_caption), torch.stack(to_empty)


def masks_from(deltas: torch.Tensor, n: int, clamp_ratio: float, threshold: float, fill_holes: bool,
               size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary masks (B, h, w) from the first ``n`` draws — ``D = mean over draws and channels``,
    then ``normalize_and_threshold`` (per image) — and the same masks at image resolution
    ``size`` (H, W) as ``MaskResult.upsampled`` makes them (the ones scored by IoU)."""
    normalized, mask = normalize_and_threshold(deltas[:, :n].mean([1, 2]), clamp_ratio, threshold, fill_holes)
    return mask, upsample_and_threshold(normalized, threshold, size, fill_holes)


def prefix_ok(c, steps: int, strength: float, largest: float) -> bool:
    """Does one DDIM encoding to ``largest`` contain the encoding to ``strength``? True when the
    inverse timesteps of ``strength`` are a prefix of those of ``largest`` and the denoising
    timesteps of ``strength`` are their reverse (what ``masked_denoise`` blends against)."""
    scheduler, inverse = fresh_schedulers(c)
    small = inversion_timesteps(inverse, steps, strength).clone()
    big = inversion_timesteps(inverse, steps, largest).clone()
    down = denoising_timesteps(scheduler, steps, strength)
    return len(small) <= len(big) and torch.equal(big[: len(small)], small) and torch.equal(down.flip(0), small)


# --------------------------------------------------------------------------- the run


@dataclass
class Job:
    """One output to compute: ``method`` at ratio ``r``; ``variant``: (ablation, value) or None."""

    method: str
    r: float
    variant: tuple | None = None


@dataclass
class Plan:
    """The jobs of one ratio, as batched tensors."""

    r: float
    jobs: list = field(default_factory=list)
    edits: list = field(default_factory=list)  # edit index per job
    start: list = field(default_factory=list)
    masks: list = field(default_factory=list)
    fine: list = field(default_factory=list)  # the masks at image resolution, scored by IoU
    encoded: list = field(default_factory=list)


def plan_rows(s: Settings, guidance: float) -> int:
    """The UNet rows a run will take (for the progress bar)."""
    g = 2 if guidance > 1 else 1
    n_max = n_draws(s)
    k = {r: strength_steps(s.steps, r) for r in set(s.ratios) | {s.ablation_r}}
    r_max = max(k)  # the one encoding (ours and diffusers') goes to the largest ratio, the ablation's included
    gi = 2 if s.inversion_guidance > 1 else 1
    total = 3 * n_max + (4 if guidance > 1 else 2) * s.n  # our masks ([∅, R, Q] × n); diffusers' generate_mask
    total += k[max(k)] + k[s.ablation_r] * (1 + gi)  # encodings: ∅ w=1 to r_max; caption w=1 and guided
    total += g * sum(k[r] for r in s.ratios) * 4  # diffedit, sdedit, encode-decode, oracle
    total += gi * k[r_max] + g * sum(k[r] for r in s.ratios)  # diffusers: invert + __call__
    total += g * k[s.ablation_r] * (len(ablation_variants(s)) + (s.ablation_r not in s.ratios))
    return total * s.edits


def n_draws(s: Settings) -> int:
    """Noise draws computed per mask: enough for every ``n`` of the ablation and the default."""
    return max((*s.n_values, s.n))


def ablation_variants(s: Settings) -> list[tuple]:
    """The DiffEdit variants at ``ablation_r`` other than the default setting."""
    out = [("n", n) for n in s.n_values if n != s.n]
    out += [("threshold", t) for t in s.thresholds if t != s.threshold]
    out += [("reference", "empty"), ("encoding", ENCODINGS[1]), ("encoding", ENCODINGS[2])]
    return out


def run(c, s: Settings, *, model_dir=None, progress: bool = True, workers: int = 1) -> dict:
    """Run the benchmark: ``{"report": results.json content (see :func:`report`), "rows": every
    scored output}``. ``workers > 1``: the edits are split between that many processes of one
    torch thread each (``model_dir``/``c.device`` say what they load)."""
    t_start = time.perf_counter()
    s = resolve(c, s)
    guidance = s.guidance
    bar = Progress(plan_rows(s, guidance), progress)
    if workers <= 1:
        parts = [_run_part(c, s, bar)]
    else:
        parts = _run_parallel(model_dir, str(c.device), s, workers, bar)
    bar.close()
    rows = [row for part in parts for row in part["rows"]]
    counts = [part["count"] for part in parts]
    ceilings = {key: _weighted([p["ceilings"][key] for p in parts], counts) for key in parts[0]["ceilings"]}
    checks = {key: {r: all(p["checks"][key][r] for p in parts) for r in parts[0]["checks"][key]}
              for key in parts[0]["checks"]}
    timing = dict(total_s=time.perf_counter() - t_start, workers=[p["timing"] for p in parts])
    settings = dict(asdict(s), ratios=list(s.ratios), model=c.name, model_defaults=c.defaults, device=str(c.device),
                    workers=max(1, workers), threads=torch.get_num_threads() if workers <= 1 else 1,
                    unet_rows=bar.rows, model_dir=str(model_dir) if model_dir else None,
                    model_training=_training_info(model_dir),
                    diffusers=dict(generate_mask="one image per call, guidance as decoding, n, κ, mask strength as ours",
                                   invert=f"prompt = source caption, guidance {s.inversion_guidance} (its default)",
                                   call="prompt = target caption, no negative prompt, guidance as ours"))
    return dict(report=report(rows, settings, ceilings, checks, timing), rows=rows)


def resolve(c, s: Settings) -> Settings:
    """``s`` with every DiffEdit setting left None set to the model's recorded one (else the
    library default), the ratios sorted, and the model's threshold added to the ablation's."""
    from ..edit import resolve_settings

    given = resolve_settings(c, **{k: getattr(s, k) for k in ("guidance", "n", "threshold", "clamp_ratio", "mask_strength",
                                                              "fill_holes")})
    given = {k: int(v) if k == "n" else bool(v) if k == "fill_holes" else float(v) for k, v in given.items()}
    return replace(s, ratios=tuple(sorted(set(s.ratios))), thresholds=tuple(sorted({*s.thresholds, given["threshold"]})),
                   **given)


def _weighted(values: list, counts: list[int]):
    """Means of parts (numbers, or dicts of numbers) → the mean over all, weighted by the counts."""
    if isinstance(values[0], dict):
        return {k: _weighted([v[k] for v in values], counts) for k in values[0]}
    return float(np.average(values, weights=counts))


def _run_parallel(model_dir, device: str, s: Settings, workers: int, bar: "Progress") -> list[dict]:
    """:func:`_run_part` on ``workers`` contiguous slices of the edits, one process (one torch
    thread) each; their UNet rows feed ``bar`` through a shared counter."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ctx = mp.get_context("spawn")
    counter = ctx.Value("q", 0)
    bounds = np.linspace(0, s.edits, workers + 1).round().astype(int)
    slices = [replace(s, first=s.first + int(a), edits=int(b - a)) for a, b in zip(bounds, bounds[1:]) if b > a]
    with ProcessPoolExecutor(len(slices), mp_context=ctx, initializer=_init_worker, initargs=(counter,)) as pool:
        futures = [pool.submit(_worker, model_dir, device, part) for part in slices]
        while not all(f.done() for f in futures):
            time.sleep(0.5)
            bar(counter.value - bar.rows)
        bar(counter.value - bar.rows)
        return [f.result() for f in futures]


_COUNTER = None


def _init_worker(counter) -> None:
    global _COUNTER
    _COUNTER = counter
    torch.set_num_threads(1)


def _count(rows: int) -> None:
    with _COUNTER.get_lock():
        _COUNTER.value += rows


def _worker(model_dir, device: str, s: Settings) -> dict:
    from .. import load_components

    return _run_part(load_components(model_dir, device=device), s, _count)


def _run_part(c, s: Settings, tick) -> dict:
    """The benchmark on edits ``first … first + edits − 1``: their scored rows, ceilings, checks
    and stage timings. ``tick(rows)`` is told of every UNet call."""
    from PIL import Image

    from ..baselines import diffusers_decode, diffusers_pipeline, diffusers_prepare, latent_region

    t_start = time.perf_counter()
    guidance = s.guidance
    ratios = s.ratios
    r_max = max(ratios + (s.ablation_r,))
    edits = held_out_edits(s.first + s.edits, s.seed)[s.first:]
    seeds = [s.seed + s.first + i for i in range(s.edits)]
    timing: dict[str, float] = {}
    bar = tick

    # inputs: latents, embeddings (one per distinct text), true regions
    t0 = time.perf_counter()
    z0 = torch.cat([encode(c, [e.scene.image for e in edits[i:i + s.batch]]) for i in range(0, s.edits, s.batch)])
    cache: dict[str, torch.Tensor] = {}

    def embed(texts):
        return torch.cat([cache.setdefault(t, encode_prompt(c, t)) for t in texts])

    uncond = embed([""])
    source, target = embed([e.source for e in edits]), embed([e.target for e in edits])
    true_masks = latent_region(c, np.stack([e.mask for e in edits]), cover=s.oracle_cover)
    ones = torch.ones_like(true_masks)

    # step 1: every mask from one UNet call per edit
    deltas = dict(zip(REFERENCES, mask_deltas(
        c, z0, source, target, uncond, seeds, n=n_draws(s), strength=s.mask_strength, steps=s.steps,
        guidance=guidance, tick=bar,
    )))

    size = tuple(edits[0].mask.shape)
    up_true = torch.from_numpy(upsample_mask(true_masks[:, 0].cpu().numpy(), size)).float()
    up_ones = torch.ones(len(ones), *size)

    def mask(n=s.n, threshold=s.threshold, reference="caption"):
        latent, fine = masks_from(deltas[reference], n, s.clamp_ratio, threshold, s.fill_holes, size)
        return latent[:, None], fine

    timing["masks_s"] = time.perf_counter() - t0

    # step 2: one encoding to the largest ratio (checked per ratio), and the ablation's encodings
    t0 = time.perf_counter()
    shared = {r: prefix_ok(c, s.steps, r, r_max) for r in ratios + (s.ablation_r,)}
    encodings = {ENCODINGS[0]: {r_max: invert_batch(c, z0, uncond.expand(s.edits, -1, -1), uncond, steps=s.steps,
                                                   strength=r_max, guidance=1.0, batch=s.batch, tick=bar)[0]}}
    encodings[ENCODINGS[1]] = {s.ablation_r: invert_batch(c, z0, source, uncond, steps=s.steps, strength=s.ablation_r,
                                                         guidance=1.0, batch=s.batch, tick=bar)[0]}
    encodings[ENCODINGS[2]] = {s.ablation_r: invert_batch(c, z0, source, uncond, steps=s.steps, strength=s.ablation_r,
                                                         guidance=s.inversion_guidance, batch=s.batch, tick=bar)[0]}

    def trajectory(r, encoding=ENCODINGS[0]):
        if r in encodings[encoding]:
            return encodings[encoding][r]
        if shared[r] and encoding == ENCODINGS[0]:
            return encodings[encoding][r_max][: strength_steps(s.steps, r) + 1]
        encodings[encoding][r] = invert_batch(c, z0, uncond.expand(s.edits, -1, -1), uncond, steps=s.steps,
                                              strength=r, guidance=1.0, batch=s.batch, tick=bar)[0]
        return encodings[encoding][r]

    # SDEdit's noise, one draw per edit (as ``sdedit(seed=...)``), the same for every r
    from diffusers.utils.torch_utils import randn_tensor

    noise = torch.cat([randn_tensor(z0[:1].shape, generator=make_generator(seed + SDEDIT_SEED_OFFSET))
                       for seed in seeds]).to(z0.device)

    # step 3: the jobs, batched per ratio
    plans: dict[float, Plan] = {}

    def add(job: Job, start, masks, encoded):
        masks, fine = masks  # (B, 1, h, w) for the decoding, (B, H, W) for the IoU
        p = plans.setdefault(job.r, Plan(job.r))
        p.jobs += [replace(job) for _ in range(s.edits)]
        p.edits += list(range(s.edits))
        p.start.append(start)
        p.masks.append(masks)
        p.fine.append(fine)
        p.encoded.append(encoded)

    for r in ratios:
        traj = trajectory(r)
        add(Job("diffedit", r), traj[-1], mask(), traj)
        add(Job("oracle", r), traj[-1], (true_masks, up_true), traj)
        add(Job("encode_decode", r), traj[-1], (ones, up_ones), traj)
        scheduler, _ = fresh_schedulers(c)
        t_r = denoising_timesteps(scheduler, s.steps, r)[:1]
        add(Job("sdedit", r), scheduler.add_noise(z0, noise, t_r), (ones, up_ones), torch.zeros_like(traj))
    r = s.ablation_r
    for name, value in [("default", None)] * (r not in ratios) + ablation_variants(s):
        job = Job("diffedit", r, None if name == "default" else (name, value))
        if name == "encoding":
            traj = trajectory(r, value)
            add(job, traj[-1], mask(), traj)
        else:
            traj = trajectory(r)
            add(job, traj[-1], mask(**({} if name == "default" else {name: value})), traj)

    t_dec = time.perf_counter()
    timing["encodings_s"] = t_dec - t0
    latents, job_list, job_edits, job_masks = [], [], [], []
    for r, p in sorted(plans.items()):
        out = decode_batch(c, torch.cat(p.start), torch.cat([target] * (len(p.jobs) // s.edits)), uncond,
                           torch.cat(p.masks), torch.cat(p.encoded, 1), steps=s.steps, strength=r, guidance=guidance,
                           batch=s.batch, tick=bar)
        latents.append(out)
        job_list += p.jobs
        job_edits += p.edits
        job_masks.append(torch.cat(p.fine))
    timing["decoding_s"] = time.perf_counter() - t_dec

    # diffusers' pipeline as is: mask per image, one invert to the largest r, __call__ per r
    t0 = time.perf_counter()
    pipe = diffusers_pipeline(c)
    images = [Image.fromarray(e.scene.image) for e in edits]
    sources, targets = [e.source for e in edits], [e.target for e in edits]
    steps_done = {"mask": (4 if guidance > 1 else 2) * s.n, "invert": rows_per_step(1, s.inversion_guidance),
                  "decode": rows_per_step(1, guidance)}
    ticker = (lambda stage, b: bar(steps_done[stage] * b))
    d_masks, d_latents = [], []
    for i in range(0, s.edits, s.batch):
        sl = slice(i, i + s.batch)
        m, lat = diffusers_prepare(
            pipe, images[sl], sources[sl], targets[sl], seeds=seeds[sl], strength=r_max, steps=s.steps,
            guidance=guidance, inversion_guidance=s.inversion_guidance, n=s.n, mask_strength=s.mask_strength,
            clamp_ratio=s.clamp_ratio, callback=ticker,
        )
        d_masks.append(m)
        d_latents.append(lat)
    d_masks, d_latents = np.concatenate(d_masks), torch.cat(d_latents)
    d_shared = {r: _diffusers_prefix_ok(pipe, s.steps, r, r_max) for r in ratios}
    d_images = {}
    for r in ratios:
        if not d_shared[r]:
            raise RuntimeError(f"diffusers' inverse timesteps of r={r} are not a prefix of r={r_max}'s")
        d_images[r] = np.concatenate([
            diffusers_decode(pipe, d_masks[i:i + s.batch], d_latents[i:i + s.batch], targets[i:i + s.batch],
                             strength=r, steps=s.steps, guidance=guidance, callback=ticker)
            for i in range(0, s.edits, s.batch)
        ])
    timing["diffusers_s"] = time.perf_counter() - t0

    # decode and score everything
    t0 = time.perf_counter()
    z = torch.cat(latents)
    pixels = np.concatenate([np.round(decode(c, z[i:i + 64], output_type="np") * 255).astype(np.uint8)
                             for i in range(0, len(z), 64)])
    all_masks = torch.cat(job_masks).cpu().numpy()
    rows = []
    for job, i, out, m in zip(job_list, job_edits, pixels, all_masks):
        rows.append(_row(job, edits[i], s.first + i, out, m if job.method in MASK_METHODS else None))
    for r in ratios:
        for i, (out, m) in enumerate(zip(d_images[r], d_masks)):
            rows.append(_row(Job("diffusers", r), edits[i], s.first + i, out, m))
    ceilings = _ceilings(c, edits, s)
    timing["scoring_s"] = time.perf_counter() - t0
    timing["total_s"] = time.perf_counter() - t_start
    checks = dict(
        shared_encoding={rkey(r): bool(v) for r, v in shared.items()},
        diffusers_shared_invert={rkey(r): bool(v) for r, v in d_shared.items()},
    )
    return dict(rows=rows, ceilings=ceilings, checks=checks, timing=timing, count=len(edits))


def _diffusers_prefix_ok(pipe, steps: int, strength: float, largest: float) -> bool:
    """diffusers' own rule: are ``invert(strength)``'s timesteps the first ones of ``invert(largest)``'s?"""
    pipe.inverse_scheduler.set_timesteps(steps)
    small = pipe.get_inverse_timesteps(steps, strength, "cpu")[0].clone()
    big = pipe.get_inverse_timesteps(steps, largest, "cpu")[0].clone()
    return len(small) <= len(big) and torch.equal(big[: len(small)], small)


def _row(job: Job, e: Edit, index: int, output: np.ndarray, latent_mask) -> dict:
    """One scored output (``score_edit`` of toy/quality.py; no mask: IoU is NaN)."""
    row = score_edit(e, output, latent_mask if latent_mask is not None else e.mask)
    if latent_mask is None:
        row["mask_iou"] = float("nan")
    variant = None if job.variant is None else list(job.variant)
    return dict(row, method=job.method, r=job.r, variant=variant, edit=index, kind=e.kind)


def _ceilings(c, edits: list[Edit], s: Settings) -> dict:
    """What the measures give without any model: the input itself (nothing edited), the true
    target image (a perfect edit: the checker's own success rate), and the VAE round trip."""
    unchanged = [score_edit(e, e.scene.image, e.mask) for e in edits]
    truth = [score_edit(e, e.target_scene.image, e.mask) for e in edits]
    return dict(
        input_unchanged={k: mean_of(unchanged, k) for k in METRICS[:4]},
        true_target={k: mean_of(truth, k) for k in METRICS[:4]},
        vae_psnr=vae_ceiling(c, edits),
    )


def _training_info(model_dir) -> dict:
    """The model folder's training.json (how far the embedded model was trained), if any."""
    from ..models import DEFAULT_MODEL_DIR

    f = Path(model_dir or DEFAULT_MODEL_DIR) / "training.json"
    return json.loads(f.read_text()) if f.is_file() else {}


# --------------------------------------------------------------------------- aggregation (pure)


def summarize(rows: list[dict]) -> dict:
    """Mean of each metric over ``rows`` (NaNs ignored), its standard error and the count.

    Rates (0/1): ``se = √(p(1 − p)/m)``; other figures: ``se = std/√m`` (sample std, ddof 1);
    ``m`` the number of finite values. PSNR is already capped (``score_edit``)."""
    out: dict = {"count": len(rows)}
    for k in METRICS:
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


def tradeoff_figure(results: dict, *, metrics=("background_psnr", "background_ssim")):
    """Edit success against each background measure, one curve per method, ``r`` beside each point."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2 * len(metrics), 4.2), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    markers = dict(zip(METHODS, "osD^v"))
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


def load_results(path) -> dict:
    """A results.json written by this module."""
    return json.loads(Path(path).read_text())


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


# --------------------------------------------------------------------------- main


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
        torch.set_num_threads(a.threads)
    s = settings_from(a)
    c = load_components(a.model, device=a.device)
    if a.workers is None:
        a.workers = 1 if a.quick or c.device.type != "cpu" else max(1, min(2, os.cpu_count() or 1))
    print(f"model {a.model or 'embedded toy model'}: {s.edits} edits, r ∈ {list(s.ratios)}, {s.steps} DDIM steps, "
          + (f"{a.workers} worker processes" if a.workers > 1 else f"{torch.get_num_threads()} thread(s)"), flush=True)
    out = run(c, s, model_dir=a.model, progress=not a.no_progress, workers=a.workers)
    results = out["report"]
    paths = write(a.out, results, out["rows"])
    print(format_results_table(results))
    print()
    print(format_ablation_table(results))
    t = results["timing"]
    print(f"\n{results['settings']['unet_rows']} UNet rows in {t['total_s']:.0f} s; wrote "
          + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
