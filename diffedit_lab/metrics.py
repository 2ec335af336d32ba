"""How good is an edit? Mask IoU, and how well the background outside the edit is kept.

Everything is vectorised over a leading batch axis and accepts numpy arrays, torch tensors
or PIL images. Masks are (B, H, W) or (H, W); images (B, H, W, 3), (H, W, 3), (B, 3, H, W)
torch tensors, or PIL, either uint8 in [0, 255] or floating point in [0, 1] (both are
brought to [0, 1]). A batch gives a (B,) array; a single item gives a float.

- ``mask_iou``: ``IoU(P, T) = |P ∩ T| / |P ∪ T|`` (1 when both are empty).
- ``background_psnr``: ``PSNR = 10 · log10(1 / MSE)`` in dB, with the MSE over the pixels
  (and channels) outside the region dilated by ``dilate`` px.
- ``background_ssim``: SSIM (Wang et al., 2004) with a Gaussian window whose statistics are
  taken over the outside pixels only, averaged over the outside pixels (:func:`ssim_map`).
- ``roundtrip_psnr``: how well the model's autoencoder can represent an image at all,
  ``PSNR(x, D(E(x)))`` — the ceiling of every "keep the background" figure (:func:`representability`).
"""

from __future__ import annotations

from typing import Any

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

SSIM_C1 = 0.01**2  # (K1 · L)² with L = 1
SSIM_C2 = 0.03**2  # (K2 · L)²


# --------------------------------------------------------------------------- inputs


def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, Image.Image):
        return np.asarray(x)
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def as_images(x: Any) -> tuple[np.ndarray, bool]:
    """``(images (B, H, W, C) float64 in [0, 1], was_batched)``.

    uint8 is divided by 255; floats are taken as [0, 1]. Torch tensors with 1 or 3 channels
    first, (…, C, H, W), are moved to channels last; a (H, W) array is one grey image."""
    arr = _numpy(x)
    if isinstance(x, torch.Tensor) and arr.ndim >= 3 and arr.shape[-3] in (1, 3):
        arr = np.moveaxis(arr, -3, -1)
    if arr.ndim == 2:
        arr = arr[..., None]
    batched = arr.ndim == 4
    if not batched:
        arr = arr[None]
    arr = arr.astype(np.float64) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float64)
    return arr, batched


def as_masks(m: Any) -> tuple[np.ndarray, bool]:
    """``(masks (B, H, W), was_batched)``: PIL masks are read as ``value > 127``; a (B, 1, H, W)
    tensor loses its channel axis."""
    arr = _numpy(m)
    if isinstance(m, Image.Image):
        arr = np.asarray(m.convert("L")) > 127
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    batched = arr.ndim == 3
    return (arr if batched else arr[None]), batched


def _out(values: np.ndarray, batched: bool):
    return values if batched else float(values[0])


# --------------------------------------------------------------------------- masks


def is_binary(m: np.ndarray) -> bool:
    """True for bool arrays and arrays whose values are all 0 or 1."""
    return m.dtype == bool or bool(np.isin(m, (0, 1)).all())


def upsample_mask(m: np.ndarray, size: tuple[int, int], threshold: float = 0.5) -> np.ndarray:
    """(B, h, w) → (B, H, W) bool.

    A binary mask is upsampled by nearest neighbour (each latent cell becomes a block of
    pixels, as when the mask is applied to latents); a continuous map in [0, 1] by bilinear
    interpolation (``align_corners=False``), then ``> threshold``."""
    if m.shape[-2:] == tuple(size):
        return m > threshold if not is_binary(m) else m.astype(bool)
    t = torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))[:, None]
    if is_binary(m):
        return F.interpolate(t, size=size, mode="nearest")[:, 0].numpy() > 0.5
    up = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
    return up[:, 0].numpy() > threshold


def mask_iou(pred: Any, true: Any, threshold: float = 0.5):
    """``IoU = |P ∩ T| / |P ∪ T|`` per item, 1.0 when both masks are empty.

    ``pred`` may be smaller than ``true`` (a latent-resolution mask): it is upsampled first
    with :func:`upsample_mask` — nearest for a binary mask, bilinear then ``> threshold`` for
    a continuous one. A continuous ``pred`` of ``true``'s size is thresholded directly."""
    p, batched = as_masks(pred)
    t, _ = as_masks(true)
    t = t.astype(bool)
    p = upsample_mask(p, t.shape[-2:], threshold)
    inter = (p & t).sum((-2, -1))
    union = (p | t).sum((-2, -1))
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return _out(iou.astype(np.float64), batched)


def dilate(mask: Any, px: int) -> np.ndarray:
    """Binary dilation by a disc: the pixels within Euclidean distance ``px`` of the mask,
    (…, H, W) bool. ``px = 0`` returns the mask as bool."""
    m = _numpy(mask).astype(bool)
    if px <= 0:
        return m.copy()
    out = m.copy()
    h, w = m.shape[-2:]
    for dy in range(-px, px + 1):
        for dx in range(-px, px + 1):
            if (dy or dx) and dy * dy + dx * dx <= px * px:
                out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] |= m[
                    ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
                ]
    return out


def outside(region: Any, shape: tuple[int, int, int], px: int) -> np.ndarray:
    """(B, H, W) bool: the pixels outside ``region`` dilated by ``px`` (all of them when
    ``region`` is None). A smaller region (latent mask) is upsampled by nearest first."""
    b, h, w = shape
    if region is None:
        return np.ones((b, h, w), bool)
    r, _ = as_masks(region)
    r = upsample_mask(r if is_binary(r) else r > 0.5, (h, w))
    return ~dilate(np.broadcast_to(r, (b, h, w)), px)


# --------------------------------------------------------------------------- background


def _pair(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray, bool]:
    a, batched = as_images(x)
    b, batched_y = as_images(y)
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"images differ in size: {a.shape[1:]} vs {b.shape[1:]}")
    a, b = np.broadcast_arrays(a, b)
    return a, b, batched or batched_y


def background_psnr(x: Any, y: Any, region: Any = None, dilate: int = 2):
    """``PSNR = 10 · log10(1 / MSE)`` dB, images in [0, 1] (uint8 divided by 255), where
    ``MSE = mean over pixels outside dilate(region, dilate) and channels of (x − y)²``.

    ``inf`` when the outside is identical, ``nan`` when nothing is outside."""
    a, b, batched = _pair(x, y)
    keep = outside(region, a.shape[:3], dilate)[..., None]
    n = keep.sum((1, 2, 3)) * a.shape[-1]
    mse = (((a - b) ** 2) * keep).sum((1, 2, 3)) / np.maximum(n, 1)
    with np.errstate(divide="ignore"):
        psnr = np.where(n > 0, 10 * np.log10(1.0 / mse), np.nan)
    return _out(psnr, batched)


def gaussian_window(sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    """1-D Gaussian weights ``exp(−k²/2σ²)`` for k = −radius…radius, summing to 1."""
    k = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(k**2) / (2 * sigma**2))
    return g / g.sum()


def blur(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable convolution of (B, H, W, C) by ``g`` along H and W, zero outside the image."""
    r = len(g) // 2
    p = np.pad(x, ((0, 0), (r, r), (r, r), (0, 0)))
    h, w = x.shape[1:3]
    rows = sum(gk * p[:, k : k + h] for k, gk in enumerate(g))
    return sum(gk * rows[:, :, k : k + w] for k, gk in enumerate(g))


def ssim_map(a: np.ndarray, b: np.ndarray, keep: np.ndarray, sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    """Per-pixel SSIM (B, H, W) of images (B, H, W, C) in [0, 1], windows restricted to ``keep``.

    With ``W`` the Gaussian window (σ = ``sigma``, 2·radius + 1 taps) restricted to the kept
    pixels (M) and renormalised, local statistics are ``μ_x = W*(M·x) / W*M``,
    ``σ_x² = W*(M·x²) / W*M − μ_x²``, ``σ_xy = W*(M·x·y) / W*M − μ_x μ_y``, and
    ``SSIM = (2 μ_x μ_y + C1)(2 σ_xy + C2) / ((μ_x² + μ_y² + C1)(σ_x² + σ_y² + C2))``,
    C1 = 0.01², C2 = 0.03², per channel then averaged over channels."""
    m = keep[..., None].astype(np.float64)
    g = gaussian_window(sigma, radius)
    wsum = np.maximum(blur(m, g), 1e-12)

    def mean(v: np.ndarray) -> np.ndarray:
        return blur(m * v, g) / wsum

    mu_a, mu_b = mean(a), mean(b)
    var_a = mean(a * a) - mu_a**2
    var_b = mean(b * b) - mu_b**2
    cov = mean(a * b) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)) / (
        (mu_a**2 + mu_b**2 + SSIM_C1) * (var_a + var_b + SSIM_C2)
    )
    return ssim.mean(-1)


def background_ssim(x: Any, y: Any, region: Any = None, dilate: int = 2, sigma: float = 1.5, radius: int = 5):
    """Mean of :func:`ssim_map` over the pixels outside ``dilate(region, dilate)``, with the
    windows restricted to those same pixels; images in [0, 1] (uint8 divided by 255).

    Pixels inside the region never enter a window, so a changed inside cannot lower the
    score; with no region this is the usual Gaussian SSIM (σ = 1.5, 11 taps; windows
    renormalised at the image border). ``nan`` when nothing is outside."""
    a, b, batched = _pair(x, y)
    keep = outside(region, a.shape[:3], dilate)
    n = keep.sum((1, 2))
    total = (ssim_map(a, b, keep, sigma, radius) * keep).sum((1, 2))
    return _out(np.where(n > 0, total / np.maximum(n, 1), np.nan), batched)


# --------------------------------------------------------------------------- representability

ROUNDTRIP_PSNR_MIN = 16.0
"""dB. Below this VAE round-trip PSNR a real checkpoint cannot keep the image: Stable Diffusion's
kl-f8 VAE scores 23.4 ± 3.8 dB on COCO 2017 (256², 5000 images; stabilityai/sd-vae-ft-mse's model
card), so 16 dB is about two standard deviations below an ordinary photograph."""

ROUNDTRIP_PSNR_MIN_BUILTIN = 27.0
"""dB, the same for the built-in toy model. Measured (``python -m diffedit_lab.toy.representable``):
its round trip of shapes-world scenes is 29.2–35 dB on the rich world (120 scenes: min 29.2, 5th
percentile 29.7, median 32.6; bricks and grass are the hardest) and 42–47 dB on the classic one; of
images out of its world 23–26.5 dB — a sky gradient with sun and grass 25.5, pure red and blue
shapes on white 23.0, a scene with red and blue swapped 26.5. 27 dB leaves 2.2 dB below the worst
in-world scene. (The classic-world model shipped before it: 25 dB, its scenes 28.2–35 dB.)"""

NOTEBOOK_REAL_MODELS = "notebooks/06_real_models.ipynb"


class RoundTripWarning(UserWarning):
    """The model's autoencoder cannot represent the input image well (:func:`representability`)."""


def is_builtin(c) -> bool:
    """Whether ``c`` is the shipped toy model (loaded from ``models.DEFAULT_MODEL_DIR``)."""
    from .models import DEFAULT_MODEL_DIR

    where = getattr(getattr(c.vae, "config", None), "_name_or_path", None) or ""
    try:
        return bool(where) and Path(where).resolve() == DEFAULT_MODEL_DIR.resolve()
    except OSError:
        return False


@dataclass
class RoundTrip:
    """An image and its VAE round trip ``D(E(x))``: ``image`` and ``reconstruction`` (PIL, the
    size the model sees), ``psnr`` = ``PSNR(x, D(E(x)))`` in dB, ``threshold`` (dB) and
    ``builtin`` (the toy model, whose threshold and advice differ)."""

    image: Image.Image
    reconstruction: Image.Image
    psnr: float
    threshold: float
    builtin: bool

    @property
    def ok(self) -> bool:
        return not self.psnr < self.threshold

    def warning(self) -> str | None:
        """One line when the PSNR is below the threshold (saying what to do), else None."""
        if self.ok:
            return None
        head = (f"the model's autoencoder reproduces this image at only {self.psnr:.1f} dB "
                f"(below {self.threshold:g} dB): ")
        if self.builtin:
            return head + ("it is far from the shapes world the built-in toy model knows, so no edit can keep "
                           f"the rest of it — use a real checkpoint ({NOTEBOOK_REAL_MODELS}).")
        return head + "no edit can keep the rest of the image closer than that."


def representability(c, image, *, latents=None) -> RoundTrip:
    """``x̂ = D(E(x))`` and ``PSNR(x, x̂) = 10 · log10(1 / MSE)`` (pixels in [0, 1]) for ``image``
    as the model sees it (``latents.image_to_tensor``). ``latents``: ``E(x)`` if already computed
    (``EditSession.z0``), which saves the encoding. One VAE decode (and encode)."""
    from .latents import decode, encode, image_to_tensor, load_image

    with warnings.catch_warnings():  # the encoding of the edit itself has said it already
        warnings.simplefilter("ignore")
        x = image_to_tensor(c, image)[:1]
    z = encode(c, x) if latents is None else latents[:1]
    recon = decode(c, z)[0]
    seen = load_image(x[0])
    if seen.size != recon.size:  # ``latents`` of the image as fitted by the caller
        seen = seen.resize(recon.size, resample=Image.LANCZOS)
    psnr = float(background_psnr(np.asarray(seen), np.asarray(recon)))
    builtin = is_builtin(c)
    return RoundTrip(seen, recon, psnr, ROUNDTRIP_PSNR_MIN_BUILTIN if builtin else ROUNDTRIP_PSNR_MIN, builtin)


def roundtrip_psnr(c, image, *, latents=None) -> float:
    """``PSNR(x, D(E(x)))`` in dB: how well the model's VAE represents ``image`` (:func:`representability`)."""
    return representability(c, image, latents=latents).psnr


def warn_if_unrepresentable(c, image, *, latents=None, stacklevel: int = 3) -> RoundTrip:
    """:func:`representability`, and a :class:`RoundTripWarning` (one line) when it is below the
    threshold."""
    rt = representability(c, image, latents=latents)
    if not rt.ok:
        warnings.warn(rt.warning(), RoundTripWarning, stacklevel=stacklevel)
    return rt
