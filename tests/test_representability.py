"""Can the model represent the input at all? The VAE round-trip PSNR (metrics.representability),
its threshold measured on the built-in model, the warning in edit() and the CLI, and the toy
side (toy.representable.world_fit)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from diffedit_lab import metrics
from diffedit_lab.toy import representable, world

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def builtin():
    from diffedit_lab import load_components

    torch.set_num_threads(1)
    return load_components(device="cpu")


def sky(side: int = 64):
    return representable.sky_picture(side, side)


def test_in_world_scenes_pass_and_out_of_world_images_fail(builtin):
    """The threshold separates what the built-in model's VAE was trained on from what it was not."""
    assert metrics.is_builtin(builtin)
    inside = [metrics.representability(builtin, world.make_scene(s, w).image) for w in ("rich", "classic") for s in range(200, 220)]
    assert all(rt.builtin and rt.threshold == metrics.ROUNDTRIP_PSNR_MIN_BUILTIN for rt in inside)
    assert min(rt.psnr for rt in inside) > metrics.ROUNDTRIP_PSNR_MIN_BUILTIN + 2  # a margin, not a coin toss
    assert all(rt.ok and rt.warning() is None for rt in inside)
    from diffedit_lab.widgets import fit_to_model

    for name, img in representable.out_of_world_images().items():
        rt = metrics.representability(builtin, fit_to_model(builtin, img))
        assert not rt.ok, (name, rt.psnr)
        line = rt.warning()
        assert "\n" not in line and f"{rt.psnr:.1f} dB" in line and "06_real_models" in line, line


def test_roundtrip_psnr_is_the_psnr_of_the_reconstruction(builtin):
    img = world.make_scene(5).image
    rt = metrics.representability(builtin, img)
    from diffedit_lab.latents import decode, encode

    recon = np.asarray(decode(builtin, encode(builtin, img))[0], np.float64) / 255
    mse = ((recon - img / 255.0) ** 2).mean()
    assert rt.psnr == pytest.approx(10 * np.log10(1 / mse), abs=1e-6)
    assert metrics.roundtrip_psnr(builtin, img) == pytest.approx(rt.psnr)
    assert np.array_equal(np.asarray(rt.reconstruction), (recon * 255).round().astype(np.uint8))


def test_real_checkpoints_get_the_figure_without_toy_advice(tiny_components):
    rt = metrics.representability(tiny_components, sky(32))  # the tiny *random* model: nothing is represented
    assert not rt.builtin and rt.threshold == metrics.ROUNDTRIP_PSNR_MIN
    line = rt.warning()
    assert f"{rt.psnr:.1f} dB" in line and "toy" not in line and "notebook" not in line and "shapes" not in line


def test_edit_warns_once_before_the_work(builtin, monkeypatch):
    from diffedit_lab import edit

    fast = dict(n=1, steps=2, seed=0, progress=False)
    with pytest.warns(metrics.RoundTripWarning, match=r"only \d+\.\d dB .*real checkpoint") as caught:
        edit(builtin, sky(), "a sky", "a red circle", **fast)
    assert len([w for w in caught if w.category is metrics.RoundTripWarning]) == 1
    assert caught[0].filename == __file__  # points at the caller's line, not into the library
    with warnings.catch_warnings():
        warnings.simplefilter("error", metrics.RoundTripWarning)
        edit(builtin, world.make_scene(0).image, "", "a red circle", **fast)  # in the world: no warning


@pytest.mark.parametrize("picture, warned", [("sky", True), ("scene", False)])
def test_cli_prints_one_warning_line(capsys, tmp_path, picture, warned):
    from diffedit_lab.cli import main

    image = sky() if picture == "sky" else Image.fromarray(world.make_scene(0).image)
    image.save(tmp_path / "in.png")
    code = main(["edit", str(tmp_path / "in.png"), "--source", "a blue square", "--target", "a red circle",
                 "--out", str(tmp_path / "out.png"), "--steps", "2", "--n", "1", "--seed", "0", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 0, err
    lines = [line for line in err.replace("\r", "\n").splitlines() if "warning:" in line or "Warning" in line]
    if warned:
        assert len(lines) == 1 and lines[0].startswith("diffedit-lab: warning: the model's autoencoder"), err
        assert "dB" in lines[0] and "notebooks/06_real_models.ipynb" in lines[0]
    else:
        assert lines == [], err


def test_world_fit():
    inside = representable.world_fit(world.make_scene(3).image)
    assert inside.background == 0 and inside.off_world == 0
    outside = representable.world_fit(representable.sky_picture())
    assert outside.background > 100 and outside.off_world > 0.3
    assert "background" in outside.line() and "%" in outside.line()
    # a scene on another background: the background figure says so, the objects do not count
    img = world.make_scene(3).image.copy()
    bg = (img == np.array(world.BACKGROUND, np.uint8)).all(-1)
    img[bg] = (40, 40, 60)
    moved = representable.world_fit(img)
    assert moved.background > 150 and moved.off_world > 0.5


def test_world_fit_of_the_rich_world():
    """Scenes the sample never drew (textures, night, three objects) are in the rich world; the
    sky's border and pure primaries are not. The classic figures would call a textured scene foreign."""
    for seed in range(1000, 1012):
        scene = world.make_scene(seed, "rich")
        fit = representable.world_fit(scene.image, "rich")
        assert fit.off_world < 0.01 and fit.background < 12, (scene.caption, fit)
    night = world.rich_scene(np.random.default_rng(77), night=True)
    assert representable.world_fit(night.image, "rich").off_world < 0.01
    textured = world.rich_scene(np.random.default_rng(5), background="bricks")
    assert representable.world_fit(textured.image, "classic").off_world > 0.3  # why the rich world needs its own
    assert representable.world_fit(representable.sky_picture(), "rich").background > 40
    primaries = representable.out_of_world_images()["pure red and blue on white"]
    assert representable.world_fit(primaries, "rich").off_world > 0.1
    with pytest.raises(ValueError, match="classic' or 'rich"):
        representable.world_fit(night.image, "night")
