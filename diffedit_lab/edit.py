"""The whole of DiffEdit in one call, and a cache for interactive exploration.

    z0 = encode(x)
    M  = noise_diff_mask(z0, R, Q)                         (step 1)
    z_r = ddim_invert(z0, r)                                (step 2)
    z0' = masked_denoise(z_r, M, Q)                         (step 3),   x' = decode(z0')

Settings left as ``None`` come from the model's recommended ``Components.defaults`` (its
``diffedit_lab.json``), else from :data:`LIBRARY_DEFAULTS` (the paper's / diffusers' values).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from .checks import check_prompt
from .denoise import masked_denoise
from .inversion import Inversion, ddim_invert
from .latents import decode, encode, is_latents
from .mask import MaskResult, noise_diff_mask
from .models import Components

LIBRARY_DEFAULTS = dict(
    n=10,  # noise draws averaged in the mask
    mask_strength=0.5,  # noise level of the mask (paper: ≤ 0.6)
    clamp_ratio=3.0,  # κ: clamp the difference map at κ × its mean
    threshold=0.5,  # τ: binarise the rescaled map
    strength=0.8,  # encoding ratio r
    steps=50,  # DDIM steps
    guidance=7.5,  # classifier-free guidance of the decoding (and the mask)
    inversion_guidance=1.0,  # the paper encodes unconditionally
)


def resolve_settings(c: Components, **given) -> dict:
    """``given`` with every ``None`` replaced by the model's default, else the library's."""
    return {k: v if v is not None else c.defaults.get(k, LIBRARY_DEFAULTS[k]) for k, v in given.items()}


@dataclass
class EditResult:
    """An edit and all its parts: ``image`` (the first edited image), ``images`` (all),
    ``mask``, ``inversion``, ``latents`` (the edited latents), ``trajectory`` (the decoding's),
    and ``settings`` (every value used)."""

    image: Image.Image
    images: list
    mask: MaskResult
    inversion: Inversion
    latents: torch.Tensor
    trajectory: torch.Tensor
    settings: dict


def edit(
    c: Components,
    image,
    source,
    target,
    *,
    n: int | None = None,
    mask_strength: float | None = None,
    clamp_ratio: float | None = None,
    threshold: float | None = None,
    strength: float | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    inversion_prompt="",
    inversion_guidance: float | None = None,
    seed: int | None = None,
    progress: bool = True,
) -> EditResult:
    """Edit ``image`` from ``source`` (reference text R, may be ``""``) to ``target`` (query Q).

    ``image``: image(s) or latents. The latents are the VAE mean (deterministic); ``seed``
    drives the mask's noise draws, the only randomness.
    """
    check_prompt("target", target, required=True)
    s = resolve_settings(
        c, n=n, mask_strength=mask_strength, clamp_ratio=clamp_ratio, threshold=threshold, strength=strength,
        steps=steps, guidance=guidance, inversion_guidance=inversion_guidance,
    )
    z0 = image.to(c.device).float() if is_latents(c, image) else encode(c, image)
    mask = noise_diff_mask(
        c, z0, source, target, n=s["n"], strength=s["mask_strength"], guidance=s["guidance"],
        clamp_ratio=s["clamp_ratio"], threshold=s["threshold"], seed=seed, steps=s["steps"], progress=progress,
    )
    inversion = ddim_invert(
        c, z0, inversion_prompt, strength=s["strength"], steps=s["steps"], guidance=s["inversion_guidance"],
        progress=progress,
    )
    result = masked_denoise(c, inversion, mask, target, guidance=s["guidance"], progress=progress)
    images = decode(c, result.latents)
    return EditResult(
        image=images[0],
        images=images,
        mask=mask,
        inversion=inversion,
        latents=result.latents,
        trajectory=result.trajectory,
        settings=dict(s, seed=seed, inversion_prompt=inversion_prompt, source=source, target=target),
    )
