"""What every method returns, and DiffEdit's decoding driven by any mask.

A method's mask is a soft map ``A`` (B, h, w) in [0, 1] on the latent grid, cut at a
threshold ``τ``:

    M       = [A > τ]                      (``mask``, latent resolution, float 0/1)
    M_image = [up(A) > τ]                  (``mask_image``, image resolution; ``up`` bilinear)

— the same rule as DiffEdit's :meth:`~diffedit_lab.MaskResult.upsampled`, so masks of all
methods are cut between the cells in the same way. Intersecting two methods keeps a cell
only where both keep it: ``M_∩ = M_1 · M_2`` (at both resolutions).

:func:`edit_with_mask` decodes with any mask exactly as DiffEdit does (step 2 and 3 of the
paper): ``z_r = ddim_invert(z0, r)``, then ``ỹ_{t−1} = M·y_{t−1} + (1 − M)·x_{t−1}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from PIL import Image

from ..checks import check_threshold
from ..denoise import masked_denoise
from ..inversion import Inversion, ddim_invert
from ..latents import decode
from ..mask import upsample_and_threshold
from ..models import Components


@dataclass
class MethodResult:
    """One method's answer for a batch of ``B`` images.

    ``method``: its name; ``soft``: (B, h, w) the map ``A`` in [0, 1] before the cut (None if the
    method has none); ``mask``: (B, h, w) float 0/1 at latent resolution; ``mask_image``:
    (B, H, W) float 0/1 at image resolution; ``image``: the first edited image (PIL) and
    ``images`` all of them; ``latents``: the edited latents (None when the method decodes
    itself, as diffusers' LEDITS++ pipeline); ``details``: the method's own intermediate
    results (e.g. an :class:`~diffedit_lab.methods.AttentionMask`, a ``MaskResult``).
    """

    method: str
    mask: torch.Tensor
    mask_image: torch.Tensor
    image: Image.Image
    images: list
    soft: torch.Tensor | None = None
    masked_images: list | None = None
    latents: torch.Tensor | None = None
    details: dict = field(default_factory=dict)


def cut(soft: torch.Tensor, threshold: float, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``([A > τ], [up(A) > τ])`` for a soft map ``A`` (B, h, w); ``size`` = (H, W) of the image."""
    threshold = check_threshold("threshold", threshold)
    return (soft > threshold).float(), upsample_and_threshold(soft, threshold, size)


def intersect_masks(*masks: torch.Tensor) -> torch.Tensor:
    """``M_1 · M_2 · …``: the cells kept by every mask (same shapes, float 0/1)."""
    if len(masks) < 2:
        raise ValueError(f"intersect_masks needs at least two masks, got {len(masks)}.")
    shapes = {tuple(m.shape) for m in masks}
    if len(shapes) != 1:
        raise ValueError(f"masks to intersect must have the same shape, got {sorted(shapes)}; "
                         "intersect latent masks with latent masks and image masks with image masks.")
    out = masks[0].float()
    for m in masks[1:]:
        out = out * m.float().to(out.device)
    return out


def edit_with_mask(c: Components, inversion_or_image, mask, target, *, encoding_ratio: float | None = None,
                   steps: int | None = None, guidance: float | None = None,
                   progress: bool = False) -> tuple[list, torch.Tensor]:
    """DiffEdit's decoding with a given ``mask`` (1 = edit): ``(images (PIL list), edited latents)``.

    ``inversion_or_image``: an :class:`~diffedit_lab.Inversion` (reused as is: its own
    ``strength``/``steps``) or image(s)/latents, then DDIM-encoded unconditionally (as the paper)
    to ``encoding_ratio`` in ``steps``. Settings left ``None``: the paper's (``EditSettings``). ``mask``: anything :func:`~diffedit_lab.as_latent_mask` takes.
    """
    if isinstance(inversion_or_image, Inversion):
        inversion = inversion_or_image
    else:
        inversion = ddim_invert(c, inversion_or_image, encoding_ratio=encoding_ratio, steps=steps, progress=progress)
    out = masked_denoise(c, inversion, mask, target, guidance=guidance, progress=progress)
    return decode(c, out.latents), out.latents
