"""A tiny *random* Stable Diffusion, built in code: for tests, benchmarks and offline demos.

Nothing is downloaded: the UNet, VAE and CLIP text encoder are randomly initialised (seeded)
and the tokenizer is generated offline for a small word list (``diffedit_lab.toy.tokenizer``).
:func:`save_tiny_model` writes the folder with ``StableDiffusionPipeline.save_pretrained``, so it
looks exactly like a real diffusers checkpoint to ``load_components``, the CLI and diffusers.

Sizes: VAE factor 2 (block_out_channels (32, 64)), 4 latent channels, UNet of two blocks,
text hidden size 32, 16 tokens — a 32×32 image gives 16×16 latents. Its images are noise: it
is for plumbing and timing, not for looking at.
"""

from __future__ import annotations

from pathlib import Path

import torch

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


def tiny_pipeline_components(tokenizer_dir, *, prediction_type: str = "epsilon", seed: int = 0,
                             words=WORDS) -> dict:
    """The parts of a seeded tiny random Stable Diffusion, as ``StableDiffusionPipeline`` takes them.

    ``tokenizer_dir``: where the generated tokenizer files are written (a CLIPTokenizer needs
    files). ``words``: the tokenizer's whole words (e.g. ``toy.world.VOCABULARY`` for a model of
    the rich shapes world). Same ``seed`` → same weights.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from .toy.tokenizer import build_clip_tokenizer

    tokenizer = build_clip_tokenizer(words, Path(tokenizer_dir), model_max_length=16)
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
    return dict(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)


def save_tiny_model(folder, *, prediction_type: str = "epsilon", seed: int = 0, words=WORDS):
    """Write a tiny random Stable Diffusion folder to ``folder`` and return its ``StableDiffusionPipeline``.

    The generated tokenizer files also go beside it, in ``<folder>_tokenizer``.
    """
    from diffusers import StableDiffusionPipeline

    folder = Path(folder)
    parts = tiny_pipeline_components(
        folder.parent / f"{folder.name}_tokenizer", prediction_type=prediction_type, seed=seed, words=words
    )
    pipe = StableDiffusionPipeline(
        **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe.save_pretrained(folder)
    return pipe
