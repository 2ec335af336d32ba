"""diffedit_lab.viz: every figure function returns a Figure with the expected panels, on tiny inputs."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from diffedit_lab import viz


def visible_axes(fig: Figure):
    return [ax for ax in fig.axes if ax.get_visible()]


def image_axes(fig: Figure):
    """Axes that show an image (colour bars have none)."""
    return [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]


def colorbars(fig: Figure):
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def rendered(fig: Figure) -> Figure:
    fig.canvas.draw()  # layout and drawing must not raise
    return fig


@pytest.fixture(scope="module")
def mask_result(tiny_components):
    from diffedit_lab import noise_diff_mask

    yy, xx = np.mgrid[:32, :32]
    img = np.full((32, 32, 3), 200, np.uint8)
    img[(yy - 16) ** 2 + (xx - 12) ** 2 < 40] = (220, 30, 30)
    return noise_diff_mask(tiny_components, Image.fromarray(img), "red circle", "blue square", n=4, seed=0,
                           steps=10, progress=False)


@pytest.fixture()
def rgb():
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))


def test_conversions_accept_pil_numpy_and_tensors(rgb):
    a = viz.to_rgb(rgb)
    assert a.shape == (32, 32, 3) and a.dtype == np.float32 and 0 <= a.min() <= a.max() <= 1
    assert np.allclose(viz.to_rgb(np.asarray(rgb)), a)
    t = torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float() / 127.5 - 1
    assert np.abs(viz.to_rgb(t) - a).max() <= 1 / 255 + 1e-6
    assert viz.to_rgb(np.zeros((8, 8))).shape == (8, 8, 3)  # grey maps become RGB
    assert viz.to_map(torch.ones(2, 1, 4, 5), index=1).shape == (4, 5)
    with pytest.raises(ValueError):
        viz.to_map(np.zeros(3))


def test_resize_mask_and_overlay(rgb):
    m = np.zeros((4, 4))
    m[1:3, 1:3] = 1
    big = viz.resize_mask(m, (32, 32))
    assert big.shape == (32, 32) and big.sum() == 16 * 16  # nearest: each cell 8×8 pixels
    out = viz.overlay(rgb, m)
    assert out.shape == (32, 32, 3)
    assert np.allclose(out[~big], viz.to_rgb(rgb)[~big])  # outside the mask nothing changes
    assert not np.allclose(out[big], viz.to_rgb(rgb)[big])


def test_image_grid(rgb):
    fig = rendered(viz.image_grid([rgb, rgb, rgb], ["a", "b", "c"], ncols=2, suptitle="grid"))
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in image_axes(fig)] == ["a", "b", "c"]
    assert len(visible_axes(fig)) == 3  # the unused fourth cell is removed
    with pytest.raises(ValueError):
        viz.image_grid([])


def test_mask_overlay_alone_and_into_axes(rgb, mask_result):
    fig = rendered(viz.mask_overlay(rgb, mask_result, title="overlay"))
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "overlay"
    host = viz.image_grid([rgb, rgb])
    assert viz.mask_overlay(rgb, mask_result.mask, ax=host.axes[1]) is host


@pytest.mark.parametrize("shared", [True, False])
def test_heatmaps_have_colour_bars(shared):
    maps = [np.random.default_rng(i).random((6, 6)) for i in range(3)]
    fig = rendered(viz.heatmaps(maps, ["x", "y", "z"], shared_scale=shared, label="units"))
    assert len(image_axes(fig)) == 3
    assert len(colorbars(fig)) == (1 if shared else 3)
    if shared:  # one scale: the same limits everywhere
        assert len({ax.images[0].get_clim() for ax in image_axes(fig)}) == 1


def test_draw_maps(mask_result):
    fig = rendered(viz.draw_maps(mask_result, max_draws=3))
    titles = [ax.get_title() for ax in image_axes(fig)]
    assert titles == ["draw 1", "draw 2", "draw 3", "average D (n=4)"]
    assert len(colorbars(fig)) == 1


def test_noise_predictions(mask_result):
    fig = rendered(viz.noise_predictions(mask_result, draw=1, channel=2))
    assert len(image_axes(fig)) == 4 and len(colorbars(fig)) == 4
    # ε̂(R) and ε̂(Q) share one symmetric scale
    assert image_axes(fig)[1].images[0].get_clim() == image_axes(fig)[2].images[0].get_clim()


@pytest.mark.parametrize("with_image, with_truth, panels", [(False, False, 3), (True, False, 4), (True, True, 5)])
def test_mask_steps(mask_result, rgb, with_image, with_truth, panels):
    truth = np.zeros((32, 32), bool)
    truth[8:24, 4:20] = True
    fig = rendered(viz.mask_steps(mask_result, rgb if with_image else None, true_mask=truth if with_truth else None))
    assert len(image_axes(fig)) == panels
    if with_truth:
        assert "IoU" in image_axes(fig)[-1].get_title()


def test_mask_refinements_score_each_mask(mask_result, rgb):
    from diffedit_lab.metrics import mask_iou

    truth = np.zeros((32, 32), bool)
    truth[8:24, 4:20] = True
    fig = rendered(viz.mask_refinements(mask_result, rgb, true_mask=truth))
    titles = [ax.get_title() for ax in image_axes(fig)]
    assert len(titles) == 4
    filled = mask_result.rethreshold(fill_holes=True)
    expected = [mask_iou(mask_result.rethreshold(fill_holes=False).mask[0], truth), mask_iou(filled.mask[0], truth),
                mask_iou(filled.upsampled((32, 32))[0], truth)]
    assert [float(t.split("IoU ")[1]) for t in titles[1:]] == pytest.approx(expected, abs=0.006)
    assert np.array_equal(viz.fine_mask(filled, truth), filled.upsampled((32, 32))[0].numpy() > 0.5)


def test_averaging_figure(mask_result):
    truth = np.zeros((32, 32), bool)
    truth[8:24, 4:20] = True
    fig = rendered(viz.averaging_figure(mask_result, true_mask=truth))
    curve_axes = [ax for ax in fig.axes if ax.lines]
    assert len(curve_axes) == 1 and len(curve_axes[0].lines) == 2  # mask change and IoU vs k
    assert len(curve_axes[0].lines[0].get_xdata()) == mask_result.n
    # the k = n mask is the result's own mask: nothing differs from it
    assert curve_axes[0].lines[0].get_ydata()[-1] == 0
    assert len(image_axes(fig)) == 2 * 3  # k in {1, 2, 4}: maps and masks


def test_mask_comparison(rgb):
    a = np.zeros((4, 4))
    a[:2] = 1
    b = np.zeros((32, 32))
    b[:8] = 1
    fig = rendered(viz.mask_comparison(a, b, rgb))
    assert "0.50" in fig.axes[0].get_title()


def test_latent_channels():
    fig = rendered(viz.latent_channels(torch.randn(2, 4, 8, 8), index=1, title="z"))
    assert len(image_axes(fig)) == 4 and len(colorbars(fig)) == 4
    assert image_axes(fig)[0].get_title().startswith("channel 0")
    with pytest.raises(ValueError):
        viz.latent_channels(torch.randn(8, 8))


def test_pick_steps():
    assert viz.pick_steps(11, 3) == [0, 5, 10]
    assert viz.pick_steps(3, 10) == [0, 1, 2]


def test_trajectory_figures(tiny_components, rgb):
    from diffedit_lab import ddim_invert, decode, encode, masked_denoise

    z0 = encode(tiny_components, rgb)
    inv = ddim_invert(tiny_components, z0, strength=0.5, steps=10, progress=False)
    picks = viz.pick_steps(len(inv.trajectory), 3)
    fig = rendered(viz.trajectory_figure(inv, decode(tiny_components, inv.trajectory[picks, 0]), picks))
    titles = [ax.get_title() for ax in image_axes(fig)]
    assert titles[0] == "x0 (input)" and titles[-1].startswith("step 5")
    out = masked_denoise(tiny_components, inv, torch.ones(1, 16, 16), "red", guidance=1.0, progress=False)
    picks = viz.pick_steps(len(out.trajectory), 4)
    frames = decode(tiny_components, out.trajectory[picks, 0])
    titles = [ax.get_title() for ax in image_axes(viz.trajectory_figure(out, frames))]  # steps: the same picks
    assert titles[0].startswith("start") and titles[-1] == "step 5 (clean)"
    assert len(image_axes(viz.trajectory_figure(inv.trajectory, frames[:2]))) == 2
    with pytest.raises(ValueError, match="same length"):
        viz.trajectory_figure(inv, frames, [0, 1])


def test_difference_image(rgb):
    after = np.asarray(rgb).copy()
    after[:8] = 0
    m = np.zeros((4, 4))
    m[0] = 1
    fig = rendered(viz.difference_image(rgb, after, mask=m))
    assert len(image_axes(fig)) == 3 and len(colorbars(fig)) == 1
    assert "outside mask 0.000" in image_axes(fig)[2].get_title()  # the change is all inside
    with pytest.raises(ValueError):
        viz.difference_image(rgb, np.zeros((16, 16, 3), np.uint8))


def test_curves():
    fig = rendered(viz.curves([1, 2, 4], {"a": [1, 2, 3], "b": torch.tensor([3.0, 2, 1])}, xlabel="n",
                              ylabel="err", title="t", logx=True, bands={"a": [0.1, 0.1, 0.1]}))
    ax = fig.axes[0]
    assert len(ax.lines) == 2 and ax.get_xscale() == "log" and ax.get_legend() is not None


def test_edit_figure(rgb, mask_result):
    class Result:  # anything with .image and .mask
        image = rgb
        mask = mask_result
        settings = {"source": "red circle", "target": "blue square"}

    truth = np.zeros((32, 32), bool)
    fig = rendered(viz.edit_figure(rgb, Result(), true_mask=truth))
    assert [ax.get_title() for ax in image_axes(fig)][:4] == ["input", "mask", "output", "|output − input|"]
    assert "blue square" in fig._suptitle.get_text()
    truth[8:20, 8:20] = True  # the IoU in the figure is the one the library scores: the mask at image size
    from diffedit_lab.metrics import mask_iou

    fig = rendered(viz.edit_figure(rgb, Result(), true_mask=truth))
    expected = mask_iou(mask_result.upsampled((32, 32))[0], truth)
    assert image_axes(fig)[-1].get_title() == f"vs true mask: IoU {expected:.2f}"


# --------------------------------------------------------------------------- edit drift vs VAE loss


def test_difference_maps_split_the_difference():
    """|output − input| ≤ |output − VAE(input)| + |VAE(input) − input|, and each term is its own."""
    from diffedit_lab import viz

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, 16, 3)).astype(np.float32) / 255  # images are read as 8-bit pixels
    recon = np.clip(x + np.round(rng.normal(0, 12, x.shape)) / 255, 0, 1).astype(np.float32)
    out = recon.copy()
    out[4:8, 4:8] = 0.0  # the edit changed one block only
    d_edit, d_vae = viz.difference_maps(x, recon, out)
    assert d_edit[~np.pad(np.ones((4, 4), bool), ((4, 8), (4, 8)))].max() == pytest.approx(0, abs=1e-6)
    assert d_edit[4:8, 4:8].min() > 0
    assert np.allclose(d_vae, np.abs(recon - x).mean(2), atol=1e-5)
    total = np.abs(out - x).mean(2)
    assert (total <= d_edit + d_vae + 1e-6).all()


def test_edit_differences_and_edit_figure_with_reconstruction():
    from types import SimpleNamespace

    from diffedit_lab import viz

    x = np.full((16, 16, 3), 0.9, np.float32)
    recon = x * 0.95
    out = recon.copy()
    out[2:6, 2:6] = (1.0, 0.0, 0.0)
    mask = np.zeros((16, 16), bool)
    mask[2:6, 2:6] = True
    fig = viz.edit_differences(x, recon, out, mask=mask, title="t")
    titles = " | ".join(ax.get_title() for ax in fig.axes)
    assert "what the edit did" in titles and "what the autoencoder loses" in titles and "round trip" in titles
    assert "mean outside the mask 0.000" in titles
    result = SimpleNamespace(image=out, mask=mask)
    fig = viz.edit_figure(x, result, reconstruction=recon)
    titles = [ax.get_title() for ax in fig.axes]
    assert any("what the edit did" in t for t in titles) and not any(t == "|output − input|" for t in titles)
    assert any(t == "|output − input|" for t in (ax.get_title() for ax in viz.edit_figure(x, result).axes))


def test_curves_mark_few_points_and_tick_log_values():
    fig = viz.curves(np.arange(1000), {"dense": np.linspace(1, 0, 1000)})
    assert fig.axes[0].lines[0].get_marker() in (None, "None", "")
    fig = viz.curves([5, 10, 20, 50], {"few": [1, 2, 3, 4]}, logx=True)
    ax = fig.axes[0]
    assert ax.lines[0].get_marker() == "o"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["5", "10", "20", "50"]


def test_mask_figures_follow_the_rescale(tiny_components, monkeypatch):
    """With ``rescale="range"`` the figures show that map: D̃'s title, the strip's, and the
    averaging figure's masks (cut as the result cuts them)."""
    import torch

    from diffedit_lab import noise_diff_mask
    from diffedit_lab.mask import normalize_and_threshold

    r = noise_diff_mask(tiny_components, torch.zeros(1, 4, 8, 8), "a red circle", "a blue square", n=2, steps=4,
                        seed=0, rescale="range", progress=False)
    fig = viz.mask_steps(r)
    assert viz.RESCALE_TITLES["range"] in [ax.get_title() for ax in fig.axes]
    _, titles = viz.mask_strip(r)
    assert "min–max" in titles[0] and "min–max" not in viz.mask_strip(r.rethreshold(rescale="mean"))[1][0]
    import diffedit_lab.mask as mask_module

    captured = []
    monkeypatch.setattr(mask_module, "normalize_and_threshold",
                        lambda *a, **k: captured.append(k.get("rescale")) or normalize_and_threshold(*a, **k))
    viz.averaging_figure(r)
    assert captured and set(captured) == {"range"}
