"""load_image conventions, encode/decode shapes and sizes, sampling, prompt embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from diffedit_lab import decode, encode, encode_prompt, load_image


def test_load_image_path_and_modes(tmp_path, tiny_image):
    path = tmp_path / "x.png"
    tiny_image.save(path)
    assert np.array_equal(np.asarray(load_image(path)), np.asarray(tiny_image))
    assert np.array_equal(np.asarray(load_image(str(path))), np.asarray(tiny_image))
    gray = load_image(tiny_image.convert("L"))
    assert gray.mode == "RGB" and np.array_equal(np.asarray(gray)[..., 0], np.asarray(tiny_image.convert("L")))
    assert load_image(tiny_image.convert("P")).mode == "RGB"


def test_transparent_pixels_become_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red, bottom half fully transparent
    out = np.asarray(load_image(Image.fromarray(rgba, "RGBA")))
    assert (out[:2] == (200, 0, 0)).all() and (out[2:] == 255).all()


def test_load_image_arrays_and_tensors(tiny_image):
    arr = np.array(tiny_image)
    assert np.array_equal(np.asarray(load_image(arr)), arr)
    assert np.array_equal(np.asarray(load_image(arr / 255.0)), arr)  # float in [0, 1]
    assert np.asarray(load_image(arr[..., 0])).shape == (32, 32, 3)  # H×W gray
    tensor = torch.from_numpy(arr).permute(2, 0, 1).float() / 127.5 - 1  # CHW in [-1, 1]
    assert np.array_equal(np.asarray(load_image(tensor)), arr)
    assert np.array_equal(np.asarray(load_image(tensor[None])), arr)


def test_encode_shape_non_square_and_decode_roundtrip(tiny_components):
    image = Image.new("RGB", (48, 32), (10, 200, 30))  # width 48, height 32
    z0 = encode(tiny_components, image)
    assert z0.shape == (1, 4, 16, 24) and z0.dtype == torch.float32
    images = decode(tiny_components, z0)
    assert len(images) == 1 and images[0].size == (48, 32) and images[0].mode == "RGB"
    arr = decode(tiny_components, z0, output_type="np")
    assert arr.shape == (1, 32, 48, 3) and 0 <= arr.min() and arr.max() <= 1
    assert np.array_equal(np.asarray(images[0]), (arr[0] * 255).round().astype(np.uint8))
    assert decode(tiny_components, z0, output_type="pt").shape == (1, 3, 32, 48)


def test_size_not_a_multiple_of_the_vae_factor_is_resized_down(tiny_components):
    image = Image.new("RGB", (47, 33))
    with pytest.warns(UserWarning, match="resized to"):
        z0 = encode(tiny_components, image)
    assert z0.shape == (1, 4, 16, 23)
    with pytest.warns(UserWarning, match=r"\(47, 33\) \(width, height\).*resized to \(46, 32\)"):
        z1 = encode(tiny_components, torch.zeros(2, 3, 33, 47))
    assert z1.shape == (2, 4, 16, 23)


def test_mean_is_deterministic_and_sampling_follows_the_seed(tiny_components, tiny_image):
    c = tiny_components
    mean = encode(c, tiny_image)
    assert torch.equal(mean, encode(c, tiny_image))
    a, b = encode(c, tiny_image, seed=1, sample=True), encode(c, tiny_image, seed=1, sample=True)
    assert torch.equal(a, b)
    assert not torch.equal(a, encode(c, tiny_image, seed=2, sample=True))
    assert not torch.equal(a, mean)
    g = torch.Generator().manual_seed(1)
    assert torch.equal(a, encode(c, tiny_image, generator=g, sample=True))


def test_encode_equals_scaled_vae_mean(tiny_components, tiny_image):
    c = tiny_components
    x = torch.from_numpy(np.asarray(tiny_image, dtype=np.float32) / 255).permute(2, 0, 1)[None] * 2 - 1
    expected = c.vae.encode(x).latent_dist.mean * c.vae.config.scaling_factor
    # (≈1e-5 apart: convolutions round differently on channels-last memory, which PIL → tensor gives)
    assert torch.allclose(encode(c, tiny_image), expected, atol=1e-4)
    assert torch.allclose(encode(c, x), expected, atol=1e-4)  # a BCHW tensor in [-1, 1] as is


def test_batch_of_images(tiny_components, tiny_image):
    other = Image.new("RGB", (32, 32), (0, 0, 0))
    z = encode(tiny_components, [tiny_image, other])
    assert z.shape == (2, 4, 16, 16)
    assert torch.allclose(z[:1], encode(tiny_components, tiny_image), atol=1e-5)


def test_prompt_embeddings(tiny_components):
    c = tiny_components
    red, blue = encode_prompt(c, "a red circle"), encode_prompt(c, "a blue circle")
    assert red.shape == (1, c.tokenizer.model_max_length, c.text_encoder.config.hidden_size)
    assert not torch.equal(red, blue)
    assert torch.allclose(encode_prompt(c, ["a red circle", "a blue circle"]), (red + blue) / 2, atol=1e-6)
    assert torch.equal(encode_prompt(c, red), red) and torch.equal(encode_prompt(c, red[0]), red)
    assert not torch.equal(encode_prompt(c, ""), red)
