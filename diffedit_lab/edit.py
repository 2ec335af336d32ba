"""The whole of DiffEdit in one call (:func:`edit`), and the cache behind interactive
exploration (:class:`EditSession`).

    z0 = encode(x)
    M  = noise_diff_mask(z0, R, Q)                         (step 1)
    z_r = ddim_invert(z0, r)                                (step 2)
    z0' = masked_denoise(z_r, M, Q)                         (step 3),   x' = decode(z0')

The settings are one :class:`~diffedit_lab.settings.EditSettings` (the paper's values, then the
model's recorded ones, then the caller's), built and checked once per call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch
from PIL import Image

from .checks import check_finite, check_prompt, check_seed
from .denoise import masked_denoise, masked_denoise_many
from .inputs import check_text
from .inversion import Inversion, ddim_invert
from .latents import decode, encode, encode_prompt, is_latents, make_generator
from .mask import MaskResult, mask_draws, mask_from_draws
from .metrics import warn_if_unrepresentable
from .models import Components
from .sampling import strength_steps
from .settings import EditSettings, renamed

Prompt = Union[str, list, torch.Tensor]
"""A text, a list of texts (mean-pooled) or an embedding tensor (1, L, D)."""
ImageInput = Union[Image.Image, np.ndarray, torch.Tensor, list]
"""An image (PIL, HWC array), a batch of images, or latents (B, C, h, w)."""
Progress = Callable[[int, int], None]
"""``callback(done, total)``: DDIM steps done so far, of ``total``."""

@dataclass
class EditResult:
    """An edit and all its parts: ``image`` (the first edited image), ``images`` (all),
    ``mask``, ``inversion``, ``latents`` (the edited latents), ``trajectory`` (the decoding's),
    ``edit_settings`` (the :class:`~diffedit_lab.settings.EditSettings` used) and ``settings``
    (every value used, as a dict: the settings, ``seed``, ``source``, ``target``, ``inversion_prompt``)."""

    image: Image.Image
    images: list
    mask: MaskResult
    inversion: Inversion
    latents: torch.Tensor
    trajectory: torch.Tensor
    settings: dict
    edit_settings: EditSettings | None = None


def edit(
    c: Components,
    image: ImageInput,
    source: Prompt,
    target: Prompt,
    settings: EditSettings | None = None,
    *,
    inversion_prompt: Prompt = "",
    seed: int | None = None,
    progress: bool = True,
    callback: Progress | None = None,
    **overrides: Any,
) -> EditResult:
    """Edit ``image`` from ``source`` (reference text R, may be ``""``) to ``target`` (query Q).

    ``image``: image(s) or latents. The latents are the VAE mean (deterministic); ``seed``
    drives the mask's noise draws, the only randomness. ``settings``: an
    :class:`~diffedit_lab.settings.EditSettings` (default: ``EditSettings.for_model(c)``);
    ``overrides``: settings by name (``threshold=0.6``, ``encoding_ratio=0.7``…) on top of it.
    ``callback(done, total)``: told after each DDIM step (see :meth:`EditSession.run`).
    An image the model's VAE cannot represent (round trip below ``metrics.ROUNDTRIP_PSNR_MIN``)
    gets a one-line ``metrics.RoundTripWarning`` before the work starts.
    """
    overrides = renamed(overrides, stacklevel=2)
    s = (EditSettings.for_model(c) if settings is None else settings).replace(**overrides)  # before any model call
    check_prompt("source", source)
    check_prompt("target", target, required=True)
    check_prompt("inversion_prompt", inversion_prompt)
    session = EditSession(c, image)
    if not is_latents(c, image):
        warn_if_unrepresentable(c, image, latents=session.z0)
    return session.run(source, target, s, inversion_prompt=inversion_prompt, seed=seed,
                       progress=progress, callback=callback)


class EditSession:
    """One image, edited again and again: each step is cached under the settings it depends on.

    Kept once computed (the oldest entry of a cache goes first beyond ``max_cached``):

    * ``z0``, the encoded image (VAE mean) — at construction;
    * the text embeddings: each text is encoded once (``""``, the source, each target…);
    * the mask's noised draws and its **source branch** (``ε(z_t, ∅)``, ``ε(z_t, R)``) per
      source, ``n``, ``mask_noise``, ``steps`` and ``seed``: a new target runs only its own
      n UNet rows (of the 3n);
    * the mask per texts, ``n``, ``mask_noise``, ``guidance``, ``steps`` and ``seed`` — a new
      ``clamp_ratio``/``threshold``/``rescale``/``fill_holes``/``close`` only re-thresholds it, without any model call;
    * the inversion per ``inversion_prompt``, ``encoding_ratio``, ``steps`` and ``inversion_guidance``;
    * the decoding and its images per inversion, target, ``guidance`` and *binary* mask: a new
      threshold that leaves the mask as it was costs nothing.

    A cached result is the very result of the computation, and a recomputed one is identical to
    it (``torch.equal``): the mask's source and target branches are always separate UNet calls,
    since the UNet's float rounding can depend on the batch size. This is what makes an
    interactive explorer responsive, and trying several targets on one image cheap —
    :meth:`run_many` also batches their decodings.
    """

    def __init__(self, c: Components, image: ImageInput, *, max_cached: int = 8):
        self.c = c
        self.z0 = check_finite("image", image.to(c.device).float()) if is_latents(c, image) else encode(c, image)
        self.max_cached = max_cached
        self._embeddings: dict = {}
        self._draws: dict = {}
        self._sources: dict = {}
        self._masks: dict = {}
        self._inversions: dict = {}
        self._decodings: dict = {}
        self.inversions_computed = 0  # DDIM encodings computed (not taken from the cache)
        self._model_settings: EditSettings | None = None  # EditSettings.for_model(c), built on first use

    def clear(self) -> None:
        """Forget everything but ``z0``."""
        for cache in (self._embeddings, self._draws, self._sources, self._masks, self._inversions, self._decodings):
            cache.clear()

    def _cached(self, cache: dict, key, compute, limit: int | None = None):
        if key not in cache:
            if len(cache) >= (limit or self.max_cached):
                cache.pop(next(iter(cache)))
            cache[key] = compute()
        return cache[key]

    def settings(self, settings: EditSettings | None = None, **overrides: Any) -> EditSettings:
        """``settings`` (default: the model's, :meth:`EditSettings.for_model`) with ``overrides``."""
        if settings is None:
            if self._model_settings is None:
                self._model_settings = EditSettings.for_model(self.c)
            settings = self._model_settings
        base = settings
        if not isinstance(base, EditSettings):
            raise TypeError(f"`settings` must be an EditSettings, got {type(base).__name__}.")
        return base.replace(**renamed(overrides, stacklevel=2))

    def embedding(self, prompt: Prompt) -> torch.Tensor:
        """``encode_prompt(c, prompt)``, encoded once per text (an embedding tensor passes through)."""
        check_prompt("prompt", prompt)
        if isinstance(prompt, torch.Tensor):
            return encode_prompt(self.c, prompt)
        return self._cached(self._embeddings, _key(prompt), lambda: encode_prompt(self.c, prompt), 8 * self.max_cached)

    def mask(self, source: Prompt, target: Prompt, settings: EditSettings | None = None, *, seed: int | None = None,
             **overrides: Any) -> MaskResult:
        """The mask for these settings, from the cache when possible."""
        check_prompt("source", source)
        check_prompt("target", target, required=True)
        check_text(self.c, "target", target, required=True, quiet=True)
        return self._mask(source, target, self.settings(settings, **renamed(overrides, stacklevel=2)),
                          check_seed("seed", seed))

    def _mask(self, source: Prompt, target: Prompt, s: EditSettings, seed: int | None,
              progress: bool = False) -> MaskResult:
        draw_key = (*s.draw_key(), seed)
        key = (_key(source), _key(target), *s.mask_key(), seed)

        def compute():
            t, z_t = self._cached(self._draws, draw_key, lambda: mask_draws(
                self.c, self.z0, s.n, s.mask_noise, s.steps, make_generator(seed)))
            source_key = (_key(source), s.guidance > 1, *draw_key)
            cached = self._sources.get(source_key)
            empty = self.embedding("") if s.guidance > 1 else ""  # unguided: no negative rows
            raw, source_raw, _ = mask_from_draws(
                self.c, z_t, t, s.n, self.embedding(source), self.embedding(target),
                source_negative_prompt=empty, target_negative_prompt=empty, guidance=s.guidance,
                clamp_ratio=s.clamp_ratio, threshold=s.threshold, mask_noise=s.mask_noise,
                source_predictions=cached, progress=progress,
            )
            self._cached(self._sources, source_key, lambda: source_raw)
            return raw

        raw = self._cached(self._masks, key, compute)
        return raw.rethreshold(clamp_ratio=s.clamp_ratio, threshold=s.threshold, fill_holes=s.fill_holes,
                               rescale=s.rescale, close=s.close)

    def inversion(self, inversion_prompt: Prompt = "", settings: EditSettings | None = None, *,
                  progress: bool = True, callback: Progress | None = None, **overrides: Any) -> Inversion:
        """The DDIM inversion of ``z0`` for these settings, from the cache when possible."""
        check_prompt("inversion_prompt", inversion_prompt)
        s = self.settings(settings, **renamed(overrides, stacklevel=2))
        return self._inversion(inversion_prompt, s, progress, callback)

    def _inversion_key(self, inversion_prompt: Prompt, s: EditSettings) -> tuple:
        return (_key(inversion_prompt), *s.inversion_key())

    def _inversion(self, inversion_prompt: Prompt, s: EditSettings, progress: bool,
                   callback: Progress | None = None) -> Inversion:
        guided = s.inversion_guidance > 1
        total = strength_steps(s.steps, s.encoding_ratio)
        tell = None if callback is None else (lambda i, _t, _z: callback(i + 1, total))

        def compute() -> Inversion:
            self.inversions_computed += 1
            return ddim_invert(self.c, self.z0, self.embedding(inversion_prompt), encoding_ratio=s.encoding_ratio,
                               steps=s.steps, guidance=s.inversion_guidance,
                               negative_prompt=self.embedding("") if guided else "", progress=progress, callback=tell)

        return self._cached(self._inversions, self._inversion_key(inversion_prompt, s), compute)

    def run(self, source: Prompt, target: Prompt, settings: EditSettings | None = None, *,
            inversion_prompt: Prompt = "", seed: int | None = None, progress: bool = True,
            callback: Progress | None = None, **overrides: Any) -> EditResult:
        """Like :func:`edit` (same arguments), reusing what the cache holds.

        ``callback(done, total)`` is told after each DDIM step of the encoding and the decoding
        (``total`` = both; a cached encoding counts as done at once)."""
        s = self.settings(settings, **renamed(overrides, stacklevel=2))
        return self._run(source, [target], inversion_prompt, seed, progress, s, callback)[0]

    def run_many(self, source: Prompt, targets: list, settings: EditSettings | None = None, *,
                 inversion_prompt: Prompt = "", seed: int | None = None, progress: bool = True,
                 callback: Progress | None = None, **overrides: Any) -> list[EditResult]:
        """One edit per target (each a text, or a list of texts to mean-pool), as :meth:`run` —
        the same masks and inversion — with the decodings **batched**: K targets make one UNet call
        of 2K rows per step instead of K calls of 2 rows, which a CPU runs in ~60 % of the time
        per row. The decodings equal :meth:`run`'s up to the UNet's float rounding for the larger
        batch (~1e-6); they are cached too, under the whole list of targets."""
        if not isinstance(targets, (list, tuple)) or not targets:
            raise TypeError(f"`targets` must be a non-empty list of target texts, got {targets!r}.")
        s = self.settings(settings, **renamed(overrides, stacklevel=2))
        return self._run(source, list(targets), inversion_prompt, seed, progress, s, callback)

    def _run(self, source: Prompt, targets: list, inversion_prompt: Prompt, seed: int | None, progress: bool,
             s: EditSettings, callback: Progress | None) -> list[EditResult]:
        for target in targets:
            check_prompt("target", target, required=True)
            check_text(self.c, "target", target, required=True, quiet=True)
        seed = check_seed("seed", seed)
        check_prompt("source", source)
        check_prompt("inversion_prompt", inversion_prompt)
        masks = [self._mask(source, target, s, seed, progress) for target in targets]
        k = strength_steps(s.steps, s.encoding_ratio)
        inversion = self._inversion(inversion_prompt, s, progress,
                                    None if callback is None else (lambda done, _total: callback(done, 2 * k)))
        if callback is not None:
            callback(k, 2 * k)  # also when the encoding came from the cache
        key = (self._inversion_key(inversion_prompt, s), s.guidance, *(
            (_key(t), tuple(m.mask.shape), m.mask.cpu().numpy().tobytes()) for t, m in zip(targets, masks)))
        negative = self.embedding("") if s.guidance > 1 else None
        tell = None if callback is None else (lambda i, _t, _z: callback(k + i + 1, 2 * k))

        def compute():
            if len(targets) == 1:
                results = [masked_denoise(self.c, inversion, masks[0], self.embedding(targets[0]),
                                          guidance=s.guidance, negative_prompt=negative, progress=progress,
                                          callback=tell)]
            else:
                results = masked_denoise_many(self.c, inversion, masks, [self.embedding(t) for t in targets],
                                              guidance=s.guidance, negative_prompt=negative, progress=progress,
                                              callback=tell)
            images = decode(self.c, torch.cat([r.latents for r in results]))
            per = len(images) // len(results)
            return [(r, images[j * per:(j + 1) * per]) for j, r in enumerate(results)]

        decoded = self._cached(self._decodings, key, compute)
        if callback is not None:
            callback(2 * k, 2 * k)
        return [
            EditResult(
                image=images[0],
                images=list(images),
                mask=mask,
                inversion=inversion,
                latents=result.latents,
                trajectory=result.trajectory,
                settings=dict(s.as_dict(), seed=seed, inversion_prompt=inversion_prompt, source=source, target=target),
                edit_settings=s,
            )
            for target, mask, (result, images) in zip(targets, masks, decoded)
        ]


def _key(prompt: Prompt) -> Hashable:
    """A hashable cache key for a text, a list of texts or an embedding tensor: for a tensor its
    shape, dtype and the SHA-256 of its bytes (two different embeddings never share a key)."""
    if isinstance(prompt, torch.Tensor):
        data = prompt.detach().cpu().contiguous()
        digest = hashlib.sha256(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"").hexdigest()
        return ("tensor", tuple(data.shape), str(data.dtype), digest)
    return tuple(prompt) if isinstance(prompt, list) else prompt
