"""Input validation: every check names the parameter and the allowed range.

Bad values fail early with a ``ValueError`` (or ``TypeError``) that says what was expected,
instead of deep inside the UNet.
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch


def check_strength(name: str, value) -> float:
    """A noise strength (fraction of the diffusion): ``0 < value ≤ 1``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0 < value <= 1):
        raise ValueError(f"`{name}` must be a number in (0, 1], got {value!r}.")
    return float(value)


def check_count(name: str, value) -> int:
    """A number of steps or draws: an integer ``≥ 1``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be an integer ≥ 1, got {value!r}.")
    return int(value)


def check_positive(name: str, value) -> float:
    """A strictly positive finite number (e.g. the mask's ``clamp_ratio``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0 < value < math.inf):
        raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}.")
    return float(value)


def check_guidance(name: str, value) -> float:
    """A classifier-free guidance scale ``w ≥ 0`` (``w ≤ 1`` means: no guidance)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0 <= value < math.inf):
        raise ValueError(f"`{name}` must be a finite number ≥ 0 (≤ 1 turns guidance off), got {value!r}.")
    return float(value)


def check_threshold(name: str, value) -> float:
    """A binarisation threshold on a map rescaled to [0, 1]: ``0 ≤ value < 1``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0 <= value < 1):
        raise ValueError(f"`{name}` must be a number in [0, 1), got {value!r}.")
    return float(value)


def check_prompt(name: str, value, *, required: bool = False):
    """A text, a non-empty list of texts (mean-pooled), or an embedding tensor.

    ``required=True``: the empty text is not allowed (e.g. DiffEdit's target query).
    """
    if isinstance(value, torch.Tensor):
        if value.ndim not in (2, 3) or (value.ndim == 3 and value.shape[0] != 1):
            raise ValueError(f"`{name}`: an embedding tensor must have shape (L, D) or (1, L, D), got {tuple(value.shape)}.")
        return value
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, (list, tuple)) or not texts or not all(isinstance(t, str) for t in texts):
        raise TypeError(f"`{name}` must be a text, a non-empty list of texts or an embedding tensor, got {value!r}.")
    if required and not any(t.strip() for t in texts):
        raise ValueError(f"`{name}` must be a non-empty text (the empty text is the unconditional prompt).")
    return value


def check_mask_shape(mask: torch.Tensor, latents: torch.Tensor) -> None:
    """A (B, 1, h, w) mask must match (B or 1) × the latents' (h, w)."""
    if mask.shape[-2:] != latents.shape[-2:] or mask.shape[0] not in (1, latents.shape[0]):
        raise ValueError(
            f"`mask` of shape {tuple(mask.shape)} does not match latents of shape {tuple(latents.shape)}: "
            f"expected (1 or {latents.shape[0]}, 1, {latents.shape[-2]}, {latents.shape[-1]})."
        )


def warn_if_empty_mask(mask: torch.Tensor) -> None:
    """An all-zero mask keeps the whole input: the edit would change nothing."""
    if not bool((mask > 0).any()):
        warnings.warn(
            "`mask` is all zeros: nothing will be edited (the result is the input). "
            "Lower `threshold`/`clamp_ratio` of the mask, or check the source/target prompts.",
            UserWarning,
            stacklevel=3,
        )
