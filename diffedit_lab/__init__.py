"""diffedit-lab: DiffEdit (Couairon et al., ICLR 2023) as small, inspectable steps.

    image ─encode─▶ z0 ─noise_diff_mask─▶ MaskResult                       (step 1: where)
                     └─ddim_invert─▶ Inversion ─masked_denoise(mask, Q)─▶ z0' ─decode─▶ image
                                   (step 2: encode)  (step 3: decode with the query)

``edit`` runs the whole chain with one ``EditSettings`` (the paper's values, the model's, the
caller's); every step is also a public function returning a small
dataclass that a notebook can plot. Only ``models`` decides the device and dtype.
"""

from .denoise import DenoiseResult, as_latent_mask, encode_decode, masked_denoise, sdedit
from .edit import EditResult, EditSession, edit
from .inversion import Inversion, ddim_invert
from .latents import decode, encode, encode_prompt, load_image
from .mask import MaskResult, noise_diff_mask
from .models import (
    DEFAULT_MODEL_DIR,
    Components,
    ModelNotFoundError,
    default_device,
    load_components,
)
from .settings import EditSettings

__all__ = [
    "DEFAULT_MODEL_DIR",
    "Components",
    "DenoiseResult",
    "EditResult",
    "EditSession",
    "EditSettings",
    "Inversion",
    "MaskResult",
    "ModelNotFoundError",
    "as_latent_mask",
    "ddim_invert",
    "decode",
    "default_device",
    "edit",
    "encode",
    "encode_decode",
    "encode_prompt",
    "load_components",
    "load_image",
    "masked_denoise",
    "noise_diff_mask",
    "sdedit",
]
