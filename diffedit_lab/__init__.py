"""diffedit-lab: DiffEdit (Couairon et al., ICLR 2023) as small, inspectable steps.

    image ─encode─▶ z0 ─noise_diff_mask─▶ MaskResult                       (step 1: where)
                     └─ddim_invert─▶ Inversion ─masked_denoise(mask, Q)─▶ z0' ─decode─▶ image
                                   (step 2: encode)  (step 3: decode with the query)

``edit`` runs the whole chain with one ``EditSettings`` (the paper's values, the model's, the
caller's); every step is also a public function returning a small
dataclass that a notebook can plot. Only ``models`` decides the device and dtype.

The names below are imported on first use (PEP 562): ``import diffedit_lab`` alone does not
import torch, so ``diffedit-lab --help`` answers at once and a Ctrl-C while torch loads is
handled by the command line.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

_EXPORTS = {
    "DenoiseResult": "denoise", "as_latent_mask": "denoise", "encode_decode": "denoise",
    "masked_denoise": "denoise", "sdedit": "denoise",
    "EditResult": "edit", "EditSession": "edit", "edit": "edit",
    "Inversion": "inversion", "ddim_invert": "inversion",
    "decode": "latents", "encode": "latents", "encode_prompt": "latents", "load_image": "latents",
    "MaskResult": "mask", "noise_diff_mask": "mask",
    "DEFAULT_MODEL_DIR": "models", "Components": "models", "ModelLoadError": "models",
    "ModelNotFoundError": "models", "default_device": "models", "load_components": "models",
    "set_threads": "models",
    "known_words": "inputs",
    "EditSettings": "settings",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'diffedit_lab' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


class _Package(types.ModuleType):
    """Keeps ``diffedit_lab.edit`` the function: importing the submodule ``diffedit_lab.edit``
    would otherwise bind the package attribute to the module (the eager ``from .edit import
    edit`` used to rebind it)."""

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == name:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __dir__():
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs
    from .denoise import DenoiseResult, as_latent_mask, encode_decode, masked_denoise, sdedit
    from .edit import EditResult, EditSession, edit
    from .inputs import known_words
    from .inversion import Inversion, ddim_invert
    from .latents import decode, encode, encode_prompt, load_image
    from .mask import MaskResult, noise_diff_mask
    from .settings import EditSettings
    from .models import (
        DEFAULT_MODEL_DIR,
        Components,
        ModelLoadError,
        ModelNotFoundError,
        default_device,
        load_components,
        set_threads,
    )
