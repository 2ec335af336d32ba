"""What every DiffEdit step shares: which timesteps a strength covers, ε̂, and the DDIM update rules.

**Strength → timesteps.** With a DDIM schedule of ``steps`` timesteps ``t_1 > … > t_steps``,
a strength ``r`` keeps the last ``k = ⌊steps·r⌋`` of them: denoising starts at
``t_{steps−k+1}`` (noise level ``ᾱ_t``) and DDIM encoding stops there. This is diffusers'
``get_timesteps``/``get_inverse_timesteps`` rule, so a strength means the same in both.

**Classifier-free guidance** (Ho & Salimans 2022) of the denoiser ``ε_θ``:

    ε̂(z_t, t, c) = ε_θ(z_t, t, ∅) + w · (ε_θ(z_t, t, c) − ε_θ(z_t, t, ∅))

with ``∅`` the negative (by default the empty) text. For ``w ≤ 1`` we use ``ε_θ(z_t, t, c)``
alone and skip the unconditional branch (diffusers' convention: ``w = 1`` is exactly that).
For v-prediction models ``ε_θ`` stands for the model output (``v``); :func:`model_prediction`
converts it to ε (and ẑ0) before the update rules.

**The DDIM step** (Song et al. 2021, η = 0) from noise level ``ᾱ_t`` to ``ᾱ_prev``:

    ẑ0     = (z_t − √(1 − ᾱ_t) · ε̂) / √ᾱ_t                (the predicted clean latent)
    z_prev = √ᾱ_prev · ẑ0 + √(1 − ᾱ_prev) · ε̂

It is deterministic, so run from a cleaner level ``s`` to a noisier ``t`` it *encodes*
(:func:`ddim_inverse_step`, DDIM inversion). Both are written with the operations of diffusers'
``DDIMScheduler.step``/``DDIMInverseScheduler.step`` in the same order, so the numbers are the
same to the last bit; :func:`noise_levels` reads ``ᾱ`` from the scheduler as they do.

Latents stay float32; only the UNet call runs in ``Components.dtype``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch

from . import fast_unet
from .models import Components

if TYPE_CHECKING:
    from diffusers import DDIMInverseScheduler, DDIMScheduler


def strength_steps(steps: int, strength: float) -> int:
    """``k = min(⌊steps·r⌋, steps)``: how many of the ``steps`` DDIM steps a strength ``r`` covers."""
    k = min(int(steps * strength), steps)
    if k < 1:
        raise ValueError(
            f"`strength`={strength} × `steps`={steps} covers no DDIM step: "
            f"use strength ≥ {1 / steps:.3g} or more steps."
        )
    return k


def denoising_timesteps(scheduler: DDIMScheduler, steps: int, strength: float) -> torch.Tensor:
    """The last ``k`` timesteps of the DDIM schedule, noisiest first (``scheduler`` is set up)."""
    scheduler.set_timesteps(steps)
    k = strength_steps(steps, strength)
    return scheduler.timesteps[steps - k :]


def inversion_timesteps(inverse_scheduler: DDIMInverseScheduler, steps: int, strength: float) -> torch.Tensor:
    """The first ``k`` timesteps of the inverse DDIM schedule, cleanest first."""
    inverse_scheduler.set_timesteps(steps)
    k = strength_steps(steps, strength)
    return inverse_scheduler.timesteps[:k]


UNetCall = Callable[[torch.Tensor, Any, torch.Tensor], torch.Tensor]


def takes_fast_unet(c: Components) -> bool:
    """Whether UNet calls of ``c`` go through :func:`~diffedit_lab.fast_unet.unet_forward` now."""
    return c.fast_unet and fast_unet.usable(c.unet)


def unet_caller(c: Components) -> UNetCall:
    """``ε_θ`` as a function ``(z_t, t, embeddings) ↦`` float32 prediction, for one loop of calls.

    Through :func:`~diffedit_lab.fast_unet.unet_forward` (the same numbers, less overhead) when
    ``c.fast_unet`` and the UNet allows it *now* (checked once here, not on every call), else
    through diffusers' ``UNet2DConditionModel``. The UNet runs in ``c.dtype``."""
    fast = takes_fast_unet(c)

    def eps(latents: torch.Tensor, t: torch.Tensor | int, embeddings: torch.Tensor) -> torch.Tensor:
        z, emb = latents.to(c.device, c.dtype), embeddings.to(c.device, c.dtype)
        out = fast_unet.unet_forward(c.unet, z, t, emb) if fast else c.unet(z, t, encoder_hidden_states=emb).sample
        return out.float()

    return eps


def unet_output(c: Components, latents: torch.Tensor, t: torch.Tensor | int, embeddings: torch.Tensor) -> torch.Tensor:
    """One UNet call ``ε_θ(z_t, t, c)`` on a batch (see :func:`unet_caller`)."""
    return unet_caller(c)(latents, t, embeddings)


def guided_noise(
    c: Components,
    latents: torch.Tensor,
    t: torch.Tensor | int,
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    guidance: float,
    *,
    unet: UNetCall | None = None,
) -> torch.Tensor:
    """``ε̂ = ε(∅) + w·(ε(c) − ε(∅))`` for a batch of latents; ``ε(c)`` alone if ``w ≤ 1``.

    ``cond``/``uncond``: (1, L, D) embeddings broadcast over the batch (or ``cond`` (B, L, D):
    one embedding per latent); both branches run in
    one UNet call on ``[z_t, z_t]`` with ``[∅, c]`` (as diffusers). ``unet``: a
    :func:`unet_caller` of ``c`` made once for a loop (default: a new one).
    """
    unet = unet or unet_caller(c)
    b = latents.shape[0]
    if guidance <= 1.0 or uncond is None:
        return unet(latents, t, cond.expand(b, -1, -1))
    emb = torch.cat([uncond.expand(b, -1, -1), cond.expand(b, -1, -1)])
    eps_uncond, eps_cond = unet(torch.cat([latents, latents]), t, emb).chunk(2)
    return classifier_free_guidance(eps_uncond, eps_cond, guidance)


def classifier_free_guidance(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, guidance: float) -> torch.Tensor:
    """``ε̂ = ε(∅) + w·(ε(c) − ε(∅))`` (Ho & Salimans 2022)."""
    return eps_uncond + guidance * (eps_cond - eps_uncond)


def ddim_step(z_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: float | torch.Tensor, alpha_bar_prev: float | torch.Tensor, *,
              pred_x0: torch.Tensor | None = None) -> torch.Tensor:
    """One deterministic DDIM step (η = 0) from level ``ᾱ_t`` to ``ᾱ_prev``:

        ẑ0     = (z_t − √(1 − ᾱ_t) · ε) / √ᾱ_t
        z_prev = √ᾱ_prev · ẑ0 + √(1 − ᾱ_prev) · ε

    ``ᾱ``: floats or 0-dim tensors. ``pred_x0``: ẑ0 when the model predicted it otherwise
    (v-prediction, a clipped ẑ0: see :func:`model_prediction`)."""
    if pred_x0 is None:
        pred_x0 = (z_t - (1 - alpha_bar_t) ** 0.5 * eps) / alpha_bar_t ** 0.5
    return alpha_bar_prev ** 0.5 * pred_x0 + (1 - alpha_bar_prev) ** 0.5 * eps


def ddim_inverse_step(z_s: torch.Tensor, eps: torch.Tensor, alpha_bar_s: float | torch.Tensor, alpha_bar_t: float | torch.Tensor, *,
                      pred_x0: torch.Tensor | None = None) -> torch.Tensor:
    """DDIM inversion: the same rule run from level ``ᾱ_s`` to the noisier level ``ᾱ_t``,

        ẑ0  = (z_s − √(1 − ᾱ_s) · ε) / √ᾱ_s
        z_t = √ᾱ_t · ẑ0 + √(1 − ᾱ_t) · ε

    (``ε`` predicted at ``t`` from ``z_s``: the usual approximation)."""
    return ddim_step(z_s, eps, alpha_bar_s, alpha_bar_t, pred_x0=pred_x0)


def noise_levels(scheduler: DDIMScheduler | DDIMInverseScheduler, t: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ᾱ_from, ᾱ_to)`` of the DDIM step ``scheduler`` makes at timestep ``t``.

    A ``DDIMScheduler`` (set up with its timesteps) steps down from ``t`` to ``t − 1000/steps``
    (``alphas_cumprod[0]``, or 1, below 0); a ``DDIMInverseScheduler`` steps up to ``t`` from
    ``t − 1000/steps`` (clipped to 999; ``alphas_cumprod[0]``, or 1, below 0) — as their ``step``."""
    delta = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    alphas = scheduler.alphas_cumprod
    if hasattr(scheduler, "initial_alpha_cumprod"):  # DDIMInverseScheduler
        s = min(t - delta, scheduler.config.num_train_timesteps - 1)
        return (alphas[s] if s >= 0 else scheduler.initial_alpha_cumprod), alphas[t]
    prev = t - delta
    return alphas[t], (alphas[prev] if prev >= 0 else scheduler.final_alpha_cumprod)


def model_prediction(scheduler: DDIMScheduler | DDIMInverseScheduler, output: torch.Tensor, z_t: torch.Tensor, alpha_bar_t: float | torch.Tensor):
    """``(ε, ẑ0)`` from the (guided) model output at level ``ᾱ_t``, as the scheduler's config reads it.

    ε-prediction: ``(output, None)`` — :func:`ddim_step` computes ẑ0. v-prediction:
    ``ε = √ᾱ·v + √(1−ᾱ)·z_t`` and ``ẑ0 = √ᾱ·z_t − √(1−ᾱ)·v``; ``sample``: ``ẑ0 = output``.
    A config that clips or thresholds ẑ0 gets it clipped here."""
    config = scheduler.config
    beta_t = 1 - alpha_bar_t
    if config.prediction_type == "epsilon":
        eps, pred_x0 = output, None
    elif config.prediction_type == "v_prediction":
        pred_x0 = (alpha_bar_t**0.5) * z_t - (beta_t**0.5) * output
        eps = (alpha_bar_t**0.5) * output + (beta_t**0.5) * z_t
    elif config.prediction_type == "sample":
        pred_x0 = output
        eps = (z_t - alpha_bar_t ** (0.5) * pred_x0) / beta_t ** (0.5)
    else:
        raise ValueError(f"prediction_type {config.prediction_type!r}: expected epsilon, v_prediction or sample")
    thresholding = getattr(config, "thresholding", False)
    if thresholding or config.clip_sample:
        if pred_x0 is None:
            pred_x0 = (z_t - beta_t ** (0.5) * output) / alpha_bar_t ** (0.5)
        if thresholding:
            pred_x0 = scheduler._threshold_sample(pred_x0)
        else:
            pred_x0 = pred_x0.clamp(-config.clip_sample_range, config.clip_sample_range)
    return eps, pred_x0


def progress_bar(iterable: Iterable, progress: bool, desc: str):
    """``tqdm.auto`` over ``iterable`` when ``progress`` is true, else the iterable itself."""
    if not progress:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False)
