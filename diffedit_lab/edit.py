"""The whole of DiffEdit in one call (:func:`edit`), and the cache behind interactive
exploration (:class:`EditSession`).

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

from .checks import check_count, check_guidance, check_positive, check_prompt, check_strength, check_threshold
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


def check_settings(s: dict) -> dict:
    """Validate resolved settings under ``edit()``'s own parameter names."""
    for name in ("n", "steps"):
        s[name] = check_count(name, s[name])
    for name in ("mask_strength", "strength"):
        s[name] = check_strength(name, s[name])
    for name in ("guidance", "inversion_guidance"):
        s[name] = check_guidance(name, s[name])
    s["clamp_ratio"] = check_positive("clamp_ratio", s["clamp_ratio"])
    s["threshold"] = check_threshold("threshold", s["threshold"])
    return s


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
    drives the mask's noise draws, the only randomness. ``None`` settings: see the module doc.
    """
    return EditSession(c, image).run(
        source, target, n=n, mask_strength=mask_strength, clamp_ratio=clamp_ratio, threshold=threshold,
        strength=strength, steps=steps, guidance=guidance, inversion_prompt=inversion_prompt,
        inversion_guidance=inversion_guidance, seed=seed, progress=progress,
    )


class EditSession:
    """One image, edited again and again: each step is cached under the settings it depends on.

    ``z0`` is encoded once; the mask is recomputed only when the texts, ``n``, ``mask_strength``,
    ``guidance``, ``steps`` or ``seed`` change — ``clamp_ratio``/``threshold`` just re-threshold
    it; the inversion only when ``strength``, ``steps``, ``inversion_prompt`` or
    ``inversion_guidance`` change. This is what makes an interactive explorer responsive.
    """

    def __init__(self, c: Components, image, *, max_cached: int = 8):
        self.c = c
        self.z0 = image.to(c.device).float() if is_latents(c, image) else encode(c, image)
        self.max_cached = max_cached
        self._masks: dict = {}
        self._inversions: dict = {}

    def _cached(self, cache: dict, key, compute):
        if key not in cache:
            if len(cache) >= self.max_cached:
                cache.pop(next(iter(cache)))
            cache[key] = compute()
        return cache[key]

    def mask(self, source, target, s: dict, seed, progress: bool) -> MaskResult:
        """The mask for resolved settings ``s`` (re-thresholded from the cache when possible)."""
        key = (_key(source), _key(target), s["n"], s["mask_strength"], s["guidance"], s["steps"], seed)
        raw = self._cached(self._masks, key, lambda: noise_diff_mask(
            self.c, self.z0, source, target, n=s["n"], strength=s["mask_strength"], guidance=s["guidance"],
            clamp_ratio=s["clamp_ratio"], threshold=s["threshold"], seed=seed, steps=s["steps"], progress=progress,
        ))
        return raw.rethreshold(clamp_ratio=s["clamp_ratio"], threshold=s["threshold"])

    def inversion(self, inversion_prompt, s: dict, progress: bool) -> Inversion:
        key = (_key(inversion_prompt), s["strength"], s["steps"], s["inversion_guidance"])
        return self._cached(self._inversions, key, lambda: ddim_invert(
            self.c, self.z0, inversion_prompt, strength=s["strength"], steps=s["steps"],
            guidance=s["inversion_guidance"], progress=progress,
        ))

    def run(self, source, target, *, inversion_prompt="", seed: int | None = None, progress: bool = True,
            **settings) -> EditResult:
        """Like :func:`edit` (same keyword arguments), reusing what the cache holds."""
        check_prompt("target", target, required=True)
        unknown = set(settings) - set(LIBRARY_DEFAULTS)
        if unknown:
            raise TypeError(f"unknown setting(s) {sorted(unknown)}; known: {sorted(LIBRARY_DEFAULTS)}")
        s = check_settings(resolve_settings(self.c, **{k: settings.get(k) for k in LIBRARY_DEFAULTS}))
        mask = self.mask(source, target, s, seed, progress)
        inversion = self.inversion(inversion_prompt, s, progress)
        result = masked_denoise(self.c, inversion, mask, target, guidance=s["guidance"], progress=progress)
        images = decode(self.c, result.latents)
        return EditResult(
            image=images[0],
            images=images,
            mask=mask,
            inversion=inversion,
            latents=result.latents,
            trajectory=result.trajectory,
            settings=dict(s, seed=seed, inversion_prompt=inversion_prompt, source=source, target=target),
        )


def _key(prompt):
    """A hashable cache key for a text, a list of texts or an embedding tensor."""
    if isinstance(prompt, torch.Tensor):
        return ("tensor", tuple(prompt.shape), prompt.detach().double().sum().item(), prompt.detach().abs().sum().item())
    return tuple(prompt) if isinstance(prompt, list) else prompt
