"""Step 2 of DiffEdit: deterministic DDIM *encoding* of the input up to the encoding ratio ``r``.

DDIM's update is deterministic, so it can be run backwards. From level ``ᾱ_s`` to the next,
noisier level ``ᾱ_t`` (``t = s + 1000/steps``):

    ẑ0  = (z_s − √(1 − ᾱ_s) · ε̂) / √ᾱ_s                   (predicted clean latent)
    z_t = √ᾱ_t · ẑ0 + √(1 − ᾱ_t) · ε̂,      ε̂ = ε̂(z_s, t, c)

— the noise is predicted at the *target* timestep ``t`` from the latent at level ``s``
(the usual approximation, as in Null-text inversion). The paper encodes with the
**unconditional** model (``prompt=""``, no guidance); a caption and ``guidance > 1`` are
options (diffusers' ``invert`` defaults to guidance 7.5).

**Timestep alignment (checked, diffusers 0.42).** With Stable Diffusion's config
(``timestep_spacing="leading"``, ``steps_offset=1``) and 50 steps, ``DDIMInverseScheduler``
uses timesteps 1, 21, …, 981; its first step starts from "level −19", for which it uses
``alphas_cumprod[0]`` (``set_alpha_to_one=False``) — exactly the level at which
``DDIMScheduler``'s last step ends. So the k-th inverted latent is at the noise level the
denoising loop reaches after ``T − k`` steps, and the inverse timesteps are the denoising
timesteps reversed (tests/test_inversion.py checks both). The first inverse step is where the
approximation is worst (diffusers #5145 moved its UNet timestep from −19 to 1). With
``timestep_spacing="trailing"`` and a number of steps that does not divide 1000, the schedulers'
step size (``1000 // steps``) and their timestep grid (rounded) disagree by one timestep now
and then, in both directions (diffusers #10695/#11347) — :func:`~diffedit_lab.denoise.masked_denoise`
warns if the timesteps do not mirror each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from .checks import check_count, check_finite, check_guidance, check_prompt, check_strength
from .latents import encode, encode_prompt, is_latents
from .models import Components, fingerprint, fresh_schedulers
from .sampling import (
    ddim_inverse_step,
    guided_noise,
    inversion_timesteps,
    model_prediction,
    noise_levels,
    progress_bar,
    unet_caller,
)
from .settings import or_paper, renamed

if TYPE_CHECKING:
    from diffusers import DDIMInverseScheduler


@dataclass
class Inversion:
    """A DDIM encoding trajectory.

    ``trajectory``: (T + 1, B, C, h, w) — ``z0`` (the clean latents) first, then the latent after
    each of the ``T = ⌊steps·strength⌋`` inverse steps; ``trajectory[k]`` is at the noise level of
    ``timesteps[k − 1]``. ``timesteps``: (T,) increasing. ``steps``/``strength`` define the DDIM
    grid; the denoising loop reads them from here so they can never disagree (diffusers #5465).
    """

    trajectory: torch.Tensor
    timesteps: torch.Tensor
    steps: int
    strength: float
    prompt_embeds: torch.Tensor
    guidance: float
    fingerprint: str = ""  # models.fingerprint of the components that made it ("" = unknown)

    @property
    def z0(self) -> torch.Tensor:
        """The clean latents that were encoded, (B, C, h, w)."""
        return self.trajectory[0]

    @property
    def latents(self) -> torch.Tensor:
        """The noisiest latents ``z_r`` where denoising starts, (B, C, h, w)."""
        return self.trajectory[-1]

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    def to_diffusers(self) -> torch.Tensor:
        """The trajectory as diffusers' ``invert()`` returns it: (B, T, C, h, w), noisiest first, no ``z0``."""
        return self.trajectory[1:].flip(0).transpose(0, 1)


@torch.inference_mode()
def ddim_invert(
    c: Components,
    latents: torch.Tensor | Image.Image | list,
    prompt: str | list | torch.Tensor = "",
    *,
    encoding_ratio: float | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    negative_prompt: str | list | torch.Tensor = "",
    seed: int | None = None,
    progress: bool = True,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    **deprecated: Any,
) -> Inversion:
    """Deterministic DDIM encoding of ``latents`` (or images) through ``⌊steps·r⌋`` steps,
    ``r = encoding_ratio``; settings left ``None``: the paper's (``EditSettings()``; ``guidance``
    is its ``inversion_guidance``).

    ``prompt``/``guidance``: the condition of ``ε̂`` (default: unconditional, as the paper).
    ``latents`` may also be image(s): they are encoded first — with the VAE mean, or a sample
    drawn with ``seed`` if one is given (diffusers' ``invert`` samples). The loop itself is
    deterministic. ``callback(i, t, z_t)`` after inverse step ``i``. ``strength``: the old
    name of ``encoding_ratio`` (deprecated).
    """
    encoding_ratio = _encoding_ratio(encoding_ratio, deprecated)
    check_prompt("prompt", prompt)
    steps = check_count("steps", or_paper("steps", steps))
    encoding_ratio = check_strength("encoding_ratio", encoding_ratio)
    guidance = check_guidance("guidance", or_paper("inversion_guidance", guidance))
    z = (check_finite("latents", latents.to(c.device).float()) if is_latents(c, latents)
         else encode(c, latents, seed=seed, sample=seed is not None))
    cond = encode_prompt(c, prompt)
    uncond = encode_prompt(c, negative_prompt) if guidance > 1 else None
    _, inverse = fresh_schedulers(c)
    timesteps = inversion_timesteps(inverse, steps, encoding_ratio)
    trajectory = ddim_encode(c, z, timesteps, inverse, cond, uncond, guidance, callback=callback, progress=progress)
    return Inversion(
        trajectory=trajectory,
        timesteps=timesteps.cpu(),
        steps=steps,
        strength=encoding_ratio,
        prompt_embeds=cond,
        guidance=guidance,
        fingerprint=fingerprint(c),
    )


def check_inversion(c: Components, inversion: Inversion) -> None:
    """Refuse an :class:`Inversion` made with other components (its latents mean nothing to ``c``)."""
    if not isinstance(inversion, Inversion):
        raise TypeError(f"`inversion` must be an Inversion (from ddim_invert), got {type(inversion).__name__}.")
    check_finite("inversion", inversion.trajectory)
    if inversion.fingerprint and inversion.fingerprint != fingerprint(c):
        raise ValueError(
            "`inversion` was made with other components (another model, or other weights): "
            "run ddim_invert with these components."
        )


@torch.inference_mode()
def ddim_encode(
    c: Components,
    z: torch.Tensor,
    timesteps: torch.Tensor,
    inverse_scheduler: DDIMInverseScheduler,
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    guidance: float,
    *,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """The DDIM encoding loop: ``z_t = ddim_inverse_step(z_s, ε̂(z_s, t, c), ᾱ_s, ᾱ_t)`` over
    ``timesteps`` (increasing, ``inverse_scheduler`` set up for them); returns the trajectory
    (T + 1, B, C, h, w), ``z`` first. ``cond``: (1, L, D), or (B, L, D) — one text per latent.
    ``uncond``: the negative text's, or ``None`` (no guidance)."""
    trajectory, unet = [z], unet_caller(c)
    for i, t in enumerate(progress_bar(timesteps, progress, "DDIM inversion")):
        alpha_bar_s, alpha_bar_t = noise_levels(inverse_scheduler, t)
        eps, pred_x0 = model_prediction(inverse_scheduler, guided_noise(c, z, t, cond, uncond, guidance, unet=unet),
                                        z, alpha_bar_s)
        z = ddim_inverse_step(z, eps, alpha_bar_s, alpha_bar_t, pred_x0=pred_x0)
        trajectory.append(z)
        if callback is not None:
            callback(i, t, z)
    return torch.stack(trajectory)


def _encoding_ratio(encoding_ratio: float | None, deprecated: dict) -> float:
    """``encoding_ratio``, or the deprecated ``strength`` (warned about at the caller's caller)."""
    given = renamed(deprecated, stacklevel=4, names={"strength": "encoding_ratio"})
    unknown = set(given) - {"encoding_ratio"}
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {sorted(unknown)}")
    old = given.get("encoding_ratio")
    if old is not None and encoding_ratio is not None:
        raise TypeError("got both `strength` and `encoding_ratio`: pass only `encoding_ratio`.")
    value = encoding_ratio if encoding_ratio is not None else old
    return or_paper("encoding_ratio", value)
