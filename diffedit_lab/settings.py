"""Every DiffEdit setting, in one frozen object (:class:`EditSettings`), validated once, where it is built.

One name per quantity (the paper's symbol in brackets):

    n                    noise draws averaged in the mask                          (n)
    mask_noise           noise strength of the mask's draws (paper: ≤ 0.6)          (s)
    clamp_ratio          clamp the difference map at κ × its mean                   (κ)
    rescale              how D is rescaled to [0, 1]: "mean" (diffusers: ÷ κ·mean D)
                         or "range" (the paper: min–max after the clamp)
    threshold            binarise the rescaled map: M = [D̃ > τ]                     (τ)
    fill_holes           fill the holes of M, when M covers under half the image (an
                         object's inside; not in the paper nor diffusers)
    close                close M over gaps of this many cells (dilate, fill, erode; 0: off;
                         not in the paper nor diffusers)
    encoding_ratio       how far DDIM encodes the input: ⌊steps·r⌋ steps            (r)
    steps                DDIM steps of the whole schedule                           (T)
    guidance             classifier-free guidance of the decoding and the mask      (w)
    inversion_guidance   guidance of the encoding (the paper: 1, unconditional)

Where a value comes from, the later wins:

    the paper's values (the field defaults below)  →  the model's recorded values
    (its ``diffedit_lab.json``, ``Components.defaults``)  →  the caller's overrides

    settings = EditSettings.for_model(c, threshold=0.6)

A seed is not a setting (it picks the noise, not the method): ``edit``/``EditSession`` take it
apart. ``strength`` and ``mask_strength`` (this library's names before) are accepted for one
release with a ``DeprecationWarning``.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .checks import (check_count, check_flag, check_guidance, check_positive, check_radius, check_rescale, check_strength,
                     check_threshold)

DEPRECATED_NAMES = {"strength": "encoding_ratio", "mask_strength": "mask_noise"}
"""Old keyword names of ``edit()``/``EditSession`` → the setting they meant."""


def renamed(given: dict, *, stacklevel: int, names: dict | None = None) -> dict:
    """``given`` with deprecated keyword names (``names``, default :data:`DEPRECATED_NAMES`)
    replaced by the new ones; one ``DeprecationWarning`` per old name, ``stacklevel`` counted as
    ``warnings.warn`` counts it from the function that calls this (2: that function's caller)."""
    names = DEPRECATED_NAMES if names is None else names
    out = dict(given)
    for old, new in names.items():
        if old not in out:
            continue
        value = out.pop(old)
        warnings.warn(f"`{old}` is deprecated (it will go in the next release): use `{new}`.", DeprecationWarning,
                      stacklevel=stacklevel + 1)
        if new in out and out[new] is not None and value is not None:
            raise TypeError(f"got both `{old}` and `{new}`: pass only `{new}`.")
        if value is not None or new not in out:
            out[new] = value
    return out


@dataclass(frozen=True)
class EditSettings:
    """The settings of one DiffEdit edit (see the module doc); checked when built.

    ``EditSettings()`` holds the paper's values; :meth:`for_model` the model's recorded ones
    with the caller's overrides; :meth:`replace` a copy with some fields changed (checked again).
    """

    n: int = 10
    mask_noise: float = 0.5
    clamp_ratio: float = 3.0
    threshold: float = 0.5
    fill_holes: bool = False
    close: int = 0
    rescale: str = "mean"
    encoding_ratio: float = 0.8
    steps: int = 50
    guidance: float = 7.5
    inversion_guidance: float = 1.0

    def __post_init__(self):
        for name in ("n", "steps"):
            self._set(name, check_count(name, getattr(self, name)))
        for name in ("mask_noise", "encoding_ratio"):
            self._set(name, check_strength(name, getattr(self, name)))
        for name in ("guidance", "inversion_guidance"):
            self._set(name, check_guidance(name, getattr(self, name)))
        self._set("clamp_ratio", check_positive("clamp_ratio", self.clamp_ratio))
        self._set("threshold", check_threshold("threshold", self.threshold))
        self._set("fill_holes", check_flag("fill_holes", self.fill_holes))
        self._set("close", check_radius("close", self.close))
        self._set("rescale", check_rescale("rescale", self.rescale))
        for name in ("mask_noise", "encoding_ratio"):  # ⌊steps·r⌋ ≥ 1: sampling.strength_steps' rule
            if int(self.steps * getattr(self, name)) < 1:
                raise ValueError(f"`{name}`={getattr(self, name)} × `steps`={self.steps} covers no DDIM step: use "
                                 f"{name} ≥ {1 / self.steps:.3g} or more steps.")

    def _set(self, name: str, value) -> None:
        object.__setattr__(self, name, value)  # frozen: only the constructor normalises

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The settings' names, in order."""
        return _names(cls)

    @classmethod
    def for_model(cls, c: Any = None, **overrides: Any) -> "EditSettings":
        """The paper's values, then those ``c`` (a ``Components``) records in its
        ``diffedit_lab.json``, then ``overrides`` (``None`` means: not given)."""
        overrides = renamed(overrides, stacklevel=2)
        recorded = _recorded(getattr(c, "defaults", None) or {})
        paper = PAPER if cls is EditSettings else cls()
        return paper._with(recorded, "the model's diffedit_lab.json")._with(overrides, "")

    def replace(self, **overrides: Any) -> "EditSettings":
        """A copy with ``overrides`` (``None``: unchanged), checked again."""
        return self._with(renamed(overrides, stacklevel=2), "")

    def _with(self, overrides: dict, where: str) -> "EditSettings":
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = sorted(set(given).difference(self.names()))
        if unknown:
            hint = " (a seed is not a setting: pass `seed=` to edit()/run())" if "seed" in unknown else ""
            raise TypeError(f"unknown setting(s) {unknown}{' in ' + where if where else ''}{hint}; "
                            f"known: {list(self.names())}.")
        if not given:
            return self
        # the same change of the same settings is built (and checked) once; the key holds the
        # types, so that 4.0 steps is not mistaken for a checked 4
        return _replaced(self, tuple((k, type(v), v) for k, v in sorted(given.items())))

    def as_dict(self) -> dict:
        """``{name: value}`` of every setting."""
        return asdict(self)

    # ---- what each cached step depends on (EditSession's cache keys)

    def draw_key(self) -> tuple:
        """What the mask's noised draws depend on (besides the seed): ``n``, ``s`` and the DDIM grid."""
        return (self.n, self.mask_noise, self.steps)

    def mask_key(self) -> tuple:
        """What the mask's difference map ``D`` depends on (besides the texts and the seed); κ, τ,
        ``rescale``, ``fill_holes`` and ``close`` only re-threshold it."""
        return (*self.draw_key(), self.guidance)

    def inversion_key(self) -> tuple:
        """What the DDIM encoding depends on (besides its text): ``r``, the grid and its guidance."""
        return (self.encoding_ratio, self.steps, self.inversion_guidance)

    def decoding_key(self) -> tuple:
        """What the decoding depends on (besides the inversion, the texts and the binary mask)."""
        return (*self.inversion_key(), self.guidance)


def _recorded(defaults: dict) -> dict:
    """A model's recorded settings under today's names (its file may use the old ones)."""
    out = {DEPRECATED_NAMES.get(k, k): v for k, v in defaults.items() if k not in DEPRECATED_NAMES}
    out.update({new: defaults[old] for old, new in DEPRECATED_NAMES.items() if old in defaults and new not in out})
    return out


@functools.lru_cache(maxsize=None)
def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


@functools.lru_cache(maxsize=1024)
def _replaced(settings: EditSettings, given: tuple) -> EditSettings:
    return replace(settings, **{k: v for k, _, v in given})


PAPER = EditSettings()
"""The paper's values (the field defaults above): what a step function uses for a ``None``."""


def or_paper(name: str, value: Any) -> Any:
    """``value``, or the paper's value of setting ``name`` when it is ``None``."""
    return getattr(PAPER, name) if value is None else value
