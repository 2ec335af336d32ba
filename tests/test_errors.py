"""Bad input fails early with a message naming the parameter and the allowed range."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

import diffedit_lab.models as models
from diffedit_lab import (
    ModelNotFoundError,
    ddim_invert,
    decode,
    edit,
    encode,
    encode_prompt,
    load_components,
    load_image,
    masked_denoise,
    noise_diff_mask,
    sdedit,
)
from diffedit_lab.checks import (
    check_count,
    check_guidance,
    check_positive,
    check_prompt,
    check_strength,
    check_threshold,
)

edit_module = importlib.import_module("diffedit_lab.edit")
Z = torch.zeros(1, 4, 16, 16)  # latents of a 32×32 image


# the validators themselves ----------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -0.1, 1.01, float("nan"), "0.5", None, True])
def test_check_strength(value):
    with pytest.raises(ValueError, match=r"`mask_strength` must be a number in \(0, 1\]"):
        check_strength("mask_strength", value)


@pytest.mark.parametrize("value", [0, -3, 2.5, "10", None])
def test_check_count(value):
    with pytest.raises(ValueError, match="`steps` must be an integer ≥ 1"):
        check_count("steps", value)


def test_valid_values_pass():
    assert check_strength("s", 1) == 1.0 and check_count("n", np.int64(3)) == 3
    assert check_positive("clamp_ratio", 0.1) == 0.1 and check_threshold("threshold", 0) == 0.0
    assert check_guidance("guidance", 0) == 0.0


@pytest.mark.parametrize("check, value, message", [
    (check_positive, 0, "> 0"), (check_positive, float("inf"), "> 0"),
    (check_threshold, 1.0, r"\[0, 1\)"), (check_threshold, -0.1, r"\[0, 1\)"),
    (check_guidance, -1, "≥ 0"),
])
def test_check_ranges(check, value, message):
    with pytest.raises(ValueError, match=message):
        check(check.__name__, value)


def test_check_prompt():
    with pytest.raises(ValueError, match="`target` must be a non-empty text"):
        check_prompt("target", "  ", required=True)
    with pytest.raises(ValueError, match="`target` must be a non-empty text"):
        check_prompt("target", ["", " "], required=True)
    with pytest.raises(TypeError, match="`source` must be a text"):
        check_prompt("source", 3)
    with pytest.raises(TypeError, match="`source` must be a text"):
        check_prompt("source", [])
    with pytest.raises(ValueError, match=r"shape \(L, D\) or \(1, L, D\)"):
        check_prompt("source", torch.zeros(2, 3, 4))
    assert check_prompt("source", "") == ""


# the public functions use them ------------------------------------------------------------


def test_edit_rejects_bad_settings(tiny_components, tiny_image):
    c = tiny_components
    with pytest.raises(ValueError, match="`target` must be a non-empty text"):
        edit(c, tiny_image, "a red circle", "", progress=False)
    with pytest.raises(ValueError, match="`encoding_ratio`"):
        edit(c, Z, "", "a cat", encoding_ratio=1.5, progress=False)
    with pytest.raises(ValueError, match="`mask_noise`"):
        edit(c, Z, "", "a cat", mask_noise=0, progress=False)
    with pytest.raises(ValueError, match="`inversion_guidance`"):
        edit(c, Z, "", "a cat", inversion_guidance=-1, progress=False)
    with pytest.raises(TypeError, match="unknown setting"):
        edit_module.EditSession(c, Z).run("", "a cat", mask_strenght=0.5)
    with pytest.raises(ValueError, match="`n`"):
        edit(c, Z, "", "a cat", n=0, progress=False)
    with pytest.raises(ValueError, match="`steps`"):
        edit(c, Z, "", "a cat", steps=0, progress=False)


def test_mask_rejects_bad_settings(tiny_components):
    c = tiny_components
    with pytest.raises(ValueError, match="`target` must be a non-empty text"):
        noise_diff_mask(c, Z, "a cat", "", progress=False)
    for kw, name in [({"mask_noise": 0}, "mask_noise"), ({"n": 0}, "n"), ({"clamp_ratio": 0}, "clamp_ratio"),
                     ({"threshold": 1}, "threshold"), ({"guidance": -1}, "guidance")]:
        with pytest.raises(ValueError, match=f"`{name}`"):
            noise_diff_mask(c, Z, "", "a cat", progress=False, **kw)


def test_strength_times_steps_must_cover_a_step(tiny_components):
    with pytest.raises(ValueError, match="covers no DDIM step"):
        ddim_invert(tiny_components, Z, strength=0.05, steps=10, progress=False)


def test_inversion_and_baselines_reject_bad_settings(tiny_components):
    c = tiny_components
    with pytest.raises(ValueError, match="`encoding_ratio`"):
        ddim_invert(c, Z, encoding_ratio=0, progress=False)
    with pytest.raises(ValueError, match="`steps`"):
        ddim_invert(c, Z, steps=0, progress=False)
    with pytest.raises(ValueError, match="`strength`"):
        sdedit(c, Z, "a cat", strength=2, progress=False)
    with pytest.raises(ValueError, match="`guidance`"):
        sdedit(c, Z, "a cat", guidance=-2, progress=False)


def test_mask_shape_and_values(tiny_components):
    inversion = ddim_invert(tiny_components, Z, strength=1.0, steps=1, progress=False)
    with pytest.raises(ValueError, match=r"`mask` of shape \(1, 1, 8, 8\) does not match latents"):
        masked_denoise(tiny_components, inversion, torch.ones(8, 8), "a cat", progress=False)
    with pytest.raises(ValueError, match=r"`mask` of shape \(3, 1, 16, 16\)"):
        masked_denoise(tiny_components, inversion, torch.ones(3, 16, 16), "a cat", progress=False)
    with pytest.raises(ValueError, match=r"`mask` values must be in \[0, 1\]"):
        masked_denoise(tiny_components, inversion, 2 * torch.ones(16, 16), "a cat", progress=False)
    with pytest.raises(ValueError, match="`mask` must have shape"):
        masked_denoise(tiny_components, inversion, torch.ones(1, 2, 16, 16), "a cat", progress=False)
    with pytest.raises(TypeError, match="`mask`: expected"):
        masked_denoise(tiny_components, inversion, [[1]], "a cat", progress=False)
    with pytest.warns(UserWarning, match="`mask` is all zeros"):
        masked_denoise(tiny_components, inversion, torch.zeros(16, 16), "a cat", progress=False)


def test_images(tmp_path, tiny_components):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_image(tmp_path / "missing.png")
    bad = tmp_path / "not_an_image.png"
    bad.write_text("hello")
    with pytest.raises(ValueError, match="cannot read .* as an image"):
        load_image(bad)
    with pytest.raises(TypeError, match="`image`: expected a path"):
        load_image(42)
    with pytest.raises(ValueError, match="float array must be in"):
        load_image(np.full((4, 4, 3), 2.0))
    with pytest.raises(ValueError, match="a tensor must be"):
        load_image(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="same size"):
        encode(tiny_components, [np.zeros((32, 32, 3), np.uint8), np.zeros((16, 16, 3), np.uint8)])
    with pytest.raises(ValueError, match="`output_type`"):
        decode(tiny_components, Z, output_type="jpeg")
    with pytest.raises(TypeError, match="`prompt`"):
        encode_prompt(tiny_components, None)


def test_unknown_models(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFoundError, match="no such model folder"):
        load_components(tmp_path / "nowhere")
    with pytest.raises(ModelNotFoundError, match="huggingface-cli download nobody/no-such-model"):
        load_components("nobody/no-such-model")
    (tmp_path / "half").mkdir()
    with pytest.raises(ModelNotFoundError, match="missing sub-folders"):
        load_components(tmp_path / "half")
    with pytest.raises(ModelNotFoundError, match="expected None, a folder"):
        load_components(3.5)
    monkeypatch.setattr(models, "DEFAULT_MODEL_DIR", tmp_path / "not-trained-yet")
    with pytest.raises(ModelNotFoundError, match="toy model is not there yet"):
        load_components()
    assert issubclass(ModelNotFoundError, OSError)


# issue 16: validators of seeds, flags, tensors; warnings point at the caller ------------------


def test_check_seed_flag_and_tensors():
    from diffedit_lab.checks import check_finite, check_flag, check_image_tensor, check_mask_values, check_seed

    assert check_seed("seed", None) is None and check_seed("seed", np.uint64(2**64 - 1)) == 2**64 - 1
    for bad in (2**64, 2**70, -1, "abc", 1.5, True):
        with pytest.raises(ValueError, match=r"`seed` must be None or an integer in \[0, 2\*\*64\)"):
            check_seed("seed", bad)
    assert check_flag("fill_holes", 1) is True and check_flag("fill_holes", False) is False
    for bad in ("yes", 2, None, 0.5):
        with pytest.raises(ValueError, match="`fill_holes` must be True or False"):
            check_flag("fill_holes", bad)
    with pytest.raises(ValueError, match="`latents` has 1 NaN"):
        check_finite("latents", torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match=r"`image`: an image tensor must be in \[-1, 1\], got values in \[0, 255\]"):
        check_image_tensor("image", torch.tensor([0.0, 255.0]))
    assert check_image_tensor("image", torch.tensor([-1.3, 1.2])).tolist() == [-1.0, 1.0]
    with pytest.raises(ValueError, match="`mask`.*NaN"):
        check_mask_values("mask", torch.tensor([float("nan")]))


def test_warnings_point_at_the_caller(tiny_components):
    inversion = ddim_invert(tiny_components, Z, strength=1.0, steps=1, progress=False)
    with pytest.warns(UserWarning, match="all zeros") as caught:
        masked_denoise(tiny_components, inversion, torch.zeros(16, 16), "a cat", progress=False)
    assert {w.filename for w in caught} == {__file__}
    with pytest.warns(UserWarning, match="not a multiple of the VAE factor") as caught:
        encode(tiny_components, np.zeros((33, 33, 3), np.uint8))  # through torch's inference_mode wrapper
    assert {w.filename for w in caught} == {__file__}
