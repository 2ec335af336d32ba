"""The input policy (diffedit_lab.inputs, README "Input policy"): each finding of issue 16,
reproduced, now gets its clear answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffedit_lab import edit, encode, known_words, load_components, load_image, noise_diff_mask
from diffedit_lab.inputs import MAX_INPUT_PIXELS, MAX_SIDE, MIN_SIDE, plan_size, text_problems
from diffedit_lab.toy.world import VOCABULARY

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toy():
    """The built-in model (64×64, its own small vocabulary)."""
    return load_components(device="cpu")


def _env() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    env.pop("DIFFEDIT_DEBUG", None)
    return env


# ---------------------------------------------------------------- images: how a person sees them
def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high: left half red, right half blue
    stored[:, :20] = (220, 0, 0)
    stored[:, 20:] = (0, 0, 220)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display" (a phone held upright)
    Image.fromarray(stored).save(tmp_path / "photo.jpg", quality=95, exif=exif)
    shown = np.asarray(load_image(tmp_path / "photo.jpg")).astype(int)
    assert shown.shape == (40, 20, 3)  # upright: 20 wide, 40 high
    assert shown[5, 10, 0] > 150 and shown[5, 10, 2] < 80  # the left half is now on top
    assert shown[35, 10, 2] > 150 and shown[35, 10, 0] < 80


def test_explorer_uploads_follow_the_same_policy(tmp_path, monkeypatch):
    import io

    from diffedit_lab.widgets import uploaded_image

    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.new("RGB", (40, 20), (0, 200, 0)).save(buf, "JPEG", exif=exif)
    upload = ({"name": "phone.jpg", "content": memoryview(buf.getvalue())},)
    assert uploaded_image(upload).size == (20, 40)  # upright
    monkeypatch.setenv("DIFFEDIT_MAX_INPUT_PIXELS", "100")
    with pytest.raises(ValueError, match="the upload .*DIFFEDIT_MAX_INPUT_PIXELS"):
        uploaded_image(upload)


def test_sixteen_bit_greyscale_is_scaled_not_white(tmp_path):
    ramp = np.linspace(0, 65535, 64).round().astype(np.uint16)[None].repeat(8, 0)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as img:
        assert img.mode in ("I", "I;16")  # what Pillow makes of a 16-bit PNG
    grey = np.asarray(load_image(tmp_path / "deep.png"))[..., 0].astype(int)
    assert grey[0, 0] == 0 and grey[0, -1] == 255
    assert abs(grey[0, 32] - round(int(ramp[0, 32]) * 255 / 65535)) <= 1  # mid-grey, not white
    assert np.all(np.diff(grey[0]) >= 0) and len(np.unique(grey)) > 50


def test_integer_and_float_modes():
    small = Image.fromarray(np.array([[0, 100, 255]], np.int32), "I")  # 8-bit values in an "I" image
    assert np.asarray(load_image(small))[0, :, 0].tolist() == [0, 100, 255]
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), "F")
    assert np.asarray(load_image(unit))[0, :, 0].tolist() == [0, 128, 255]
    bytes_range = Image.fromarray(np.array([[0.0, 100.0, 255.0]], np.float32), "F")
    assert np.asarray(load_image(bytes_range))[0, :, 0].tolist() == [0, 100, 255]
    with pytest.raises(ValueError, match="float pixels must be in"):
        load_image(Image.fromarray(np.array([[-3.0, 900.0]], np.float32), "F"))


def test_multi_frame_image_is_named_in_a_warning(tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in ((200, 0, 0), (0, 200, 0), (0, 0, 200))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    with pytest.warns(UserWarning, match=r"anim\.gif has 3 frames.*only the first") as caught:
        first = load_image(tmp_path / "anim.gif")
    assert caught[0].filename == __file__  # the warning points at the caller
    assert np.asarray(first)[8, 8, 0] > 150


@pytest.mark.parametrize("limit", [1000, 100])  # our check; Pillow's DecompressionBombError (> 2 × limit)
def test_too_many_pixels_is_a_one_line_error_naming_the_override(tmp_path, monkeypatch, limit):
    Image.new("RGB", (40, 30)).save(tmp_path / "big.png")
    monkeypatch.setenv("DIFFEDIT_MAX_INPUT_PIXELS", str(limit))
    with pytest.raises(ValueError) as err:
        load_image(tmp_path / "big.png")
    assert "DIFFEDIT_MAX_INPUT_PIXELS" in str(err.value) and "\n" not in str(err.value)
    assert Image.MAX_IMAGE_PIXELS != limit  # Pillow's global limit is restored
    monkeypatch.setenv("DIFFEDIT_MAX_INPUT_PIXELS", "1200")
    assert load_image(tmp_path / "big.png").size == (40, 30)


# ---------------------------------------------------------------- sizes tied to the model
def test_builtin_model_fits_images_to_its_size(toy):
    assert toy.builtin
    with pytest.warns(UserWarning, match=r"400×300 centre-cropped to 300×300 and resized to 64×64") as caught:
        z = encode(toy, Image.new("RGB", (400, 300), (10, 200, 30)))
    assert caught[0].filename == __file__
    assert z.shape[-2:] == (64 // toy.vae_scale_factor,) * 2
    with pytest.warns(UserWarning, match="enlarged to 64×64"):
        encode(toy, Image.new("RGB", (20, 20)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encode(toy, Image.new("RGB", (64, 64)))  # its own size: no warning


def test_other_checkpoints_have_a_maximum_side(tiny_components, monkeypatch):
    assert not tiny_components.builtin
    assert plan_size(tiny_components, (4000, 3000))[1] == (MAX_SIDE, MAX_SIDE * 3 // 4)
    monkeypatch.setenv("DIFFEDIT_MAX_SIDE", "48")
    with pytest.warns(UserWarning, match=r"larger than the maximum side 48 px: resized to \(48, 32\).*DIFFEDIT_MAX_SIDE"):
        z = encode(tiny_components, Image.new("RGB", (96, 64)))
    assert z.shape == (1, 4, 16, 24)


@pytest.mark.parametrize("size", [(3, 5), (5, 3), (7, 40)])
def test_tiny_images_are_refused_not_enlarged(tiny_components, toy, size):
    for c in (tiny_components, toy):
        with pytest.raises(ValueError, match=rf"{size[0]}×{size[1]} pixels is too small.*at least {MIN_SIDE} px"):
            encode(c, Image.new("RGB", size))


@pytest.mark.slow
def test_a_4000_by_3000_photo_on_the_builtin_model_is_fitted_first_and_stays_under_1_gb(tmp_path):
    """Through the command line, in a child process: peak memory (ru_maxrss) of the whole run,
    torch import included (its time is printed, not asserted)."""
    from diffedit_lab.toy.world import make_edit

    spec = make_edit(0, "colour")
    Image.fromarray(spec.scene.image).resize((4000, 3000), Image.NEAREST).save(tmp_path / "photo.png")
    code = (
        "import json, resource, sys, time\n"
        "t0 = time.perf_counter()\n"
        "from diffedit_lab.cli import main\n"
        f"rc = main(['edit', {str(tmp_path / 'photo.png')!r}, '--source', {spec.source!r}, '--target', "
        f"{spec.target!r}, '--out', {str(tmp_path / 'out.png')!r}, '--mask-out', {str(tmp_path / 'mask.png')!r}, "
        "'--seed', '0', '--device', 'cpu'])\n"
        "print(json.dumps({'rc': rc, 'seconds': time.perf_counter() - t0, "
        "'peak_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=600,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    run = json.loads(proc.stdout.strip().splitlines()[-1])
    print(run)
    assert run["rc"] == 0, proc.stderr
    assert run["peak_mb"] < 1024, run
    # No bound on the seconds (a timed assertion fails on a loaded machine; 15.7 s measured alone):
    # what keeps it short is that the photo is fitted to the model before any work — said, not
    # silent — so the work is that of a 64×64 edit (the outputs' size below).
    assert "resized to 64×64" in proc.stderr
    for bar in ("DiffEdit mask", "DDIM inversion", "DiffEdit decoding"):
        assert bar in proc.stderr  # a progress bar on every stage that takes time
    with Image.open(tmp_path / "out.png") as out, Image.open(tmp_path / "mask.png") as mask:
        assert out.size == (64, 64) and mask.size == (64, 64)


# ---------------------------------------------------------------- tensors
@pytest.mark.parametrize("bad, message", [
    (float("nan"), "NaN or infinite"), (float("inf"), "NaN or infinite"), (255.0, r"must be in \[-1, 1\]"),
])
def test_image_tensors_must_be_finite_and_in_range(tiny_components, bad, message):
    x = torch.zeros(1, 3, 32, 32)
    x[0, 0, 3, 3] = bad
    with pytest.raises(ValueError, match=f"`image`.*{message}"):
        encode(tiny_components, x)  # 4-D
    with pytest.raises(ValueError, match=f"`image`.*{message}"):
        load_image(x[0])  # 3-D
    encode(tiny_components, torch.full((1, 3, 32, 32), 1.2))  # a VAE's overshoot: clamped


def test_nan_in_arrays_and_latents(tiny_components):
    arr = np.zeros((32, 32, 3))
    arr[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        load_image(arr)
    z = torch.zeros(1, 4, 16, 16)
    z[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="`image`.*NaN"):
        edit(tiny_components, z, "", "a red circle", steps=2, n=1, progress=False)


def test_nan_mask_is_refused_by_masked_denoise(tiny_components):
    from diffedit_lab import ddim_invert, masked_denoise

    inversion = ddim_invert(tiny_components, torch.zeros(1, 4, 16, 16), strength=1.0, steps=1, progress=False)
    mask = torch.ones(16, 16)
    mask[2, 2] = float("nan")
    with pytest.raises(ValueError, match="`mask`.*NaN"):
        masked_denoise(tiny_components, inversion, mask, "a cat", progress=False)


# ---------------------------------------------------------------- texts
def test_known_words_of_the_builtin_model(toy, tiny_components):
    words = known_words(toy)
    assert {"red", "circle", "square", "and", "a", "grass", "small"} <= set(words) and "pink" not in words
    assert set(words) == set(VOCABULARY)  # the rich world's words, each one token
    assert known_words(tiny_components) is None  # a real vocabulary is not listed


def test_words_the_builtin_model_never_saw_are_named_with_the_ones_it_knows(toy):
    problems, empty = text_problems(toy, "a pink hexagon")
    assert not empty and len(problems) == 1
    assert "never saw 'pink', 'hexagon'" in problems[0] and "it knows: a, and, at, big, blue, bricks" in problems[0]
    assert text_problems(toy, "a red circle, and a blue square.") == ([], False)  # punctuation is fine
    with pytest.warns(UserWarning, match="never saw 'pink'") as caught:
        edit(toy, Image.new("RGB", (64, 64)), "a red circle", "a pink circle", steps=2, n=1, seed=0, progress=False)
    assert all(w.filename == __file__ for w in caught)


def test_real_tokenizers_report_pieces_and_truncation_only(tiny_components):
    problems, empty = text_problems(tiny_components, "a green hexagon")
    assert problems == ["split into pieces: hexagon → h + e + x + a + g + on"] and not empty
    long = "a red circle and a blue square and a green triangle and a yellow circle and a red square"
    problems, _ = text_problems(tiny_components, long)
    assert problems == ["19 tokens, the model reads 14: ignored from 'circle and a red square' on"]


@pytest.mark.parametrize("text", ["🙂🙂", "🙂 🎉"])
def test_a_text_that_tokenizes_to_nothing(toy, text):
    image = Image.new("RGB", (64, 64))
    with pytest.raises(ValueError, match="`target` .* tokenizes to nothing"):
        edit(toy, image, "a red circle", text, steps=2, n=1, seed=0, progress=False)
    with pytest.warns(UserWarning, match="tokenizes to nothing: the model reads it as the empty text"):
        edit(toy, image, text, "a red circle", steps=2, n=1, seed=0, progress=False)


def test_explorer_status_line_shows_text_warnings(toy):
    from diffedit_lab import widgets

    app = widgets.explorer(toy, scene=0, settings={"steps": 4, "n": 2})
    app.controls["target"].value = "a pink circle and a blue square"
    assert "never saw" in app.status.value and "pink" in app.status.value


# ---------------------------------------------------------------- the mask
def test_identical_texts_give_an_empty_mask_and_a_warning(tiny_components, tiny_image):
    with pytest.warns(UserWarning, match="nothing differs, the mask is empty") as caught:
        result = noise_diff_mask(tiny_components, tiny_image, "a red circle", "a red circle", n=2, steps=4, seed=0,
                                 progress=False)
    assert caught[0].filename == __file__
    assert result.mask.sum() == 0 and torch.isfinite(result.normalized).all()


def test_rounding_noise_is_not_a_difference():
    from diffedit_lab.mask import DIFFERENCE_FLOOR, normalize_and_threshold

    noise = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(0)) * 2e-6  # ~1e-6: float rounding
    noise[1] += torch.linspace(0, 1, 8)  # the second image does differ
    with pytest.warns(UserWarning, match=r"for 1 image\(s\): nothing differs"):
        normalized, mask = normalize_and_threshold(noise, 3.0, 0.5)
    assert mask[0].sum() == 0 and mask[1].sum() > 0
    assert DIFFERENCE_FLOOR < 1e-2  # far below a real difference (the toy model's: ~0.1)


def test_tiny_clamp_ratio_does_not_underflow_to_nan():
    from diffedit_lab.mask import normalize_and_threshold

    d = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(0)) + 0.1
    normalized, mask = normalize_and_threshold(d, 1e-45, 0.5)  # κ·mean(D) underflows to 0 in float32
    assert torch.isfinite(normalized).all() and mask.all()  # D > κ·mean(D) everywhere: the full mask


# ---------------------------------------------------------------- seeds, flags, inversions, devices
@pytest.mark.parametrize("seed", [2**70, -1, "abc", 1.5, True])
def test_seeds_are_validated_by_the_library(tiny_components, seed):
    with pytest.raises(ValueError, match=r"`seed` must be None or an integer in \[0, 2\*\*64\)"):
        edit(tiny_components, torch.zeros(1, 4, 16, 16), "", "a cat", steps=2, n=1, seed=seed, progress=False)
    with pytest.raises(ValueError, match="`seed`"):
        noise_diff_mask(tiny_components, torch.zeros(1, 4, 16, 16), "", "a cat", n=1, steps=2, seed=seed,
                        progress=False)


@pytest.mark.parametrize("value", ["no", 2, 0.5])
def test_fill_holes_is_validated(tiny_components, mask_result_tiny, value):
    with pytest.raises(ValueError, match="`fill_holes` must be True or False"):
        mask_result_tiny.rethreshold(fill_holes=value)
    with pytest.raises(ValueError, match="`fill_holes` must be"):
        noise_diff_mask(tiny_components, torch.zeros(1, 4, 16, 16), "", "a cat", n=1, steps=2, seed=0,
                        fill_holes=value, progress=False)
    with pytest.raises(ValueError, match="`fill_holes` must be"):
        edit(tiny_components, torch.zeros(1, 4, 16, 16), "", "a cat", steps=2, n=1, seed=0, fill_holes=value,
             progress=False)


@pytest.fixture(scope="module")
def mask_result_tiny(tiny_components):
    return noise_diff_mask(tiny_components, torch.zeros(1, 4, 16, 16), "", "a cat", n=1, steps=2, seed=0,
                           progress=False)


def test_an_inversion_made_with_other_components_is_refused(tiny_components, tmp_path):
    from diffedit_lab import ddim_invert, encode_decode, masked_denoise
    from diffedit_lab.testing import save_tiny_model

    save_tiny_model(tmp_path / "other", seed=1)  # the same architecture, other weights
    other = load_components(tmp_path / "other", device="cpu")
    z = torch.zeros(1, 4, 16, 16)
    inversion = ddim_invert(other, z, encoding_ratio=1.0, steps=2, progress=False)
    with pytest.raises(ValueError, match="`inversion` was made with other components"):
        masked_denoise(tiny_components, inversion, torch.ones(16, 16), "a cat", progress=False)
    with pytest.raises(ValueError, match="`inversion` was made with other components"):
        encode_decode(tiny_components, inversion, "a cat", progress=False)
    again = load_components(tmp_path / "other", device="cpu")  # the same model loaded twice is fine
    masked_denoise(again, inversion, torch.ones(16, 16), "a cat", progress=False)


def test_a_missing_device_is_refused_before_loading(tiny_model_dir, monkeypatch):
    import diffedit_lab.models as models

    def not_now(*args, **kwargs):
        raise AssertionError("weights must not be loaded")

    monkeypatch.setattr(models, "_load_parts", not_now)
    device = "cuda:99" if torch.cuda.is_available() else "cuda"
    with pytest.raises(ValueError, match=r"device='cuda.*CUDA"):
        load_components(tiny_model_dir, device=device)
    monkeypatch.setenv("DIFFEDIT_DEVICE", device)
    with pytest.raises(ValueError, match="DIFFEDIT_DEVICE="):
        load_components(tiny_model_dir)
    with pytest.raises(ValueError, match="not a torch device"):
        load_components(tiny_model_dir, device="toaster")


def test_safetensors_are_required_where_they_exist(tiny_model_dir, monkeypatch):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    seen = {}
    for cls in (AutoencoderKL, UNet2DConditionModel, CLIPTextModel):
        real = cls.from_pretrained.__func__

        def spy(klass, *args, _real=real, **kwargs):
            seen[klass.__name__] = kwargs.get("use_safetensors")
            return _real(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    load_components(tiny_model_dir, device="cpu")
    assert seen == {"AutoencoderKL": True, "UNet2DConditionModel": True, "CLIPTextModel": True}


def test_a_malicious_pickle_is_a_clear_error_and_never_runs(tiny_model_dir, tmp_path):
    import pickle
    import shutil

    from diffedit_lab import ModelLoadError

    model = tmp_path / "evil"
    shutil.copytree(tiny_model_dir, model)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for weights in (model / "vae").glob("*.safetensors"):
        weights.unlink()
    (model / "vae" / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps({"weight": Payload()}))
    with pytest.raises(ModelLoadError, match=r"vae: cannot load the weights.*safetensors") as err:
        load_components(model, device="cpu")
    assert "\n" not in str(err.value) and not marker.exists()


# ---------------------------------------------------------------- the README lists the limits
def test_readme_lists_the_input_policy():
    from diffedit_lab.mask import DIFFERENCE_FLOOR

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Input policy"):]
    section = section[: section.index("\n## ", 5)] if "\n## " in section[5:] else section
    for text in (f"{MAX_SIDE}", "DIFFEDIT_MAX_SIDE", f"{MAX_INPUT_PIXELS // 10**6} million", "DIFFEDIT_MAX_INPUT_PIXELS",
                 f"{MIN_SIDE} px", "64×64", "EXIF", "16-bit", "frames", "[-1, 1]", "NaN", "2**64",
                 f"{DIFFERENCE_FLOOR:g}", "77", "SIGTERM", "--force"):
        assert text in section, text
