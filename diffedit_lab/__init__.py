"""diffedit-lab: DiffEdit (Couairon et al., ICLR 2023) as small, inspectable steps.

    image ─encode─▶ z0 ─noise_diff_mask─▶ MaskResult
                     └─ddim_invert─▶ Inversion ─masked_denoise(mask, target)─▶ z0' ─decode─▶ image

``edit`` runs the whole chain; every step is also a public function returning a small
dataclass that a notebook can plot.
"""

from .models import (
    DEFAULT_MODEL_DIR,
    Components,
    ModelNotFoundError,
    default_device,
    load_components,
)

__all__ = [
    "DEFAULT_MODEL_DIR",
    "Components",
    "ModelNotFoundError",
    "default_device",
    "load_components",
]
