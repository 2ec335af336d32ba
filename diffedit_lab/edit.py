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

from .checks import (check_count, check_finite, check_flag, check_guidance, check_positive, check_prompt, check_seed,
                     check_strength, check_threshold)
from .denoise import masked_denoise, masked_denoise_many
from .inputs import check_text
from .inversion import Inversion, ddim_invert
from .latents import decode, encode, encode_prompt, is_latents, make_generator
from .mask import MaskResult, mask_draws, mask_from_draws
from .metrics import warn_if_unrepresentable
from .models import Components

LIBRARY_DEFAULTS = dict(
    n=10,  # noise draws averaged in the mask
    mask_strength=0.5,  # noise level of the mask (paper: ≤ 0.6)
    clamp_ratio=3.0,  # κ: clamp the difference map at κ × its mean
    threshold=0.5,  # τ: binarise the rescaled map
    fill_holes=False,  # fill the holes of the binary mask (not in the paper nor diffusers)
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
    s["fill_holes"] = check_flag("fill_holes", s["fill_holes"])
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
    fill_holes: bool | None = None,
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
    An image the model's VAE cannot represent (round trip below ``metrics.ROUNDTRIP_PSNR_MIN``)
    gets a one-line ``metrics.RoundTripWarning`` before the work starts.
    """
    session = EditSession(c, image)
    if not is_latents(c, image):
        warn_if_unrepresentable(c, image, latents=session.z0)
    return session.run(
        source, target, n=n, mask_strength=mask_strength, clamp_ratio=clamp_ratio, threshold=threshold,
        fill_holes=fill_holes, strength=strength, steps=steps, guidance=guidance, inversion_prompt=inversion_prompt,
        inversion_guidance=inversion_guidance, seed=seed, progress=progress,
    )


class EditSession:
    """One image, edited again and again: each step is cached under the settings it depends on.

    Kept once computed (the oldest entry of a cache goes first beyond ``max_cached``):

    * ``z0``, the encoded image (VAE mean) — at construction;
    * the text embeddings: each text is encoded once (``""``, the source, each target…);
    * the mask's noised draws and its **source branch** (``ε(z_t, ∅)``, ``ε(z_t, R)``) per
      source, ``n``, ``mask_strength``, ``steps`` and ``seed``: a new target runs only its own
      n UNet rows (of the 3n);
    * the mask per texts, ``n``, ``mask_strength``, ``guidance``, ``steps`` and ``seed`` — a new
      ``clamp_ratio``/``threshold``/``fill_holes`` only re-thresholds it, without any model call;
    * the inversion per ``inversion_prompt``, ``strength``, ``steps`` and ``inversion_guidance``;
    * the decoding and its images per inversion, target, ``guidance`` and *binary* mask: a new
      threshold that leaves the mask as it was costs nothing.

    A cached result is the very result of the computation, and a recomputed one is identical to
    it (``torch.equal``): the mask's source and target branches are always separate UNet calls,
    since the UNet's float rounding can depend on the batch size. This is what makes an
    interactive explorer responsive, and trying several targets on one image cheap —
    :meth:`run_many` also batches their decodings.
    """

    def __init__(self, c: Components, image, *, max_cached: int = 8):
        self.c = c
        self.z0 = check_finite("image", image.to(c.device).float()) if is_latents(c, image) else encode(c, image)
        self.max_cached = max_cached
        self._embeddings: dict = {}
        self._draws: dict = {}
        self._sources: dict = {}
        self._masks: dict = {}
        self._inversions: dict = {}
        self._decodings: dict = {}

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

    def settings(self, **given) -> dict:
        """``given`` settings (``edit()``'s names) completed with the defaults and validated."""
        unknown = set(given) - set(LIBRARY_DEFAULTS)
        if unknown:
            raise TypeError(f"unknown setting(s) {sorted(unknown)}; known: {sorted(LIBRARY_DEFAULTS)}")
        return check_settings(resolve_settings(self.c, **{k: given.get(k) for k in LIBRARY_DEFAULTS}))

    def embedding(self, prompt) -> torch.Tensor:
        """``encode_prompt(c, prompt)``, encoded once per text (an embedding tensor passes through)."""
        check_prompt("prompt", prompt)
        if isinstance(prompt, torch.Tensor):
            return encode_prompt(self.c, prompt)
        return self._cached(self._embeddings, _key(prompt), lambda: encode_prompt(self.c, prompt), 8 * self.max_cached)

    def mask(self, source, target, *, seed: int | None = None, **settings) -> MaskResult:
        """The mask for these settings (``edit()``'s names), from the cache when possible."""
        check_prompt("source", source)
        check_prompt("target", target, required=True)
        check_text(self.c, "target", target, required=True, quiet=True)
        return self._mask(source, target, self.settings(**settings), check_seed("seed", seed))

    def _mask(self, source, target, s: dict, seed, progress: bool = False) -> MaskResult:
        draw_key = (s["n"], s["mask_strength"], s["steps"], seed)
        key = (_key(source), _key(target), s["guidance"], *draw_key)

        def compute():
            t, z_t = self._cached(self._draws, draw_key, lambda: mask_draws(
                self.c, self.z0, s["n"], s["mask_strength"], s["steps"], make_generator(seed)))
            source_key = (_key(source), s["guidance"] > 1, *draw_key)
            cached = self._sources.get(source_key)
            empty = self.embedding("") if s["guidance"] > 1 else ""  # unguided: no negative rows
            raw, source_raw = mask_from_draws(
                self.c, z_t, t, s["n"], self.embedding(source), self.embedding(target),
                source_negative_prompt=empty, target_negative_prompt=empty, guidance=s["guidance"],
                clamp_ratio=s["clamp_ratio"], threshold=s["threshold"], strength=s["mask_strength"],
                source_predictions=cached, progress=progress,
            )
            self._cached(self._sources, source_key, lambda: source_raw)
            return raw

        raw = self._cached(self._masks, key, compute)
        return raw.rethreshold(clamp_ratio=s["clamp_ratio"], threshold=s["threshold"], fill_holes=s["fill_holes"])

    def inversion(self, inversion_prompt="", *, progress: bool = True, **settings) -> Inversion:
        """The DDIM inversion of ``z0`` for these settings, from the cache when possible."""
        check_prompt("inversion_prompt", inversion_prompt)
        return self._inversion(inversion_prompt, self.settings(**settings), progress)

    def _inversion_key(self, inversion_prompt, s: dict) -> tuple:
        return (_key(inversion_prompt), s["strength"], s["steps"], s["inversion_guidance"])

    def _inversion(self, inversion_prompt, s: dict, progress: bool) -> Inversion:
        guided = s["inversion_guidance"] > 1
        return self._cached(self._inversions, self._inversion_key(inversion_prompt, s), lambda: ddim_invert(
            self.c, self.z0, self.embedding(inversion_prompt), strength=s["strength"], steps=s["steps"],
            guidance=s["inversion_guidance"], negative_prompt=self.embedding("") if guided else "", progress=progress,
        ))

    def run(self, source, target, *, inversion_prompt="", seed: int | None = None, progress: bool = True,
            **settings) -> EditResult:
        """Like :func:`edit` (same keyword arguments), reusing what the cache holds."""
        return self._run(source, [target], inversion_prompt, seed, progress, settings)[0]

    def run_many(self, source, targets: list, *, inversion_prompt="", seed: int | None = None, progress: bool = True,
                 **settings) -> list[EditResult]:
        """One edit per target (each a text, or a list of texts to mean-pool), as :meth:`run` —
        the same masks and inversion — with the decodings **batched**: K targets make one UNet call
        of 2K rows per step instead of K calls of 2 rows, which a CPU runs in ~60 % of the time
        per row. The decodings equal :meth:`run`'s up to the UNet's float rounding for the larger
        batch (~1e-6); they are cached too, under the whole list of targets."""
        if not isinstance(targets, (list, tuple)) or not targets:
            raise TypeError(f"`targets` must be a non-empty list of target texts, got {targets!r}.")
        return self._run(source, list(targets), inversion_prompt, seed, progress, settings)

    def _run(self, source, targets: list, inversion_prompt, seed, progress: bool, settings: dict) -> list[EditResult]:
        for target in targets:
            check_prompt("target", target, required=True)
            check_text(self.c, "target", target, required=True, quiet=True)
        s = self.settings(**settings)
        seed = check_seed("seed", seed)
        check_prompt("source", source)
        check_prompt("inversion_prompt", inversion_prompt)
        masks = [self._mask(source, target, s, seed, progress) for target in targets]
        inversion = self._inversion(inversion_prompt, s, progress)
        key = (self._inversion_key(inversion_prompt, s), s["guidance"], *(
            (_key(t), tuple(m.mask.shape), m.mask.cpu().numpy().tobytes()) for t, m in zip(targets, masks)))
        negative = self.embedding("") if s["guidance"] > 1 else None

        def compute():
            if len(targets) == 1:
                results = [masked_denoise(self.c, inversion, masks[0], self.embedding(targets[0]),
                                          guidance=s["guidance"], negative_prompt=negative, progress=progress)]
            else:
                results = masked_denoise_many(self.c, inversion, masks, [self.embedding(t) for t in targets],
                                              guidance=s["guidance"], negative_prompt=negative, progress=progress)
            images = decode(self.c, torch.cat([r.latents for r in results]))
            per = len(images) // len(results)
            return [(r, images[k * per:(k + 1) * per]) for k, r in enumerate(results)]

        decoded = self._cached(self._decodings, key, compute)
        return [
            EditResult(
                image=images[0],
                images=list(images),
                mask=mask,
                inversion=inversion,
                latents=result.latents,
                trajectory=result.trajectory,
                settings=dict(s, seed=seed, inversion_prompt=inversion_prompt, source=source, target=target),
            )
            for target, mask, (result, images) in zip(targets, masks, decoded)
        ]


def _key(prompt):
    """A hashable cache key for a text, a list of texts or an embedding tensor."""
    if isinstance(prompt, torch.Tensor):
        return ("tensor", tuple(prompt.shape), prompt.detach().double().sum().item(), prompt.detach().abs().sum().item())
    return tuple(prompt) if isinstance(prompt, list) else prompt
