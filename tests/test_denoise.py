"""masked_denoise: the same-level blend, mask formats, trajectory/callback; the two baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from diffedit_lab import ddim_invert, encode, encode_decode, masked_denoise, noise_diff_mask, sdedit

TARGET = "a blue square"


@pytest.fixture(scope="module")
def inversion(tiny_components):
    rng = np.random.RandomState(0)
    image = Image.fromarray((rng.rand(32, 48, 3) * 255).astype(np.uint8))
    return ddim_invert(tiny_components, encode(tiny_components, image), strength=0.8, steps=6, progress=False)


@pytest.fixture(scope="module")
def left_half():
    m = torch.zeros(16, 24)
    m[:, :12] = 1
    return m


def test_all_zero_mask_returns_the_input_exactly(tiny_components, inversion):
    with pytest.warns(UserWarning, match="all zeros"):
        result = masked_denoise(tiny_components, inversion, torch.zeros(16, 24), TARGET, progress=False)
    assert torch.equal(result.latents, inversion.z0)


def test_blend_keeps_the_encoded_latent_of_the_same_level(tiny_components, inversion, left_half):
    result = masked_denoise(tiny_components, inversion, left_half, TARGET, progress=False)
    steps = inversion.num_steps
    assert result.trajectory.shape == (steps + 1, 1, 4, 16, 24)
    assert torch.equal(result.trajectory[0], inversion.latents)
    keep = left_half == 0
    for i in range(1, steps + 1):  # after step i the level is that of encoded latent steps − i
        assert torch.equal(result.trajectory[i][..., keep], inversion.trajectory[steps - i][..., keep])
    assert not torch.allclose(result.latents[..., ~keep], inversion.z0[..., ~keep])  # edited inside
    assert torch.equal(result.timesteps.flip(0), inversion.timesteps)


def test_all_ones_mask_is_encode_decode(tiny_components, inversion):
    masked = masked_denoise(tiny_components, inversion, torch.ones(16, 24), TARGET, progress=False)
    assert torch.equal(masked.latents, encode_decode(tiny_components, inversion, TARGET, progress=False).latents)


def test_mask_formats_are_equivalent(tiny_components, inversion, left_half):
    c = tiny_components
    reference = masked_denoise(c, inversion, left_half, TARGET, progress=False).latents
    big = np.kron(left_half.numpy(), np.ones((2, 2)))  # image resolution, 32 × 48
    formats = [
        left_half[None],
        left_half[None, None],
        left_half.numpy().astype(bool),
        Image.fromarray((big * 255).astype(np.uint8)),
        big.astype(np.float32),
    ]
    for mask in formats:
        assert torch.equal(masked_denoise(c, inversion, mask, TARGET, progress=False).latents, reference)


def test_mask_result_is_accepted(tiny_components, inversion):
    mask = noise_diff_mask(tiny_components, inversion.z0, "a red circle", TARGET, n=2, clamp_ratio=1.5, seed=0,
                           progress=False)
    result = masked_denoise(tiny_components, inversion, mask, TARGET, progress=False)
    assert torch.equal(result.mask[0, 0], mask.mask[0])


def test_callback_sees_every_step(tiny_components, inversion, left_half):
    seen = []
    result = masked_denoise(tiny_components, inversion, left_half, TARGET, progress=False,
                            callback=lambda i, t, z: seen.append((i, int(t), z.clone())))
    assert [i for i, _, _ in seen] == list(range(inversion.num_steps))
    assert [t for _, t, _ in seen] == result.timesteps.tolist()
    assert all(torch.equal(z, result.trajectory[i + 1]) for i, _, z in seen)


def test_negative_prompt_changes_the_result(tiny_components, inversion, left_half):
    plain = masked_denoise(tiny_components, inversion, left_half, TARGET, progress=False)
    negative = masked_denoise(tiny_components, inversion, left_half, TARGET, negative_prompt="a red circle",
                              progress=False)
    assert not torch.allclose(plain.latents, negative.latents)


def test_misaligned_schedules_warn(tiny_components, inversion, left_half):
    import dataclasses

    shifted = dataclasses.replace(inversion, timesteps=inversion.timesteps + 1)
    with pytest.warns(UserWarning, match="not the inversion timesteps"):
        masked_denoise(tiny_components, shifted, left_half, TARGET, progress=False)


def test_sdedit_follows_the_seed(tiny_components, inversion):
    c = tiny_components
    a = sdedit(c, inversion.z0, TARGET, strength=0.5, steps=6, seed=0, progress=False)
    assert a.trajectory.shape == (4, 1, 4, 16, 24)
    assert torch.equal(a.latents, sdedit(c, inversion.z0, TARGET, strength=0.5, steps=6, seed=0, progress=False).latents)
    assert not torch.equal(a.latents, sdedit(c, inversion.z0, TARGET, strength=0.5, steps=6, seed=1,
                                             progress=False).latents)


def test_masked_denoise_many_is_masked_denoise_per_query(tiny_components, left_half):
    """Two images × two queries in one batch: each result is that query's masked_denoise
    (up to the UNet's rounding for the larger batch), outside its mask exactly the input."""
    from diffedit_lab.denoise import masked_denoise_many

    c = tiny_components
    rng = np.random.RandomState(1)
    images = [Image.fromarray((rng.rand(32, 48, 3) * 255).astype(np.uint8)) for _ in range(2)]
    inversion = ddim_invert(c, encode(c, images), strength=0.8, steps=4, progress=False)
    masks, prompts = [left_half, 1 - left_half], [TARGET, "a red star"]
    many = masked_denoise_many(c, inversion, masks, prompts, guidance=3.0, progress=False)
    assert len(many) == 2
    for result, mask, prompt in zip(many, masks, prompts):
        one = masked_denoise(c, inversion, mask, prompt, guidance=3.0, progress=False)
        assert result.latents.shape == one.latents.shape == (2, 4, 16, 24)
        assert result.trajectory.shape == one.trajectory.shape
        assert torch.allclose(result.latents, one.latents, atol=1e-4)
        keep = mask == 0
        assert torch.equal(result.latents[..., keep], inversion.z0[..., keep])
    with pytest.raises(ValueError, match="same length"):
        masked_denoise_many(c, inversion, masks, prompts[:1])
