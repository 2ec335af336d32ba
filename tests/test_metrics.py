"""Metrics on cases small enough to compute by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from diffedit_lab.metrics import (
    background_psnr,
    background_ssim,
    dilate,
    gaussian_window,
    mask_iou,
    ssim_map,
    upsample_mask,
)


def _block(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


# --------------------------------------------------------------------------- IoU


def test_iou_of_overlapping_blocks():
    p = _block(6, 6, 0, 2, 0, 2)  # 4 px
    t = _block(6, 6, 0, 2, 0, 3)  # 6 px, contains p
    assert mask_iou(p, t) == pytest.approx(4 / 6)
    q = _block(6, 6, 1, 3, 1, 3)  # overlaps p in 1 px: union 7
    assert mask_iou(p, q) == pytest.approx(1 / 7)
    assert mask_iou(p, ~p) == 0.0


def test_iou_edge_cases_and_batch():
    empty = np.zeros((4, 4), bool)
    assert mask_iou(empty, empty) == 1.0
    assert mask_iou(empty, _block(4, 4, 0, 1, 0, 1)) == 0.0
    p = np.stack([_block(6, 6, 0, 2, 0, 2), _block(6, 6, 0, 2, 0, 3)])
    t = _block(6, 6, 0, 2, 0, 3)
    out = mask_iou(p, np.stack([t, t]))
    assert isinstance(out, np.ndarray) and out.shape == (2,)
    assert out == pytest.approx([4 / 6, 1.0])
    assert mask_iou(torch.from_numpy(p), torch.from_numpy(np.stack([t, t]))) == pytest.approx(out)


def test_iou_upsamples_binary_latent_masks_by_nearest():
    latent = np.array([[1, 0], [0, 0]], np.float32)  # one cell → the top-left 2×2 block
    true = _block(4, 4, 0, 2, 0, 2)
    assert mask_iou(latent, true) == 1.0
    assert np.array_equal(upsample_mask(latent[None], (4, 4))[0], true)
    assert mask_iou(torch.tensor(latent)[None], true[None]) == pytest.approx([1.0])


def test_iou_upsamples_continuous_maps_bilinearly():
    # 2 → 4 bilinear (align_corners=False) weights of the first input cell along an axis:
    # 1, 0.75, 0.25, 0; the map 0.1 + 0.8·w_r·w_c is 0.9, 0.7 / 0.7, 0.55 in the top-left.
    cont = np.array([[0.9, 0.1], [0.1, 0.1]], np.float32)
    true = _block(4, 4, 0, 2, 0, 2)
    assert mask_iou(cont, true, threshold=0.5) == 1.0  # all four > 0.5
    assert mask_iou(cont, true, threshold=0.6) == pytest.approx(3 / 4)  # 0.55 drops out


# --------------------------------------------------------------------------- dilation


def test_dilate_is_a_disc():
    m = np.zeros((9, 9), bool)
    m[4, 4] = True
    assert dilate(m, 0).sum() == 1
    assert dilate(m, 1).sum() == 5  # the 4-neighbours
    assert dilate(m, 2).sum() == 13  # dx² + dy² ≤ 4
    assert dilate(m, 3).sum() == 29
    corner = np.zeros((5, 5), bool)
    corner[0, 0] = True
    assert dilate(corner, 1).sum() == 3  # clipped at the border, no wrap-around
    batch = np.stack([m, np.zeros_like(m)])
    assert dilate(batch, 1).sum((1, 2)).tolist() == [5, 0]


# --------------------------------------------------------------------------- PSNR


def test_psnr_by_hand():
    x = np.zeros((10, 10, 3), np.uint8)
    y = x.copy()
    y[5, 5] = 255  # error 1 on 3 of 300 values: MSE = 1/100
    assert background_psnr(x, y) == pytest.approx(20.0)
    assert background_psnr(x / 255.0, y / 255.0) == pytest.approx(20.0)  # floats in [0, 1]
    assert background_psnr(x, y, _block(10, 10, 5, 6, 5, 6)) == np.inf  # the error is inside
    corner = _block(10, 10, 0, 2, 0, 2)
    assert background_psnr(x, y, corner, dilate=0) == pytest.approx(10 * np.log10(96))
    # dilating the 2×2 corner by 1 px adds (2,0), (2,1), (0,2), (1,2): 92 pixels stay
    assert background_psnr(x, y, corner, dilate=1) == pytest.approx(10 * np.log10(92))
    assert background_psnr(x, y, _block(10, 10, 4, 5, 5, 6), dilate=1) == np.inf  # 1 px away
    assert np.isnan(background_psnr(x, y, np.ones((10, 10), bool)))


def test_psnr_batch_and_torch():
    x = np.zeros((2, 8, 8, 3), np.float32)
    y = x.copy()
    y[0] += 0.1  # MSE 0.01 → 20 dB
    y[1] += 0.01  # MSE 1e-4 → 40 dB
    assert background_psnr(x, y) == pytest.approx([20.0, 40.0])
    tx, ty = torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(y).permute(0, 3, 1, 2)
    assert background_psnr(tx, ty) == pytest.approx([20.0, 40.0], rel=1e-5)
    pil = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    assert background_psnr(pil, np.full((8, 8, 3), 0.1)) == pytest.approx(20.0)


def test_psnr_latent_region_is_upsampled():
    x = np.zeros((8, 8, 3))
    y = x.copy()
    y[:4, :4] = 1.0  # all the error in the top-left quarter
    latent = np.array([[1, 0], [0, 0]], bool)  # 2×2 cells of 4×4 pixels
    assert background_psnr(x, y, latent, dilate=0) == np.inf


# --------------------------------------------------------------------------- SSIM


def test_ssim_identical_and_constant_images():
    rng = np.random.default_rng(0)
    x = rng.random((16, 16, 3))
    assert background_ssim(x, x) == pytest.approx(1.0)
    a, b = np.full((8, 8, 3), 0.5), np.full((8, 8, 3), 0.6)  # σ = 0: only the luminance term
    c1 = 0.01**2
    assert background_ssim(a, b) == pytest.approx((2 * 0.5 * 0.6 + c1) / (0.5**2 + 0.6**2 + c1))


def test_ssim_map_matches_a_direct_window_computation():
    rng = np.random.default_rng(1)
    x = rng.random((12, 12, 1))
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    g = gaussian_window(1.5, 2)
    w = np.outer(g, g)  # the 5×5 window at (6, 6) lies inside the image
    px, py = x[4:9, 4:9, 0], y[4:9, 4:9, 0]
    mx, my = (w * px).sum(), (w * py).sum()
    vx, vy = (w * px**2).sum() - mx**2, (w * py**2).sum() - my**2
    cxy = (w * px * py).sum() - mx * my
    c1, c2 = 0.01**2, 0.03**2
    direct = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    got = ssim_map(x[None], y[None], np.ones((1, 12, 12), bool), radius=2)[0, 6, 6]
    assert got == pytest.approx(direct, rel=1e-9)
    assert 0.3 < direct < 0.99


def test_ssim_ignores_the_inside_and_sees_the_outside():
    rng = np.random.default_rng(2)
    x = rng.random((32, 32, 3))
    region = _block(32, 32, 10, 20, 10, 20)
    y = x.copy()
    y[10:20, 10:20] = 1 - y[10:20, 10:20]  # change only inside
    assert background_ssim(x, y, region, dilate=0) == pytest.approx(1.0)
    assert background_ssim(x, y) < 0.9  # without the region the change counts
    z = np.clip(x + rng.normal(0, 0.2, x.shape), 0, 1)  # change everywhere
    assert background_ssim(x, z, region) < 0.9
    batch = background_ssim(np.stack([x, x]), np.stack([y, z]), region, dilate=0)
    assert batch.shape == (2,) and batch[0] == pytest.approx(1.0) and batch[1] < 0.9
