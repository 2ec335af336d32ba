"""noise_diff_mask: every intermediate, re-thresholding, mask images, seeds, guidance rows."""

from __future__ import annotations


import numpy as np
import pytest
import torch

import diffedit_lab.mask as mask_module
from diffedit_lab import MaskResult, encode, noise_diff_mask

SOURCE, TARGET = "a red circle", "a blue square"


@pytest.fixture(scope="module")
def z0(tiny_components):
    from PIL import Image

    rng = np.random.RandomState(0)
    return encode(tiny_components, Image.fromarray((rng.rand(32, 48, 3) * 255).astype(np.uint8)))


@pytest.fixture(scope="module")
def result(tiny_components, z0) -> MaskResult:
    return noise_diff_mask(tiny_components, z0, SOURCE, TARGET, n=3, clamp_ratio=1.5, seed=0, progress=False)


def test_intermediates_follow_the_equations(result, z0):
    r = result
    assert r.noisy_latents.shape == r.source_noise.shape == r.target_noise.shape == (1, 3, 4, 16, 24)
    assert r.differences.shape == (1, 3, 16, 24)
    assert r.difference.shape == r.normalized.shape == r.mask.shape == (1, 16, 24)
    per_draw = (r.target_noise - r.source_noise).abs().mean(2)  # D^(i): mean over channels
    assert torch.allclose(r.differences, per_draw, atol=1e-6)
    assert torch.allclose(r.difference, per_draw.mean(1), atol=1e-6)  # D: mean over draws
    bound = 1.5 * r.difference.mean()
    assert torch.allclose(r.normalized, r.difference.clamp(max=bound) / bound, atol=1e-6)
    assert torch.equal(r.mask, (r.normalized > 0.5).float())
    assert 0 < r.mask.mean() < 1
    assert r.n == 3 and r.timestep == 481 and r.image_size == (48, 32)


def test_draws_are_distinct_noisings_of_z0(tiny_components, result, z0):
    draws = result.noisy_latents[0]
    assert not torch.equal(draws[0], draws[1])
    alpha = tiny_components.scheduler.alphas_cumprod[result.timestep]
    noise = (draws - alpha.sqrt() * z0) / (1 - alpha).sqrt()  # z_t = √ᾱ z0 + √(1−ᾱ) ξ
    assert abs(noise.std().item() - 1) < 0.1 and abs(noise.mean().item()) < 0.1


def test_rethreshold_needs_no_model_and_is_monotonic(result, monkeypatch):
    monkeypatch.setattr(mask_module, "unet_output", None)  # any model call would fail
    low, high = result.rethreshold(threshold=0.3), result.rethreshold(threshold=0.7)
    assert torch.equal(result.rethreshold().mask, result.mask)
    assert (low.mask >= result.mask).all() and (high.mask <= result.mask).all()
    assert low.mask.sum() > high.mask.sum()
    wider = result.rethreshold(clamp_ratio=3.0)
    assert wider.clamp_ratio == 3.0 and wider.threshold == result.threshold
    assert torch.equal(wider.difference, result.difference) and wider.mask.sum() <= result.mask.sum()


def test_rethreshold_of_a_64x64_map_is_array_work_only(result, monkeypatch):
    """Its speed is measured by ``bench speed`` (scenario d), not here: no model call, maps of the
    map's own size."""
    monkeypatch.setattr(mask_module, "unet_output", None)  # any model call would fail
    big = MaskResult(**{**result.__dict__, "difference": torch.rand(1, 64, 64)})
    cut = big.rethreshold(threshold=0.4, clamp_ratio=2.0)
    assert cut.mask.shape == cut.normalized.shape == (1, 64, 64)
    assert torch.equal(cut.mask, (cut.normalized > 0.4).to(cut.mask.dtype))


def test_to_image_is_a_binary_l_image_at_image_size(result):
    img = result.to_image()
    assert img.mode == "L" and img.size == (48, 32)
    arr = np.asarray(img)
    assert set(np.unique(arr)) <= {0, 255}
    assert np.array_equal(arr[::2, ::2] > 0, result.mask[0].numpy() > 0)
    assert result.to_image(size=(96, 64)).size == (96, 64)


def test_same_seed_same_mask_other_seed_other_draws(tiny_components, z0, result):
    again = noise_diff_mask(tiny_components, z0, SOURCE, TARGET, n=3, clamp_ratio=1.5, seed=0, progress=False)
    assert torch.equal(again.difference, result.difference)
    other = noise_diff_mask(tiny_components, z0, SOURCE, TARGET, n=3, clamp_ratio=1.5, seed=1, progress=False)
    assert not torch.equal(other.noisy_latents, result.noisy_latents)


def test_guidance_cancels_with_equal_negatives(tiny_components, z0, result):
    """ε̂(Q) − ε̂(R) = w·(ε(Q) − ε(R)): D scales with w, D̃ does not."""
    other = noise_diff_mask(tiny_components, z0, SOURCE, TARGET, n=3, clamp_ratio=1.5, guidance=2.0, seed=0,
                            progress=False)
    assert torch.allclose(other.difference * 7.5 / 2.0, result.difference, rtol=1e-3, atol=1e-5)
    assert torch.allclose(other.normalized, result.normalized, atol=1e-4)


def test_three_rows_equal_four_rows(tiny_components, z0, monkeypatch):
    """[∅, R] + [Q] gives the numbers of diffusers' [∅, R, ∅, Q] (the shared ∅ row is reused).

    Each mask is two UNet calls, the source branch and the target branch (n = 2 draws)."""
    calls = []
    real = mask_module.unet_output
    monkeypatch.setattr(mask_module, "unet_output", lambda c, z, t, e: calls.append(len(z)) or real(c, z, t, e))
    kw = dict(n=2, seed=0, progress=False)
    three = noise_diff_mask(tiny_components, z0, SOURCE, TARGET, **kw)
    # a different-but-equivalent negative text object forces the 4-row path
    four = noise_diff_mask(tiny_components, z0, SOURCE, TARGET, target_negative_prompt=[""], **kw)
    unguided = noise_diff_mask(tiny_components, z0, SOURCE, TARGET, guidance=1.0, **kw)
    assert calls == [4, 2, 4, 4, 2, 2]  # 3n rows, 4n rows, 2n rows unguided
    # the target branch is [Q] (n rows) against [∅_Q, Q] (2n rows): the UNet rounds a little
    # differently for another batch size, and ε̂ = ∅ + w·(Q − ∅) multiplies that by w = 7.5
    assert torch.allclose(three.difference, four.difference, atol=1e-5)
    assert torch.equal(three.source_noise, four.source_noise)  # the same source-branch call
    assert not torch.allclose(unguided.difference, three.difference)


def test_image_input_and_list_prompts(tiny_components, tiny_image):
    r = noise_diff_mask(tiny_components, tiny_image, "", ["a blue square", "a blue star"], n=2, seed=0,
                        progress=False)
    assert r.mask.shape == (1, 16, 16) and torch.isfinite(r.difference).all()


def test_v_prediction_model(tiny_components_v, tiny_image):
    r = noise_diff_mask(tiny_components_v, tiny_image, SOURCE, TARGET, n=2, clamp_ratio=1.5, seed=0, progress=False)
    assert torch.isfinite(r.difference).all() and 0 < r.mask.mean() < 1


def _ring(size: int = 8) -> torch.Tensor:
    m = torch.zeros(1, size, size)
    m[0, 2:6, 2:6] = 1
    m[0, 3:5, 3:5] = 0  # a 2×2 hole
    return m


def test_fill_holes_fills_enclosed_cells_only():
    ring = _ring()
    filled = mask_module.fill_holes(ring)
    expected = torch.zeros(1, 8, 8)
    expected[0, 2:6, 2:6] = 1
    assert torch.equal(filled, expected)
    opened = ring.clone()
    opened[0, 2, 3] = 0  # the hole now reaches the outside through a gap
    assert torch.equal(mask_module.fill_holes(opened), opened)
    diagonal = ring.clone()
    diagonal[0, 2, 2] = 0  # a corner gap only touches the hole diagonally: still enclosed
    assert torch.equal(mask_module.fill_holes(diagonal)[0, 3:5, 3:5], torch.ones(2, 2))
    batch = torch.cat([ring, torch.zeros(1, 8, 8), torch.ones(1, 8, 8)])
    assert torch.equal(mask_module.fill_holes(batch), torch.cat([expected, torch.zeros(1, 8, 8), torch.ones(1, 8, 8)]))


def test_fill_holes_leaves_the_objects_of_a_mask_that_covers_most_of_the_image():
    """A background edit's mask: everything but two objects. Its holes are what the edit keeps —
    filled, the objects would be repainted. Half of the image is where filling stops."""
    background = torch.ones(1, 8, 8)
    background[0, 2:4, 1:3] = 0  # an object
    background[0, 5:7, 4:7] = 0  # another
    assert torch.equal(mask_module.fill_holes(background), background)
    ring = _ring()  # 12 of 64 cells: an object's outline, filled
    assert mask_module.fill_holes(ring)[0, 3:5, 3:5].eq(1).all()
    half = torch.zeros(1, 8, 8)
    half[0, :, :4] = 1
    half[0, 2:4, 1:3] = 0  # 28 of 64 cells, under half: its hole is filled
    assert mask_module.fill_holes(half)[0, 2:4, 1:3].eq(1).all()
    half[0, 0:2, 4] = 1  # 30 cells, still under half
    assert mask_module.fill_holes(half)[0, 2:4, 1:3].eq(1).all()
    half[0, :, 4] = 1  # 36 cells: more than half — left as it is
    assert torch.equal(mask_module.fill_holes(half), half)
    sea = torch.ones(1, 12, 12)
    sea[0, 3:6, 4:7] = 0  # a 3×3 object: a closing over 1 cell keeps it, filling must not take it
    assert torch.equal(mask_module.refine(sea, fill=True, close=1), sea)
    batch = torch.cat([background, ring])  # each image decided on its own
    assert torch.equal(mask_module.fill_holes(batch), torch.cat([background, mask_module.fill_holes(ring)]))


def test_rethreshold_fill_holes_and_upsampled_mask(result, monkeypatch):
    monkeypatch.setattr(mask_module, "unet_output", None)  # no model call
    filled = result.rethreshold(fill_holes=True)
    assert filled.fill_holes and torch.equal(filled.mask, mask_module.fill_holes(result.mask))
    assert filled.rethreshold(threshold=0.6).fill_holes  # kept by a later re-threshold
    assert torch.equal(filled.rethreshold(fill_holes=False).mask, result.mask)

    fine = result.upsampled()
    assert fine.shape == (1, 32, 48) and set(fine.unique().tolist()) <= {0.0, 1.0}
    up = torch.nn.functional.interpolate(result.normalized[:, None], size=(32, 48), mode="bilinear", align_corners=False)
    assert torch.equal(fine, (up[:, 0] > result.threshold).float())
    assert torch.equal(result.upsampled((24, 16)), result.mask)  # at the latent size: M itself
    holes = filled.mask - result.mask
    raised = torch.maximum(result.normalized, holes)
    up = torch.nn.functional.interpolate(raised[:, None], size=(32, 48), mode="bilinear", align_corners=False)
    assert torch.equal(filled.upsampled(), mask_module.fill_holes((up[:, 0] > result.threshold).float()))
    assert (filled.upsampled() >= fine).all()
    assert result.upsampled((96, 64)).shape == (1, 64, 96)


def test_upsampling_keeps_a_ring_closed_on_the_latent_grid():
    """A ring of cells just above τ whose bilinear upsampling opens gaps at the corners: filled
    on the latent grid, it stays filled at image resolution."""
    normalized = torch.zeros(1, 6, 6)
    normalized[0, 1:5, 1:5] = 0.55  # a one-cell ring just above τ = 0.5
    normalized[0, 2:4, 2:4] = 0.0
    latent = (normalized > 0.5).float()
    assert torch.equal(mask_module.fill_holes(latent)[0, 2:4, 2:4], torch.ones(2, 2))
    plain = mask_module.upsample_and_threshold(normalized, 0.5, (24, 24), fill=False)
    assert not mask_module.fill_holes(plain)[0, 8:16, 8:16].all()  # upsampled alone, the ring opens
    fine = mask_module.upsample_and_threshold(normalized, 0.5, (24, 24), fill=True)
    assert (fine[0, 8:16, 8:16] == 1).all()  # the hole's pixels


def test_upsampled_mask_is_filled_exactly_when_the_latent_mask_is(monkeypatch):
    """The half-image rule is decided on the latent ``M``: a mask just over half of the latent grid
    whose bilinear upsampling shrinks under half keeps its hole at both resolutions."""
    normalized = torch.zeros(1, 8, 8)
    normalized[0, :, :5] = 0.55  # 40 cells just above τ = 0.5
    normalized[0, 3:5, 1:3] = 0.0  # a 2×2 hole: 36 of 64 cells, more than half
    latent = (normalized > 0.5).float()
    assert latent.mean() >= mask_module.HOLES_FILLED_BELOW
    assert torch.equal(mask_module.refine(latent, fill=True), latent)  # M keeps its hole
    plain = mask_module.upsample_and_threshold(normalized, 0.5, (32, 32), fill=False)
    assert plain.mean() < mask_module.HOLES_FILLED_BELOW  # upsampled, the edges give way: under half
    fine = mask_module.upsample_and_threshold(normalized, 0.5, (32, 32), fill=True)
    assert not fine[0, 14:18, 6:10].any()  # the hole's middle stays out, as in M
    normalized[0, :, 4] = 0.0  # 28 of 64 cells: under half, filled on both grids
    assert mask_module.refine((normalized > 0.5).float(), fill=True)[0, 3:5, 1:3].eq(1).all()
    assert mask_module.upsample_and_threshold(normalized, 0.5, (32, 32), fill=True)[0, 12:20, 4:12].eq(1).all()
    shares, fill_holes = [], mask_module.fill_holes  # filled, M is 32 of 64 cells: the decision is on M's 28
    monkeypatch.setattr(mask_module, "fill_holes", lambda m, share_of=None: shares.append(share_of.mean()) or fill_holes(m, share_of))
    mask_module.upsample_and_threshold(normalized, 0.5, (32, 32), fill=True)
    assert shares == [28 / 64, 28 / 64]  # on the latent grid and at image resolution


def test_noise_diff_mask_fill_holes(tiny_components, z0, result):
    filled = noise_diff_mask(tiny_components, z0, SOURCE, TARGET, n=3, clamp_ratio=1.5, seed=0, fill_holes=True,
                             progress=False)
    assert filled.fill_holes and torch.equal(filled.difference, result.difference)
    assert torch.equal(filled.mask, mask_module.fill_holes(result.mask))


def test_the_mask_progress_bar_can_be_turned_off(tiny_components, capsys):
    z0 = torch.zeros(1, 4, 8, 8)
    noise_diff_mask(tiny_components, z0, "a red circle", "a blue square", n=1, steps=4, progress=False)
    assert "DiffEdit mask" not in capsys.readouterr().err
    noise_diff_mask(tiny_components, z0, "a red circle", "a blue square", n=1, steps=4, progress=True)
    assert "DiffEdit mask" in capsys.readouterr().err


# --------------------------------------------------------------------------- rescale: "mean" (diffusers) or "range" (the paper)

RESCALE_MESSAGE = (r"^`rescale` must be 'mean' \(diffusers: divide by κ·mean D\) or 'range' \(the paper: min–max to "
                   r"\[0, 1\]\), got ")


def test_range_rescale_follows_the_equation_per_image():
    """D_c = min(D, κ·mean D), D̃ = (D_c − min D_c) / (max D_c − min D_c), each image on its own."""
    rng = np.random.RandomState(3)
    d = rng.rand(2, 4, 5).astype(np.float32) * np.array([0.2, 5.0], dtype=np.float32)[:, None, None] + 0.05
    d[0, 1, 2] *= 30  # a spike the clamp removes
    for kappa, tau in ((3.0, 0.5), (1.5, 0.3)):
        normalized, mask = mask_module.normalize_and_threshold(torch.from_numpy(d), kappa, tau, rescale="range")
        for b in range(2):
            clamped = np.minimum(d[b], kappa * d[b].mean())
            expected = (clamped - clamped.min()) / (clamped.max() - clamped.min())
            np.testing.assert_allclose(normalized[b].numpy(), expected, rtol=1e-5, atol=1e-6)
            assert np.array_equal(mask[b].numpy(), (normalized[b].numpy() > tau).astype(np.float32))
        assert normalized.amin((1, 2)).tolist() == [0.0, 0.0] and normalized.amax((1, 2)).tolist() == [1.0, 1.0]
        mean, _ = mask_module.normalize_and_threshold(torch.from_numpy(d), kappa, tau)  # the default differs
        assert not torch.allclose(mean, normalized, atol=1e-3)


def test_range_finds_a_region_that_covers_most_of_the_image_and_mean_does_not():
    """A background edit: D high everywhere but on a small block (the object that stays). The
    mean is then the background's own level, so D/(κ·mean D) stays below τ; min–max does not."""
    rng = np.random.RandomState(0)
    d = torch.from_numpy(rng.uniform(0.9, 1.1, (1, 16, 16)).astype(np.float32))
    d[0, 6:10, 5:9] = 0.05  # the object, untouched
    background = torch.ones(1, 16, 16)
    background[0, 6:10, 5:9] = 0
    _, by_range = mask_module.normalize_and_threshold(d, 3.0, 0.5, rescale="range")
    _, by_mean = mask_module.normalize_and_threshold(d, 3.0, 0.5, rescale="mean")
    assert torch.equal(by_range, background)
    assert by_mean.sum() == 0  # κτ·mean(D) ≈ 1.4 > every D


def test_range_rescale_of_a_flat_map_is_zero_not_nan():
    flat = torch.full((1, 6, 6), 0.3)
    normalized, mask = mask_module.normalize_and_threshold(flat, 3.0, 0.0, rescale="range")
    assert torch.equal(normalized, torch.zeros_like(flat)) and mask.sum() == 0
    # κ < 1: every cell above κ·mean(D) is clamped to it, D_c is flat
    two = torch.tensor([[[1.0, 2.0], [2.0, 1.0]]])
    normalized, _ = mask_module.normalize_and_threshold(two, 0.4, 0.5, rescale="range")
    assert torch.equal(normalized, torch.zeros_like(two))
    with pytest.warns(UserWarning, match="nothing differs"):  # D = 0: the floor's warning, D̃ = 0
        normalized, mask = mask_module.normalize_and_threshold(torch.zeros(1, 4, 4), 3.0, 0.5, rescale="range")
    assert torch.isfinite(normalized).all() and normalized.sum() == 0 and mask.sum() == 0


def test_rethreshold_rescale_equals_noise_diff_mask_rescale(tiny_components, z0, result, monkeypatch):
    ranged = noise_diff_mask(tiny_components, z0, SOURCE, TARGET, n=3, clamp_ratio=1.5, seed=0, rescale="range",
                             progress=False)
    monkeypatch.setattr(mask_module, "unet_output", None)  # the re-threshold: no model call
    again = result.rethreshold(rescale="range")
    assert result.rescale == "mean" and again.rescale == ranged.rescale == "range"
    assert torch.equal(ranged.difference, result.difference)
    assert torch.equal(again.normalized, ranged.normalized) and torch.equal(again.mask, ranged.mask)
    assert not torch.equal(again.mask, result.mask)  # the rescale changes this mask
    assert torch.equal(again.upsampled(), ranged.upsampled())
    assert again.rethreshold(threshold=0.6).rescale == "range"  # kept by a later re-threshold
    assert again.first_draws(2).rescale == "range"
    assert torch.equal(again.rethreshold(rescale="mean").mask, result.mask)


@pytest.mark.parametrize("bad", ["minmax", "Range", None, 1])
def test_a_bad_rescale_is_one_clear_error_before_any_model_call(tiny_components, z0, result, monkeypatch, bad):
    monkeypatch.setattr(mask_module, "unet_output", None)  # it must fail before the UNet
    if bad is not None:  # None means "the paper's" in noise_diff_mask
        with pytest.raises(ValueError, match=RESCALE_MESSAGE) as err:
            noise_diff_mask(tiny_components, z0, SOURCE, TARGET, n=3, seed=0, rescale=bad, progress=False)
        assert "\n" not in str(err.value)
        with pytest.raises(ValueError, match=RESCALE_MESSAGE):
            result.rethreshold(rescale=bad)
    with pytest.raises(ValueError, match=RESCALE_MESSAGE):
        mask_module.normalize_and_threshold(result.difference, 3.0, 0.5, rescale=bad)


def _broken_ring() -> torch.Tensor:
    """A 5×5 ring of cells (hole 3×3) with a one-cell gap in its top side."""
    m = torch.zeros(1, 9, 9)
    m[0, 2:7, 2:7] = 1
    m[0, 3:6, 3:6] = 0
    m[0, 2, 4] = 0
    return m


def test_closing_turns_a_broken_ring_into_a_region():
    ring = _broken_ring()
    region = torch.zeros(1, 9, 9)
    region[0, 2:7, 2:7] = 1
    assert torch.equal(mask_module.refine(ring, fill=True), ring)  # the gap lets the hole out: fill alone fails
    assert torch.equal(mask_module.refine(ring, fill=True, close=1), region)
    assert torch.equal(mask_module.refine(ring, fill=False, close=0), ring)
    closed = mask_module.refine(ring, fill=False, close=1)  # closing alone joins the gap, the hole stays
    assert closed[0, 2, 4] == 1 and closed[0, 4, 4] == 0
    corner = torch.zeros(1, 9, 9)
    corner[0, 0:3, 0:2] = 1  # a blob on the border: neither grown nor shrunk
    assert torch.equal(mask_module.refine(corner, fill=True, close=2), corner)
    wide = _broken_ring()
    wide[0, 2, 3:6] = 0  # a 3-cell gap: more than 2·1 cells, open at radius 1, closed at radius 2
    assert mask_module.refine(wide, fill=True, close=1)[0, 4, 4] == 0
    assert mask_module.refine(wide, fill=True, close=2)[0, 4, 4] == 1


def test_close_is_a_rethreshold_setting_kept_through_the_result(result, monkeypatch):
    monkeypatch.setattr(mask_module, "unet_output", None)  # no model call
    closed = result.rethreshold(fill_holes=True, close=1)
    assert closed.close == 1 and closed.rethreshold(threshold=0.6).close == 1
    assert torch.equal(closed.mask, mask_module.refine(result.mask, True, 1))
    assert (closed.mask >= result.rethreshold(fill_holes=True).mask).all()
    assert torch.equal(closed.rethreshold(close=0).mask, result.rethreshold(fill_holes=True).mask)
    assert (closed.upsampled() >= result.rethreshold(fill_holes=True).upsampled()).all()
    with pytest.raises(ValueError, match="`close` must be an integer ≥ 0"):
        result.rethreshold(close=-1)
    with pytest.raises(ValueError, match="`close`"):
        result.rethreshold(close=1.5)


def test_a_broken_ring_closed_on_the_latent_grid_stays_closed_upsampled():
    normalized = 0.6 * _broken_ring()
    fine = mask_module.upsample_and_threshold(normalized, 0.5, (36, 36), fill=True, close=1)
    assert (fine[0, 12:24, 12:24] == 1).all()  # the ring's square, its hole included
    assert not mask_module.upsample_and_threshold(normalized, 0.5, (36, 36), fill=True)[0, 16:20, 16:20].any()


def test_noise_diff_mask_close(tiny_components, z0, result):
    closed = noise_diff_mask(tiny_components, z0, SOURCE, TARGET, n=3, clamp_ratio=1.5, seed=0, fill_holes=True,
                             close=1, progress=False)
    assert closed.close == 1 and torch.equal(closed.difference, result.difference)
    assert torch.equal(closed.mask, mask_module.refine(result.mask, True, 1))
