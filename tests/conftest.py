"""Shared fixtures: a tiny *random* Stable Diffusion, built in code once per test session.

Nothing is downloaded: the UNet, VAE and CLIP text encoder are randomly initialised (seeded)
and the tokenizer is generated offline for a small word list (``diffedit_lab.toy.tokenizer``).
The folders are written with ``StableDiffusionPipeline.save_pretrained`` so they look exactly
like a real diffusers checkpoint to ``load_components`` and to the CLI.

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

WORDS = (
    "a an the of and in on with photo picture image red green blue yellow orange purple "
    "black white big small circle square triangle star cat dog bowl fruit background"
).split()

SCHEDULER_CONFIG = dict(  # Stable Diffusion 1.x / 2.x DDIM settings
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
)


def build_tiny_pipeline(folder: Path, *, prediction_type: str = "epsilon", seed: int = 0):
    """Build a seeded tiny random ``StableDiffusionPipeline`` (tokenizer written to ``folder``)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from diffedit_lab.toy.tokenizer import build_clip_tokenizer

    tokenizer = build_clip_tokenizer(WORDS, folder.parent / f"{folder.name}_tokenizer", model_max_length=16)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=32,
    )
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    scheduler = DDIMScheduler(prediction_type=prediction_type, **SCHEDULER_CONFIG)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return pipe


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
