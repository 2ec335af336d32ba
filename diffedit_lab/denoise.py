"""Step 3 of DiffEdit: DDIM decoding with the query, keeping the encoded latent outside the mask.

Starting from the encoded ``z_r`` (the end of :func:`~diffedit_lab.inversion.ddim_invert`), each
DDIM step conditioned on the query ``Q``

    ẑ0      = (y_t − √(1 − ᾱ_t) · ε̂) / √ᾱ_t,      ε̂ = ε̂(y_t, t, Q)
    y_{t−1} = √ᾱ_{t−1} · ẑ0 + √(1 − ᾱ_{t−1}) · ε̂

is followed by the paper's blend **at the same noise level**

    ỹ_{t−1} = M · y_{t−1} + (1 − M) · x_{t−1}

with ``x_{t−1}`` the DDIM-encoded latent of level ``t−1`` (after the last step: the clean
``z0`` itself). So with an all-zero mask the output is exactly the input latents. diffusers'
``StableDiffusionDiffEditPipeline`` blends ``x_t`` instead — one step too noisy — and never
returns to ``z0`` (docs/differences.md).

Two baselines of the paper's evaluation live here too: :func:`sdedit` (noise, then denoise
with ``Q``; no mask, no encoding) and :func:`encode_decode` (DDIM-encode, then denoise with
``Q``; no mask).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from PIL import Image

from .checks import (check_count, check_guidance, check_mask_shape, check_mask_values, check_prompt, check_strength,
                     warn_if_empty_mask)
from .inversion import Inversion, check_inversion
from .latents import encode, encode_prompt, is_latents, make_generator
from .mask import MaskResult
from .models import Components, fresh_schedulers
from .sampling import (
    ddim_step,
    denoising_timesteps,
    guided_noise,
    model_prediction,
    noise_levels,
    progress_bar,
    unet_caller,
)
from .settings import or_paper

if TYPE_CHECKING:
    from diffusers import DDIMScheduler


@dataclass
class DenoiseResult:
    """The denoising trajectory: ``trajectory`` (T + 1, B, C, h, w) starts with the noisy start
    latents, then holds the (blended) latents after every step; ``latents`` is the last one."""

    latents: torch.Tensor
    trajectory: torch.Tensor
    timesteps: torch.Tensor
    mask: torch.Tensor | None = None


def as_latent_mask(c: Components, mask: MaskResult | torch.Tensor | Image.Image | np.ndarray, latents: torch.Tensor) -> torch.Tensor:
    """Any mask as a float (B or 1, 1, h, w) tensor matching ``latents`` (B, C, h, w).

    ``MaskResult``: its binary mask. Tensor (h, w), (B, h, w) or (B, 1, h, w): values in
    [0, 1] (soft masks blend softly), its size must equal the latents'. PIL image or numpy
    array (uint8 0–255, bool, or float in [0, 1]): area-resized to the latent size and
    binarised at 0.5.
    """
    if isinstance(mask, MaskResult):
        mask = mask.mask
    if isinstance(mask, (Image.Image, np.ndarray)):
        mask = _image_mask(mask, latents.shape[-1], latents.shape[-2])
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"`mask`: expected a MaskResult, tensor, PIL image or numpy array, got {type(mask).__name__}.")
    m = mask.float()
    m = {2: lambda x: x[None, None], 3: lambda x: x[:, None], 4: lambda x: x}.get(m.ndim, lambda x: None)(m)
    if m is None or m.shape[1] != 1:
        raise ValueError(f"`mask` must have shape (h, w), (B, h, w) or (B, 1, h, w), got {tuple(mask.shape)}.")
    check_mask_shape(m, latents)
    check_mask_values("mask", m)  # finite, in [0, 1]
    return m.to(latents.device)


def _image_mask(mask, width: int, height: int) -> torch.Tensor:
    arr = np.asarray(mask)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float64), 0, 1) * 255).round().astype(np.uint8)
    img = Image.fromarray(arr).convert("L")
    if img.size != (width, height):
        img = img.resize((width, height), resample=Image.BOX)
    return torch.from_numpy((np.asarray(img) >= 128).astype(np.float32))


def blend(y_t: torch.Tensor, x_t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The paper's blend ``ỹ_t = M·y_t + (1 − M)·x_t``: the decoded latent ``y_t`` inside the mask
    (1 = edit), the encoded latent ``x_t`` of the same level outside."""
    # contiguous: broadcasting a (B, 1, h, w) mask can return channels-last memory,
    # and the UNet's convolutions round differently on it
    return (mask * y_t + (1 - mask) * x_t).contiguous()


@torch.inference_mode()
def ddim_decode(
    c: Components,
    z: torch.Tensor,
    timesteps: torch.Tensor,
    scheduler: DDIMScheduler,
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    guidance: float,
    *,
    mask: torch.Tensor | None = None,
    encoded: torch.Tensor | None = None,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    progress: bool = False,
    desc: str = "DDIM decoding",
) -> DenoiseResult:
    """The DDIM decoding loop — the only one of the package — over ``timesteps`` (``scheduler``
    set up for them), from ``z``:

        y_{t−1} = ddim_step(y_t, ε̂(y_t, t, Q), ᾱ_t, ᾱ_{t−1})
        ỹ_{t−1} = M·y_{t−1} + (1 − M)·x_{t−1}          (with a ``mask``: the blend)

    ``encoded``: (T + 1, B, C, h, w), ``x`` of each level (``encoded[T − 1 − i]`` after step
    ``i``: an :class:`~diffedit_lab.inversion.Inversion`'s trajectory). ``cond``: (1, L, D), or
    (B, L, D) — one text per latent; ``uncond``: the negative text's, or ``None`` (no guidance).
    ``callback(i, t, latents)`` after step ``i``.
    """
    trajectory, unet = [z], unet_caller(c)
    last = len(timesteps) - 1
    for i, t in enumerate(progress_bar(timesteps, progress, desc)):
        alpha_bar_t, alpha_bar_prev = noise_levels(scheduler, t)
        eps, pred_x0 = model_prediction(scheduler, guided_noise(c, z, t, cond, uncond, guidance, unet=unet),
                                        z, alpha_bar_t)
        z = ddim_step(z, eps, alpha_bar_t, alpha_bar_prev, pred_x0=pred_x0)
        if mask is not None:
            z = blend(z, encoded[last - i], mask)
        trajectory.append(z)
        if callback is not None:
            callback(i, t, z)
    return DenoiseResult(latents=z, trajectory=torch.stack(trajectory), timesteps=timesteps.cpu(), mask=mask)


def _embeddings(c: Components, prompt: str | list | torch.Tensor, negative_prompt: str | list | torch.Tensor | None,
                guidance: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``c(Q)`` and, with guidance, ``c(∅)`` of the negative text (``None`` means ``""``)."""
    uncond = encode_prompt(c, "" if negative_prompt is None else negative_prompt) if guidance > 1 else None
    return encode_prompt(c, prompt), uncond


def masked_denoise(
    c: Components,
    inversion: Inversion,
    mask: MaskResult | torch.Tensor | Image.Image | np.ndarray,
    prompt: str | list | torch.Tensor,
    *,
    negative_prompt: str | list | torch.Tensor | None = None,
    guidance: float | None = None,
    callback: Callable[[int, int, torch.Tensor], None] | None = None,
    progress: bool = True,
) -> DenoiseResult:
    """DiffEdit decoding: DDIM steps with ``prompt`` (Q) from ``inversion.latents``, blending
    ``ỹ = M·y + (1 − M)·x`` with the encoded latent ``x`` of the same level after every step.

    ``steps``/``strength`` come from ``inversion``. ``mask``: see :func:`as_latent_mask`
    (1 = edit, 0 = keep). ``callback(i, t, latents)`` is called after step ``i``; the whole
    trajectory is also returned.
    """
    check_prompt("prompt", prompt)
    guidance = check_guidance("guidance", or_paper("guidance", guidance))
    check_inversion(c, inversion)
    m = as_latent_mask(c, mask, inversion.latents)
    warn_if_empty_mask(m)
    cond, uncond = _embeddings(c, prompt, negative_prompt, guidance)
    scheduler, timesteps = _decoding_grid(c, inversion)  # the inversion's timesteps, reversed
    # from z_r, each step: y = ddim_step(y, ε̂(y, t, Q), ᾱ_t, ᾱ_{t−1}), then y = blend(y, x_{t−1}, M)
    return ddim_decode(c, inversion.latents, timesteps, scheduler, cond, uncond, guidance, mask=m,
                       encoded=inversion.trajectory, callback=callback, progress=progress, desc="DiffEdit decoding")


def masked_denoise_many(
    c: Components,
    inversion: Inversion,
    masks: list,
    prompts: list,
    *,
    negative_prompt: str | list | torch.Tensor | None = None,
    guidance: float | None = None,
    callback: Callable[[int, int, torch.Tensor], None] | None = None,
    progress: bool = True,
) -> list[DenoiseResult]:
    """:func:`masked_denoise` of several queries on one inversion, in one batch: result ``k``
    decodes ``prompts[k]`` with ``masks[k]``.

    K queries make one UNet call of 2K rows per step instead of K calls of 2 rows; on a CPU a
    10-row call costs about 60 % per row of a 2-row call. The numbers are those of K separate
    :func:`masked_denoise` calls up to the UNet's float rounding for another batch size (~1e-6).
    """
    if len(masks) != len(prompts) or not prompts:
        raise ValueError(f"`masks` and `prompts` must be non-empty lists of the same length, got {len(masks)} "
                         f"and {len(prompts)}.")
    guidance = check_guidance("guidance", or_paper("guidance", guidance))
    check_inversion(c, inversion)
    batch = inversion.latents.shape[0]
    parts = []
    for mask, prompt in zip(masks, prompts):
        check_prompt("prompt", prompt)
        m = as_latent_mask(c, mask, inversion.latents)
        warn_if_empty_mask(m)
        parts.append(m.expand(batch, -1, -1, -1))
    cond = torch.cat([encode_prompt(c, p).expand(batch, -1, -1) for p in prompts])
    _, uncond = _embeddings(c, prompts[0], negative_prompt, guidance)
    result = _masked_decoding(c, inversion, torch.cat(parts), cond, uncond, guidance, callback, progress, len(prompts))
    rows = [slice(k * batch, (k + 1) * batch) for k in range(len(prompts))]
    return [DenoiseResult(latents=result.latents[r], trajectory=result.trajectory[:, r], timesteps=result.timesteps,
                          mask=result.mask[r]) for r in rows]


def _decoding_grid(c: Components, inversion: Inversion):
    """A fresh scheduler and the denoising timesteps of ``inversion``'s ``steps`` and ``strength``
    (with a warning if they are not its timesteps reversed)."""
    scheduler, _ = fresh_schedulers(c)
    timesteps = denoising_timesteps(scheduler, inversion.steps, inversion.strength)
    if not torch.equal(timesteps.flip(0).cpu(), inversion.timesteps.cpu()):
        warnings.warn(
            "the denoising timesteps are not the inversion timesteps reversed: the blend mixes different noise levels.",
            UserWarning,
            stacklevel=3,
        )
    return scheduler, timesteps


def _masked_decoding(c, inversion: Inversion, m, cond, uncond, guidance, callback, progress, copies: int):
    """The decoding of :func:`masked_denoise_many`: ``copies`` queries stacked target-major."""
    scheduler, timesteps = _decoding_grid(c, inversion)
    encoded = inversion.trajectory.repeat(1, copies, 1, 1, 1)
    return ddim_decode(c, encoded[-1], timesteps, scheduler, cond, uncond, guidance, mask=m, encoded=encoded,
                       callback=callback, progress=progress, desc="DiffEdit decoding")


def encode_decode(c: Components, inversion: Inversion, prompt: str | list | torch.Tensor, *,
                  guidance: float | None = None, progress: bool = True) -> DenoiseResult:
    """Baseline "encode–decode": denoise the DDIM-encoded ``z_r`` with ``Q`` everywhere (no mask)."""
    check_prompt("prompt", prompt)
    guidance = check_guidance("guidance", or_paper("guidance", guidance))
    check_inversion(c, inversion)
    scheduler, _ = fresh_schedulers(c)
    timesteps = denoising_timesteps(scheduler, inversion.steps, inversion.strength)
    cond, uncond = _embeddings(c, prompt, "", guidance)
    return ddim_decode(c, inversion.latents, timesteps, scheduler, cond, uncond, guidance, progress=progress,
                       desc="encode-decode")


def sdedit(
    c: Components,
    latents: torch.Tensor | Image.Image | list,
    prompt: str | list | torch.Tensor,
    *,
    strength: float | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int | None = None,
    progress: bool = True,
) -> DenoiseResult:
    """Baseline SDEdit (img2img): ``z_t = √ᾱ_t·z0 + √(1−ᾱ_t)·ξ`` at strength ``r``, then DDIM with ``Q``.

    ``latents``: latents or image(s) (encoded with the VAE mean). Same draws as diffusers'
    img2img pipeline given latents and a generator seeded with ``seed``. ``strength`` is the
    encoding ratio's counterpart (default: the paper's ``encoding_ratio``).
    """
    check_prompt("prompt", prompt)
    steps = check_count("steps", or_paper("steps", steps))
    strength = check_strength("strength", or_paper("encoding_ratio", strength))
    guidance = check_guidance("guidance", or_paper("guidance", guidance))
    z0 = latents.to(c.device).float() if is_latents(c, latents) else encode(c, latents)
    scheduler, _ = fresh_schedulers(c)
    timesteps = denoising_timesteps(scheduler, steps, strength)
    from diffusers.utils.torch_utils import randn_tensor

    noise = randn_tensor(z0.shape, generator=make_generator(seed), device=z0.device, dtype=z0.dtype)
    z_t = scheduler.add_noise(z0, noise, timesteps[:1])
    cond, uncond = _embeddings(c, prompt, "", guidance)
    return ddim_decode(c, z_t, timesteps, scheduler, cond, uncond, guidance, progress=progress, desc="SDEdit")
