"""Measure the embedded shapes-world model: text-to-image, and DiffEdit on held-out edits.

    python -m diffedit_lab.toy.quality [--model DIR] [--scenes N] [--edits N] [--seed S]
                                       [--steps 50] [--json OUT] [--quick] [--strict]
                                       [--threads N] [--device D] [--batch B]

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
    holes filled if the model's settings say so) and, for comparison, of the latent mask itself
    (each cell a block of pixels; its ceiling too), background PSNR and SSIM
    outside the true region dilated by 2 px, edit success (the target object is there),
    untouched object kept, the VAE's own PSNR on the same background (encode → decode: the
    ceiling), and seconds per edit.

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
from .world import SIZE, Edit, make_edit, make_scene

if TYPE_CHECKING:
    from ..models import Components

HELD_OUT_SEED = 987_654_321
EDIT_SEED_OFFSET = 1_000_000  # edits use seeds seed + 1 000 000 + i, apart from the scenes
QUICK = dict(scenes=8, edits=8, steps=20)
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


# --------------------------------------------------------------------------- data


def held_out_scenes(n: int, seed: int = HELD_OUT_SEED):
    """Scenes ``make_scene(seed + i)``, i < n."""
    return [make_scene(seed + i) for i in range(n)]


def alternating_edits(first: int, n: int) -> list[Edit]:
    """Edits ``make_edit(first + i)``, i < n: even i change a shape, odd i a colour."""
    return [make_edit(first + i, "shape" if i % 2 == 0 else "colour") for i in range(n)]


def held_out_edits(n: int, seed: int = HELD_OUT_SEED) -> list[Edit]:
    """Edits ``make_edit(seed + EDIT_SEED_OFFSET + i)``: even i change a shape, odd i a colour."""
    return alternating_edits(seed + EDIT_SEED_OFFSET, n)


# --------------------------------------------------------------------------- text → image


@torch.inference_mode()
def generate(c: Components, captions: list[str], *, steps: int, guidance: float, seed: int, batch_size: int = 32, progress: bool = True) -> np.ndarray:
    """Sample one image per caption, (N, 64, 64, 3) uint8, by DDIM (η = 0) from ``z_T ~ N(0, I)``
    with classifier-free guidance ``ε̂ = ε(∅) + w·(ε(c) − ε(∅))``; batch ``k`` draws its noise
    from a CPU generator seeded ``seed + k``."""
    from tqdm.auto import tqdm

    from ..denoise import ddim_decode
    from ..latents import decode, encode_prompt
    from ..models import fresh_schedulers

    uncond = encode_prompt(c, "")
    h = w = SIZE // c.vae_scale_factor
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


# --------------------------------------------------------------------------- DiffEdit


def score_edit(e: Edit, output: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Figures of one edited image (uint8 64×64×3) against the edit's truth; ``mask``: the
    inferred mask, at 64×64 or at latent resolution (then each cell becomes a block). PSNR is
    capped at ``PSNR_CAP`` dB (an identical background would be +∞ and swamp the mean)."""
    target_ok, kept = check_edit(output, e)
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
        rows.append(dict(row, seconds_per_edit=seconds, kind=e.kind, source=e.source, target=e.target))
    return rows


def vae_ceiling(c: Components, edits: list[Edit]) -> float:
    """Mean background PSNR of encode → decode of the edits' source images (same regions)."""
    from ..latents import decode, encode

    images = np.stack([e.scene.image for e in edits])
    recon = np.round(decode(c, encode(c, list(images)), output_type="np") * 255).astype(np.uint8)
    regions = np.stack([e.mask for e in edits])
    return float(np.mean(np.minimum(background_psnr(images, recon, regions, dilate=2), PSNR_CAP)))


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m diffedit_lab.toy.quality", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model folder (default: the embedded toy model)")
    p.add_argument("--scenes", type=int, default=200, help="text→image samples")
    p.add_argument("--edits", type=int, default=100, help="DiffEdit edits (half shape, half colour)")
    p.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="first held-out seed")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps")
    p.add_argument("--batch", type=int, default=32, help="text→image batch size")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 on a busy machine)")
    p.add_argument("--json", type=Path, default=None, help="write all figures here")
    p.add_argument("--quick", action="store_true", help="8 scenes, 8 edits, 20 steps (CI)")
    p.add_argument("--strict", action="store_true", help="exit 1 if a bar is missed")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    if a.quick:
        a.scenes, a.edits, a.steps = QUICK["scenes"], QUICK["edits"], QUICK["steps"]
    return a


def main(argv: list[str] | None = None) -> int:
    from .. import load_components

    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    c = load_components(a.model, device=a.device)
    report = measure(c, scenes=a.scenes, edits=a.edits, seed=a.seed, steps=a.steps, batch_size=a.batch, progress=not a.no_progress)
    failed = failed_bars(report["metrics"])
    name = a.model or "embedded toy model"
    print(f"{name}: {a.scenes} scenes, {a.edits} edits, {a.steps} DDIM steps, seed {a.seed}")
    print(format_table(report["metrics"]))
    report["bars"] = {f.key: asdict(f.bar) for f in FIGURES if f.bar.op}
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
