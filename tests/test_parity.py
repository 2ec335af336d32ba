"""Parity with diffusers' StableDiffusionDiffEditPipeline, built from the same tiny components.

Where we agree, the numbers agree; where we differ on purpose (docs/differences.md), a test
shows the difference. Seeds: our ``seed=s`` is diffusers' ``torch.Generator().manual_seed(s)``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from diffedit_lab import (
    ddim_invert,
    decode,
    encode,
    encode_decode,
    encode_prompt,
    masked_denoise,
    noise_diff_mask,
    sdedit,
)

pytestmark = pytest.mark.parity

SOURCE, TARGET = "a red circle", "a blue square"


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def diffedit_pipeline(c):
    """diffusers' DiffEdit pipeline on the same modules as ``c`` (the benchmark's builder)."""
    from diffedit_lab.baselines import diffusers_pipeline

    return diffusers_pipeline(c)


@pytest.fixture(scope="module")
def pipe(tiny_components):
    return diffedit_pipeline(tiny_components)


@pytest.fixture(scope="module")
def pipe_v(tiny_components_v):
    return diffedit_pipeline(tiny_components_v)


def random_image(h: int, w: int, seed: int) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(h, w, 3) * 255).astype(np.uint8))


def assert_nontrivial(mask: np.ndarray) -> None:
    """A parity test on an all-0 or all-1 mask would prove nothing."""
    assert 0.05 < float(mask.mean()) < 0.95, f"degenerate mask (mean {mask.mean():.3f}): choose other settings"


# 1. the mask -------------------------------------------------------------------------------


@pytest.mark.parametrize("size, clamp_ratio", [((32, 32), 1.5), ((32, 48), 2.0)])
def test_mask_equals_generate_mask(tiny_components, pipe, size, clamp_ratio):
    image = random_image(*size, seed=1)
    ours = noise_diff_mask(
        tiny_components, image, SOURCE, TARGET, n=10, strength=0.5, guidance=7.5, clamp_ratio=clamp_ratio,
        seed=3, progress=False,
    )
    theirs = pipe.generate_mask(
        image=image, source_prompt=SOURCE, target_prompt=TARGET, num_maps_per_mask=10, mask_encode_strength=0.5,
        mask_thresholding_ratio=clamp_ratio, guidance_scale=7.5, generator=gen(3),
    )
    assert theirs.shape == tuple(ours.mask.shape) == (1, size[0] // 2, size[1] // 2)
    assert_nontrivial(theirs)
    assert np.array_equal(ours.mask.numpy(), theirs.astype(np.float32))


def test_mask_timestep_is_diffusers_encode_timestep(tiny_components, pipe):
    """strength 0.5 on the 50-step DDIM grid is t = 481 (diffusers' ``encode_timestep``)."""
    pipe.scheduler.set_timesteps(50)
    timesteps, _ = pipe.get_timesteps(50, 0.5, "cpu")
    ours = noise_diff_mask(tiny_components, torch.zeros(1, 4, 16, 16), SOURCE, TARGET, n=1, seed=0, progress=False)
    assert ours.timestep == int(timesteps[0])


# 2. the inversion ---------------------------------------------------------------------------


@pytest.mark.parametrize("fixture, size", [("epsilon", (32, 32)), ("epsilon", (32, 48)), ("v", (32, 32))])
def test_inversion_equals_invert(request, fixture, size):
    c = request.getfixturevalue("tiny_components" if fixture == "epsilon" else "tiny_components_v")
    p = request.getfixturevalue("pipe" if fixture == "epsilon" else "pipe_v")
    image = random_image(*size, seed=2)
    z0 = encode(c, image, seed=5, sample=True)  # diffusers' invert samples the VAE latent
    ours = ddim_invert(c, z0, SOURCE, strength=0.8, steps=10, guidance=7.5, progress=False)
    theirs = p.invert(
        prompt=SOURCE, image=image, num_inference_steps=10, inpaint_strength=0.8, guidance_scale=7.5, generator=gen(5)
    ).latents
    assert theirs.shape == ours.to_diffusers().shape == (1, 8, 4, size[0] // 2, size[1] // 2)
    assert (ours.to_diffusers() - theirs).abs().max().item() <= 1e-5


def test_inversion_with_image_and_seed_samples_like_diffusers(tiny_components, pipe, tiny_image):
    ours = ddim_invert(tiny_components, tiny_image, "", strength=0.5, steps=6, seed=9, progress=False)
    theirs = pipe.invert(
        prompt="", image=tiny_image, num_inference_steps=6, inpaint_strength=0.5, guidance_scale=1.0, generator=gen(9)
    ).latents
    assert (ours.to_diffusers() - theirs).abs().max().item() <= 1e-5


# 3. the decoding with an all-ones mask ------------------------------------------------------


@pytest.mark.parametrize("fixture, size", [("epsilon", (32, 48)), ("v", (32, 32))])
def test_all_ones_mask_equals_call(request, fixture, size):
    c = request.getfixturevalue("tiny_components" if fixture == "epsilon" else "tiny_components_v")
    p = request.getfixturevalue("pipe" if fixture == "epsilon" else "pipe_v")
    z0 = encode(c, random_image(*size, seed=4))
    inversion = ddim_invert(c, z0, strength=0.8, steps=10, progress=False)
    ones = torch.ones(size[0] // 2, size[1] // 2)
    ours = decode(c, masked_denoise(c, inversion, ones, TARGET, guidance=7.5, progress=False).latents, output_type="np")
    theirs = p(
        prompt=TARGET, mask_image=ones[None].numpy(), image_latents=inversion.to_diffusers(), inpaint_strength=0.8,
        num_inference_steps=10, guidance_scale=7.5, output_type="np",
    ).images
    assert theirs.shape == ours.shape
    assert np.abs(ours - theirs).max() <= 1e-4


def test_prompt_embeddings_equal_diffusers(tiny_components, pipe):
    for text in (TARGET, ""):
        theirs, _ = pipe.encode_prompt(text, "cpu", 1, False)
        assert torch.equal(encode_prompt(tiny_components, text), theirs)


def test_sdedit_equals_img2img(tiny_components):
    from diffusers import StableDiffusionImg2ImgPipeline

    c = tiny_components
    img2img = StableDiffusionImg2ImgPipeline(
        vae=c.vae, text_encoder=c.text_encoder, tokenizer=c.tokenizer, unet=c.unet, scheduler=c.scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    img2img.set_progress_bar_config(disable=True)
    z0 = encode(c, random_image(32, 32, seed=6))
    ours = sdedit(c, z0, TARGET, strength=0.6, steps=10, guidance=7.5, seed=11, progress=False).latents
    theirs = img2img(
        TARGET, image=z0, strength=0.6, num_inference_steps=10, guidance_scale=7.5, generator=gen(11),
        output_type="latent",
    ).images
    assert (ours - theirs).abs().max().item() <= 1e-5


# 4. deliberate differences -----------------------------------------------------------------


def test_zero_mask_returns_input_but_diffusers_returns_once_inverted_latent(tiny_components, pipe, tiny_image):
    """diffusers blends ``image_latents[i]`` — one step too noisy — so an all-zero mask gives the
    latent after the *first* inversion step, not the input. Ours gives the input exactly."""
    c = tiny_components
    z0 = encode(c, tiny_image)
    inversion = ddim_invert(c, z0, strength=0.8, steps=10, progress=False)
    zeros = torch.zeros(16, 16)
    with pytest.warns(UserWarning, match="all zeros"):
        ours = masked_denoise(c, inversion, zeros, TARGET, progress=False).latents
    theirs = pipe(
        prompt=TARGET, mask_image=zeros[None].numpy(), image_latents=inversion.to_diffusers(), inpaint_strength=0.8,
        num_inference_steps=10, output_type="latent",
    ).images
    assert torch.equal(ours, z0)
    assert torch.equal(theirs, inversion.trajectory[1])  # x_1: one inverse step away from z0
    assert (theirs - z0).abs().max() > 1e-3


def test_batch_normalisation_is_per_image_unlike_diffusers(tiny_components, pipe, tiny_image):
    """Adding an image to the batch must not change another image's mask (latents in, so the
    noise draws of image A are the same alone and in the batch)."""
    c = tiny_components
    z_a = encode(c, tiny_image)
    z_b = 3.0 * encode(c, random_image(32, 32, seed=8))  # a very different image
    both = torch.cat([z_a, z_b])
    kw = dict(n=4, strength=0.5, guidance=7.5, clamp_ratio=1.5, seed=0, progress=False)
    alone = noise_diff_mask(c, z_a, SOURCE, TARGET, **kw)
    batch = noise_diff_mask(c, both, SOURCE, TARGET, **kw)
    assert_nontrivial(alone.mask.numpy())
    assert torch.equal(batch.noisy_latents[0], alone.noisy_latents[0])  # same draws for A
    # the UNet's float rounding depends a little on the batch size: compare away from τ
    assert torch.allclose(batch.difference[0], alone.difference[0], atol=1e-4)
    safe = (alone.normalized[0] - 0.5).abs() > 1e-3
    assert safe.float().mean() > 0.9
    assert torch.equal(batch.mask[0][safe], alone.mask[0][safe])

    dkw = dict(num_maps_per_mask=4, mask_encode_strength=0.5, mask_thresholding_ratio=1.5, guidance_scale=7.5)
    d_alone = pipe.generate_mask(image=z_a, source_prompt=SOURCE, target_prompt=TARGET, generator=gen(0), **dkw)
    d_batch = pipe.generate_mask(
        image=both, source_prompt=[SOURCE] * 2, target_prompt=[TARGET] * 2, generator=gen(0), **dkw
    )
    assert np.array_equal(d_alone[0], alone.mask[0].numpy())  # diffusers agrees for A alone...
    assert not np.array_equal(d_batch[0], d_alone[0])  # ...but A's mask changes when B joins


def test_unguided_mask_works_where_diffusers_crashes(tiny_components, pipe, tiny_image):
    """diffusers' generate_mask unpacks encode_prompt's (prompt, negative) as (negative, prompt):
    without guidance the "prompt" is None and it fails. Ours: D = mean|ε(Q) − ε(R)|."""
    c = tiny_components
    with pytest.raises(TypeError):
        pipe.generate_mask(image=tiny_image, source_prompt=SOURCE, target_prompt=TARGET, guidance_scale=1.0,
                           num_maps_per_mask=2, generator=gen(0))
    z0 = encode(c, tiny_image)
    ours = noise_diff_mask(c, z0, SOURCE, TARGET, n=2, guidance=1.0, seed=0, progress=False)
    emb = torch.cat([encode_prompt(c, SOURCE), encode_prompt(c, TARGET)]).repeat_interleave(2, dim=0)
    z_t = ours.noisy_latents[0]
    eps = c.unet(z_t.repeat(2, 1, 1, 1), ours.timestep, encoder_hidden_states=emb).sample
    expected = (eps[2:] - eps[:2]).abs().mean([0, 1])
    assert torch.allclose(ours.difference[0], expected, atol=1e-6)


def test_diffusers_mask_swaps_prompt_and_negative_prompt(tiny_components, pipe, tiny_image):
    """With guidance, diffusers computes ε̂ = ε(R) + w·(ε(∅) − ε(R)): prompt and negative swapped.
    With equal negatives this only rescales D (w − 1 instead of w) and the mask is the same;
    with different negatives it is our mask for the swapped texts."""
    c = tiny_components
    z0 = encode(c, tiny_image)
    neg_r, neg_q = "a green triangle", "a yellow star"
    kw = dict(n=4, strength=0.5, guidance=3.0, clamp_ratio=1.5, seed=2, progress=False)
    swapped = noise_diff_mask(c, z0, neg_r, neg_q, source_negative_prompt=SOURCE, target_negative_prompt=TARGET, **kw)
    straight = noise_diff_mask(c, z0, SOURCE, TARGET, source_negative_prompt=neg_r, target_negative_prompt=neg_q, **kw)
    theirs = pipe.generate_mask(
        image=z0, source_prompt=SOURCE, target_prompt=TARGET, source_negative_prompt=neg_r,
        target_negative_prompt=neg_q, num_maps_per_mask=4, mask_encode_strength=0.5, mask_thresholding_ratio=1.5,
        guidance_scale=3.0, generator=gen(2),
    )
    assert_nontrivial(theirs)
    assert np.array_equal(theirs[0], swapped.mask[0].numpy())
    assert not np.array_equal(theirs[0], straight.mask[0].numpy())


def test_steps_and_strength_come_from_the_inversion(tiny_components, pipe, tiny_image):
    """diffusers #5465: ``__call__`` must be given the inversion's steps and strength again and
    raises when they differ. Ours has no such parameters: they travel with the Inversion."""
    c = tiny_components
    inversion = ddim_invert(c, encode(c, tiny_image), strength=0.5, steps=8, progress=False)
    with pytest.raises(ValueError, match="timesteps"):
        pipe(prompt=TARGET, mask_image=np.ones((1, 16, 16)), image_latents=inversion.to_diffusers(),
             num_inference_steps=10, inpaint_strength=0.8, output_type="latent")
    result = masked_denoise(c, inversion, torch.ones(16, 16), TARGET, progress=False)
    assert len(result.timesteps) == inversion.num_steps == 4
    assert torch.equal(result.latents, encode_decode(c, inversion, TARGET, progress=False).latents)
