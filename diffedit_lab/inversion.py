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

from dataclasses import dataclass

import torch

from .checks import check_count, check_finite, check_guidance, check_prompt, check_strength
from .latents import encode, encode_prompt, is_latents
from .models import Components, fingerprint, fresh_schedulers
from .sampling import guided_noise, inversion_timesteps, progress_bar, unet_caller


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
    latents,
    prompt="",
    *,
    strength: float = 0.8,
    steps: int = 50,
    guidance: float = 1.0,
    negative_prompt="",
    seed: int | None = None,
    progress: bool = True,
) -> Inversion:
    """Deterministic DDIM encoding of ``latents`` (or images) through ``⌊steps·strength⌋`` steps.

    ``prompt``/``guidance``: the condition of ``ε̂`` (default: unconditional, as the paper).
    ``latents`` may also be image(s): they are encoded first — with the VAE mean, or a sample
    drawn with ``seed`` if one is given (diffusers' ``invert`` samples). The loop itself is
    deterministic.
    """
    check_prompt("prompt", prompt)
    steps, strength = check_count("steps", steps), check_strength("strength", strength)
    guidance = check_guidance("guidance", guidance)
    z = (check_finite("latents", latents.to(c.device).float()) if is_latents(c, latents)
         else encode(c, latents, seed=seed, sample=seed is not None))
    cond = encode_prompt(c, prompt)
    uncond = encode_prompt(c, negative_prompt) if guidance > 1 else None
    _, inverse = fresh_schedulers(c)
    timesteps = inversion_timesteps(inverse, steps, strength)
    trajectory, unet = [z], unet_caller(c)
    for t in progress_bar(timesteps, progress, "DDIM inversion"):
        eps = guided_noise(c, z, t, cond, uncond, guidance, unet=unet)
        z = inverse.step(eps, t, z).prev_sample
        trajectory.append(z)
    return Inversion(
        trajectory=torch.stack(trajectory),
        timesteps=timesteps.cpu(),
        steps=steps,
        strength=strength,
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
