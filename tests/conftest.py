"""Shared fixtures: a tiny *random* Stable Diffusion, built in code once per test session.

The builder lives in :mod:`diffedit_lab.testing` (the benchmark uses it too): nothing is
downloaded, the folders are written with ``StableDiffusionPipeline.save_pretrained`` so they
look exactly like a real diffusers checkpoint to ``load_components`` and to the CLI.

Sizes: VAE factor 2 (block_out_channels (32, 64)), 4 latent channels, UNet of two blocks,
text hidden size 32 — a 32×32 image gives 16×16 latents.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

# The machines that run the tests are small and shared: with several torch threads per process
# the tiny models run ~50x slower (threads spin against each other). One thread by default.
torch.set_num_threads(int(os.environ.get("DIFFEDIT_LAB_TEST_THREADS", "1")))

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # importable even when the package is not installed
    sys.path.insert(0, str(ROOT))


def build_tiny_pipeline(folder: Path, *, prediction_type: str = "epsilon", seed: int = 0):
    """Build a seeded tiny random ``StableDiffusionPipeline`` saved in ``folder`` (see diffedit_lab.testing)."""
    from diffedit_lab.testing import save_tiny_model

    return save_tiny_model(folder, prediction_type=prediction_type, seed=seed)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """Folder of a tiny random epsilon-prediction Stable Diffusion (SD 1.x style)."""
    folder = tmp_path_factory.mktemp("tiny_sd")
    build_tiny_pipeline(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir_v(tmp_path_factory) -> Path:
    """Same tiny model with a v-prediction scheduler config (SD 2.x style)."""
    folder = tmp_path_factory.mktemp("tiny_sd_v")
    build_tiny_pipeline(folder, prediction_type="v_prediction")
    return folder


@pytest.fixture(scope="session")
def tiny_components(tiny_model_dir):
    """``load_components`` of the tiny model, on CPU in float32."""
    from diffedit_lab import load_components

    return load_components(tiny_model_dir, device="cpu")


@pytest.fixture(scope="session")
def tiny_components_v(tiny_model_dir_v):
    from diffedit_lab import load_components

    return load_components(tiny_model_dir_v, device="cpu")


@pytest.fixture()
def tiny_image():
    """A deterministic 32×32 RGB test image: a red disc on a blue background."""
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[:32, :32]
    img = np.zeros((32, 32, 3), np.uint8)
    img[...] = (30, 60, 200)
    img[(yy - 16) ** 2 + (xx - 16) ** 2 < 64] = (220, 30, 30)
    return Image.fromarray(img)


@pytest.fixture()
def pie_bench_folder(tmp_path) -> Path:
    """Two held-out shapes-world edits exported in PIE-Bench's layout, as a real PIE-Bench folder
    (the ``shapes_world`` entries removed, so no pixel checker scores them)."""
    import json

    from diffedit_lab.toy import export_bench

    folder = tmp_path / "pie"
    export_bench.main([str(folder), "--edits", "2", "--world", "classic"])
    mapping = json.loads((folder / "mapping_file.json").read_text())
    for item in mapping.values():
        del item["shapes_world"]
    (folder / "mapping_file.json").write_text(json.dumps(mapping))
    return folder


def quick_pie_bench(model_dir, folder, out, *options) -> dict:
    """``bench quality --quick`` on a PIE-Bench folder (2 edits, 2 steps, no successors); its results.json."""
    import json

    from diffedit_lab.bench.__main__ import main

    assert main(["quality", "--quick", "--edits", "2", "--steps", "2", "--batch", "2", "--model", str(model_dir),
                 "--out", str(out), "--no-progress", "--no-successors", "--dataset", str(folder), *options]) == 0
    return json.loads((Path(out) / "results.json").read_text())
