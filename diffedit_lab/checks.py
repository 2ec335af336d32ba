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


def _check_integer(name: str, value, low: int, note: str = "") -> int:
    """An integer (not a bool) ``≥ low``; ``note`` follows the range in the error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"`{name}` must be an integer ≥ {low}{note}, got {value!r}.")
    return int(value)


def check_count(name: str, value) -> int:
    """A number of steps or draws: an integer ``≥ 1``."""
    return _check_integer(name, value, 1)


def check_radius(name: str, value) -> int:
    """A radius in cells: an integer ``≥ 0`` (0: off)."""
    return _check_integer(name, value, 0, " (0: off)")


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


RESCALES = ("mean", "range")
"""How the mask's difference map ``D`` is rescaled to [0, 1] before the threshold (``rescale``)."""


def check_rescale(name: str, value) -> str:
    """The mask's rescale of ``D``: ``"mean"`` (diffusers) or ``"range"`` (the paper)."""
    if not isinstance(value, str) or value not in RESCALES:
        raise ValueError(f"`{name}` must be 'mean' (diffusers: divide by κ·mean D) or 'range' (the paper: min–max "
                         f"to [0, 1]), got {value!r}.")
    return value


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
        warn(
            "`mask` is all zeros: nothing will be edited (the result is the input). "
            "Lower `threshold`/`clamp_ratio` of the mask, or check the source/target prompts."
        )


SEED_LIMIT = 2**64
"""Seeds are integers in ``[0, 2**64)`` (what ``torch.Generator.manual_seed`` keeps)."""


def check_seed(name: str, value):
    """A random seed: ``None`` (draw from torch's global generator) or an integer in ``[0, 2**64)``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not (0 <= value < SEED_LIMIT):
        raise ValueError(f"`{name}` must be None or an integer in [0, 2**64), got {value!r}.")
    return int(value)


def check_flag(name: str, value) -> bool:
    """A yes/no setting: ``True``/``False`` (or 0/1), nothing else (``"no"`` would be true)."""
    if isinstance(value, (bool, numbers.Integral)) and value in (0, 1):
        return bool(value)
    raise ValueError(f"`{name}` must be True or False, got {value!r}.")


def check_finite(name: str, value: torch.Tensor) -> torch.Tensor:
    """A tensor without NaN or ±inf."""
    if value.is_floating_point() and value.numel() and not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise ValueError(f"`{name}` has {bad} NaN or infinite value(s) of {value.numel()}: pass finite numbers.")
    return value


IMAGE_TENSOR_SLACK = 0.5
"""Image tensors are in [-1, 1]; values up to this far outside (a VAE's overshoot) are clamped,
values further out mean another range (e.g. [0, 255]) and are refused."""


def check_image_tensor(name: str, value: torch.Tensor) -> torch.Tensor:
    """An image tensor in [-1, 1] (``decode(…, output_type="pt")``'s range): finite, and within
    ``IMAGE_TENSOR_SLACK`` of the range (then clamped to it); else a ``ValueError``."""
    check_finite(name, value)
    if value.numel():
        low, high = float(value.min()), float(value.max())
        if low < -1 - IMAGE_TENSOR_SLACK or high > 1 + IMAGE_TENSOR_SLACK:
            raise ValueError(
                f"`{name}`: an image tensor must be in [-1, 1], got values in [{low:.4g}, {high:.4g}]. "
                "From pixels in [0, 255] use x / 127.5 - 1; from [0, 1] use 2 * x - 1."
            )
    return value.clamp(-1, 1)


def check_mask_values(name: str, mask: torch.Tensor) -> torch.Tensor:
    """A (soft) mask: finite values in [0, 1]."""
    check_finite(name, mask)
    if mask.numel() and (mask.min() < 0 or mask.max() > 1):
        raise ValueError(f"`{name}` values must be in [0, 1].")
    return mask


_PACKAGE_DIR = __file__.rsplit("/", 1)[0].rsplit("\\", 1)[0]


def caller_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning point at the first frame outside diffedit_lab and
    torch (whose ``inference_mode`` decorators add frames): the user's line, not ours."""
    import os
    import sys

    skip = (_PACKAGE_DIR + os.sep, os.path.dirname(torch.__file__) + os.sep, os.path.dirname(os.__file__) + os.sep + "contextlib")
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(skip):
        frame, level = frame.f_back, level + 1
    return level


def warn(message: str) -> None:
    """A ``UserWarning`` that points at the caller's line (see :func:`caller_stacklevel`)."""
    warnings.warn(message, UserWarning, stacklevel=caller_stacklevel())
