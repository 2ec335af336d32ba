"""Images ⇄ latents, and texts → embeddings.

* ``encode``: ``z0 = s · E(x)`` with ``x ∈ [-1, 1]`` and ``s`` the VAE's ``scaling_factor``;
  ``E(x)`` is the mean of the VAE posterior, or a *sample* ``μ + σ·ξ`` (``ξ ~ N(0, I)`` drawn
  with the generator), which is what diffusers' DiffEdit pipeline does.
* ``decode``: ``x = D(z0 / s)``, mapped from [-1, 1] to pixels.
* ``encode_prompt``: ``c(Q)`` = last hidden state of the CLIP text encoder on the padded tokens of
  ``Q``; a list of texts is mean-pooled, ``c = (1/K) Σ_k c(Q_k)`` (the "automatic prompts" of
  diffusers' former DiffEdit guide).

**Image conventions** (:func:`load_image`): a path; a PIL image of any mode (RGBA/LA are
composited on white, L/P/CMYK… converted to RGB); a numpy ``H×W×C`` (or ``H×W``) array,
``uint8`` in [0, 255] or float in [0, 1]; a torch tensor ``C×H×W`` or ``1×C×H×W`` in **[-1, 1]**
(the range :func:`decode` and diffusers use).

**Sizes.** The VAE halves the resolution ``log2(vae_scale_factor)`` times, so height and width
must be multiples of ``vae_scale_factor`` (8 for SD). Other sizes are resized *down* to the
multiple below, with Lanczos and a warning — the same rule as diffusers' ``VaeImageProcessor``.
Non-square images are fine. The whole input policy (EXIF orientation, 16-bit and float modes,
size limits tied to the model, texts the tokenizer cannot read) is :mod:`diffedit_lab.inputs`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .checks import check_finite, check_image_tensor, check_prompt, check_seed
from .inputs import check_text, fit_image, fit_tensor, open_image, to_rgb
from .models import Components


def make_generator(seed: int | None = None, generator: torch.Generator | None = None) -> torch.Generator | None:
    """The random source: ``generator`` if given, else a CPU generator seeded with ``seed``.

    A CPU generator gives the same draws on every device (diffusers' ``randn_tensor`` draws on
    the CPU and moves the result).
    """
    if generator is not None:
        return generator
    seed = check_seed("seed", seed)
    return torch.Generator().manual_seed(seed) if seed is not None else None


def load_image(x) -> Image.Image:
    """Any supported image (see the module docstring) as an RGB PIL image."""
    if isinstance(x, (str, Path)):
        return to_rgb(open_image(x))  # size checked before decoding, EXIF orientation applied
    if isinstance(x, Image.Image):
        return to_rgb(x)
    if isinstance(x, torch.Tensor):
        t = x.detach().float().cpu()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 3 or t.shape[0] not in (1, 3):
            raise ValueError(f"`image`: a tensor must be (C, H, W) or (1, C, H, W) with C = 1 or 3, got {tuple(x.shape)}.")
        arr = ((check_image_tensor("image", t) + 1) / 2).permute(1, 2, 0).numpy()
        return load_image(arr)
    if isinstance(x, np.ndarray):
        arr = x
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
            raise ValueError(f"`image`: an array must be H×W or H×W×C with C in (1, 3, 4), got {x.shape}.")
        if arr.dtype != np.uint8:
            if arr.dtype == bool:
                arr = arr.astype(np.float64)
            if arr.size and not np.isfinite(arr).all():
                raise ValueError("`image`: the array has NaN or infinite values.")
            if arr.size and (np.nanmin(arr) < 0 or np.nanmax(arr) > 1):
                raise ValueError("`image`: a float array must be in [0, 1] (or pass uint8 in [0, 255]).")
            arr = (arr.astype(np.float64) * 255).round().astype(np.uint8)
        mode = {1: "L", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
        return load_image(Image.fromarray(arr[:, :, 0] if mode == "L" else arr, mode))
    raise TypeError(f"`image`: expected a path, PIL image, numpy array or torch tensor, got {type(x).__name__}.")


def fit_size(size: tuple[int, int], factor: int) -> tuple[int, int]:
    """(width, height) rounded *down* to multiples of ``factor`` (at least ``factor``)."""
    return tuple(max(factor, s - s % factor) for s in size)


def image_to_tensor(c: Components, image) -> torch.Tensor:
    """Images → a (B, 3, H, W) float32 tensor in [-1, 1] on ``c.device``: ``x = 2·pixels/255 − 1``.

    ``image``: one image or a list of images of the same size. A (B, 3, H, W) tensor is taken
    as is (it must be finite and in [-1, 1]; resized with bicubic antialiasing if its size needs
    it). Sizes follow the model's policy (:func:`~diffedit_lab.inputs.plan_size`).
    """
    if isinstance(image, torch.Tensor) and image.ndim == 4 and image.shape[1] == 3:
        pixels = check_image_tensor("image", image.float())
        return fit_tensor(c, pixels).to(c.device)
    images = [load_image(i) for i in (image if isinstance(image, (list, tuple)) else [image])]
    if not images:
        raise ValueError("`image`: got an empty list.")
    if len({i.size for i in images}) > 1:
        raise ValueError(f"`image`: all images of a batch must have the same size, got {[i.size for i in images]}.")
    images = [fit_image(c, i, quiet=k > 0) for k, i in enumerate(images)]
    arr = np.stack([np.asarray(i, dtype=np.float32) / 255.0 for i in images])
    return (2.0 * torch.from_numpy(arr).permute(0, 3, 1, 2) - 1.0).to(c.device)


def is_latents(c: Components, x) -> bool:
    """True for a (B, latent_channels, h, w) tensor (as opposed to an image)."""
    return isinstance(x, torch.Tensor) and x.ndim == 4 and x.shape[1] == c.latent_channels


@torch.inference_mode()
def latent_distribution(c: Components, image):
    """The VAE posterior ``q(z | x) = N(μ(x), σ(x)²)`` of the images, unscaled."""
    pixels = image_to_tensor(c, image).to(c.vae.dtype)
    return c.vae.encode(pixels).latent_dist


def scale_latents(c: Components, z: torch.Tensor) -> torch.Tensor:
    """``z0 = s · (z − shift)``: the VAE latent in the units the UNet was trained on."""
    shift = getattr(c.vae.config, "shift_factor", None) or 0.0
    return ((z - shift) * c.vae.config.scaling_factor).float()


@torch.inference_mode()
def encode(c: Components, image, *, seed: int | None = None, generator=None, sample: bool = False) -> torch.Tensor:
    """``z0 = s · E(x)``: images → latents of shape (B, latent_channels, H/f, W/f), float32.

    ``sample=False``: the posterior mean ``μ(x)`` (deterministic). ``sample=True``: a draw
    ``μ + σ·ξ`` with ``ξ`` from ``generator`` (or a CPU generator seeded with ``seed``) —
    diffusers' DiffEdit pipeline samples this way (``latent_dist.sample(generator)``).
    """
    dist = latent_distribution(c, image)
    z = dist.sample(make_generator(seed, generator)) if sample else dist.mean
    return scale_latents(c, z)


@torch.inference_mode()
def decode(c: Components, latents: torch.Tensor, *, output_type: str = "pil"):
    """``x = D(z0 / s)``: latents → images.

    ``output_type="pil"``: a list of RGB PIL images (pixels ``round(255·(x+1)/2)``, as diffusers);
    ``"np"``: a float array (B, H, W, 3) in [0, 1]; ``"pt"``: a tensor (B, 3, H, W) in [-1, 1].
    """
    if output_type not in ("pil", "np", "pt"):
        raise ValueError(f"`output_type` must be 'pil', 'np' or 'pt', got {output_type!r}.")
    shift = getattr(c.vae.config, "shift_factor", None) or 0.0
    z = latents.to(c.device, c.vae.dtype) / c.vae.config.scaling_factor + shift
    x = c.vae.decode(z).sample.float()
    if output_type == "pt":
        return x
    arr = (x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    if output_type == "np":
        return arr
    return [Image.fromarray((a * 255).round().astype(np.uint8)) for a in arr]


@torch.inference_mode()
def _embed_texts(c: Components, texts: list[str]) -> torch.Tensor:
    """CLIP text-encoder hidden states (K, L, D) of texts padded to ``model_max_length``."""
    tokens = c.tokenizer(
        texts, padding="max_length", max_length=c.tokenizer.model_max_length, truncation=True, return_tensors="pt"
    )
    mask = tokens.attention_mask.to(c.device) if getattr(c.text_encoder.config, "use_attention_mask", False) else None
    return c.text_encoder(tokens.input_ids.to(c.device), attention_mask=mask)[0]


def encode_prompt(c: Components, text_or_list) -> torch.Tensor:
    """``c(Q)``: a text → (1, L, D) embeddings; a list of texts → their mean ``(1/K) Σ_k c(Q_k)``.

    An embedding tensor (L, D) or (1, L, D) is passed through (moved to the model's device and
    dtype). ``""`` is the unconditional text ``∅`` of classifier-free guidance.
    """
    check_prompt("prompt", text_or_list)
    if isinstance(text_or_list, torch.Tensor):
        emb = text_or_list if text_or_list.ndim == 3 else text_or_list[None]
        return check_finite("prompt", emb).to(c.device, c.dtype)
    check_text(c, "text", text_or_list)  # words split into pieces or unknown, truncation
    texts = [text_or_list] if isinstance(text_or_list, str) else list(text_or_list)
    return _embed_texts(c, texts).mean(0, keepdim=True).to(c.dtype)
