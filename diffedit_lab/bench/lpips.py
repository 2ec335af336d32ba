"""LPIPS (Zhang et al., CVPR 2018, "The Unreasonable Effectiveness of Deep Features as a
Perceptual Metric") with the SqueezeNet 1.1 backbone — the LPIPS of PIE-Bench, whose
``evaluation/matrics_calculator.py`` uses torchmetrics' ``LearnedPerceptualImagePatchSimilarity(
net_type="squeeze")`` — from weight files already on this machine; nothing is downloaded.

For images ``x, x0`` in [−1, 1], with ``F_l`` the output of the backbone's l-th slice (l = 1…7)
on the scaled image ``(x − shift) / scale``, ``ŷ_l = F_l / (‖F_l‖₂ over channels + ε)`` its
channel-unit-normalised features and ``w_l ≥ 0`` the learned per-channel weights (a 1×1
convolution to one channel, no bias)::

    LPIPS(x, x0) = Σ_l 1/(H_l W_l) Σ_{h,w} Σ_c w_lc (ŷ_l − ŷ0_l)²_{chw}

— the paper's ``Σ_l 1/(H_l W_l) Σ_{h,w} ‖ w_l ⊙ (ŷ_l − ŷ0_l)_{hw} ‖²`` as its released code computes
it, the learned weights applied to the squared difference (the paper's form with ``√w_l``), i.e.
``Σ_l mean_{h,w}( conv1x1_{w_l}( (ŷ_l − ŷ0_l)² ) )`` in :meth:`LPIPS.forward`.

Line for line it follows the reference implementation, richzhang/PerceptualSimilarity
(the ``lpips`` package, 0.1.4), which torchmetrics copies (``functional/image/lpips.py``):

* ``lpips/pretrained_networks.py``, class ``squeezenet``: ``torchvision.models.squeezenet1_1()
  .features`` cut into seven slices, modules ``[0, 1] [2, 3, 4] [5, 6, 7] [8, 9] [10] [11] [12]``,
  each slice's output a layer (``relu1`` … ``relu7``; channels 64, 128, 256, 384, 384, 512, 512);
* ``lpips/lpips.py``: ``ScalingLayer`` (shift ``(−.030, −.088, −.188)``, scale ``(.458, .448,
  .450)``), ``normalize_tensor`` (``x / (sqrt(Σ_c x²) + 1e-10)``, in ``lpips/__init__.py``),
  ``NetLinLayer`` (``Dropout`` — the identity in eval mode — then ``Conv2d(C, 1, 1, bias=False)``),
  ``spatial_average`` and the sum over layers in ``LPIPS.forward`` (version 0.1: inputs scaled).

Weights, two files, both looked for and never fetched:

* the backbone: torchvision's ImageNet SqueezeNet 1.1, the file torchvision caches on first use,
  ``<torch.hub.get_dir()>/checkpoints/squeezenet1_1-b8a52dc0.pth`` (``TORCH_HOME`` moves it).
  The modules below are named as ``squeezenet1_1().features`` (``0``, ``3.squeeze``,
  ``3.expand1x1``, ``3.expand3x3``, …) so that file loads as it is (its ``classifier`` is unused),
  with ``torch.load(weights_only=True)``, without torchvision;
* the linear layers ``lin0`` … ``lin6`` (LPIPS v0.1, ``squeeze.pth``): the copy in an installed
  ``lpips`` package (``lpips/weights/v0.1/squeeze.pth``) or torchmetrics
  (``torchmetrics/functional/image/lpips_models/squeeze.pth``), or a file given explicitly.

Why our own module rather than torchmetrics/lpips: those need torchvision, and build the backbone
through torchvision's weight API (which downloads when the file is missing); this module needs
only torch and the two files, and raises instead of downloading (equal to both on the same
files: tests/test_bench_lpips.py, scripts/check_lpips_reference.py). Unlike the reference's
``load_state_dict(strict=False)``, a linear-layer file without the expected keys is an error, not
silently random weights.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

BACKBONE_FILE = "squeezenet1_1-b8a52dc0.pth"
"""torchvision's file name for SqueezeNet 1.1's ImageNet weights (``SqueezeNet1_1_Weights.IMAGENET1K_V1``)."""
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10
SLICES = ((0, 1), (2, 3, 4), (5, 6, 7), (8, 9), (10,), (11,), (12,))
"""Modules of ``squeezenet1_1().features`` in each of the seven layers (``relu1`` … ``relu7``)."""
CHANNELS = (64, 128, 256, 384, 384, 512, 512)
MIN_SIZE = 17
"""The smallest image side the backbone takes (torchvision's ``min_size`` of SqueezeNet 1.1)."""


class Fire(nn.Module):
    """SqueezeNet's Fire module: squeeze (1×1), then expand 1×1 and 3×3 side by side, ReLUs."""

    def __init__(self, inplanes: int, squeeze: int, expand: int):
        super().__init__()
        self.squeeze = nn.Conv2d(inplanes, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, expand, 1)
        self.expand3x3 = nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.expand1x1(s)), F.relu(self.expand3x3(s))], 1)


def squeezenet1_1_features() -> nn.Sequential:
    """``torchvision.models.squeezenet1_1().features``: the same modules at the same indices."""
    pool = dict(kernel_size=3, stride=2, ceil_mode=True)
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, stride=2), nn.ReLU(),                                    # 0, 1 → relu1
        nn.MaxPool2d(**pool), Fire(64, 16, 64), Fire(128, 16, 64),                   # 2, 3, 4 → relu2
        nn.MaxPool2d(**pool), Fire(128, 32, 128), Fire(256, 32, 128),                # 5, 6, 7 → relu3
        nn.MaxPool2d(**pool), Fire(256, 48, 192),                                    # 8, 9 → relu4
        Fire(384, 48, 192),                                                          # 10 → relu5
        Fire(384, 64, 256),                                                          # 11 → relu6
        Fire(512, 64, 256),                                                          # 12 → relu7
    )


class LPIPS(nn.Module):
    """LPIPS v0.1 with SqueezeNet 1.1 (module docstring). ``lpips(x, x0)``: images (B, 3, H, W)
    in [−1, 1] → (B,) distances. Random weights until :func:`load_lpips` loads the files."""

    def __init__(self):
        super().__init__()
        self.features = squeezenet1_1_features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT)[None, :, None, None], persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE)[None, :, None, None], persistent=False)
        self.files: tuple[str, str] | None = None  # (backbone, linear layers) once loaded
        self.eval().requires_grad_(False)

    def layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The seven slices' outputs ``F_1 … F_7`` of an already scaled image."""
        out = []
        for modules in SLICES:
            for i in modules:
                x = self.features[i](x)
            out.append(x)
        return out

    @staticmethod
    def unit(f: torch.Tensor) -> torch.Tensor:
        """``ŷ = F / (‖F‖₂ over channels + ε)`` (the reference's ``normalize_tensor``)."""
        return f / (torch.sqrt(torch.sum(f**2, dim=1, keepdim=True)) + EPS)

    def forward(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        if x.shape != x0.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS takes two image batches of one shape (B, 3, H, W); got {tuple(x.shape)} "
                             f"and {tuple(x0.shape)}.")
        if min(x.shape[-2:]) < MIN_SIZE:
            raise ValueError(f"LPIPS (SqueezeNet) needs images of at least {MIN_SIZE}×{MIN_SIZE} pixels; got "
                             f"{x.shape[-2]}×{x.shape[-1]}.")
        y, y0 = (x - self.shift) / self.scale, (x0 - self.shift) / self.scale
        d = 0
        for lin, f, f0 in zip(self.lins, self.layers(y), self.layers(y0)):
            d = d + lin((self.unit(f) - self.unit(f0)) ** 2).mean([2, 3], keepdim=True)  # 1/(H_l W_l) Σ_hw
        return d[:, 0, 0, 0]


# --------------------------------------------------------------------------- weight files


def backbone_file() -> Path:
    """Where torchvision keeps SqueezeNet 1.1's weights: ``<torch.hub.get_dir()>/checkpoints/``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILE


def packaged_lin_files() -> list[tuple[str, Path | None]]:
    """``(package, its squeeze.pth or None when the package is not installed)`` for the ``lpips``
    package and torchmetrics, found without importing them."""
    out = []
    for package, rel in (("lpips", "weights/v0.1/squeeze.pth"), ("torchmetrics", "functional/image/lpips_models/squeeze.pth")):
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        where = list(spec.submodule_search_locations or []) if spec is not None else []
        out.append((package, Path(where[0]) / rel if where else None))
    return out


def find_weights(lin: str | Path | None = None) -> tuple[Path, Path]:
    """``(backbone file, linear-layer file)``; ``lin``: an explicit linear-layer file, else the
    one of an installed ``lpips`` or torchmetrics. Raises ``LookupError`` naming every missing
    file, where it was looked for and how to provide it."""
    missing = []
    backbone = backbone_file()
    if not backbone.is_file():
        missing.append(f"SqueezeNet 1.1's weights {backbone} are not there (torchvision saves them there once, "
                       f"e.g. `torchvision.models.squeezenet1_1(weights='IMAGENET1K_V1')`; or copy {BACKBONE_FILE} "
                       "there, or set TORCH_HOME to a folder whose hub/checkpoints/ has it)")
    if lin is not None:
        found = Path(lin).expanduser()
        if not found.is_file():
            missing.append(f"the linear-layer file {found} (--lpips-weights) is not there")
    else:
        looked = packaged_lin_files()
        found = next((p for _, p in looked if p is not None and p.is_file()), None)
        if found is None:
            where = "; ".join(f"{p}: not there" if p is not None else f"{name}: not installed" for name, p in looked)
            missing.append(f"LPIPS v0.1's linear layers squeeze.pth were not found ({where}): pass --lpips-weights "
                           "FILE (the lpips package's lpips/weights/v0.1/squeeze.pth), or `pip install lpips`")
    if missing:
        raise LookupError("; ".join(missing) + "; nothing is downloaded")
    return backbone, found


def load_lpips(lin: str | Path | None = None, device: str | torch.device = "cpu") -> LPIPS:
    """:class:`LPIPS` with the weights of :func:`find_weights`, loaded with
    ``torch.load(weights_only=True)``. Raises ``LookupError`` when a file is missing or is not
    what it should be."""
    backbone, lin_file = find_weights(lin)
    model = LPIPS()
    try:
        state = torch.load(backbone, map_location="cpu", weights_only=True)
        model.features.load_state_dict({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
    except Exception as err:  # noqa: BLE001 — any unreadable or foreign file
        raise LookupError(f"{backbone} could not be loaded as SqueezeNet 1.1's weights "
                          f"({type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''})") from None
    try:
        state = torch.load(lin_file, map_location="cpu", weights_only=True)  # the lpips file holds CUDA tensors
        for i, conv in enumerate(model.lins):
            key = next((k for k in (f"lin{i}.model.1.weight", f"lin{i}.model.0.weight") if k in state), None)
            if key is None:
                raise KeyError(f"no lin{i}.model.1.weight")
            conv.weight.copy_(state[key].reshape(conv.weight.shape))
    except Exception as err:  # noqa: BLE001
        raise LookupError(f"{lin_file} could not be loaded as LPIPS's linear layers lin0…lin6 "
                          f"({type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''})") from None
    model.files = (str(backbone), str(lin_file))
    return model.to(device)
