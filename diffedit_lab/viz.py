"""Matplotlib figures for looking at DiffEdit, one function per picture.

Every function is pure: it takes data (images, latents, a :class:`~diffedit_lab.MaskResult`, an
:class:`~diffedit_lab.Inversion`, …) and returns a new :class:`matplotlib.figure.Figure`. The
figures are built without ``pyplot``, so nothing is shown twice and nothing leaks: in a notebook
(``%matplotlib inline``) the figure a cell returns is drawn once; elsewhere call
``fig.savefig(path)``. The core library never imports this module.

Layouts are consistent: panels of :data:`PANEL` inches, images without ticks, every heat map
with a colour bar, masks in :data:`MASK_COLOUR`.

Accepted inputs:

* images — PIL images, ``H×W×3`` numpy arrays (uint8, or float in [0, 1]), ``3×H×W`` tensors in
  [-1, 1] (what :func:`~diffedit_lab.decode` returns with ``output_type="pt"``);
* maps and masks — 2-D numpy arrays or tensors, or a batch whose item ``index`` is taken;
  ``MaskResult`` wherever a mask is expected (its binary ``mask``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from .metrics import mask_iou

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from .denoise import DenoiseResult
    from .edit import EditResult
    from .inversion import Inversion
    from .mask import MaskResult

ImageLike = Any
"""An image: PIL, an H×W×3 array (uint8 0–255 or float 0–1), or a (3, H, W) tensor in [-1, 1]."""
ArrayLike = Any
"""A numpy array or a torch tensor."""
MaskLike = Any
"""A mask: a ``MaskResult``, or an array/tensor/PIL image of 0/1 (or 0–255)."""

PANEL = 2.4
"""Size of one image panel, in inches."""
MASK_COLOUR = (1.0, 0.15, 0.1)
"""Colour of masks drawn over images (red)."""
HEAT_CMAP = "magma"
"""Colour map of non-negative maps (|differences|, the normalised map)."""
SIGNED_CMAP = "RdBu_r"
"""Colour map of signed values (latents, noise), centred on zero."""


# --------------------------------------------------------------------------- conversions


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def to_rgb(image: ImageLike) -> np.ndarray:
    """An image as an ``H×W×3`` float array in [0, 1] (see the module docstring for inputs)."""
    from .latents import load_image  # PIL / numpy / tensor conventions live in one place

    if isinstance(image, np.ndarray) and image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.asarray(load_image(image), dtype=np.float32) / 255.0


def to_map(x: ArrayLike, index: int = 0) -> np.ndarray:
    """A 2-D float map from an array or tensor of shape (h, w), (B, h, w) or (B, 1, h, w)."""
    if hasattr(x, "mask") and hasattr(x, "rethreshold"):  # MaskResult
        x = x.mask
    arr = _numpy(x).astype(np.float32)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 3:
        arr = arr[index]
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D map (or a batch of them), got shape {_numpy(x).shape}")
    return arr


def resize_mask(mask: MaskLike, size: tuple[int, int], index: int = 0) -> np.ndarray:
    """A mask (any resolution) as a bool ``(height, width)`` array of ``size = (width, height)``,
    nearest-neighbour upsampled (a latent cell covers ``f×f`` pixels, as in ``MaskResult.to_image``)."""
    from PIL import Image

    m = to_map(mask, index) > 0.5
    if m.shape == (size[1], size[0]):
        return m
    img = Image.fromarray(m.astype(np.uint8) * 255, mode="L").resize(tuple(size), resample=Image.NEAREST)
    return np.asarray(img) > 127


def overlay(image: ImageLike, mask: MaskLike, *, color: tuple[float, float, float]=MASK_COLOUR, alpha: float = 0.45, index: int = 0) -> np.ndarray:
    """The image with the mask tinted in ``color`` (and its border drawn), ``H×W×3`` in [0, 1]."""
    rgb = to_rgb(image)
    m = resize_mask(mask, (rgb.shape[1], rgb.shape[0]), index)
    out = rgb.copy()
    out[m] = (1 - alpha) * out[m] + alpha * np.asarray(color, np.float32)
    edge = m & ~_erode(m)
    out[edge] = color
    return out


def _erode(m: np.ndarray) -> np.ndarray:
    p = np.pad(m, 1, mode="edge")
    return m & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


# --------------------------------------------------------------------------- layout helpers


def _figure(nrows: int, ncols: int, *, width: float | None = None, height: float | None = None,
            suptitle: str | None = None, panel: float = PANEL):
    fig = Figure(figsize=(width or panel * ncols, height or panel * nrows + (0.35 if suptitle else 0)),
                 layout="constrained")
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False))
    if suptitle:
        fig.suptitle(suptitle)
    return fig, axes


def _image_axis(ax, title: str | None = None) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def _hide_unused(axes, used: int) -> None:
    for ax in axes.flat[used:]:
        ax.set_visible(False)
        ax.remove()


def _grid_shape(count: int, ncols: int | None) -> tuple[int, int]:
    ncols = max(1, min(count, ncols or count))
    return (count + ncols - 1) // ncols, ncols


def _show_map(fig, ax, data, *, cmap, vmin, vmax, title=None, colorbar=True, label=None):
    im = ax.imshow(data, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    _image_axis(ax, title)
    if colorbar:
        cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        cb.ax.tick_params(labelsize=7)
        if label:
            cb.set_label(label, fontsize=8)
    return im


# --------------------------------------------------------------------------- figures


def image_grid(images: Sequence, titles: Sequence[str] | None = None, *, ncols: int | None = None,
               suptitle: str | None = None, panel: float = PANEL) -> Figure:
    """Images side by side (``ncols`` per row), each with its title."""
    images = list(images)
    if not images:
        raise ValueError("image_grid: no images")
    titles = list(titles) if titles is not None else [None] * len(images)
    nrows, ncols = _grid_shape(len(images), ncols)
    fig, axes = _figure(nrows, ncols, suptitle=suptitle, panel=panel)
    for ax, img, title in zip(axes.flat, images, titles):
        ax.imshow(to_rgb(img), interpolation="nearest")
        _image_axis(ax, title)
    _hide_unused(axes, len(images))
    return fig


def mask_overlay(image: ImageLike, mask: MaskLike, *, title: str | None = None, color: tuple[float, float, float]=MASK_COLOUR, alpha: float = 0.45,
                 index: int = 0, ax: Axes | None=None) -> Figure:
    """The image with the mask drawn over it (red tint and border). Draws into ``ax`` if given."""
    if ax is None:
        fig, axes = _figure(1, 1)
        ax = axes[0, 0]
    ax.imshow(overlay(image, mask, color=color, alpha=alpha, index=index), interpolation="nearest")
    _image_axis(ax, title)
    return ax.figure


def heatmaps(maps: Sequence, titles: Sequence[str] | None = None, *, ncols: int | None = None,
             cmap: str = HEAT_CMAP, shared_scale: bool = True, vmin: float | None = None,
             vmax: float | None = None, colorbar: bool = True, label: str | None = None,
             suptitle: str | None = None, panel: float = PANEL) -> Figure:
    """2-D maps as heat maps with colour bars. ``shared_scale``: one colour scale for all maps
    (comparable colours), drawn once, else one scale and colour bar per map."""
    arrays = [to_map(m) for m in maps]
    if not arrays:
        raise ValueError("heatmaps: no maps")
    titles = list(titles) if titles is not None else [None] * len(arrays)
    nrows, ncols = _grid_shape(len(arrays), ncols)
    fig, axes = _figure(nrows, ncols, suptitle=suptitle, panel=panel)
    lo = min(float(a.min()) for a in arrays) if vmin is None else vmin
    hi = max(float(a.max()) for a in arrays) if vmax is None else vmax
    im = None
    for ax, a, title in zip(axes.flat, arrays, titles):
        own = (lo, hi) if shared_scale else (vmin if vmin is not None else float(a.min()),
                                             vmax if vmax is not None else float(a.max()))
        im = _show_map(fig, ax, a, cmap=cmap, vmin=own[0], vmax=own[1], title=title,
                       colorbar=colorbar and not shared_scale, label=label)
    _hide_unused(axes, len(arrays))
    if colorbar and shared_scale:
        cb = fig.colorbar(im, ax=list(axes.flat[: len(arrays)]), fraction=0.046 / max(1, ncols) * 2, pad=0.02)
        cb.ax.tick_params(labelsize=7)
        if label:
            cb.set_label(label, fontsize=8)
    return fig


def draw_maps(result: MaskResult, *, index: int = 0, max_draws: int = 8, ncols: int | None = None) -> Figure:
    """The per-draw maps ``D⁽ⁱ⁾ = mean_c |ε̂(Q) − ε̂(R)|`` of a ``MaskResult`` and their average
    ``D``, on one colour scale: single draws are noisy, the average is not."""
    diffs = _numpy(result.differences[index])
    k = min(len(diffs), max_draws)
    maps = [diffs[i] for i in range(k)] + [_numpy(result.difference[index])]
    titles = [f"draw {i + 1}" for i in range(k)] + [f"average D (n={len(diffs)})"]
    return heatmaps(maps, titles, ncols=ncols or min(len(maps), 5), label="|ε̂(Q) − ε̂(R)|",
                    suptitle=f"Noise differences at strength {result.strength:g} (t = {result.timestep})")


def noise_predictions(result: MaskResult, *, index: int = 0, draw: int = 0, channel: int = 0) -> Figure:
    """One draw of the mask computation: the noised latent ``z_t`` (one channel), the two noise
    predictions ``ε̂(R)`` and ``ε̂(Q)`` (same channel, same scale) and ``|ε̂(Q) − ε̂(R)|`` (channel mean)."""
    z = _numpy(result.noisy_latents[index, draw, channel])
    er = _numpy(result.source_noise[index, draw, channel])
    eq = _numpy(result.target_noise[index, draw, channel])
    d = _numpy(result.differences[index, draw])
    fig, axes = _figure(1, 4, width=PANEL * 4 + 1.2,
                        suptitle=f"Draw {draw + 1} of {result.n}: t = {result.timestep}, channel {channel}")
    zl = float(np.abs(z).max()) or 1.0
    el = float(max(np.abs(er).max(), np.abs(eq).max())) or 1.0
    _show_map(fig, axes[0, 0], z, cmap=SIGNED_CMAP, vmin=-zl, vmax=zl, title="noised latent $z_t$")
    _show_map(fig, axes[0, 1], er, cmap=SIGNED_CMAP, vmin=-el, vmax=el, title="ε̂($z_t$, R)  (source)")
    _show_map(fig, axes[0, 2], eq, cmap=SIGNED_CMAP, vmin=-el, vmax=el, title="ε̂($z_t$, Q)  (target)")
    _show_map(fig, axes[0, 3], d, cmap=HEAT_CMAP, vmin=0, vmax=float(d.max()) or 1.0,
              title="mean$_c$ |ε̂(Q) − ε̂(R)|")
    return fig


RESCALE_TITLES = {"mean": "D̃ = min(D, κ·mean D) / (κ·mean D)",
                  "range": "D̃ = min–max of min(D, κ·mean D)"}
"""The title of ``D̃`` for each ``rescale`` (:mod:`diffedit_lab.mask`)."""


def mask_steps(result: MaskResult, image: ImageLike | None=None, *, index: int = 0, true_mask: MaskLike | None=None) -> Figure:
    """From map to mask: ``D`` → clamped and rescaled ``D̃`` → binary ``M = [D̃ > τ]`` →
    ``M`` over the image (if given) → ``M`` at image size (:func:`fine_mask`) against the true
    mask (if given)."""
    panels = 3 + (image is not None) + (true_mask is not None)
    fig, axes = _figure(1, panels, width=PANEL * panels + 0.8,
                        suptitle=f"clamp ratio κ = {result.clamp_ratio:g}, threshold τ = {result.threshold:g}")
    d = to_map(result.difference, index)
    _show_map(fig, axes[0, 0], d, cmap=HEAT_CMAP, vmin=0, vmax=float(d.max()) or 1.0, title="D (average)")
    _show_map(fig, axes[0, 1], to_map(result.normalized, index), cmap=HEAT_CMAP, vmin=0, vmax=1,
              title=RESCALE_TITLES[result.rescale])
    m = to_map(result.mask, index)
    axes[0, 2].imshow(m, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    _image_axis(axes[0, 2], f"M = [D̃ > τ]  ({m.mean():.0%} of the image)")
    k = 3
    if image is not None:
        mask_overlay(image, result.mask, index=index, title="M over the image", ax=axes[0, k])
        k += 1
    if true_mask is not None:
        iou = _comparison(axes[0, k], fine_mask(result, true_mask, index), true_mask, image)
        axes[0, k].set_title(f"M at image size vs true mask: IoU {iou:.2f}", fontsize=9)
    return fig


def fine_mask(result: MaskResult, true_mask: MaskLike, index: int = 0) -> np.ndarray:
    """``result``'s mask at ``true_mask``'s resolution, (H, W) bool: ``MaskResult.upsampled`` —
    ``D̃`` bilinearly upsampled, then ``> τ`` (holes filled if ``result.fill_holes``)."""
    h, w = to_map(true_mask).shape
    return _numpy(result.upsampled((w, h))[index]) > 0.5


def mask_refinements(result: MaskResult, image: ImageLike | None=None, *, true_mask: MaskLike, index: int = 0) -> Figure:
    """``D̃``, then three masks against the true one (IoU each): ``M = [D̃ > τ]`` on the latent
    grid, ``fill(M)`` (holes filled), and ``fill([up(D̃) > τ])`` at image resolution."""
    plain, filled = result.rethreshold(fill_holes=False), result.rethreshold(fill_holes=True)
    fig, axes = _figure(1, 4, width=PANEL * 4 + 0.8, suptitle=f"κ = {result.clamp_ratio:g}, τ = {result.threshold:g}")
    _show_map(fig, axes[0, 0], to_map(result.normalized, index), cmap=HEAT_CMAP, vmin=0, vmax=1, title="D̃")
    for ax, (name, mask) in zip(axes[0, 1:], [("M (latent cells)", plain.mask), ("fill(M)", filled.mask),
                                             ("at image size, filled", fine_mask(filled, true_mask, index))]):
        iou = _comparison(ax, mask, true_mask, image, index=index)
        ax.set_title(f"{name}: IoU {iou:.2f}", fontsize=9)
    return fig


def averaging_figure(result: MaskResult, *, index: int = 0, true_mask: MaskLike | None=None, ks: Sequence[int] | None = None) -> Figure:
    """How averaging over draws stabilises the map: ``D`` and the mask from the first ``k`` draws
    for a few ``k`` (top), and, as ``k`` grows, the cells that still differ from the ``n``-draw
    mask — counted against the size of that mask, not of the image, so that a small object's
    unsettled mask does not look settled — and (if ``true_mask`` is given) the IoU with the true
    mask (bottom)."""
    import torch

    from .mask import normalize_and_threshold

    diffs = result.differences[index : index + 1].detach().float().cpu()  # (1, n, h, w)
    n = diffs.shape[1]
    running = diffs.cumsum(1) / torch.arange(1, n + 1).view(1, n, 1, 1)  # D from the first k draws
    masks = [normalize_and_threshold(running[:, k], result.clamp_ratio, result.threshold,
                                     rescale=result.rescale)[1][0].numpy()
             for k in range(n)]
    final = masks[-1]
    changed = [float((m != final).sum() / max(final.sum(), 1)) for m in masks]  # share of the final mask's area
    ks = sorted({k for k in (ks or (1, 2, 5, n)) if 1 <= k <= n})
    fig = Figure(figsize=(max(PANEL * len(ks), 7.5), PANEL * 2 + 2.6), layout="constrained")
    grid = fig.add_gridspec(3, len(ks), height_ratios=[1, 1, 1.1])
    hi = float(running[0, 0].max())
    for j, k in enumerate(ks):
        ax = fig.add_subplot(grid[0, j])
        _show_map(fig, ax, running[0, k - 1].numpy(), cmap=HEAT_CMAP, vmin=0, vmax=hi,
                  title=f"D from {k} draw{'s' if k > 1 else ''}", colorbar=j == len(ks) - 1)
        ax = fig.add_subplot(grid[1, j])
        ax.imshow(masks[k - 1], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        _image_axis(ax, f"mask from {k}")
    ax = fig.add_subplot(grid[2, :])
    x = np.arange(1, n + 1)
    ax.plot(x, changed, "o-", label=f"cells differing from the {n}-draw mask (× its area)")
    if true_mask is not None:
        ious = [mask_iou(m, true_mask) for m in masks]
        ax.plot(x, ious, "s-", label="IoU with the true mask")
    ax.set_xlabel("number of noise draws averaged (k)")
    ax.set_ylim(-0.02, max(1.02, max(changed) + 0.05))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle("Averaging over noise draws stabilises the mask")
    return fig


def _comparison(ax, pred, true, image=None, *, index: int = 0, title: str | None = None) -> float:
    t = to_map(true) > 0.5
    ax.imshow(comparison_rgb(pred, t, image, index=index), interpolation="nearest")
    iou = mask_iou(to_map(pred, index), t)
    _image_axis(ax, title or f"vs true mask: IoU {iou:.2f}")
    ax.set_xlabel("green: both · orange: extra · blue: missed", fontsize=7)
    return iou


def comparison_rgb(pred: MaskLike, true: MaskLike, image: ImageLike | None=None, *, index: int = 0) -> np.ndarray:
    """The colour-coded comparison of :func:`mask_comparison` as an ``H×W×3`` array in [0, 1]
    at the true mask's resolution (green both, orange extra, blue missed; the image faded below)."""
    t = to_map(true) > 0.5
    p = resize_mask(pred, (t.shape[1], t.shape[0]), index)
    base = to_rgb(image) * 0.5 + 0.5 if image is not None else np.ones((*t.shape, 3), np.float32)
    if base.shape[:2] != t.shape:
        base = np.ones((*t.shape, 3), np.float32)
    out = base.copy()
    out[p & t] = (0.2, 0.75, 0.3)  # found
    out[p & ~t] = (0.95, 0.55, 0.1)  # too much
    out[~p & t] = (0.25, 0.45, 0.95)  # missed
    return out


def mask_strip(result: MaskResult, image: ImageLike | None=None, *, index: int = 0, true_mask: MaskLike | None=None, panel: int = 160):
    """A fast, matplotlib-free picture of a mask for live widgets: ``(PIL image, titles)``.

    Panels of ``panel`` pixels (nearest upsampling): the normalised map ``D̃`` in
    :data:`HEAT_CMAP`, the mask over the image (or alone), the comparison with the true mask
    (if given). Drawing takes milliseconds, so sliders can redraw on every move.
    """
    from matplotlib import colormaps
    from PIL import Image

    m = to_map(result.mask, index)
    panels = [colormaps[HEAT_CMAP](np.clip(to_map(result.normalized, index), 0, 1))[..., :3],
              overlay(image, result.mask, index=index) if image is not None else np.repeat(m[..., None], 3, axis=2)]
    how = ", min–max" if result.rescale == "range" else ""
    titles = [f"D̃ (κ = {result.clamp_ratio:g}{how})", f"mask (τ = {result.threshold:g}): {m.mean():.0%} of the image"]
    if true_mask is not None:
        fine = fine_mask(result, true_mask, index)
        panels.append(comparison_rgb(fine, true_mask, image))
        titles.append(f"vs true mask: IoU {mask_iou(fine, true_mask):.2f}")
    gap = 6
    strip = Image.new("RGB", (len(panels) * (panel + gap) - gap, panel), (255, 255, 255))
    for k, arr in enumerate(panels):
        tile = Image.fromarray((np.clip(arr, 0, 1) * 255).round().astype(np.uint8))
        strip.paste(tile.resize((panel, panel), resample=Image.NEAREST), (k * (panel + gap), 0))
    return strip, titles


def mask_comparison(pred: MaskLike, true: MaskLike, image: ImageLike | None=None, *, index: int = 0, title: str | None = None) -> Figure:
    """A predicted mask against the true one, at the true mask's resolution: green where both
    say "edit", orange where only the prediction does, blue where it missed; IoU in the title."""
    fig, axes = _figure(1, 1, height=PANEL + 0.3)
    _comparison(axes[0, 0], pred, true, image, index=index, title=title)
    return fig


def latent_channels(latents: ArrayLike, *, index: int = 0, title: str | None = None, panel: float = PANEL) -> Figure:
    """The channels of a latent ``z`` (B, C, h, w) or (C, h, w), one panel and colour bar each
    (signed, centred on 0)."""
    z = _numpy(latents).astype(np.float32)
    z = z[index] if z.ndim == 4 else z
    if z.ndim != 3:
        raise ValueError(f"latent_channels: expected (B, C, h, w) or (C, h, w), got {_numpy(latents).shape}")
    fig, axes = _figure(1, len(z), width=(panel + 0.5) * len(z), suptitle=title)
    for ch, ax in enumerate(axes.flat):
        lim = float(np.abs(z[ch]).max()) or 1.0
        _show_map(fig, ax, z[ch], cmap=SIGNED_CMAP, vmin=-lim, vmax=lim,
                  title=f"channel {ch}  (mean {z[ch].mean():+.2f}, std {z[ch].std():.2f})")
    return fig


def pick_steps(length: int, num: int) -> list[int]:
    """``num`` indices spread evenly over ``range(length)``, first and last included."""
    num = max(1, min(num, length))
    return sorted({int(round(i)) for i in np.linspace(0, length - 1, num)})


def trajectory_figure(run: Inversion | DenoiseResult | EditResult | ArrayLike, images: Sequence, steps: Sequence[int] | None = None, *,
                      title: str | None = None) -> Figure:
    """A latent trajectory shown at some of its steps, from the decoded images the caller gives.

    ``run``: an ``Inversion`` (clean first, getting noisier), a ``DenoiseResult`` (noisiest
    first, getting cleaner), an ``EditResult`` (its decoding) or a (T + 1, B, C, h, w) tensor —
    for the labels. ``images``: the latents ``run.trajectory[steps]`` decoded (one image each);
    ``steps`` default to ``pick_steps(T + 1, len(images))``. So::

        picks = viz.pick_steps(len(inv.trajectory), 6)
        viz.trajectory_figure(inv, dl.decode(c, inv.trajectory[picks, 0]), picks)

    The decoded latents are shown as they are — intermediate latents look like noisy images.
    """
    traj, labels = _trajectory_labels(run)
    picks = list(steps) if steps is not None else pick_steps(len(traj), len(images))
    if len(picks) != len(images):
        raise ValueError(f"`images` ({len(images)}) and `steps` ({len(picks)}) must have the same length.")
    default = {"Inversion": "DDIM encoding (inversion): z0 → z_r",
               "DenoiseResult": "Decoding: z_r → z0'", "EditResult": "Decoding: z_r → z0'"}.get(type(run).__name__)
    return image_grid(images, [labels[i] for i in picks], suptitle=title or default)


def _trajectory_labels(run):
    name = type(run).__name__
    traj = run.trajectory if hasattr(run, "trajectory") else run
    T = len(traj) - 1
    ts = [int(t) for t in _numpy(run.timesteps)] if hasattr(run, "timesteps") else None
    if name == "Inversion":
        labels = ["x0 (input)"] + [f"step {k}: t={ts[k - 1]}" for k in range(1, T + 1)]
    elif ts is not None and len(ts) == T:  # DenoiseResult: trajectory[k] after step k - 1
        labels = [f"start: t={ts[0]}"] + [f"step {k}" + (f": t={ts[k]}" if k < T else " (clean)")
                                            for k in range(1, T + 1)]
    else:
        labels = [f"{k}/{T}" for k in range(T + 1)]
    return traj, labels


def difference_image(before: ImageLike, after: ImageLike, *, titles: Sequence[str] = ("before", "after"), mask: MaskLike | None=None,
                     title: str | None = None, vmax: float | None = None) -> Figure:
    """``before``, ``after`` and ``|after − before|`` (mean over RGB, in [0, 1]) as a heat map with
    a colour bar. With ``mask``, its border is drawn on the difference: what changed outside it
    is drift."""
    a, b = to_rgb(before), to_rgb(after)
    if a.shape != b.shape:
        raise ValueError(f"difference_image: sizes differ, {a.shape} vs {b.shape}")
    d = np.abs(b - a).mean(2)
    fig, axes = _figure(1, 3, width=PANEL * 3 + 0.6, suptitle=title)
    axes[0, 0].imshow(a, interpolation="nearest")
    _image_axis(axes[0, 0], titles[0])
    axes[0, 1].imshow(b, interpolation="nearest")
    _image_axis(axes[0, 1], titles[1])
    sub = "|after − before|"
    if mask is not None:
        m = resize_mask(mask, (a.shape[1], a.shape[0]))
        outside = float(d[~m].mean()) if (~m).any() else 0.0
        sub += f"\nmean outside mask {outside:.3f}"
    _show_map(fig, axes[0, 2], d, cmap=HEAT_CMAP, vmin=0, vmax=vmax or max(float(d.max()), 1e-6), title=sub)
    if mask is not None:
        axes[0, 2].contour(m.astype(float), levels=[0.5], colors=["cyan"], linewidths=1)
    return fig


def curves(x: Sequence[float], ys: Mapping[str, Sequence[float]], *, xlabel: str = "", ylabel: str = "",
           title: str | None = None, logx: bool = False, logy: bool = False,
           bands: Mapping[str, Sequence[float]] | None = None, ax: Axes | None=None) -> Figure:
    """Line plots of ``ys`` (label → values) against ``x``; ``bands`` (label → std) are drawn
    as shaded ±1 std. Draws into ``ax`` if given."""
    if ax is None:
        fig = Figure(figsize=(5.5, 3.4), layout="constrained")
        ax = fig.add_subplot()
    x = np.asarray(x)
    markers = "os^dvx*"
    for i, (label, y) in enumerate(ys.items()):
        y = np.asarray(_numpy(y), dtype=float)
        ax.plot(x, y, marker=markers[i % len(markers)] if len(x) <= 50 else None, label=label)  # no marker per point of a dense curve
        if bands and label in bands:
            s = np.asarray(bands[label], dtype=float)
            ax.fill_between(x, y - s, y + s, alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
        if len(x) <= 12:  # tick the values themselves, not log decades and their minor ticks
            ax.set_xticks(x, [f"{v:g}" for v in x])
            ax.minorticks_off()
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(ys) > 1 or bands:
        ax.legend(fontsize=8)
    return ax.figure


def _same_size(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a`` resized to ``b``'s size if they differ (an input resized to fit the VAE)."""
    if a.shape == b.shape:
        return a
    from PIL import Image

    img = Image.fromarray((a * 255).round().astype(np.uint8)).resize((b.shape[1], b.shape[0]), Image.LANCZOS)
    return np.asarray(img, np.float32) / 255


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


def difference_maps(image, reconstruction, output) -> tuple[np.ndarray, np.ndarray]:
    """``(|output − VAE(input)|, |VAE(input) − input|)``, each (H, W), mean over RGB in [0, 1].

    An edited image is ``D(z0')``; its input is ``x``; the VAE alone gives ``x̂ = D(E(x))``. Then
    ``output − x = (output − x̂) + (x̂ − x)``: the first term is what the edit did (the masked
    denoising — zero where the mask kept the encoded latent, up to the DDIM round trip), the
    second what the autoencoder loses whatever the edit. ``|output − input|`` mixes the two."""
    b = to_rgb(output)
    a = _same_size(to_rgb(image), b)
    r = _same_size(to_rgb(reconstruction), b)
    return np.abs(b - r).mean(2), np.abs(r - a).mean(2)


def _difference_panels(fig, ax_edit, ax_vae, a, r, b, mask=None) -> None:
    """The two maps of :func:`difference_maps` on one colour scale, with their figures."""
    d_edit, d_vae = np.abs(b - r).mean(2), np.abs(r - a).mean(2)
    vmax = max(float(d_edit.max()), float(d_vae.max()), 1e-6)
    sub = "what the edit did\n|output − VAE(input)|"
    m = None
    if mask is not None:
        m = resize_mask(mask, (a.shape[1], a.shape[0]))
        if (~m).any():
            sub += f"\nmean outside the mask {float(d_edit[~m].mean()):.3f}"
    _show_map(fig, ax_edit, d_edit, cmap=HEAT_CMAP, vmin=0, vmax=vmax, title=sub)
    _show_map(fig, ax_vae, d_vae, cmap=HEAT_CMAP, vmin=0, vmax=vmax,
              title=f"what the autoencoder loses\n|VAE(input) − input|\nround trip {_psnr(a, r):.1f} dB")
    if m is not None:
        for ax in (ax_edit, ax_vae):
            ax.contour(m.astype(float), levels=[0.5], colors=["cyan"], linewidths=1)


def edit_differences(image, reconstruction, output, *, mask=None, title: str | None = None) -> Figure:
    """Edit drift and autoencoder loss apart: input, ``VAE(input)`` (the round trip ``D(E(x))``),
    output, then ``|output − VAE(input)|`` (what the edit did) beside ``|VAE(input) − input|``
    (what the autoencoder loses), on one colour scale (:func:`difference_maps`). With ``mask``
    (the edit's), its border is drawn on both maps. Receives images; never calls the model."""
    b = to_rgb(output)
    a, r = _same_size(to_rgb(image), b), _same_size(to_rgb(reconstruction), b)
    fig, axes = _figure(1, 5, width=PANEL * 5 + 1.2, height=PANEL + 0.75 + (0.35 if title else 0), suptitle=title)
    for ax, img, name in zip(axes[0], (a, r, b), ("input", "VAE(input): the round trip", "output")):
        ax.imshow(img, interpolation="nearest")
        _image_axis(ax, name)
    _difference_panels(fig, axes[0, 3], axes[0, 4], a, r, b, mask)
    return fig


def edit_figure(image: ImageLike, result: EditResult, *, true_mask: MaskLike | None = None, title: str | None = None,
                reconstruction: ImageLike | None = None) -> Figure:
    """An edit at a glance: input, mask over the input, output, and ``|output − input|``
    (then the mask against the true mask, if given). ``result``: an ``EditResult`` (or anything
    with ``.image`` and ``.mask``). With ``reconstruction`` (the input's VAE round trip
    ``D(E(x))``), the difference is split in two (:func:`edit_differences`): what the edit did,
    ``|output − VAE(input)|``, and what the autoencoder loses, ``|VAE(input) − input|``."""
    panels = 4 + (true_mask is not None) + (reconstruction is not None)
    suptitle = title or _edit_title(result)
    height = PANEL + 0.75 + (0.35 if suptitle else 0) if reconstruction is not None else None
    fig, axes = _figure(1, panels, width=PANEL * panels + 0.6, height=height, suptitle=suptitle)
    b = to_rgb(result.image)
    a = _same_size(to_rgb(image), b)
    axes[0, 0].imshow(a, interpolation="nearest")
    _image_axis(axes[0, 0], "input")
    mask_overlay(a, result.mask, title="mask", ax=axes[0, 1])
    axes[0, 2].imshow(b, interpolation="nearest")
    _image_axis(axes[0, 2], "output")
    if reconstruction is None:
        d = np.abs(b - a).mean(2)
        _show_map(fig, axes[0, 3], d, cmap=HEAT_CMAP, vmin=0, vmax=max(float(d.max()), 1e-6),
                  title="|output − input|")
    else:
        _difference_panels(fig, axes[0, 3], axes[0, 4], a, _same_size(to_rgb(reconstruction), b), b)
    if true_mask is not None:
        # the mask at image size, as every IoU of the library is scored (MaskResult.upsampled; toy.quality)
        _comparison(axes[0, panels - 1], fine_mask(result.mask, true_mask), true_mask, a)
    return fig


def _edit_title(result) -> str | None:
    s = getattr(result, "settings", None) or {}
    if "target" not in s:
        return None
    return f"“{s.get('source', '')}” → “{s['target']}”"
