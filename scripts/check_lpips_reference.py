"""Check diffedit_lab/bench/lpips.py against the reference LPIPS implementations, on the random
weight files and images of tests/test_bench_lpips.py; prints the values (the test's REFERENCE).

Needs what the project does not depend on, so run it in a scratch virtual environment:

    python -m venv /tmp/lpipsref && /tmp/lpipsref/bin/pip install torch torchvision lpips torchmetrics scipy
    PYTHONPATH=$PWD /tmp/lpipsref/bin/python scripts/check_lpips_reference.py

References: lpips (richzhang/PerceptualSimilarity) ``lpips.LPIPS(net="squeeze", model_path=FILE)``,
and PIE-Bench's ``calculate_lpips`` (cure-lab/PnPInversion, evaluation/matrics_calculator.py) with
torchmetrics' ``LearnedPerceptualImagePatchSimilarity(net_type="squeeze")``. torchvision builds
their SqueezeNet 1.1 from the random backbone file put in a temporary TORCH_HOME, where it looks
for its cached weights; the network is refused, so nothing can be downloaded.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def refuse(*args, **kwargs):
    raise RuntimeError(f"network access attempted: {args}")


def import_torchvision():
    """torchvision; when its C++ ops cannot load (e.g. a CUDA torchvision wheel beside a CPU
    torch), its op registrations are skipped: LPIPS uses none of those ops."""
    import importlib

    try:
        return importlib.import_module("torchvision")
    except RuntimeError:
        for name in [m for m in sys.modules if m.startswith("torchvision")]:
            del sys.modules[name]
        keep = torch.library.register_fake
        torch.library.register_fake = lambda *a, **k: (lambda f: f)
        try:
            return importlib.import_module("torchvision")
        finally:
            torch.library.register_fake = keep


def pie_bench_lpips(metric, img_pred, img_gt, mask):
    """PIE-Bench's calculate_lpips(img_pred, img_gt, 1 − mask, 1 − mask), step for step."""
    img_pred = np.array(img_pred).astype(np.float32) / 255
    img_gt = np.array(img_gt).astype(np.float32) / 255
    keep = (1 - mask.astype(np.float32))[:, :, np.newaxis].repeat([3], axis=2)
    img_pred, img_gt = img_pred * keep, img_gt * keep
    img_pred_tensor = torch.tensor(img_pred).permute(2, 0, 1).unsqueeze(0)
    img_gt_tensor = torch.tensor(img_gt).permute(2, 0, 1).unsqueeze(0)
    return metric(img_pred_tensor * 2 - 1, img_gt_tensor * 2 - 1).item()


def main() -> int:
    socket.socket.connect = refuse
    socket.create_connection = refuse
    home = Path(tempfile.mkdtemp(prefix="lpipsref-"))
    os.environ["TORCH_HOME"] = str(home / "torch")
    from test_bench_lpips import reference_images, reference_mask, to_input, write_random_weights

    from diffedit_lab.bench import lpips as ours
    from diffedit_lab.bench import pie

    backbone, lin = write_random_weights(home / "torch", home / "lin" / "squeeze.pth")
    assert ours.backbone_file() == backbone, (ours.backbone_file(), backbone)
    tv = import_torchvision()
    import lpips
    import torchmetrics
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    a, b, c = reference_images()
    mask = reference_mask()
    mine = ours.load_lpips(lin)
    ref = lpips.LPIPS(net="squeeze", model_path=str(lin), verbose=False)
    metric = LearnedPerceptualImagePatchSimilarity(net_type="squeeze")
    packaged = {k: v.clone() for k, v in metric.net.state_dict().items() if k.startswith("lin")}
    missing, unexpected = metric.net.load_state_dict(torch.load(lin, map_location="cpu", weights_only=True), strict=False)
    assert not unexpected and not [k for k in missing if k[:3] == "lin" and k[3].isdigit()], (missing, unexpected)
    with torch.no_grad():
        values = dict(
            ab=(float(mine(to_input(a), to_input(b))[0]), ref(to_input(a), to_input(b)).item()),
            ac=(float(mine(to_input(a), to_input(c))[0]), ref(to_input(a), to_input(c)).item()),
            unedited_ab=(pie.lpips_unedited(mine, a, b, mask), pie_bench_lpips(metric, a, b, mask)),
            unedited_ac=(pie.lpips_unedited(mine, a, c, mask), pie_bench_lpips(metric, a, c, mask)),
        )
        # torchmetrics' own packaged linear layers (the real ones) with the random backbone
        metric.net.load_state_dict(packaged, strict=False)
        tm_file = Path(torchmetrics.__file__).parent / "functional" / "image" / "lpips_models" / "squeeze.pth"
        real = ours.load_lpips(tm_file)
        values["real_lin_unedited_ab"] = (pie.lpips_unedited(real, a, b, mask), pie_bench_lpips(metric, a, b, mask))
    print(f"torch {torch.__version__}, torchvision {tv.__version__}, lpips {version('lpips')}, "
          f"torchmetrics {torchmetrics.__version__}")
    worst = 0.0
    for name, (x, y) in values.items():
        rel = abs(x - y) / max(abs(y), 1e-12)
        worst = max(worst, rel)
        print(f"{name:22s} ours {x:.9f}  reference {y:.9f}  |diff| {abs(x - y):.2e}  rel {rel:.2e}")
    print("REFERENCE =", json.dumps({k: round(v[1], 9) for k, v in values.items() if not k.startswith("real")}))
    print(f"largest relative difference {worst:.2e}: " + ("OK (< 1e-5)" if worst < 1e-5 else "FAIL"))
    return 0 if worst < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
