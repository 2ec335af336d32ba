"""edit(): the whole chain, settings resolution, determinism. EditSession's caches: tests/test_session.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from diffedit_lab import EditSettings, decode, edit, encode
from diffedit_lab.mask import fill_holes

SOURCE, TARGET = "a red circle", "a blue square"
FAST = dict(n=2, steps=4, clamp_ratio=1.5, progress=False)


@pytest.fixture(scope="module")
def image():
    return Image.fromarray((np.random.RandomState(0).rand(32, 48, 3) * 255).astype(np.uint8))


@pytest.fixture(scope="module")
def result(tiny_components, image):
    return edit(tiny_components, image, SOURCE, TARGET, seed=0, **FAST)


def test_edit_returns_every_part(result, image):
    assert result.image.size == image.size and result.image.mode == "RGB" and len(result.images) == 1
    assert result.mask.mask.shape == (1, 16, 24) and 0 < result.mask.mask.mean() < 1
    assert result.inversion.steps == 4 and result.inversion.strength == EditSettings().encoding_ratio
    assert result.latents.shape == (1, 4, 16, 24) and result.trajectory.shape[0] == result.inversion.num_steps + 1
    s = result.settings
    assert (s["n"], s["steps"], s["clamp_ratio"], s["seed"]) == (2, 4, 1.5, 0)
    assert (s["guidance"], s["mask_noise"], s["threshold"]) == (7.5, 0.5, 0.5)
    assert result.edit_settings == EditSettings(n=2, steps=4, clamp_ratio=1.5)


def test_edit_is_deterministic_and_follows_the_seed(tiny_components, image, result):
    again = edit(tiny_components, image, SOURCE, TARGET, seed=0, **FAST)
    assert torch.equal(again.latents, result.latents)
    other = edit(tiny_components, image, SOURCE, TARGET, seed=1, **FAST)
    assert not torch.equal(other.mask.difference, result.mask.difference)


def test_outside_the_mask_the_latents_are_the_input(tiny_components, image, result):
    z0 = encode(tiny_components, image)
    keep = result.mask.mask[0] == 0
    assert torch.equal(result.latents[..., keep], z0[..., keep])


def test_an_empty_mask_gives_back_the_decoded_input(tiny_components, image):
    with pytest.warns(UserWarning, match="all zeros"):
        r = edit(tiny_components, image, SOURCE, TARGET, seed=0, **{**FAST, "clamp_ratio": 1e6})
    assert np.array_equal(np.asarray(r.image), np.asarray(decode(tiny_components, encode(tiny_components, image))[0]))


def test_model_defaults_fill_unset_settings(tiny_components, image):
    # a model's diffedit_lab.json may still use the old name mask_strength for the mask's noise s
    c = dataclasses.replace(tiny_components, defaults={"guidance": 3.0, "mask_strength": 0.4, "n": 3})
    r = edit(c, image, SOURCE, TARGET, seed=0, steps=4, clamp_ratio=1.5, progress=False)
    assert (r.settings["guidance"], r.settings["mask_noise"], r.settings["n"]) == (3.0, 0.4, 3)
    assert r.mask.n == 3 and r.mask.guidance == 3.0
    explicit = edit(c, image, SOURCE, TARGET, seed=0, guidance=7.5, **FAST)
    assert explicit.settings["guidance"] == 7.5 and explicit.settings["n"] == 2


def test_fill_holes_setting(tiny_components, image):
    plain = edit(tiny_components, image, SOURCE, TARGET, seed=0, **FAST)
    assert plain.settings["fill_holes"] is False and not plain.mask.fill_holes  # the library default
    c = dataclasses.replace(tiny_components, defaults={"fill_holes": True})
    filled = edit(c, image, SOURCE, TARGET, seed=0, **FAST)
    assert filled.settings["fill_holes"] is True and filled.mask.fill_holes
    assert torch.equal(filled.mask.mask, fill_holes(plain.mask.mask))
    assert edit(c, image, SOURCE, TARGET, seed=0, fill_holes=False, **FAST).mask.fill_holes is False
    with pytest.raises(ValueError, match="`fill_holes` must be True or False"):
        edit(tiny_components, image, SOURCE, TARGET, fill_holes="yes", **FAST)


def test_list_prompts_and_inversion_caption(tiny_components, image):
    r = edit(tiny_components, image, "", [TARGET, "a blue star"], inversion_prompt=SOURCE, inversion_guidance=2.0,
             seed=0, **FAST)
    assert r.inversion.guidance == 2.0 and torch.isfinite(r.latents).all()
