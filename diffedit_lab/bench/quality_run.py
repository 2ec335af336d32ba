"""Running the quality benchmark (:mod:`diffedit_lab.bench.quality`): the edits, batched on the
library's own loops — :func:`~diffedit_lab.mask.mask_from_draws` per edit (the mask against the
caption and against ∅ share every UNet row), :func:`~diffedit_lab.inversion.ddim_encode` and
:func:`~diffedit_lab.denoise.ddim_decode` with one text per row, many edits and methods per call.
The DiffEdit settings are one :class:`~diffedit_lab.settings.EditSettings` (the model's, with the
benchmark's steps and ``QualityRun.overrides``)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..denoise import ddim_decode
from ..inversion import ddim_encode
from ..latents import decode, encode, encode_prompt, make_generator
from ..mask import MaskResult, mask_draws, mask_from_draws
from ..metrics import upsample_mask
from ..models import Components, fresh_schedulers
from ..settings import EditSettings
from ..sampling import denoising_timesteps, inversion_timesteps, strength_steps
from ..toy.quality import held_out_edits, held_out_kinds, mean_of, score_edit
from ..toy.texts import model_world
from . import pie
from .quality_report import ENCODINGS, METHODS, METRICS, REFERENCES, report, rkey

MASK_METHODS = ("diffedit", "oracle", "diffusers", "cross_attention", "intersection", "ledits_pp", "ledits_pp_own")
SUCCESSORS = ("cross_attention", "intersection", "ledits_pp", "ledits_pp_own")
"""DiffEdit's successors (:mod:`diffedit_lab.methods`, issue 14), one row each per edit at
``ablation_r``: the three masks decoded with DiffEdit's decoding, and LEDITS++'s own edit scored
with its mask (:func:`successor_rows`)."""
RATIOS = (0.3, 0.5, 0.7, 0.8, 0.9)
N_DRAWS = (1, 2, 5, 10, 20)
THRESHOLDS = (0.25, 0.5, 0.75)
BENCH_SEED = 555_000_000
SDEDIT_SEED_OFFSET = 2_000_000  # SDEdit's noise: seed + 2 000 000 + i (the mask draws use seed + i)


@dataclass
class QualityRun:
    """What a run is (written to results.json with the DiffEdit settings): how many edits, the
    ratios, the ablations… The DiffEdit settings are not here: they are the model's
    (``EditSettings.for_model``) with this run's ``steps`` and ``overrides`` (EditSettings
    names); :func:`resolve` puts them in ``edit``."""

    edits: int = 100
    steps: int = 10
    world: str | None = None  # the shapes world's edits: "classic" or "rich"; None: the model's (resolve)
    kinds: tuple | None = None  # rich world: the kinds in turn (None: every kind a mask can serve)
    ratios: tuple = RATIOS
    seed: int = BENCH_SEED
    overrides: dict = field(default_factory=dict)
    ablation_r: float = 0.8
    n_values: tuple = N_DRAWS
    thresholds: tuple = THRESHOLDS
    guided_inversion: float = 7.5  # w of the ablation's guided encoding, and diffusers' invert default
    oracle_cover: float = 0.0
    batch: int = 32
    first: int = 0  # the first edit (a process's share)
    dilate: int = 2
    successors: bool = True  # DiffEdit's successors' rows (SUCCESSORS) at ablation_r
    clip_model: str | None = pie.DEFAULT_CLIP  # CLIP score when on the machine (id or folder); None: off
    lpips_weights: str | None = None  # LPIPS's linear layers; None: an installed lpips's/torchmetrics'; "none": off
    edit: EditSettings | None = None  # set by resolve()

    def _edit(self) -> EditSettings:
        if self.edit is None:
            raise ValueError("this QualityRun is not resolved: call resolve(c, run) first.")
        return self.edit

    n = property(lambda self: self._edit().n, doc="DiffEdit's n (the resolved setting)")
    threshold = property(lambda self: self._edit().threshold, doc="τ")
    clamp_ratio = property(lambda self: self._edit().clamp_ratio, doc="κ")
    mask_noise = property(lambda self: self._edit().mask_noise, doc="s")
    fill_holes = property(lambda self: self._edit().fill_holes, doc="fill the mask's holes")
    rescale = property(lambda self: self._edit().rescale, doc="how D is rescaled to [0, 1]: 'mean' or 'range'")
    close = property(lambda self: self._edit().close, doc="the mask's closing radius in cells")
    guidance = property(lambda self: self._edit().guidance, doc="w")

    def record(self) -> dict:
        """The run and its DiffEdit settings as one flat dict (results.json's ``settings``)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("edit", "overrides")}
        kinds = list(self.kinds) if self.kinds else None
        return dict(out, ratios=list(self.ratios), kinds=kinds, **self._edit().as_dict())


Settings = QualityRun  # the name before EditSettings (notebook 07); deprecated

QUICK = dict(edits=4, steps=4, ratios=(0.5, 0.8), overrides=dict(n=5), n_values=(1, 5))
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


def _ticker(tick: Callable[[int], None] | None, rows: int):
    """A loop callback telling ``tick`` of ``rows`` UNet rows per step."""
    return None if tick is None else (lambda _i, _t, _z: tick(rows))


def encode_all(c: Components, z0: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor, *, steps: int,
               strength: float, guidance: float, batch: int, tick: Callable[[int], None] | None=None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`~diffedit_lab.inversion.ddim_encode` of every latent with its own text ``cond[i]``,
    ``batch`` latents per UNet call: ``(trajectory (T+1, B, C, h, w), timesteps)``."""
    parts = []
    for s in range(0, len(z0), batch):
        _, inverse = fresh_schedulers(c)
        timesteps = inversion_timesteps(inverse, steps, strength)
        z = z0[s:s + batch]
        parts.append(ddim_encode(c, z, timesteps, inverse, cond[s:s + batch], uncond if guidance > 1 else None,
                                 guidance, callback=_ticker(tick, rows_per_step(len(z), guidance))))
    return torch.cat(parts, 1), timesteps.cpu()


def decode_all(c: Components, start: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor, masks: torch.Tensor,
               encoded: torch.Tensor, *, steps: int, strength: float, guidance: float, batch: int,
               tick: Callable[[int], None] | None=None) -> torch.Tensor:
    """:func:`~diffedit_lab.denoise.ddim_decode` with the blend of a batch of jobs from ``start``
    (B, C, h, w), each with its own text, mask (B, 1, h, w) and encoding trajectory ``encoded``
    (T+1, B, C, h, w) — ``masked_denoise`` per job. An all-ones mask gives exactly the unmasked
    loop (encode–decode, SDEdit: ``1·y + 0·x = y``)."""
    out = []
    for s in range(0, len(start), batch):
        scheduler, _ = fresh_schedulers(c)
        timesteps = denoising_timesteps(scheduler, steps, strength)
        z = start[s:s + batch]
        out.append(ddim_decode(c, z, timesteps, scheduler, cond[s:s + batch], uncond if guidance > 1 else None,
                               guidance, mask=masks[s:s + batch], encoded=encoded[:, s:s + batch],
                               callback=_ticker(tick, rows_per_step(len(z), guidance))).latents)
    return torch.cat(out)


def edit_masks(c: Components, z0: torch.Tensor, source: torch.Tensor, target: torch.Tensor, uncond: torch.Tensor,
               seeds: list[int], s: EditSettings, *, n: int, tick: Callable[[int], None] | None=None) -> dict[str, list[MaskResult]]:
    """Each edit's mask with ``n`` draws from ``seeds[i]`` (as ``noise_diff_mask``), against the
    caption and against ∅ (``REFERENCES``): :func:`~diffedit_lab.mask.mask_from_draws` per edit;
    with guidance the ∅ reference reuses every UNet row (rows ``[∅, R]`` and ``[Q]``, 3n)."""
    guided = s.guidance > 1
    out: dict[str, list[MaskResult]] = {ref: [] for ref in REFERENCES}
    kw = dict(source_negative_prompt=uncond, target_negative_prompt=uncond, guidance=s.guidance,
              clamp_ratio=s.clamp_ratio, threshold=s.threshold, mask_noise=s.mask_noise, fill_holes=s.fill_holes,
              rescale=s.rescale, close=s.close)
    for i in range(len(z0)):
        t, z_t = mask_draws(c, z0[i:i + 1], n, s.mask_noise, s.steps, make_generator(seeds[i]))
        caption, source_raw, target_raw = mask_from_draws(c, z_t, t, n, source[i:i + 1], target[i:i + 1], **kw)
        empty_raw = torch.stack([source_raw[0], source_raw[0]]) if guided else None  # [∅, ∅]
        empty, _, _ = mask_from_draws(c, z_t, t, n, uncond, target[i:i + 1], source_predictions=empty_raw,
                                      target_predictions=target_raw, **kw)
        out["caption"].append(caption)
        out["empty"].append(empty)
        if tick is not None:
            tick(3 * n)
    return out


def diffusers_clamp_ratio(s) -> float:
    """κ for diffusers' ``generate_mask``: ours where we rescale as it does (``"mean"``: D/(κ·mean D),
    cut at 0.5); with the paper's min–max rescale, which diffusers lacks, its own default κ = 3 —
    our κ then means something else (κ = 100: no clamp; in diffusers it would divide D by 100·mean D
    and leave the mask empty)."""
    return s.clamp_ratio if s.rescale == "mean" else EditSettings().clamp_ratio


def masks_from(masks: list[MaskResult], n: int, clamp_ratio: float, threshold: float, fill_holes: bool,
               size: tuple[int, int], rescale: str = "mean", close: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary masks (B, h, w) of the first ``n`` draws of each mask (``MaskResult.first_draws``,
    re-thresholded with κ, τ, ``fill_holes``, ``rescale`` and ``close``), and the same masks at image resolution ``size`` (H, W) as
    ``MaskResult.upsampled`` makes them (the ones scored by IoU)."""
    latent, fine = [], []
    for m in masks:
        m = m.first_draws(n).rethreshold(clamp_ratio=clamp_ratio, threshold=threshold, fill_holes=fill_holes,
                                         rescale=rescale, close=close)
        latent.append(m.mask)
        fine.append(m.upsampled((size[1], size[0])))
    return torch.cat(latent), torch.cat(fine)


def prefix_ok(c: Components, steps: int, strength: float, largest: float) -> bool:
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


def plan_rows(s: QualityRun, guidance: float) -> int:
    """The UNet rows a run will take (for the progress bar)."""
    g = 2 if guidance > 1 else 1
    n_max = n_draws(s)
    k = {r: strength_steps(s.steps, r) for r in set(s.ratios) | {s.ablation_r}}
    r_max = max(k)  # the one encoding (ours and diffusers') goes to the largest ratio, the ablation's included
    gi = 2 if s.guided_inversion > 1 else 1
    total = 3 * n_max + (4 if guidance > 1 else 2) * s.n  # our masks ([∅, R, Q] × n); diffusers' generate_mask
    total += k[max(k)] + k[s.ablation_r] * (1 + gi)  # encodings: ∅ w=1 to r_max; caption w=1 and guided
    total += g * sum(k[r] for r in s.ratios) * 4  # diffedit, sdedit, encode-decode, oracle
    total += gi * k[r_max] + g * sum(k[r] for r in s.ratios)  # diffusers: invert + __call__
    total += g * k[s.ablation_r] * (len(ablation_variants(s)) + (s.ablation_r not in s.ratios))
    return total * s.edits


def n_draws(s: QualityRun) -> int:
    """Noise draws computed per mask: enough for every ``n`` of the ablation and the default."""
    return max((*s.n_values, s.n))


def ablation_variants(s: QualityRun) -> list[tuple]:
    """The DiffEdit variants at ``ablation_r`` other than the default setting."""
    out = [("n", n) for n in s.n_values if n != s.n]
    out += [("threshold", t) for t in s.thresholds if t != s.threshold]
    out += [("reference", "empty"), ("encoding", ENCODINGS[1]), ("encoding", ENCODINGS[2])]
    return out


def run(c: Components, s: QualityRun, *, model_dir: str | Path | None=None, progress: bool = True,
        items: list | None = None, dataset: str | None = None) -> dict:
    """Run the benchmark: ``{"report": results.json content (see :func:`report`), "rows": every
    scored output}`` — on every process of an ``accelerate launch`` (one process otherwise).

    ``items``: the edits (``pie.read_dataset``; default: the held-out edits of ``s.world``, its
    ``s.kinds`` in turn — :func:`~diffedit_lab.toy.quality.held_out_edits`).
    The edits are cut into batches of ``s.batch`` and the batches split between the processes
    (``PartialState().split_between_processes``); each process runs :func:`_run_part` on its
    contiguous share, the parts are gathered (``gather_object``) and merged in a canonical
    order. Seeds and batches depend on the edit's index only, so the report does not depend on
    the number of processes (its ``timing`` aside)."""
    from accelerate import PartialState
    from accelerate.utils import gather_object

    t_start = time.perf_counter()
    state = PartialState()
    s = resolve(c, s)
    if items is not None and len(items) < s.first + s.edits:
        raise ValueError(f"the dataset has {len(items)} edits; asked for {s.first + s.edits}.")
    starts = list(range(s.first, s.first + s.edits, s.batch))
    with state.split_between_processes(starts) as mine:
        mine = list(mine)
    part = None
    if mine:
        stop = min(mine[-1] + s.batch, s.first + s.edits)
        share = replace(s, first=mine[0], edits=stop - mine[0])
        bar = Progress(plan_rows(share, s.guidance), progress and state.is_main_process)
        part = _run_part(c, share, bar, items)
        bar.close()
    parts = [p for p in gather_object([part]) if p is not None]
    rows = sorted((row for p in parts for row in p["rows"]), key=_row_order)
    per_edit = [e for p in parts for e in p["ceilings"]]
    ceilings = dict(
        input_unchanged={k: mean_of([e["input_unchanged"] for e in per_edit], k) for k in METRICS[:4]},
        true_target={k: mean_of([e["true_target"] for e in per_edit], k) for k in METRICS[:4]},
        vae_psnr=float(np.mean([e["vae_psnr"] for e in per_edit])),
    )
    checks = {key: {r: all(p["checks"][key][r] for p in parts) for r in parts[0]["checks"][key]}
              for key in parts[0]["checks"]}
    timing = dict(total_s=time.perf_counter() - t_start, processes=state.num_processes,
                  parts=[p["timing"] for p in parts])
    settings = dict(s.record(), model=c.name, model_defaults=c.defaults, device=str(c.device),
                    threads=torch.get_num_threads(), unet_rows=sum(p["unet_rows"] for p in parts),
                    model_dir=str(model_dir) if model_dir else None, dataset=dataset,
                    learned_metrics=pie.learned_metrics(s.clip_model, s.lpips_weights), model_training=_training_info(model_dir),
                    diffusers=dict(generate_mask=f"one image per call, guidance as decoding, n and mask strength as ours, "
                                                 f"κ = {diffusers_clamp_ratio(s):g}" + ("" if s.rescale == "mean" else
                                                 " (its default: our κ goes with the min–max rescale, which it lacks)"),
                                   invert=f"prompt = source caption, guidance {s.guided_inversion} (its default)",
                                   call="prompt = target caption, no negative prompt, guidance as ours"))
    return dict(report=report(rows, settings, ceilings, checks, timing), rows=rows)


def _row_order(row: dict) -> tuple:
    """A canonical order of the rows (method, r, variant, edit): the same for any split."""
    variant = "" if row["variant"] is None else json.dumps(row["variant"])
    return (METHODS.index(row["method"]) if row["method"] in METHODS else len(METHODS), row["method"], row["r"],
            variant, row["edit"])


def resolve(c: Components, s: QualityRun) -> QualityRun:
    """``s`` with its DiffEdit settings (``edit``): the model's recorded ones with the run's
    ``steps`` and ``overrides`` (:meth:`EditSettings.for_model`); the ratios sorted, the
    model's threshold added to the ablation's, the world the model's own
    (:func:`~diffedit_lab.toy.texts.model_world`) unless given, and its kinds of edit (rich:
    ``kinds`` or every kind a mask can serve; classic: shape and colour, alternating)."""
    edit = EditSettings.for_model(c, **{**s.overrides, "steps": s.steps})
    world = s.world or model_world(c)[0]
    kinds = held_out_kinds(world, s.kinds)
    return replace(s, ratios=tuple(sorted(set(s.ratios))), thresholds=tuple(sorted({*s.thresholds, edit.threshold})),
                   edit=edit, world=world, kinds=kinds)


def _run_part(c, s: QualityRun, tick, items: list | None = None) -> dict:
    """The benchmark on edits ``first … first + edits − 1`` (of ``items``, default the held-out
    shapes-world edits): their scored rows, per-edit ceilings, checks, UNet rows and stage
    timings. ``tick(rows)`` is told of every UNet call."""
    from PIL import Image

    from ..baselines import diffusers_decode, diffusers_pipeline, diffusers_prepare, latent_region

    t_start = time.perf_counter()
    guidance = s.guidance
    ratios = s.ratios
    r_max = max(ratios + (s.ablation_r,))
    if items is None:
        edits = held_out_edits(s.edits, s.seed, world=s.world, kinds=s.kinds, first=s.first)
    else:
        edits = list(items[s.first:s.first + s.edits])
    seeds = [s.seed + s.first + i for i in range(s.edits)]
    timing: dict[str, float] = {}
    unet_rows = [0]

    def bar(rows: int) -> None:
        unet_rows[0] += rows
        tick(rows)

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
    deltas = edit_masks(c, z0, source, target, uncond, seeds, s.edit, n=n_draws(s), tick=bar)

    size = tuple(edits[0].mask.shape)
    up_true = torch.from_numpy(upsample_mask(true_masks[:, 0].cpu().numpy(), size)).float()
    up_ones = torch.ones(len(ones), *size)

    def mask(n=s.n, threshold=s.threshold, reference="caption"):
        latent, fine = masks_from(deltas[reference], n, s.clamp_ratio, threshold, s.fill_holes, size, s.rescale,
                                  s.close)
        return latent[:, None], fine

    timing["masks_s"] = time.perf_counter() - t0

    # step 2: one encoding to the largest ratio (checked per ratio), and the ablation's encodings
    t0 = time.perf_counter()
    shared = {r: prefix_ok(c, s.steps, r, r_max) for r in ratios + (s.ablation_r,)}
    encodings = {ENCODINGS[0]: {r_max: encode_all(c, z0, uncond.expand(s.edits, -1, -1), uncond, steps=s.steps,
                                                   strength=r_max, guidance=s.edit.inversion_guidance, batch=s.batch, tick=bar)[0]}}
    encodings[ENCODINGS[1]] = {s.ablation_r: encode_all(c, z0, source, uncond, steps=s.steps, strength=s.ablation_r,
                                                         guidance=1.0, batch=s.batch, tick=bar)[0]}
    encodings[ENCODINGS[2]] = {s.ablation_r: encode_all(c, z0, source, uncond, steps=s.steps, strength=s.ablation_r,
                                                         guidance=s.guided_inversion, batch=s.batch, tick=bar)[0]}

    def trajectory(r, encoding=ENCODINGS[0]):
        if r in encodings[encoding]:
            return encodings[encoding][r]
        if shared[r] and encoding == ENCODINGS[0]:
            return encodings[encoding][r_max][: strength_steps(s.steps, r) + 1]
        encodings[encoding][r] = encode_all(c, z0, uncond.expand(s.edits, -1, -1), uncond, steps=s.steps,
                                              strength=r, guidance=s.edit.inversion_guidance, batch=s.batch, tick=bar)[0]
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
        out = decode_all(c, torch.cat(p.start), torch.cat([target] * (len(p.jobs) // s.edits)), uncond,
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
    steps_done = {"mask": (4 if guidance > 1 else 2) * s.n, "invert": rows_per_step(1, s.guided_inversion),
                  "decode": rows_per_step(1, guidance)}
    ticker = (lambda stage, b: bar(steps_done[stage] * b))
    d_masks, d_latents = [], []
    for i in range(0, s.edits, s.batch):
        sl = slice(i, i + s.batch)
        m, lat = diffusers_prepare(
            pipe, images[sl], sources[sl], targets[sl], seeds=seeds[sl], strength=r_max, steps=s.steps,
            guidance=guidance, inversion_guidance=s.guided_inversion, n=s.n, mask_strength=s.mask_noise,
            clamp_ratio=diffusers_clamp_ratio(s), callback=ticker,
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

    # DiffEdit's successors, one edit at a time (their own encodings; UNet rows not counted)
    t0 = time.perf_counter()
    successor = [row for i, e in enumerate(edits) for row in successor_rows(c, e, s.first + i, seeds[i], s)] \
        if s.successors else []
    timing["successors_s"] = time.perf_counter() - t0

    # decode and score everything
    t0 = time.perf_counter()
    z = torch.cat(latents)
    pixels = np.concatenate([np.round(decode(c, z[i:i + 64], output_type="np") * 255).astype(np.uint8)
                             for i in range(0, len(z), 64)])
    all_masks = torch.cat(job_masks).cpu().numpy()
    rows = []
    for job, i, out, m in zip(job_list, job_edits, pixels, all_masks):
        rows.append(_row(job, edits[i], s.first + i, out, m if job.method in MASK_METHODS else None,
                         clip_model=s.clip_model, lpips_weights=s.lpips_weights))
    for r in ratios:
        for i, (out, m) in enumerate(zip(d_images[r], d_masks)):
            rows.append(_row(Job("diffusers", r), edits[i], s.first + i, out, m, clip_model=s.clip_model,
                             lpips_weights=s.lpips_weights))
    rows += successor
    ceilings = _ceilings(c, edits, s)
    timing["scoring_s"] = time.perf_counter() - t0
    timing["total_s"] = time.perf_counter() - t_start
    checks = dict(
        shared_encoding={rkey(r): bool(v) for r, v in shared.items()},
        diffusers_shared_invert={rkey(r): bool(v) for r, v in d_shared.items()},
    )
    return dict(rows=rows, ceilings=ceilings, checks=checks, timing=timing, count=len(edits), unet_rows=unet_rows[0])


def _diffusers_prefix_ok(pipe, steps: int, strength: float, largest: float) -> bool:
    """diffusers' own rule: are ``invert(strength)``'s timesteps the first ones of ``invert(largest)``'s?"""
    pipe.inverse_scheduler.set_timesteps(steps)
    small = pipe.get_inverse_timesteps(steps, strength, "cpu")[0].clone()
    big = pipe.get_inverse_timesteps(steps, largest, "cpu")[0].clone()
    return len(small) <= len(big) and torch.equal(big[: len(small)], small)


def _row(job: Job, e, index: int, output: np.ndarray, mask, clip_model: str | None = None,
         lpips_weights: str | None = "none") -> dict:
    """One scored output. A shapes-world edit: ``score_edit`` of toy/quality.py (no mask: IoU is
    NaN); a PIE-Bench edit (no checker): success and untouched NaN, the same background figures.
    Both: PIE-Bench's PSNR/MSE/SSIM on the unedited region, and the mask's precision and recall
    (at image resolution; a latent mask's cells become blocks) when the method has a mask; and the
    learned figures (``pie.learned_row``): the CLIP scores when ``clip_model`` is on the machine,
    LPIPS on the unedited region when its weights are (``lpips_weights``: the linear-layer file,
    None: an installed package's, ``"none"``: off)."""
    row = score_image(e, output, mask if mask is not None else e.mask)
    if mask is None:
        row["mask_iou"] = float("nan")
        row["mask_precision"] = row["mask_recall"] = float("nan")
    else:
        fine = upsample_mask(np.asarray(mask, np.float32)[None], e.mask.shape)[0]
        row["mask_precision"], row["mask_recall"] = pie.precision_recall(fine, e.mask)
    row.update(pie.unedited_metrics(e.scene.image, output, e.mask))
    row.update(pie.learned_row(output, e.target, e.mask, clip_model, source=e.scene.image,
                               lpips_weights=lpips_weights))
    variant = None if job.variant is None else list(job.variant)
    return dict(row, method=job.method, r=job.r, variant=variant, edit=index, kind=e.kind)


def successor_rows(c, e, index: int, seed: int, s: QualityRun) -> list[dict]:
    """The :data:`SUCCESSORS`' rows of one edit at ``r = s.ablation_r`` (:func:`~diffedit_lab.methods.run_methods`
    with the run's DiffEdit settings and ``seed``, as ``toy.successors.score_edit`` runs them):
    each mask scored at image resolution, each image as every other output. LEDITS++'s concepts:
    what the edit adds and takes away (shapes world, :func:`~diffedit_lab.toy.successors.ledits_concepts`);
    on a PIE-Bench edit its default (the changed words)."""
    from PIL import Image

    from ..methods import run_methods
    from ..toy.successors import ledits_concepts

    ledits = ledits_concepts(e) if hasattr(e, "target_scene") else None
    res = run_methods(c, Image.fromarray(e.scene.image), e.source, e.target,
                      methods=("cross_attention", "intersection", "ledits_pp"), seed=seed, ledits=ledits,
                      settings=s.edit, encoding_ratio=s.ablation_r)
    rows = []
    for name in SUCCESSORS:
        r = res["ledits_pp" if name == "ledits_pp_own" else name]
        image = r.image if name == "ledits_pp_own" else r.masked_images[0]
        out = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
        rows.append(_row(Job(name, s.ablation_r), e, index, out, r.mask_image[0].cpu().numpy(),
                         clip_model=s.clip_model, lpips_weights=s.lpips_weights))
    return rows


def score_image(e, output: np.ndarray, mask) -> dict[str, float]:
    """``score_edit`` for a shapes-world edit; for a PIE-Bench edit the same figures without the
    pixel checker (edit success and untouched kept NaN)."""
    if hasattr(e, "target_scene"):
        return score_edit(e, output, mask)
    from ..metrics import background_psnr, background_ssim, mask_iou
    from ..toy.quality import PSNR_CAP

    return dict(mask_iou=float(mask_iou(mask, e.mask)),
                background_psnr=min(float(background_psnr(e.scene.image, output, e.mask, dilate=2)), PSNR_CAP),
                background_ssim=float(background_ssim(e.scene.image, output, e.mask, dilate=2)),
                edit_success=float("nan"), untouched_kept=float("nan"))


def _ceilings(c, edits: list, s: QualityRun) -> list[dict]:
    """Per edit, what the measures give without any model: the input itself (nothing edited), the
    true target image (a perfect edit: the checker's own success rate; NaN for PIE-Bench, which
    has no target image), and the VAE round trip's background PSNR (encoded in batches of
    ``s.batch``, as the edits). Averaged over all edits by :func:`run`."""
    from ..latents import decode, encode
    from ..metrics import background_psnr
    from ..toy.quality import PSNR_CAP

    nan = {k: float("nan") for k in METRICS[:4]}
    out = []
    for i in range(0, len(edits), s.batch):
        chunk = edits[i:i + s.batch]
        images = np.stack([e.scene.image for e in chunk])
        recon = np.round(decode(c, encode(c, list(images)), output_type="np") * 255).astype(np.uint8)
        vae = np.minimum(background_psnr(images, recon, np.stack([e.mask for e in chunk]), dilate=2), PSNR_CAP)
        for e, v in zip(chunk, np.atleast_1d(vae)):
            out.append(dict(input_unchanged=score_image(e, e.scene.image, e.mask),
                            true_target=score_image(e, e.target_scene.image, e.mask) if hasattr(e, "target_scene") else nan,
                            vae_psnr=float(v)))
    return out


def _training_info(model_dir) -> dict:
    """The model folder's training.json (how far the embedded model was trained), if any."""
    from ..models import DEFAULT_MODEL_DIR

    f = Path(model_dir or DEFAULT_MODEL_DIR) / "training.json"
    return json.loads(f.read_text()) if f.is_file() else {}


