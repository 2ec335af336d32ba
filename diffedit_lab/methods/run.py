"""All the masks of one edit from shared work: one DDIM encoding, one DiffEdit mask.

:func:`run_methods` encodes the image once (:class:`~diffedit_lab.EditSession`: the same
``z0``, mask and inversion as :func:`~diffedit_lab.edit` with the same settings), then

* ``diffedit``: DiffEdit's mask ``M_D`` and edit (exactly :func:`~diffedit_lab.edit`'s);
* ``cross_attention``: the attention mask ``M_A`` over the *same* encoded latents, decoded with
  DiffEdit's decoding on the same inversion;
* ``intersection``: ``M_D · M_A`` (at latent and at image resolution), decoded likewise;
* ``ledits_pp``: diffusers' LEDITS++ on the image (its own inversion and decoding), and its
  implicit mask decoded with DiffEdit's decoding too (``masked_images``);
* any ``extra_masks`` (e.g. the true region) decoded likewise.

Each decoding is its own :func:`~diffedit_lab.masked_denoise` call (not batched), so a mask
equal to DiffEdit's gives DiffEdit's very image. Settings left as ``None`` are the model's
(``Components.defaults``), as for :func:`~diffedit_lab.edit`.
"""

from __future__ import annotations

from typing import Any

import torch

from ..denoise import as_latent_mask, masked_denoise
from ..edit import EditSession
from ..latents import decode
from ..models import Components
from ..settings import EditSettings
from .attention import ATTENTION_THRESHOLD, changed_positions_both, cross_attention_mask
from .common import MethodResult, intersect_masks
from .ledits import check_ledits_input, ledits_pp

METHODS = ("diffedit", "cross_attention", "intersection", "ledits_pp")
"""The methods :func:`run_methods` knows, in the order of the tables."""


def run_methods(
    c: Components,
    image,
    source: str,
    target: str,
    *,
    methods=METHODS,
    seed: int = 0,
    attention_threshold: float = ATTENTION_THRESHOLD,
    ledits: dict | None = None,
    extra_masks: dict | None = None,
    progress: bool = False,
    settings: EditSettings | None = None,
    **overrides: Any,
) -> dict[str, MethodResult]:
    """The ``methods``' results for editing one ``image`` from ``source`` to ``target``, by name.

    ``settings``/``overrides``: DiffEdit's :class:`~diffedit_lab.settings.EditSettings` (default:
    the model's) and settings by name on top of it (``n``, ``mask_noise``, ``threshold``,
    ``encoding_ratio``, ``steps``, ``guidance``, …); ``seed`` drives DiffEdit's noise
    draws and LEDITS++'s inversion noise. ``attention_threshold``: ``τ`` of the attention mask.
    ``ledits``: keyword arguments for :func:`~diffedit_lab.methods.ledits_pp` (its ``steps``
    default to these ``steps``). ``extra_masks``: name → latent mask (anything
    :func:`~diffedit_lab.as_latent_mask` takes) to decode the same way (``soft`` None; its
    ``mask_image``: each cell a block of pixels).
    """
    unknown = set(methods) - set(METHODS)
    if unknown or not methods:
        raise ValueError(f"unknown method(s) {sorted(unknown)}; choose among {list(METHODS)}.")
    if {"cross_attention", "intersection"} & set(methods):  # bad texts fail here, before any model call
        changed_positions_both(c.tokenizer, source, target)
    if "ledits_pp" in methods:
        check_ledits_input(c, image)
    session = EditSession(c, image)
    s = session.settings(settings, **overrides)
    need_diffedit = {"diffedit", "intersection"} & set(methods)
    out: dict[str, MethodResult] = {}
    res = session.run(source, target, s, seed=seed, progress=progress) if need_diffedit else None
    inversion = res.inversion if res is not None else session.inversion(settings=s, progress=progress)
    size = (inversion.z0.shape[-2] * c.vae_scale_factor, inversion.z0.shape[-1] * c.vae_scale_factor)
    negative = session.embedding("") if s.guidance > 1 else None

    def decoded(mask) -> tuple[list, torch.Tensor]:
        d = masked_denoise(c, inversion, mask, session.embedding(target), guidance=s.guidance,
                           negative_prompt=negative, progress=progress)
        return decode(c, d.latents), d.latents

    if res is not None and "diffedit" in methods:
        out["diffedit"] = MethodResult(
            method="diffedit", mask=res.mask.mask, mask_image=res.mask.upsampled(), image=res.image,
            images=res.images, soft=res.mask.normalized, masked_images=res.images, latents=res.latents,
            details=dict(mask=res.mask, inversion=inversion, settings=res.settings))
    attention = None
    if {"cross_attention", "intersection"} & set(methods):
        attention = cross_attention_mask(c, inversion, source, target, threshold=attention_threshold)
    if "cross_attention" in methods:
        images, latents = decoded(attention.mask)
        out["cross_attention"] = MethodResult(
            method="cross_attention", mask=attention.mask, mask_image=attention.mask_image, image=images[0],
            images=images, soft=attention.normalized, masked_images=images, latents=latents,
            details=dict(attention=attention, inversion=inversion))
    if "intersection" in methods:
        mask = intersect_masks(res.mask.mask, attention.mask)
        images, latents = decoded(mask)
        out["intersection"] = MethodResult(
            method="intersection", mask=mask, mask_image=intersect_masks(res.mask.upsampled(), attention.mask_image),
            image=images[0], images=images, soft=None, masked_images=images, latents=latents,
            details=dict(mask=res.mask, attention=attention, inversion=inversion))
    if "ledits_pp" in methods:
        kwargs = dict(steps=s.steps, seed=seed)
        kwargs.update(ledits or {})
        result = ledits_pp(c, image, source, target, **kwargs)
        result.masked_images, result.latents = decoded(result.mask)
        out["ledits_pp"] = result
    for name, mask in (extra_masks or {}).items():
        images, latents = decoded(mask)
        m = as_latent_mask(c, mask, inversion.latents)  # (B or 1, 1, h, w)
        up = torch.nn.functional.interpolate(m, size=size, mode="nearest")[:, 0]  # each cell a block of pixels
        m = m[:, 0]
        out[name] = MethodResult(method=name, mask=m, mask_image=up, image=images[0], images=images,
                                 masked_images=images, latents=latents)
    return out


def _one(name: str, c: Components, image, source: str, target: str, **kwargs) -> MethodResult:
    return run_methods(c, image, source, target, methods=(name,), **kwargs)[name]


def diffedit(c: Components, image, source: str, target: str, **kwargs) -> MethodResult:
    """DiffEdit (:func:`~diffedit_lab.edit`) as a :class:`MethodResult`; keywords of :func:`run_methods`."""
    return _one("diffedit", c, image, source, target, **kwargs)


def cross_attention(c: Components, image, source: str, target: str, **kwargs) -> MethodResult:
    """The cross-attention mask of the changed words, and DiffEdit's decoding with it (keywords of
    :func:`run_methods`; ``attention_threshold`` is ``τ``)."""
    return _one("cross_attention", c, image, source, target, **kwargs)


def intersection(c: Components, image, source: str, target: str, **kwargs) -> MethodResult:
    """DiffEdit's mask ∩ the cross-attention mask, and DiffEdit's decoding with it."""
    return _one("intersection", c, image, source, target, **kwargs)
