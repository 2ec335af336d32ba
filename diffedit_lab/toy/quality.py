"""Measure the embedded shapes-world model: text-to-image, and DiffEdit on held-out edits.

    python -m diffedit_lab.toy.quality [--model DIR] [--world classic|rich] [--scenes N]
                                       [--edits N] [--classic-edits N] [--seed S] [--steps T]
                                       [--json OUT] [--quick] [--strict]
                                       [--threads N] [--device D] [--batch B]

``--world`` (default: the model's own — ``rich`` when its tokenizer's words are exactly the
rich world's :data:`~diffedit_lab.toy.world.VOCABULARY`, else ``classic``; the output says
which and why) picks the scenes, edits, checker and bars. ``--steps`` defaults to the model's
recorded DDIM steps (``EditSettings.for_model``; 50 for the shipped model).

**Classic world** (the shipped model's):

Every scene and edit comes from seeds ``seed + i`` with ``seed`` = 987 654 321 by default —
far from the training seeds (< 10 000 000) — and is scored by the pixel checker
(:mod:`diffedit_lab.toy.checker`), never by a learned model.

(a) **Text to image.** ``N`` captions of held-out scenes are sampled with our own DDIM loop
    (``steps`` steps, η = 0, the model's default guidance) in batches; reported: the rate of
    images where the checker finds both named objects with the right shape, colour and
    left-right order (``order_ok`` — the issue's bar), the stricter rate where nothing else is
    drawn either (``all_ok``: no extra object or stray blob), and the rates with all colours
    right and all shapes right.
(b) **DiffEdit.** ``N`` held-out edits, half shape and half colour, at ``edit()``'s default
    settings with the source caption as reference text: mean mask IoU against the edit's true
    region of the mask at 64×64 (``MaskResult.upsampled``: ``D̃`` bilinearly upsampled, ``> τ``,
    ``D̃`` rescaled and holes filled as the model's settings say) and, for comparison, of the latent mask itself
    (each cell a block of pixels; its ceiling too), background PSNR and SSIM
    outside the true region dilated by 2 px, edit success (the target object is there),
    untouched object kept, the VAE's own PSNR on the same background (encode → decode: the
    ceiling), and seconds per edit.

**Rich world** (issue 13's bars, :data:`RICH_FIGURES`; scored by
:mod:`diffedit_lab.toy.rich_checker`), images at the model's size:

(a) **Text to image.** Held-out scene ``i`` has ``1 + i mod 3`` objects (equal numbers of
    each count); an image counts when every named object is there with its shape, colour and
    size, left to right, and the named background (and time of day) reads right — reported per
    object count (bars: ≥ 75 % for one or two objects, ≥ 50 % for three).
(b) **DiffEdit**, edit ``i`` of kind ``KINDS[i mod 6]`` (equal numbers per kind; ``--edits`` is
    rounded up to a multiple of six), per kind: success (bars ≥ 80 % colour, shape,
    background; ≥ 70 % size, remove; night: reported only — the whole-image kind a mask cannot
    help), mask IoU at image resolution (≥ 0.60 object kinds, ≥ 0.80 background), untouched
    objects kept, PSNR outside the edited region; per object count: success; pooled: untouched
    objects kept over every kind but night (≥ 95 %), and the background PSNR of the object
    edits (colour, shape, size, remove) against the VAE's encode→decode PSNR of the same
    backgrounds (the ceiling): ``ceiling − PSNR ≤ 1.5 dB``.
    Beside each rate, its **ceiling**: the checker on the true scene or the true target image
    passed through the model's VAE (encode → decode) — what a perfect UNet could score; a
    ceiling below a bar says the VAE (or the checker) is what misses it, not the UNet.
    ``--true-mask``: each edit decoded again with its *true* region as the mask (every latent
    cell it touches; DiffEdit's steps 2–3 alone, at the same settings) — success there but not with the inferred mask is
    the mask's failure; a failure there too is the decoding's.
(c) **No regression on the classic scenes**: the first ``--classic-edits`` held-out edits of
    the classic mode's (b) (two objects, plain background, shape or colour in turn), scored as
    there — mask IoU ≥ 0.60, success ≥ 85 %, background PSNR ≥ 32 dB.

Prints a table of each figure against its bar; exit code 0 whatever the figures, unless
``--strict`` (then 1 if a bar is missed).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..metrics import background_psnr, background_ssim, mask_iou
from .checker import check, check_edit
from .texts import model_world
from .world import KINDS, SIZE, WHOLE_IMAGE_KINDS, Edit, Scene, make_edit, make_scene, rich_scene

if TYPE_CHECKING:
    from ..models import Components

HELD_OUT_SEED = 987_654_321
EDIT_SEED_OFFSET = 1_000_000  # edits use seeds seed + 1 000 000 + i, apart from the scenes
QUICK = dict(scenes=8, edits=8, steps=20)
RICH_QUICK = dict(scenes=6, edits=6, classic_edits=2, steps=20)  # 2 scenes per count, 1 edit per kind
DEFAULTS = dict(classic=dict(scenes=200, edits=100, classic_edits=0),
                rich=dict(scenes=210, edits=120, classic_edits=40))
PSNR_CAP = 100.0  # dB


@dataclass(frozen=True)
class Bar:
    """A figure's pass mark: ``value op threshold`` with ``op`` one of ">=", "<=", or None
    (reported only)."""

    threshold: float | None = None
    op: str | None = None

    def passed(self, value: float | None) -> bool | None:
        """None without a bar; False for a missing (None/NaN) value."""
        if self.op is None:
            return None
        if value is None or math.isnan(value):
            return False
        return value >= self.threshold if self.op == ">=" else value <= self.threshold


@dataclass(frozen=True)
class Figure:
    """One row of the report: ``key`` (JSON name), ``label``, ``unit`` ("%", "dB", "s" or ""),
    how to print it, and its bar."""

    key: str
    label: str
    unit: str = ""
    bar: Bar = Bar()


FIGURES = (
    Figure("t2i_objects_ok", "text→image: both objects, shapes, colours, order", "%", Bar(0.70, ">=")),
    Figure("t2i_all_ok", "  … and nothing else drawn", "%"),
    Figure("t2i_colours_ok", "text→image: colours right", "%"),
    Figure("t2i_shapes_ok", "text→image: shapes right", "%"),
    Figure("mask_iou", "DiffEdit: mask IoU (mask at 64×64)", "", Bar(0.60, ">=")),
    Figure("mask_iou_latent", "  … the latent mask, each cell a block", ""),
    Figure("mask_iou_ceiling", "  … best mask at latent resolution (ceiling)", ""),
    Figure("background_psnr", "DiffEdit: background PSNR", "dB", Bar(30.0, ">=")),
    Figure("background_ssim", "DiffEdit: background SSIM", ""),
    Figure("vae_psnr", "VAE encode→decode background PSNR (ceiling)", "dB"),
    Figure("edit_success", "DiffEdit: target object present", "%", Bar(0.80, ">=")),
    Figure("edit_success_shape", "  … for shape edits", "%"),
    Figure("edit_success_colour", "  … for colour edits", "%"),
    Figure("untouched_kept", "DiffEdit: untouched object kept", "%", Bar(0.90, ">=")),
    Figure("seconds_per_edit", "DiffEdit: seconds per edit", "s"),
)

#: the rich world's object kinds (the mask is an object's area) and the bars per kind (issue 13)
OBJECT_KINDS = ("colour", "shape", "size", "remove")
SUCCESS_BARS = dict(colour=0.80, shape=0.80, size=0.70, background=0.80, remove=0.70, night=None)
IOU_BARS = dict(colour=0.60, shape=0.60, size=0.60, background=0.80, remove=0.60, night=None)


def _bar(threshold: float | None, op: str = ">=") -> Bar:
    return Bar() if threshold is None else Bar(threshold, op)


def _kind_figures(kind: str) -> tuple[Figure, ...]:
    where = "of the objects" if kind == "background" else "outside the edited region"
    return (
        Figure(f"success_{kind}", f"{kind} edits: success", "%", _bar(SUCCESS_BARS[kind])),
        Figure(f"ceiling_success_{kind}", "  … the true target through the VAE (ceiling)", "%"),
        Figure(f"true_mask_success_{kind}", "  … with the true region as the mask (--true-mask)", "%"),
        Figure(f"mask_iou_{kind}", "  … mask IoU (image resolution)", "", _bar(IOU_BARS[kind])),
        Figure(f"kept_{kind}", "  … untouched objects kept", "%"),
        Figure(f"ceiling_kept_{kind}", "  … kept, the true target through the VAE (ceiling)", "%"),
        Figure(f"true_mask_kept_{kind}", "  … kept, the true region as the mask (--true-mask)", "%"),
        Figure(f"background_psnr_{kind}", f"  … PSNR {where}", "dB"),
    )


RICH_FIGURES = (
    Figure("t2i_ok_1", "text→image, 1 object: objects (shape, colour, size, order) + background", "%", Bar(0.75, ">=")),
    Figure("ceiling_t2i_ok_1", "  … the true scene through the VAE (ceiling)", "%"),
    Figure("t2i_ok_2", "text→image, 2 objects: the same", "%", Bar(0.75, ">=")),
    Figure("ceiling_t2i_ok_2", "  … the true scene through the VAE (ceiling)", "%"),
    Figure("t2i_ok_3", "text→image, 3 objects: the same", "%", Bar(0.50, ">=")),
    Figure("ceiling_t2i_ok_3", "  … the true scene through the VAE (ceiling)", "%"),
    Figure("t2i_ok", "  … every count: objects and background", "%"),
    Figure("t2i_objects_ok", "  … every count: the objects right", "%"),
    Figure("t2i_background_ok", "  … every count: the background (and time) right", "%"),
    Figure("t2i_all_ok", "  … every count: all right and nothing else drawn", "%"),
    *(f for kind in KINDS for f in _kind_figures(kind)),
    Figure("edit_success_n1", "edit success, scenes of 1 object (every kind)", "%"),
    Figure("edit_success_n2", "edit success, scenes of 2 objects", "%"),
    Figure("edit_success_n3", "edit success, scenes of 3 objects", "%"),
    Figure("untouched_kept", "untouched objects kept (every kind but night)", "%", Bar(0.95, ">=")),
    Figure("background_psnr", "background PSNR, object edits (colour, shape, size, remove)", "dB"),
    Figure("vae_psnr", "  … VAE encode→decode, same backgrounds (ceiling)", "dB"),
    Figure("background_psnr_gap", "  … ceiling − DiffEdit", "dB", Bar(1.5, "<=")),
    Figure("seconds_per_edit", "DiffEdit: seconds per edit", "s"),
    Figure("classic_mask_iou", "classic scenes (2 objects, plain, colour/shape): mask IoU", "", Bar(0.60, ">=")),
    Figure("classic_edit_success", "  … edit success", "%", Bar(0.85, ">=")),
    Figure("classic_background_psnr", "  … background PSNR", "dB", Bar(32.0, ">=")),
    Figure("classic_untouched_kept", "  … untouched object kept", "%"),
)


# --------------------------------------------------------------------------- which world


# ``tokenizer_words`` and ``model_world`` live in :mod:`diffedit_lab.toy.texts` (the explorer
# asks the same question); imported above.


# --------------------------------------------------------------------------- data


def held_out_scenes(n: int, seed: int = HELD_OUT_SEED):
    """Scenes ``make_scene(seed + i)``, i < n."""
    return [make_scene(seed + i) for i in range(n)]


def alternating_edits(first: int, n: int) -> list[Edit]:
    """Edits ``make_edit(first + i)``, i < n: even i change a shape, odd i a colour."""
    return [make_edit(first + i, "shape" if i % 2 == 0 else "colour") for i in range(n)]


MASKED_KINDS = tuple(k for k in KINDS if k not in WHOLE_IMAGE_KINDS)
"""The rich world's kinds that a mask can serve (every kind but the whole-image ones)."""


def held_out_edits(n: int, seed: int = HELD_OUT_SEED, *, world: str = "classic", kinds: tuple[str, ...] | None = None,
                   first: int = 0) -> list[Edit]:
    """Edits ``first … first + n − 1`` of the held-out sequence, edit ``i`` from seed
    ``seed + EDIT_SEED_OFFSET + i``. Classic world: even ``i`` change a shape, odd ``i`` a colour.
    Rich world: ``kinds[i mod len(kinds)]`` (default :data:`MASKED_KINDS`), so a multiple of
    ``len(kinds)`` edits has as many of each. Edit ``i`` depends on ``i`` only: any share
    (``first``) of the sequence holds the same edits as the whole."""
    base = seed + EDIT_SEED_OFFSET
    kinds = held_out_kinds(world, kinds)  # classic: ("shape", "colour"), alternating
    return [make_edit(base + i, kinds[i % len(kinds)], world=world) for i in range(first, first + n)]


def held_out_kinds(world: str, kinds: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The kinds :func:`held_out_edits` takes in turn, checked: classic ``("shape", "colour")``
    (the only ones it has); rich ``kinds`` (default :data:`MASKED_KINDS`), each one of ``KINDS``."""
    if world == "classic":
        if kinds and set(kinds) != {"shape", "colour"}:
            raise ValueError(f"the classic world has shape and colour edits only (its held-out edits alternate "
                             f"them): kinds {', '.join(kinds)} need the rich world (--world rich)")
        return ("shape", "colour")
    if world != "rich":
        raise ValueError(f"world must be 'classic' or 'rich', got {world!r}")
    kinds = tuple(kinds or MASKED_KINDS)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown kind(s) {', '.join(unknown)}: the rich world's kinds are {', '.join(KINDS)}")
    return kinds


def rich_held_out_scenes(n: int, seed: int = HELD_OUT_SEED, size: int = SIZE) -> list[Scene]:
    """Rich scenes: scene i is ``rich_scene`` of the generator seeded ``seed + i`` with
    ``1 + i mod 3`` objects (background and time of day as the world draws them)."""
    return [rich_scene(np.random.default_rng(seed + i), size, n_objects=1 + i % 3) for i in range(n)]


def balanced_edits(first: int, n: int, size: int = SIZE, kinds: tuple[str, ...] = KINDS) -> list[Edit]:
    """Rich edits ``make_edit(first + i, kinds[i mod len(kinds)], "rich")``, i < n: the kinds in
    turn, so that ``n`` a multiple of ``len(kinds)`` gives equal numbers of each."""
    return [make_edit(first + i, kinds[i % len(kinds)], world="rich", size=size) for i in range(n)]


def rich_held_out_edits(n: int, seed: int = HELD_OUT_SEED, size: int = SIZE) -> list[Edit]:
    """Rich edits from seeds ``seed + EDIT_SEED_OFFSET + i``, every kind in turn."""
    return balanced_edits(seed + EDIT_SEED_OFFSET, n, size)


# --------------------------------------------------------------------------- text → image


@torch.inference_mode()
def generate(c: Components, captions: list[str], *, steps: int, guidance: float, seed: int, batch_size: int = 32,
             progress: bool = True, size: int = SIZE) -> np.ndarray:
    """Sample one image per caption, (N, size, size, 3) uint8, by DDIM (η = 0) from ``z_T ~ N(0, I)``
    with classifier-free guidance ``ε̂ = ε(∅) + w·(ε(c) − ε(∅))``; batch ``k`` draws its noise
    from a CPU generator seeded ``seed + k``."""
    from tqdm.auto import tqdm

    from ..denoise import ddim_decode
    from ..latents import decode, encode_prompt
    from ..models import fresh_schedulers

    uncond = encode_prompt(c, "")
    h = w = size // c.vae_scale_factor
    out = []
    batches = range(0, len(captions), batch_size)
    for k, start in enumerate(tqdm(batches, desc="text→image", disable=not progress)):
        texts = captions[start : start + batch_size]
        cond = torch.cat([encode_prompt(c, t) for t in texts])
        scheduler = fresh_schedulers(c)[0]
        scheduler.set_timesteps(steps)
        g = torch.Generator().manual_seed(seed + k)
        z = torch.randn((len(texts), c.latent_channels, h, w), generator=g).to(c.device)
        z = z * scheduler.init_noise_sigma
        z = ddim_decode(c, z, scheduler.timesteps, scheduler, cond, uncond if guidance > 1 else None, guidance).latents
        out.append(np.round(decode(c, z, output_type="np") * 255).astype(np.uint8))
    return np.concatenate(out)


def text_to_image_rates(images: np.ndarray, captions: list[str]) -> dict[str, float]:
    """Rates of images with both named objects right and in order, of those with nothing else
    drawn either, with all colours right, with all shapes right."""
    results = [check(img, cap) for img, cap in zip(images, captions)]
    return dict(
        t2i_objects_ok=float(np.mean([r.order_ok for r in results])),
        t2i_all_ok=float(np.mean([r.all_ok for r in results])),
        t2i_colours_ok=float(np.mean([all(r.colour_ok) for r in results])),
        t2i_shapes_ok=float(np.mean([all(r.shape_ok) for r in results])),
    )


def rich_text_to_image_rates(images: np.ndarray, captions: list[str]) -> dict[str, float]:
    """Rich world: per object count k, the rate ``t2i_ok_k`` of images with every named object
    right (size, colour, shape, left to right) and the named background and time of day (NaN
    when no caption has k objects); over every count, the rates with the objects right, with
    the background right, and with all right and nothing else drawn."""
    from .rich_checker import check as rich_check

    results = [rich_check(img, cap) for img, cap in zip(images, captions)]
    ok = np.array([r.order_ok and r.background_ok and r.night_ok for r in results], np.float64)
    counts = np.array([len(r.expected) for r in results])
    rates = {f"t2i_ok_{k}": float(ok[counts == k].mean()) if (counts == k).any() else float("nan") for k in (1, 2, 3)}
    return dict(
        rates,
        t2i_ok=float(ok.mean()),
        t2i_objects_ok=float(np.mean([r.order_ok for r in results])),
        t2i_background_ok=float(np.mean([r.background_ok and r.night_ok for r in results])),
        t2i_all_ok=float(np.mean([r.all_ok for r in results])),
    )


# --------------------------------------------------------------------------- DiffEdit


def score_edit(e: Edit, output: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Figures of one edited image (uint8 64×64×3) against the edit's truth; ``mask``: the
    inferred mask, at 64×64 or at latent resolution (then each cell becomes a block). PSNR is
    capped at ``PSNR_CAP`` dB (an identical background would be +∞ and swamp the mean). A rich
    world's edit is judged by :func:`diffedit_lab.toy.rich_checker.check_edit`; its PSNR is NaN
    when the edited region is the whole image (night)."""
    target_ok, kept = check_edit(output, e)  # a rich-world edit goes to the rich checker
    psnr = float(background_psnr(e.scene.image, output, e.mask, dilate=2))
    return dict(
        mask_iou=float(mask_iou(mask, e.mask)),
        background_psnr=min(psnr, PSNR_CAP),
        background_ssim=float(background_ssim(e.scene.image, output, e.mask, dilate=2)),
        edit_success=float(target_ok),
        untouched_kept=float(kept),
    )


def run_edits(c: Components, edits: list[Edit], *, steps: int, seed: int, progress: bool = True) -> list[dict]:
    """DiffEdit every edit at ``edit()``'s defaults (source caption as reference), scored."""
    from tqdm.auto import tqdm
    from PIL import Image

    from .. import edit as diffedit

    rows = []
    for i, e in enumerate(tqdm(edits, desc="DiffEdit", disable=not progress)):
        start = time.perf_counter()
        res = diffedit(c, Image.fromarray(e.scene.image), e.source, e.target, steps=steps, seed=seed + i, progress=False)
        seconds = time.perf_counter() - start
        row = score_edit(e, np.asarray(res.image.convert("RGB")), res.mask.upsampled()[0].cpu().numpy())
        row["mask_iou_latent"] = float(mask_iou(res.mask.mask[0].cpu().numpy(), e.mask))
        rows.append(dict(row, seconds_per_edit=seconds, kind=e.kind, objects=len(e.scene.objects), source=e.source,
                         target=e.target))
    return rows


def run_true_mask_edits(c: Components, edits: list[Edit], *, steps: int, progress: bool = True) -> list[dict]:
    """Steps 2 and 3 of DiffEdit at the model's settings, with each edit's *true* region as the
    mask instead of step 1's — every latent cell the region touches (a cell half outside the
    region would otherwise leave the old object's edge in the picture): an edit that succeeds
    here but not in :func:`run_edits` was lost by the mask; one that fails here too, by the
    decoding (the UNet repainting the region)."""
    from PIL import Image
    from tqdm.auto import tqdm

    from ..denoise import masked_denoise
    from ..edit import EditSession
    from ..latents import decode
    from ..settings import EditSettings

    s = EditSettings.for_model(c).replace(steps=steps)
    rows = []
    for e in tqdm(edits, desc="DiffEdit, true masks", disable=not progress):
        inversion = EditSession(c, Image.fromarray(e.scene.image)).inversion("", s, progress=False)  # edit()'s
        cell = e.mask.shape[0] // inversion.latents.shape[-2]  # pixels per latent cell
        cells = torch.nn.functional.max_pool2d(torch.from_numpy(e.mask).float()[None, None], cell)[0, 0]
        out = masked_denoise(c, inversion, cells, e.target, guidance=s.guidance, progress=False)
        output = np.asarray(decode(c, out.latents)[0].convert("RGB"))
        rows.append(dict(score_edit(e, output, e.mask), kind=e.kind))
    return rows


def round_trip(c: Components, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """``decode(encode(x))`` of (N, H, W, 3) uint8 images, as uint8: what the model's VAE keeps."""
    from ..latents import decode, encode

    out = [np.round(decode(c, encode(c, list(images[k:k + batch_size])), output_type="np") * 255).astype(np.uint8)
           for k in range(0, len(images), batch_size)]
    return np.concatenate(out)


def vae_psnrs(c: Components, edits: list[Edit]) -> np.ndarray:
    """Per edit, the background PSNR of encode → decode of its source image (same region as
    the edit's, capped at ``PSNR_CAP``; NaN where the region is the whole image)."""
    images = np.stack([e.scene.image for e in edits])
    recon = round_trip(c, images)
    regions = np.stack([e.mask for e in edits])
    return np.minimum(background_psnr(images, recon, regions, dilate=2), PSNR_CAP)


def vae_ceiling(c: Components, edits: list[Edit]) -> float:
    """Mean background PSNR of encode → decode of the edits' source images (same regions)."""
    return float(np.mean(vae_psnrs(c, edits)))


def iou_ceiling(edits: list[Edit], factor: int) -> float:
    """Mean IoU of the best mask a latent-resolution mask can be: the true region averaged
    over ``factor``×``factor`` cells, ``> 1/2``, nearest-upsampled back."""
    true = np.stack([e.mask for e in edits])
    b, h, w = true.shape
    cells = true.reshape(b, h // factor, factor, w // factor, factor).mean((2, 4)) > 0.5
    return float(np.mean(mask_iou(cells, true)))


# --------------------------------------------------------------------------- report


def mean_of(rows: list[dict], key: str) -> float:
    """Mean of ``row[key]`` over the rows, NaNs ignored (NaN if there is no value)."""
    values = np.array([r[key] for r in rows], np.float64).reshape(-1)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def format_value(value: float | None, unit: str) -> str:
    """``0.734, "%"`` → ``"73.4 %"``; dB and s with one/two decimals; bare numbers with three."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if unit == "%":
        return f"{100 * value:.1f} %"
    if unit == "dB":
        return f"{value:.2f} dB"
    if unit == "s":
        return f"{value:.2f} s"
    return f"{value:.3f}"


def format_table(metrics: dict[str, float], figures: dict=FIGURES) -> str:
    """A plain-text table: figure, value, bar, and PASS / FAIL (or blank without a bar).
    Figures missing from ``metrics`` are left out."""
    rows = [("figure", "value", "bar", "ok")]
    for f in figures:
        if f.key not in metrics:
            continue
        v = metrics[f.key]
        bar = "" if f.bar.op is None else f"{f.bar.op} {format_value(f.bar.threshold, f.unit)}"
        verdict = {True: "PASS", False: "FAIL", None: ""}[f.bar.passed(v)]
        rows.append((f.label, format_value(v, f.unit), bar, verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    line = "  ".join("-" * w for w in widths)
    text = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths))).rstrip() for r in rows]
    return "\n".join([text[0], line, *text[1:]])


def failed_bars(metrics: dict[str, float], figures: dict=FIGURES) -> list[str]:
    """Keys of the figures that have a bar and miss it."""
    return [f.key for f in figures if f.key in metrics and f.bar.passed(metrics[f.key]) is False]


# --------------------------------------------------------------------------- main


def measure(c: Components, *, scenes: int, edits: int, seed: int, steps: int, batch_size: int = 32, progress: bool = True) -> dict:
    """All the figures (``metrics``), the per-edit rows and the settings used."""
    guidance = c.defaults.get("guidance", 7.5)
    metrics: dict[str, float] = {}
    if scenes:
        held = held_out_scenes(scenes, seed)
        captions = [s.caption for s in held]
        images = generate(c, captions, steps=steps, guidance=guidance, seed=seed, batch_size=batch_size, progress=progress)
        metrics.update(text_to_image_rates(images, captions))
    rows: list[dict] = []
    if edits:
        todo = held_out_edits(edits, seed)
        rows = run_edits(c, todo, steps=steps, seed=seed, progress=progress)
        for key in ("mask_iou", "mask_iou_latent", "background_psnr", "background_ssim", "edit_success", "untouched_kept", "seconds_per_edit"):
            metrics[key] = mean_of(rows, key)
        for kind in ("shape", "colour"):
            metrics[f"edit_success_{kind}"] = mean_of([r for r in rows if r["kind"] == kind], "edit_success")
        metrics["vae_psnr"] = vae_ceiling(c, todo)
        metrics["mask_iou_ceiling"] = iou_ceiling(todo, c.vae_scale_factor)
    settings = dict(scenes=scenes, edits=edits, seed=seed, steps=steps, guidance=guidance, model=c.name, defaults=c.defaults)
    return dict(metrics=metrics, edits=rows, settings=settings)


def rich_edit_metrics(rows: list[dict], vae: np.ndarray) -> dict[str, float]:
    """Rich-world figures of scored edits (rows of :func:`run_edits`) and their VAE PSNRs
    (:func:`vae_psnrs`, same order): per kind, per object count, and pooled (module docstring)."""
    metrics: dict[str, float] = {}
    for kind in KINDS:
        mine = [r for r in rows if r["kind"] == kind]
        for key, name in (("edit_success", "success"), ("mask_iou", "mask_iou"), ("untouched_kept", "kept"),
                          ("background_psnr", "background_psnr")):
            metrics[f"{name}_{kind}"] = mean_of(mine, key)
    for k in (1, 2, 3):
        metrics[f"edit_success_n{k}"] = mean_of([r for r in rows if r["objects"] == k], "edit_success")
    metrics["untouched_kept"] = mean_of([r for r in rows if r["kind"] not in WHOLE_IMAGE_KINDS], "untouched_kept")
    objects = [i for i, r in enumerate(rows) if r["kind"] in OBJECT_KINDS]
    metrics["background_psnr"] = mean_of([rows[i] for i in objects], "background_psnr")
    metrics["vae_psnr"] = mean_of([dict(v=vae[i]) for i in objects], "v")
    metrics["background_psnr_gap"] = metrics["vae_psnr"] - metrics["background_psnr"]
    metrics["seconds_per_edit"] = mean_of(rows, "seconds_per_edit")
    return metrics


def ceiling_edit_metrics(edits: list[Edit], outputs: np.ndarray) -> dict[str, float]:
    """Per kind, the success and untouched-kept rates the checker gives ``outputs`` — the true
    targets through the VAE: what a perfect edit in latent space could score (the ceiling)."""
    scored = [dict(kind=e.kind, **score_edit(e, out, e.mask)) for e, out in zip(edits, outputs)]
    metrics = {}
    for kind in KINDS:
        mine = [r for r in scored if r["kind"] == kind]
        metrics[f"ceiling_success_{kind}"] = mean_of(mine, "edit_success")
        metrics[f"ceiling_kept_{kind}"] = mean_of(mine, "untouched_kept")
    return metrics


def measure_rich(c: Components, *, scenes: int, edits: int, classic_edits: int, seed: int, steps: int,
                 batch_size: int = 32, progress: bool = True, true_mask: bool = False) -> dict:
    """The rich world's figures (``metrics``, keys of :data:`RICH_FIGURES`), the per-edit rows
    (``edits``; the classic block's in ``classic_edits``) and the settings used. Images are
    drawn at the model's size; ``edits`` is rounded up to a multiple of ``len(KINDS)``.
    ``true_mask``: the same edits again with the true region as the mask
    (:func:`run_true_mask_edits`), ``true_mask_success_<kind>`` and ``true_mask_kept_<kind>``."""
    from ..inputs import model_side

    size = model_side(c)
    guidance = c.defaults.get("guidance", 7.5)
    edits = -(-edits // len(KINDS)) * len(KINDS)
    metrics: dict[str, float] = {}
    if scenes:
        held = rich_held_out_scenes(scenes, seed, size)
        captions = [s.caption for s in held]
        images = generate(c, captions, steps=steps, guidance=guidance, seed=seed, batch_size=batch_size,
                          progress=progress, size=size)
        metrics.update(rich_text_to_image_rates(images, captions))
        truth = rich_text_to_image_rates(round_trip(c, np.stack([s.image for s in held])), captions)
        metrics.update({f"ceiling_t2i_ok_{k}": truth[f"t2i_ok_{k}"] for k in (1, 2, 3)})
    rows: list[dict] = []
    if edits:
        todo = rich_held_out_edits(edits, seed, size)
        rows = run_edits(c, todo, steps=steps, seed=seed, progress=progress)
        metrics.update(rich_edit_metrics(rows, vae_psnrs(c, todo)))
        metrics.update(ceiling_edit_metrics(todo, round_trip(c, np.stack([e.target_scene.image for e in todo]))))
        if true_mask:
            truly = run_true_mask_edits(c, todo, steps=steps, progress=progress)
            for kind in KINDS:
                mine = [r for r in truly if r["kind"] == kind]
                metrics[f"true_mask_success_{kind}"] = mean_of(mine, "edit_success")
                metrics[f"true_mask_kept_{kind}"] = mean_of(mine, "untouched_kept")
    classic_rows: list[dict] = []
    if classic_edits:
        classic_rows = run_edits(c, held_out_edits(classic_edits, seed), steps=steps, seed=seed, progress=progress)
        for key in ("mask_iou", "edit_success", "background_psnr", "untouched_kept"):
            metrics[f"classic_{key}"] = mean_of(classic_rows, key)
    settings = dict(world="rich", size=size, scenes=scenes, edits=edits, classic_edits=classic_edits, seed=seed,
                    steps=steps, true_mask=true_mask, guidance=guidance, model=c.name, defaults=c.defaults)
    return dict(metrics=metrics, edits=rows, classic_edits=classic_rows, settings=settings)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m diffedit_lab.toy.quality", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model folder (default: the embedded toy model)")
    p.add_argument("--world", choices=("classic", "rich"), default=None,
                   help="the world measured (default: the model's own, from its words)")
    p.add_argument("--scenes", type=int, default=None, help="text→image samples (default 200 classic, 210 rich)")
    p.add_argument("--edits", type=int, default=None,
                   help="DiffEdit edits (classic: half shape, half colour, default 100; rich: every kind in turn, default 120)")
    p.add_argument("--classic-edits", type=int, default=None, help="rich world: edits of the classic no-regression block (default 40)")
    p.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="first held-out seed")
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the model's recorded steps)")
    p.add_argument("--batch", type=int, default=32, help="text→image batch size")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 on a busy machine)")
    p.add_argument("--json", type=Path, default=None, help="write all figures here")
    p.add_argument("--quick", action="store_true",
                   help="20 steps; classic 8 scenes, 8 edits; rich 6 scenes, 6 edits, 2 classic edits (CI)")
    p.add_argument("--strict", action="store_true", help="exit 1 if a bar is missed")
    p.add_argument("--true-mask", action="store_true",
                   help="rich world: decode each edit again with its true region as the mask (mask or decoding to blame?)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    for name in ("scenes", "edits", "classic_edits", "steps", "batch", "threads"):
        value = getattr(a, name)
        if value is not None and (value < 0 or (value == 0 and name in ("steps", "batch", "threads"))):
            p.error(f"--{name.replace('_', '-')} must be {'positive' if name in ('steps', 'batch', 'threads') else '0 or more'}, got {value}")
    a.given = sorted(name for name in ("scenes", "edits", "classic_edits", "steps") if getattr(a, name) is not None)
    if a.quick:  # what is given explicitly stays
        for name in ("scenes", "edits", "steps"):
            if getattr(a, name) is None:
                setattr(a, name, QUICK[name])
    return a


def resolve(a: argparse.Namespace, world: str, recorded_steps: int) -> argparse.Namespace:
    """``a`` with what was left to the world and the model filled in: the counts (``DEFAULTS``,
    or ``RICH_QUICK`` for a quick rich run) and the steps (the model's recorded ones)."""
    a = argparse.Namespace(**vars(a))
    if a.quick and world == "rich":
        for name, value in RICH_QUICK.items():
            if name not in a.given:
                setattr(a, name, value)
    for name, value in DEFAULTS[world].items():
        if getattr(a, name) is None:
            setattr(a, name, value)
    if a.steps is None:
        a.steps = recorded_steps
    return a


def main(argv: list[str] | None = None) -> int:
    from .. import load_components
    from ..settings import EditSettings

    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    c = load_components(a.model, device=a.device)
    world, why = (a.world, "--world") if a.world else model_world(c)
    a = resolve(a, world, EditSettings.for_model(c).steps)
    name = a.model or "embedded toy model"
    if world == "rich":
        report = measure_rich(c, scenes=a.scenes, edits=a.edits, classic_edits=a.classic_edits, seed=a.seed,
                              steps=a.steps, batch_size=a.batch, progress=not a.no_progress, true_mask=a.true_mask)
        figures = RICH_FIGURES
        st = report["settings"]
        print(f"{name}: {st['scenes']} scenes, {st['edits']} edits ({st['edits'] // len(KINDS)} per kind), "
              f"{st['classic_edits']} classic edits, {a.steps} DDIM steps, {st['size']}×{st['size']} px, seed {a.seed}")
    else:
        if a.true_mask:
            print("--true-mask is measured in the rich world only: ignored here", file=sys.stderr)
        report = measure(c, scenes=a.scenes, edits=a.edits, seed=a.seed, steps=a.steps, batch_size=a.batch,
                         progress=not a.no_progress)
        report["settings"]["world"] = "classic"
        figures = FIGURES
        print(f"{name}: {a.scenes} scenes, {a.edits} edits, {a.steps} DDIM steps, seed {a.seed}")
    print(f"world: {world} ({why})")
    failed = failed_bars(report["metrics"], figures)
    print(format_table(report["metrics"], figures))
    report["bars"] = {f.key: asdict(f.bar) for f in figures if f.bar.op}
    report["failed"] = failed
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(report, indent=2, default=_jsonable) + "\n")
    return 1 if a.strict and failed else 0


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return str(x)


if __name__ == "__main__":
    sys.exit(main())
