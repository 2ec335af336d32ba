"""Step 1 of DiffEdit: a mask from the disagreement of two noise predictions.

Noise the input latents ``z0`` to strength ``s`` (timestep ``t``) with ``n`` independent draws,

    z_t^(i) = √ᾱ_t · z0 + √(1 − ᾱ_t) · ξ_i,          ξ_i ~ N(0, I),

predict the noise with the reference text ``R`` (source) and the query ``Q`` (target), and where
they disagree is what has to change:

    D^(i)  = mean_channels |ε̂(z_t^(i), t, Q) − ε̂(z_t^(i), t, R)|      (one map per draw)
    D      = (1/n) Σ_i D^(i)                                            (``difference``)
    D_c    = min(D, κ·mean(D))                                          (extremes removed, κ = clamp_ratio)
    D̃      = D_c / (κ·mean(D))                            (``normalized``, ``rescale="mean"``: diffusers)
    D̃      = (D_c − min D_c) / (max D_c − min D_c)        (``normalized``, ``rescale="range"``: the paper)
    M      = [D̃ > τ]                                                     (``mask``, τ = threshold)
    M      ← fill(M)        (optional, ``fill_holes``: cells of ∁M not 4-connected to the border join M,
                              when M covers less than half of the image)
    M      ← ε_k(fill(δ_k(M)))  (optional, ``close`` = k: dilate by k cells, fill, erode by k — a closing)

``mean(D)``, ``min`` and ``max`` are taken **per image**: adding an image to the batch never
changes another image's mask (diffusers takes the mean over the whole batch). κ, τ, the rescale
and ``fill_holes`` act on ``D`` only, so :meth:`MaskResult.rethreshold` is free — no model call.

**The rescale** (``rescale``): the paper says "remove extreme values …, rescale this difference to
the range [0, 1] and binarise with a threshold (0.5 default)"; diffusers (and this library by
default) divides by the clamp bound instead, so ``M = [D > κτ·mean(D)]`` — a cut relative to the
map's *mean*. That finds a small edited region (most of the map is low, the mean is low) but not a
large one: when a background edit changes ~95 % of the image, ``mean(D)`` is the background's own
level and the background is found only with ``κτ < 1``, which selects nearly everything for an
object edit. ``"range"`` cuts between the map's own lowest and (clamped) highest value, whatever
the size of the region: one setting for both kinds of edit.

**Holes and resolution** (not in the paper; off by default, as diffusers): when a shape changes and
its colour stays, ``D`` is a *ring* on the object's outline — inside, both texts agree on the colour
— so ``M`` can have a hole where the object is. ``fill_holes`` fills it: the edited region is the
whole object — when the ring is closed; where it is broken, ``close`` = k closes gaps of up to 2k
cells first (dilate M by k cells, fill, erode by k: what the dilation joined stays joined). A mask
that covers half of the image or more is not filled: its holes are not an object's inside but the
objects a background edit leaves (filled, they would be repainted too). ``M`` lives on the latent
grid (8× coarser than the image for Stable Diffusion); :meth:`MaskResult.upsampled` gives the finer
image-resolution mask ``[up(D̃) > τ]``, ``up`` bilinear — the same ``D̃`` and ``τ``, cut between the
cells (with ``fill_holes``/``close``: the cells they add to ``M`` set to 1 in ``D̃`` first, and the
result filled/closed again at image resolution, the radius ``k`` cells in pixels).

With the same negative text for both predictions, ``ε̂(Q) − ε̂(R) = w·(ε(Q) − ε(R))``: the guidance
scale ``w`` cancels in ``D̃``. For v-prediction models ``ε̂`` is the predicted ``v``; since
``ε = √ᾱ_t·v + √(1−ᾱ_t)·z_t`` with the same ``z_t`` for both texts, ``|Δε| = √ᾱ_t·|Δv|`` and ``D̃``
is the same.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .checks import check_flag, check_positive, check_prompt, check_radius, check_rescale, check_threshold, warn
from .latents import encode_prompt, is_latents, latent_distribution, make_generator, scale_latents
from .models import Components, fresh_schedulers
from .sampling import classifier_free_guidance, denoising_timesteps, unet_output
from .settings import PAPER, renamed


@dataclass
class MaskResult:
    """Every intermediate of the DiffEdit mask, for a batch of ``B`` images and ``n`` draws.

    Shapes: ``noisy_latents``, ``source_noise``, ``target_noise``: (B, n, C, h, w) — the noised
    latents ``z_t^(i)`` and the guided predictions ``ε̂(R)``, ``ε̂(Q)``; ``differences``:
    (B, n, h, w) the per-draw maps ``D^(i)``; ``difference``, ``normalized``, ``mask``: (B, h, w)
    — ``D``, ``D̃`` and the binary ``M`` (float 0/1) at latent resolution.
    """

    noisy_latents: torch.Tensor
    source_noise: torch.Tensor
    target_noise: torch.Tensor
    differences: torch.Tensor
    difference: torch.Tensor
    normalized: torch.Tensor
    mask: torch.Tensor
    clamp_ratio: float
    threshold: float
    strength: float  # the mask's noise level s (``mask_noise``)
    timestep: int
    guidance: float
    image_size: tuple[int, int]  # (width, height) of the encoded images
    fill_holes: bool = False
    rescale: str = "mean"  # how D is rescaled to [0, 1]: "mean" (diffusers) or "range" (the paper)
    close: int = 0  # closing radius of M in cells (0: off)

    @property
    def mask_noise(self) -> float:
        """The noise level ``s`` of the draws (the field ``strength``)."""
        return self.strength

    @property
    def n(self) -> int:
        return self.differences.shape[1]

    def rethreshold(self, clamp_ratio: float | None = None, threshold: float | None = None,
                    fill_holes: bool | None = None, rescale: str | None = None,
                    close: int | None = None) -> "MaskResult":
        """The same maps with a new ``κ`` (``clamp_ratio``), ``τ`` (``threshold``), ``fill_holes``,
        ``rescale`` and/or ``close``; no model call."""
        clamp_ratio = self.clamp_ratio if clamp_ratio is None else check_positive("clamp_ratio", clamp_ratio)
        threshold = self.threshold if threshold is None else check_threshold("threshold", threshold)
        fill_holes = self.fill_holes if fill_holes is None else check_flag("fill_holes", fill_holes)
        rescale = self.rescale if rescale is None else check_rescale("rescale", rescale)
        close = self.close if close is None else check_radius("close", close)
        normalized, mask = normalize_and_threshold(self.difference, clamp_ratio, threshold, fill_holes, rescale, close)
        return replace(self, normalized=normalized, mask=mask, clamp_ratio=clamp_ratio, threshold=threshold,
                       fill_holes=fill_holes, rescale=rescale, close=close)

    def first_draws(self, k: int) -> "MaskResult":
        """The mask of the first ``k`` draws only — what ``noise_diff_mask(n=k)`` gives with the
        same seed (the same draws); no model call."""
        if not 1 <= k <= self.n:
            raise ValueError(f"`k` must be in [1, {self.n}] (the draws this mask has), got {k!r}.")
        rest = dict(strength=self.strength, timestep=self.timestep, guidance=self.guidance, image_size=self.image_size)
        return _mask_result(self.noisy_latents[:, :k], self.source_noise[:, :k], self.target_noise[:, :k],
                            clamp_ratio=self.clamp_ratio, threshold=self.threshold, fill_holes=self.fill_holes,
                            rescale=self.rescale, close=self.close, **rest)

    def upsampled(self, size: tuple[int, int] | None = None) -> torch.Tensor:
        """The mask at image resolution, (B, H, W) float 0/1: ``[up(D̃) > τ]`` with ``up`` the
        bilinear upsampling of ``D̃`` to ``size`` (width, height; default the encoded image size);
        with ``fill_holes``/``close``, the cells they add to ``M`` count as 1 in ``D̃`` and the result is
        filled/closed again (:func:`upsample_and_threshold`). Finer than ``M`` with each cell made a block."""
        width, height = size or self.image_size
        return upsample_and_threshold(self.normalized, self.threshold, (height, width), self.fill_holes, self.close)

    def to_image(self, size: tuple[int, int] | None = None, index: int = 0) -> Image.Image:
        """Mask ``index`` as a black/white (0/255, mode "L") PIL image, nearest-upsampled to ``size``
        (width, height; default: the encoded image size) — ready for an inpainting pipeline."""
        arr = (self.mask[index].cpu().numpy() > 0).astype(np.uint8) * 255
        return Image.fromarray(arr, mode="L").resize(tuple(size or self.image_size), resample=Image.NEAREST)


DIFFERENCE_FLOOR = 1e-4
"""``mean(D)`` at or below this is rounding noise, not a difference: ``D̃ = 0``, the mask is
empty and a warning says that nothing differs (identical texts give ~1e-6 in float32)."""


def noise_difference(source_noise: torch.Tensor, target_noise: torch.Tensor) -> torch.Tensor:
    """``D = (1/n) Σ_i mean_c |ε̂(z_t^(i), t, Q) − ε̂(z_t^(i), t, R)|``: (B, n, C, h, w) twice → (B, h, w).

    Over draws and channels at once, as diffusers."""
    return (target_noise - source_noise).abs().mean([1, 2])


def normalize_and_threshold(difference: torch.Tensor, clamp_ratio: float, threshold: float,
                            fill: bool = False, rescale: str = "mean", close: int = 0):
    """``D_c = min(D, κ·mean(D))``, rescaled to ``D̃`` in [0, 1], and ``M = [D̃ > τ]`` (its holes
    filled when ``fill``, closed over ``close`` cells: :func:`refine`); mean, min and max per image. ``rescale="mean"`` (diffusers):
    ``D̃ = D_c / (κ·mean(D))``; ``"range"`` (the paper): ``D̃ = (D_c − min D_c) / (max D_c − min D_c)``.
    Safe, never 0/0 = NaN: an image whose ``mean(D) ≤`` :data:`DIFFERENCE_FLOOR` gets ``D̃ = 0``
    (with a warning); with ``"mean"``, a bound ``κ·mean(D)`` that underflows to 0 gives
    ``D̃ = [D > 0]`` (its limit); with ``"range"``, a flat ``D_c`` (``max D_c = min D_c``: nothing
    stands out) gives ``D̃ = 0``, an empty mask."""
    check_rescale("rescale", rescale)
    d = difference.clamp(min=0)
    mean = d.flatten(1).mean(1).view(-1, 1, 1)
    bound = mean * clamp_ratio
    if rescale == "range":
        clamped = torch.minimum(d, bound)  # D_c = min(D, κ·mean(D))
        low = clamped.flatten(1).amin(1).view(-1, 1, 1)
        span = clamped.flatten(1).amax(1).view(-1, 1, 1) - low
        normalized = (clamped - low) / torch.where(span > 0, span, 1)  # D̃ = (D_c − min D_c) / (max D_c − min D_c)
        normalized = torch.where(span > 0, normalized, torch.zeros_like(normalized))  # flat: D̃ = 0
    else:  # D̃ = min(D, κ·mean(D)) / (κ·mean(D)), and [D > 0] where the bound underflows
        normalized = torch.where(bound > 0, torch.minimum(d, bound) / torch.where(bound > 0, bound, 1),
                                 (d > 0).to(d.dtype))
    still = mean <= DIFFERENCE_FLOOR
    if bool(still.any()):
        normalized = torch.where(still, torch.zeros_like(normalized), normalized)
        warn(f"source and target give the same noise predictions (mean difference {float(mean.min()):.2g} ≤ "
             f"{DIFFERENCE_FLOOR:g}) for {int(still.sum())} image(s): nothing differs, the mask is empty. "
             "Use a target text that names the change.")
    mask = (normalized > threshold).float()
    return normalized, refine(mask, fill, close)


def upsample_and_threshold(normalized: torch.Tensor, threshold: float, size: tuple[int, int],
                           fill: bool = False, close: int = 0) -> torch.Tensor:
    """``[up(D̃) > τ]`` (B, H, W) float 0/1, ``up`` bilinear to ``size`` = (H, W) — the mask at
    image resolution. With ``fill``/``close``, the cells they add to the latent mask are first set
    to 1 in ``D̃`` (upsampling must not reopen a ring closed on the latent grid), and the result is
    filled/closed again, the radius ``close`` cells in pixels of ``size``; whether an image is filled
    at all (:func:`fill_holes`'s half-image rule) is decided once, on the latent ``M``, so the two
    resolutions agree."""
    check_radius("close", close)
    latent = (normalized > threshold).float()  # M
    if fill or close:
        normalized = torch.maximum(normalized, refine(latent, fill, close) - latent)
    up = F.interpolate(normalized[:, None].float(), size=tuple(size), mode="bilinear", align_corners=False)
    mask = (up[:, 0] > threshold).float()
    cell = round(size[0] / normalized.shape[-2])  # pixels per latent cell
    return refine(mask, fill, close * cell, share_of=latent)  # filled iff M is


HOLES_FILLED_BELOW = 0.5  # fill_holes fills a mask that covers less than this share of its image


def refine(mask: torch.Tensor, fill: bool = False, close: int = 0,
           share_of: torch.Tensor | None = None) -> torch.Tensor:
    """``mask`` (B, h, w) float 0/1 with its holes filled (``fill``) and closed over ``close``
    cells: ``ε_k(fill(δ_k(M)))`` with ``δ_k``/``ε_k`` the dilation/erosion by a (2k+1)² square —
    gaps of up to 2k cells join, and what the dilation joined stays joined. Never removes a cell.
    ``share_of`` (default ``mask``, before the dilation) decides which images are filled (:func:`fill_holes`)."""
    share_of = mask if share_of is None else share_of
    if not close:
        return fill_holes(mask, share_of=share_of) if fill else mask
    k = 2 * close + 1
    dilated = F.max_pool2d(mask[:, None], k, stride=1, padding=close)[:, 0]  # δ_k(M)
    if fill:
        dilated = fill_holes(dilated, share_of=share_of)
    closed = 1 - F.max_pool2d(1 - dilated[:, None], k, stride=1, padding=close)[:, 0]  # ε_k: off the border only
    return torch.maximum(closed, mask)


def fill_holes(mask: torch.Tensor, share_of: torch.Tensor | None = None) -> torch.Tensor:
    """``mask`` (B, h, w) float 0/1 with its holes filled: a 0-cell stays 0 only if a path of
    0-cells, stepping up/down/left/right, joins it to the border (flood fill from the border).

    Only a mask that covers less than half of its image is filled (``share_of``: the mask whose
    share decides, e.g. ``M`` before a dilation or at the latent resolution; default ``mask``): a hole in a small region is the
    inside of an object whose outline changed; the holes of a mask that covers most of the image
    (a new background) are the objects the edit leaves, and they stay out of it."""
    share = (mask if share_of is None else share_of).mean((-2, -1), keepdim=True)
    small = share < HOLES_FILLED_BELOW
    if not bool(small.any()):  # every mask covers half of its image or more: nothing to fill
        return mask
    free = 1 - mask
    outside = torch.zeros_like(mask)
    outside[:, [0, -1], :], outside[:, :, [0, -1]] = free[:, [0, -1], :], free[:, :, [0, -1]]
    while True:
        p = F.pad(outside, (1, 1, 1, 1))
        grown = torch.maximum(outside, torch.stack(
            [p[:, :-2, 1:-1], p[:, 2:, 1:-1], p[:, 1:-1, :-2], p[:, 1:-1, 2:]]).amax(0)) * free
        if torch.equal(grown, outside):
            return torch.where(small, 1 - outside, mask)
        outside = grown


@torch.inference_mode()
def noised_draws(c: Components, image_or_latents: torch.Tensor | Image.Image | list, n: int, t: torch.Tensor | int, generator: torch.Generator | None) -> torch.Tensor:
    """``z_t^(i)`` for ``n`` draws per image, (B·n, C, h, w), images-major.

    From an image the VAE latent is itself *sampled* once per draw, then noised — the order in
    which diffusers' ``generate_mask`` uses the generator, so the same seed gives the same draws.
    From latents, ``z0`` is repeated.
    """
    scheduler, _ = fresh_schedulers(c)
    if is_latents(c, image_or_latents):
        z0 = image_or_latents.to(c.device).float().repeat_interleave(n, dim=0)
    else:
        from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

        dist = latent_distribution(c, image_or_latents)
        draws = DiagonalGaussianDistribution(dist.parameters.repeat_interleave(n, dim=0))
        z0 = scale_latents(c, draws.sample(generator))
    from diffusers.utils.torch_utils import randn_tensor

    noise = randn_tensor(z0.shape, generator=generator, device=z0.device, dtype=z0.dtype)
    return scheduler.add_noise(z0, noise, t.reshape(1))


def noise_diff_mask(
    c: Components,
    image_or_latents: torch.Tensor | Image.Image | list,
    source: str | list | torch.Tensor,
    target: str | list | torch.Tensor,
    *,
    n: int | None = None,
    mask_noise: float | None = None,
    guidance: float | None = None,
    clamp_ratio: float | None = None,
    threshold: float | None = None,
    fill_holes: bool | None = None,
    rescale: str | None = None,
    close: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    source_negative_prompt: str | list | torch.Tensor = "",
    target_negative_prompt: str | list | torch.Tensor = "",
    steps: int | None = None,
    progress: bool = True,
    **deprecated: Any,
) -> MaskResult:
    """DiffEdit's mask ``M = [D̃ > τ]`` of the images for editing ``source`` (R) into ``target`` (Q).

    ``image_or_latents``: image(s) (see :func:`~diffedit_lab.latents.load_image`) or latents
    (B, C, h, w). ``mask_noise``: the noise level ``s`` (the paper: ≤ 0.6 works best), taken on
    the DDIM grid of ``steps`` steps (``t`` = 481 for s = 0.5, 50 steps — as diffusers).
    ``guidance``: ``w`` of :func:`~diffedit_lab.sampling.guided_noise` (cancels in the mask
    when both negative texts are equal). ``source`` may be ``""``; ``target`` may not.
    Two UNet calls: the source branch ``[∅, R]`` and the target branch ``[Q]`` × n draws (3n
    rows; ``[∅_Q, Q]``, 4n in all, if the two negative texts differ; ``[R]`` and ``[Q]``, 2n,
    if ``w ≤ 1``). The source branch does not depend on the target: :class:`~diffedit_lab.EditSession`
    keeps it for the next target. ``fill_holes``: fill the holes of ``M``; ``close``: close it over
    gaps of up to 2·close cells first; ``rescale``: ``"mean"``
    (diffusers) or ``"range"`` (the paper) — how ``D`` is rescaled to [0, 1] (see the module doc).
    ``progress``: a bar over the UNet calls (the source and target branches). Settings left ``None``:
    the paper's (:class:`~diffedit_lab.settings.EditSettings`), checked there. ``strength``: the
    old name of ``mask_noise`` (deprecated).
    """
    given = renamed(deprecated, stacklevel=2, names={"strength": "mask_noise"})
    if set(given) - {"mask_noise"}:
        raise TypeError(f"noise_diff_mask() got unexpected keyword argument(s) {sorted(set(given) - {'mask_noise'})}")
    check_prompt("source", source)
    check_prompt("target", target, required=True)
    s = PAPER.replace(n=n, mask_noise=mask_noise if mask_noise is not None else given.get("mask_noise"),
                      guidance=guidance, clamp_ratio=clamp_ratio, threshold=threshold, fill_holes=fill_holes,
                      rescale=rescale, close=close, steps=steps)
    t, z_t = mask_draws(c, image_or_latents, s.n, s.mask_noise, s.steps, make_generator(seed, generator))
    result, _, _ = mask_from_draws(
        c, z_t, t, s.n, source, target, source_negative_prompt=source_negative_prompt,
        target_negative_prompt=target_negative_prompt, guidance=s.guidance, clamp_ratio=s.clamp_ratio,
        threshold=s.threshold, mask_noise=s.mask_noise, fill_holes=s.fill_holes, rescale=s.rescale,
        close=s.close, progress=progress,
    )
    return result


def mask_draws(c: Components, image_or_latents: torch.Tensor | Image.Image | list, n: int, mask_noise: float,
               steps: int, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The mask's timestep ``t`` (``s`` on the DDIM grid) and its ``n`` noised draws per image."""
    t = denoising_timesteps(fresh_schedulers(c)[0], steps, mask_noise)[0]
    return t, noised_draws(c, image_or_latents, n, t, generator)


def mask_from_draws(
    c: Components,
    z_t: torch.Tensor,
    t: torch.Tensor | int,
    n: int,
    source: str | list | torch.Tensor,
    target: str | list | torch.Tensor,
    *,
    clamp_ratio: float,
    threshold: float,
    mask_noise: float,
    guidance: float,
    source_negative_prompt: str | list | torch.Tensor = "",
    target_negative_prompt: str | list | torch.Tensor = "",
    fill_holes: bool = False,
    rescale: str = "mean",
    close: int = 0,
    source_predictions: torch.Tensor | None = None,
    target_predictions: torch.Tensor | None = None,
    progress: bool = False,
) -> tuple[MaskResult, torch.Tensor, torch.Tensor]:
    """The mask from given draws ``z_t`` (B·n, C, h, w); returns it and the raw predictions of
    the source and target branches, which a later call can pass back as ``source_predictions``
    / ``target_predictions`` (from the same draws, texts and ``guidance > 1``-ness). ``progress``:
    a bar over the UNet calls still to make. ``rescale``, ``close``: see :func:`normalize_and_threshold`."""
    check_rescale("rescale", rescale)
    check_radius("close", close)
    from tqdm.auto import tqdm

    guided = guidance > 1
    calls = (source_predictions is None) + (target_predictions is None)
    bar = tqdm(total=calls, desc="DiffEdit mask", leave=False, disable=not progress or not calls)
    if source_predictions is None:
        source_predictions = _branch(c, z_t, t, [source_negative_prompt, source] if guided else [source])
        bar.update()
    share = not guided or _same_text(source_negative_prompt, target_negative_prompt)
    target_raw = target_predictions
    if target_raw is None:
        if share and _same_text(source, target):  # the very same text: the same predictions, D = 0 exactly
            target_raw = source_predictions[-1:]
        else:
            target_raw = _branch(c, z_t, t, [target] if share else [target_negative_prompt, target])
        bar.update()
    bar.close()
    if guided:
        uncond_q = source_predictions[0] if share else target_raw[0]
        source_noise = classifier_free_guidance(source_predictions[0], source_predictions[1], guidance)
        target_noise = classifier_free_guidance(uncond_q, target_raw[-1], guidance)
    else:
        source_noise, target_noise = source_predictions[0], target_raw[0]
    batch = z_t.shape[0] // n
    shape = (batch, n, *z_t.shape[1:])
    result = _mask_result(z_t.reshape(shape), source_noise.reshape(shape), target_noise.reshape(shape),
                          clamp_ratio=clamp_ratio, threshold=threshold, fill_holes=bool(fill_holes),
                          rescale=rescale, close=close, strength=mask_noise, timestep=int(t), guidance=guidance,
                          image_size=(z_t.shape[-1] * c.vae_scale_factor, z_t.shape[-2] * c.vae_scale_factor))
    return result, source_predictions, target_raw


def _mask_result(noisy_latents: torch.Tensor, source_noise: torch.Tensor, target_noise: torch.Tensor, *,
                 clamp_ratio: float, threshold: float, fill_holes: bool, rescale: str = "mean", close: int = 0,
                 **rest: Any) -> MaskResult:
    """The maps ``D^(i)``, ``D``, ``D̃`` and ``M`` of (B, n, C, h, w) predictions."""
    delta = (target_noise - source_noise).abs()
    difference = noise_difference(source_noise, target_noise)  # D
    normalized, mask = normalize_and_threshold(difference, clamp_ratio, threshold, fill_holes, rescale, close)
    return MaskResult(noisy_latents=noisy_latents, source_noise=source_noise, target_noise=target_noise,
                      differences=delta.mean(2), difference=difference, normalized=normalized, mask=mask,
                      clamp_ratio=clamp_ratio, threshold=threshold, fill_holes=fill_holes, rescale=rescale,
                      close=close, **rest)


def _same_text(a, b) -> bool:
    """The same negative text (the very same embedding tensor counts too)."""
    return a is b or (isinstance(a, str) and isinstance(b, str) and a == b)


@torch.inference_mode()
def _branch(c: Components, z_t: torch.Tensor, t, texts: list) -> torch.Tensor:
    """``ε(z_t, t, x)`` for every text ``x`` and every draw, in one UNet call: (len(texts), B·n, C, h, w).

    One call per branch (never the source and target rows together), so a cached source branch
    and a recomputed one are the same numbers: the UNet's float rounding can depend on the batch.
    """
    emb = torch.cat([encode_prompt(c, x) for x in texts]).repeat_interleave(z_t.shape[0], dim=0)
    out = unet_output(c, z_t.repeat(len(texts), 1, 1, 1), t, emb)
    return out.reshape(len(texts), *z_t.shape)
