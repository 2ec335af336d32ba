"""What DiffEdit is measured against, as library functions beside it.

The paper's trade-off (edit strength against keeping the rest) compares DiffEdit with:

* **SDEdit** — noise the input to strength ``r``, denoise with ``Q``: :func:`~diffedit_lab.denoise.sdedit`;
* **encode–decode** — DDIM-encode to ``r``, denoise with ``Q``, no mask:
  :func:`~diffedit_lab.denoise.encode_decode`;
* **the true-mask oracle** (:func:`oracle`) — DiffEdit's decoding with the *true* edited region
  instead of the inferred mask: what a perfect step 1 would give;
* **diffusers' pipeline as is** (:func:`diffusers_edit`) — ``generate_mask`` + ``invert`` +
  ``__call__`` of ``StableDiffusionDiffEditPipeline`` on the same components, with its
  documented usage; it differs from ours by design choices and by its blend one step too noisy
  (docs/differences.md).

The oracle's latent mask: a latent cell covers ``f × f`` pixels, and a cell is in the mask when
the true region covers more than ``cover`` of it (default 0: any overlap, so that the whole
region can change; the mask is then a little larger than the region, never smaller).
"""

from __future__ import annotations

import numpy as np
import torch

from .denoise import DenoiseResult, encode_decode, masked_denoise, sdedit
from .edit import edit
from .inversion import Inversion
from .latents import decode, load_image
from .models import Components
from .sampling import strength_steps

__all__ = [
    "compare",
    "diffusers_decode",
    "diffusers_edit",
    "diffusers_pipeline",
    "diffusers_prepare",
    "encode_decode",
    "latent_region",
    "oracle",
    "sdedit",
]


def latent_region(c: Components, region, *, cover: float = 0.0) -> torch.Tensor:
    """Pixel region(s) (H, W) or (B, H, W), bool or 0/1 → a (B, 1, H/f, W/f) float 0/1 latent mask:
    the cells of which the region covers more than ``cover`` (a fraction in [0, 1))."""
    r = torch.as_tensor(np.asarray(region, dtype=np.float32))
    if r.ndim == 2:
        r = r[None]
    if r.ndim != 3:
        raise ValueError(f"`region` must be (H, W) or (B, H, W), got shape {tuple(r.shape)}.")
    f = c.vae_scale_factor
    if r.shape[-1] % f or r.shape[-2] % f:
        raise ValueError(f"`region` size {tuple(r.shape[-2:])} is not a multiple of the VAE factor {f}.")
    if not 0 <= cover < 1:
        raise ValueError(f"`cover` must be in [0, 1), got {cover}.")
    fraction = torch.nn.functional.avg_pool2d(r[:, None], f)
    return (fraction > cover).float().to(c.device)


def oracle(c: Components, inversion: Inversion, region, prompt, *, guidance: float | None = None, cover: float = 0.0,
           progress: bool = True) -> DenoiseResult:
    """DiffEdit's decoding (:func:`~diffedit_lab.denoise.masked_denoise`) with the **true** edited
    ``region`` (pixels, see :func:`latent_region`) as the mask: the ceiling of a perfect mask."""
    mask = latent_region(c, region, cover=cover)
    return masked_denoise(c, inversion, mask, prompt, guidance=guidance, progress=progress)


# --------------------------------------------------------------------------- diffusers, as is


def diffusers_pipeline(c: Components):
    """diffusers' ``StableDiffusionDiffEditPipeline`` on the same modules as ``c`` (fresh schedulers
    from the same config), progress bars off."""
    from diffusers import DDIMInverseScheduler, DDIMScheduler, StableDiffusionDiffEditPipeline

    pipe = StableDiffusionDiffEditPipeline(
        vae=c.vae,
        text_encoder=c.text_encoder,
        tokenizer=c.tokenizer,
        unet=c.unet,
        scheduler=DDIMScheduler.from_config(c.scheduler.config),
        safety_checker=None,
        feature_extractor=None,
        inverse_scheduler=DDIMInverseScheduler.from_config(c.inverse_scheduler.config),
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _generators(seeds):
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


def diffusers_prepare(pipe, images: list, sources: list[str], targets: list[str], *, seeds: list[int],
                      strength: float = 0.8, steps: int = 50, guidance: float = 7.5,
                      inversion_guidance: float = 7.5, n: int = 10, mask_strength: float = 0.5,
                      clamp_ratio: float = 3.0, callback=None) -> tuple[np.ndarray, torch.Tensor]:
    """Steps 1 and 2 with diffusers, as its documentation uses them:
    ``generate_mask(image, source_prompt=R, target_prompt=Q)`` **one image at a time** (its mask
    normalisation is over the whole batch, so batching would change the masks) and
    ``invert(prompt=R, image)`` on the whole batch (guided with ``inversion_guidance``, its
    default 7.5). Image ``i`` uses ``torch.Generator().manual_seed(seeds[i])`` for both.

    Returns ``(masks (B, h, w) 0/1, inverted latents (B, T, C, h, w) noisiest first)``.
    """
    images = [load_image(i) for i in images]  # numpy arrays, paths… as PIL (what the pipeline takes)
    masks = []
    for image, source, target, g in zip(images, sources, targets, _generators(seeds)):
        masks.append(pipe.generate_mask(
            image=image, source_prompt=source, target_prompt=target, num_maps_per_mask=n,
            mask_encode_strength=mask_strength, mask_thresholding_ratio=clamp_ratio,
            num_inference_steps=steps, guidance_scale=guidance, generator=g,
        )[0])
        if callback is not None:
            callback("mask", 1)
    latents = pipe.invert(
        prompt=list(sources), image=list(images), num_inference_steps=steps, inpaint_strength=strength,
        guidance_scale=inversion_guidance, generator=_generators(seeds),
        callback=None if callback is None else (lambda *_: callback("invert", len(images))),
    ).latents
    return np.stack(masks).astype(np.float32), latents


def diffusers_decode(pipe, masks: np.ndarray, latents: torch.Tensor, targets: list[str], *, strength: float,
                     steps: int = 50, guidance: float = 7.5, callback=None) -> np.ndarray:
    """Step 3 with diffusers: ``__call__(prompt=Q, mask_image, image_latents, inpaint_strength)``.

    ``latents`` may come from ``invert`` at a *larger* strength on the same grid of ``steps``:
    its last ``⌊steps·strength⌋`` latents are exactly those of ``invert`` at ``strength``
    (checked in tests/test_bench_quality.py), which is what ``__call__`` insists on receiving.
    Returns the edited images, (B, H, W, 3) uint8.
    """
    k = strength_steps(steps, strength)
    images = pipe(
        prompt=list(targets), mask_image=torch.as_tensor(masks), image_latents=latents[:, -k:],
        inpaint_strength=strength, num_inference_steps=steps, guidance_scale=guidance, output_type="np",
        callback=None if callback is None else (lambda *_: callback("decode", len(targets))),
    ).images
    return np.round(np.asarray(images) * 255).astype(np.uint8)


def diffusers_edit(c: Components, image, source: str, target: str, *, strength: float = 0.8, steps: int = 50,
                   guidance: float = 7.5, inversion_guidance: float = 7.5, n: int = 10, seed: int = 0,
                   pipe=None) -> tuple[np.ndarray, np.ndarray]:
    """One edit with diffusers' pipeline as is: ``(edited image (H, W, 3) uint8, mask (h, w) 0/1)``."""
    pipe = pipe or diffusers_pipeline(c)
    masks, latents = diffusers_prepare(
        pipe, [image], [source], [target], seeds=[seed], strength=strength, steps=steps, guidance=guidance,
        inversion_guidance=inversion_guidance, n=n,
    )
    out = diffusers_decode(pipe, masks, latents, [target], strength=strength, steps=steps, guidance=guidance)
    return out[0], masks[0]


# --------------------------------------------------------------------------- all of them on one image


def compare(c: Components, image, source: str, target: str, region, *, strength: float = 0.8, steps: int = 50,
            n: int | None = None, seed: int = 0) -> tuple[dict, dict]:
    """Every method on one image at encoding ratio ``strength``: ``(images, masks)``, both keyed
    ``diffedit``, ``sdedit``, ``encode_decode``, ``oracle``, ``diffusers`` (images (H, W, 3) uint8;
    latent masks (h, w) 0/1 for the three methods that have one).

    DiffEdit is :func:`~diffedit_lab.edit` at the model's settings; encode–decode and the oracle
    reuse its encoding; SDEdit's noise and diffusers' generators are seeded with ``seed``; all
    decode with DiffEdit's guidance, and both masks average ``n`` draws (None: the model's
    default). ``region``: the true edited region (pixels), for the oracle.
    """
    res = edit(c, image, source, target, n=n, encoding_ratio=strength, steps=steps, seed=seed, progress=False)
    g = res.settings["guidance"]
    latents = dict(
        diffedit=res.latents,
        sdedit=sdedit(c, res.inversion.z0, target, strength=strength, steps=steps, guidance=g, seed=seed,
                      progress=False).latents,
        encode_decode=encode_decode(c, res.inversion, target, guidance=g, progress=False).latents,
        oracle=oracle(c, res.inversion, region, target, guidance=g, progress=False).latents,
    )
    images = {k: np.asarray(decode(c, z)[0]) for k, z in latents.items()}
    images["diffusers"], d_mask = diffusers_edit(
        c, image, source, target, strength=strength, steps=steps, guidance=g, seed=seed,
        n=res.settings["n"],
    )
    masks = dict(diffedit=res.mask.mask[0].cpu().numpy(), oracle=latent_region(c, region)[0, 0].cpu().numpy(),
                 diffusers=d_mask)
    return images, masks
