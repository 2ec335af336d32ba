"""EditSession's caches: a cached result is IDENTICAL (torch.equal) to a recomputed one, and a
cache hit makes no model call (UNet, text encoder and VAE calls counted with forward hooks).

Speed itself is measured by ``python -m diffedit_lab.bench speed``, never in a unit test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from diffedit_lab import EditSession, ddim_invert, decode, edit, encode, masked_denoise, noise_diff_mask
from diffedit_lab.mask import fill_holes

SOURCE, TARGET, OTHER = "a red circle", "a blue square", "a green star"
FAST = dict(n=2, steps=4, clamp_ratio=1.5, progress=False)  # strength 0.8 → 3 DDIM steps
N, K = 2, 3


class Calls:
    """Forward calls of the three networks: UNet rows per call, text-encoder and VAE calls."""

    def __init__(self, c):
        self.unet: list[int] = []
        self.text = self.vae_encoder = self.vae_decoder = 0
        self._handles = [
            c.unet.register_forward_hook(lambda m, args, out: self.unet.append(args[0].shape[0])),
            c.text_encoder.register_forward_hook(lambda m, args, out: self._add("text")),
            c.vae.encoder.register_forward_hook(lambda m, args, out: self._add("vae_encoder")),
            c.vae.decoder.register_forward_hook(lambda m, args, out: self._add("vae_decoder")),
        ]

    def _add(self, name: str) -> None:
        setattr(self, name, getattr(self, name) + 1)

    def reset(self) -> None:
        self.unet.clear()
        self.text = self.vae_encoder = self.vae_decoder = 0

    @property
    def none(self) -> bool:
        return not self.unet and not (self.text or self.vae_encoder or self.vae_decoder)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


@pytest.fixture()
def calls(tiny_components):
    counter = Calls(tiny_components)
    yield counter
    counter.remove()


@pytest.fixture(scope="module")
def image():
    return Image.fromarray((np.random.RandomState(0).rand(32, 48, 3) * 255).astype(np.uint8))


def assert_identical(a, b) -> None:
    """Two EditResults are the same edit: mask, inversion, decoding and pixels."""
    assert torch.equal(a.mask.difference, b.mask.difference)
    assert torch.equal(a.mask.mask, b.mask.mask)
    assert torch.equal(a.inversion.trajectory, b.inversion.trajectory)
    assert torch.equal(a.trajectory, b.trajectory)
    assert torch.equal(a.latents, b.latents)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a.images, b.images))


def fresh(c, image, *args, **kwargs):
    return EditSession(c, image).run(*args, **kwargs)


def test_first_run_encodes_each_text_once(tiny_components, image, calls):
    session = EditSession(tiny_components, image)
    assert calls.vae_encoder == 1
    calls.reset()
    session.run(SOURCE, TARGET, seed=0, **FAST)
    # mask: source branch [∅, R] (2n rows) and target branch [Q] (n rows); unguided inversion
    # (1 row per step); guided decoding (2 rows per step)
    assert calls.unet == [2 * N, N] + [1] * K + [2] * K
    assert calls.text == 3  # ∅, R, Q — "" serves the mask, the inversion and the decoding
    assert (calls.vae_encoder, calls.vae_decoder) == (0, 1)


def test_the_same_edit_again_makes_no_model_call(tiny_components, image, calls):
    session = EditSession(tiny_components, image)
    first = session.run(SOURCE, TARGET, seed=0, **FAST)
    calls.reset()
    again = session.run(SOURCE, TARGET, seed=0, **FAST)
    assert calls.none
    assert_identical(first, again)
    assert_identical(first, edit(tiny_components, image, SOURCE, TARGET, seed=0, **FAST))


def test_a_new_threshold_reuses_mask_and_inversion(tiny_components, image, calls):
    session = EditSession(tiny_components, image)
    first = session.run(SOURCE, TARGET, seed=0, **FAST)
    calls.reset()
    low = session.mask(SOURCE, TARGET, seed=0, threshold=0.3, n=N, steps=4, clamp_ratio=1.5)
    assert calls.none  # re-thresholding: no model call at all
    assert low.mask.sum() > first.mask.mask.sum()
    result = session.run(SOURCE, TARGET, seed=0, **{**FAST, "threshold": 0.3})
    assert calls.unet == [2] * K and calls.text == 0 and calls.vae_decoder == 1  # only the decoding
    assert torch.equal(result.mask.mask, low.mask)
    assert_identical(result, fresh(tiny_components, image, SOURCE, TARGET, seed=0, **{**FAST, "threshold": 0.3}))


def test_filling_the_holes_only_rethresholds(tiny_components, image, calls):
    session = EditSession(tiny_components, image)
    first = session.run(SOURCE, TARGET, seed=0, **FAST)
    calls.reset()
    filled = session.mask(SOURCE, TARGET, seed=0, fill_holes=True, n=N, steps=4, clamp_ratio=1.5)
    assert calls.none and filled.fill_holes
    assert torch.equal(filled.mask, fill_holes(first.mask.mask))


def test_a_threshold_that_keeps_the_mask_costs_nothing(tiny_components, image, calls):
    session = EditSession(tiny_components, image)
    first = session.run(SOURCE, TARGET, seed=0, **FAST)
    normalized = first.mask.normalized
    above = normalized[normalized > 0.5].min().item()  # any τ in [0.5, above) gives the same mask
    calls.reset()
    same = session.run(SOURCE, TARGET, seed=0, **{**FAST, "threshold": (0.5 + above) / 2})
    assert calls.none
    assert torch.equal(same.latents, first.latents) and same.settings["threshold"] != first.settings["threshold"]


def test_a_new_target_runs_only_its_own_rows(tiny_components, image, calls):
    session = EditSession(tiny_components, image)
    session.run(SOURCE, TARGET, seed=0, **FAST)
    calls.reset()
    other = session.run(SOURCE, OTHER, seed=0, **FAST)
    assert calls.unet == [N] + [2] * K  # the target rows of the mask, then the decoding
    assert calls.text == 1  # only the new target is encoded
    assert_identical(other, fresh(tiny_components, image, SOURCE, OTHER, seed=0, **FAST))
    assert_identical(other, edit(tiny_components, image, SOURCE, OTHER, seed=0, **FAST))


def test_a_new_strength_runs_inversion_and_decoding_only(tiny_components, image, calls):
    session = EditSession(tiny_components, image)
    session.run(SOURCE, TARGET, seed=0, **FAST)
    calls.reset()
    half = session.run(SOURCE, TARGET, seed=0, **{**FAST, "strength": 0.5})
    assert calls.unet == [1, 1, 2, 2] and calls.text == 0
    assert_identical(half, fresh(tiny_components, image, SOURCE, TARGET, seed=0, **{**FAST, "strength": 0.5}))


def test_a_guided_inversion_reuses_the_embeddings(tiny_components, image, calls):
    session = EditSession(tiny_components, image)
    session.run(SOURCE, TARGET, seed=0, **FAST)
    calls.reset()
    kw = dict(FAST, inversion_prompt=SOURCE, inversion_guidance=2.0)
    guided = session.run(SOURCE, TARGET, seed=0, **kw)
    assert calls.unet == [2] * K + [2] * K and calls.text == 0
    assert_identical(guided, fresh(tiny_components, image, SOURCE, TARGET, seed=0, **kw))


def test_session_equals_the_step_functions(tiny_components, image):
    """EditSession passes cached embeddings; the public steps encode the texts themselves."""
    c = tiny_components
    result = EditSession(c, image).run(SOURCE, TARGET, seed=0, **FAST)
    z0 = encode(c, image)
    mask = noise_diff_mask(c, z0, SOURCE, TARGET, n=N, clamp_ratio=1.5, steps=4, seed=0, progress=False)
    inversion = ddim_invert(c, z0, "", strength=0.8, steps=4, progress=False)
    latents = masked_denoise(c, inversion, mask, TARGET, guidance=7.5, progress=False).latents
    assert torch.equal(result.mask.difference, mask.difference)
    assert torch.equal(result.inversion.trajectory, inversion.trajectory)
    assert torch.equal(result.latents, latents)
    assert np.array_equal(np.asarray(result.image), np.asarray(decode(c, latents)[0]))


def test_unseeded_masks_of_one_session_share_their_draws(tiny_components, image, calls):
    session = EditSession(tiny_components, image)
    a = session.mask(SOURCE, TARGET, n=N, steps=4)
    calls.reset()
    b = session.mask(SOURCE, OTHER, n=N, steps=4)
    assert calls.unet == [N]
    assert torch.equal(a.noisy_latents, b.noisy_latents) and torch.equal(a.source_noise, b.source_noise)


def test_caches_are_bounded(tiny_components, image):
    session = EditSession(tiny_components, image, max_cached=2)
    for target in (TARGET, OTHER, "a blue star"):
        session.mask(SOURCE, target, seed=0, n=1, steps=4)
    assert len(session._masks) == 2
    session.clear()
    assert not session._masks and not session._embeddings


def test_run_many_batches_the_decodings(tiny_components, image, calls):
    c = tiny_components
    session = EditSession(c, image)
    calls.reset()
    many = session.run_many(SOURCE, [TARGET, OTHER], seed=0, **FAST)
    # the source branch once, one target branch per target, the inversion once, then both
    # decodings in one UNet call of 2 × 2 rows per step
    assert calls.unet == [2 * N, N, N] + [1] * K + [4] * K
    assert calls.text == 4 and calls.vae_decoder == 1
    singles = [fresh(c, image, SOURCE, t, seed=0, **FAST) for t in (TARGET, OTHER)]
    for batched, single in zip(many, singles):
        assert batched.settings["target"] == single.settings["target"]
        assert torch.equal(batched.mask.mask, single.mask.mask)
        assert torch.equal(batched.inversion.trajectory, single.inversion.trajectory)
        # the same decoding, up to the UNet's rounding for a batch of 4 rows instead of 2
        assert torch.allclose(batched.latents, single.latents, atol=1e-4)
    calls.reset()
    again = session.run_many(SOURCE, [TARGET, OTHER], seed=0, **FAST)
    assert calls.none
    recomputed = EditSession(c, image).run_many(SOURCE, [TARGET, OTHER], seed=0, **FAST)
    for x, y, z in zip(many, again, recomputed):
        assert_identical(x, y)
        assert_identical(x, z)


def test_run_many_wants_a_list_of_targets(tiny_components, image):
    with pytest.raises(TypeError, match="list of target texts"):
        EditSession(tiny_components, image).run_many(SOURCE, TARGET)


def test_run_tells_its_progress_and_a_cached_encoding_counts_as_done(tiny_components, image):
    session = EditSession(tiny_components, image)
    told = []
    session.run(SOURCE, TARGET, seed=0, callback=lambda done, total: told.append((done, total)), **FAST)
    k = 3  # ⌊4 · 0.8⌋ steps to encode, 3 to decode
    assert told[-1] == (2 * k, 2 * k) and [d for d, _ in told] == sorted(d for d, _ in told)
    assert {d for d, _ in told} == set(range(1, 2 * k + 1)) and session.inversions_computed == 1
    told.clear()
    session.run(SOURCE, OTHER, seed=0, callback=lambda done, total: told.append((done, total)), **FAST)
    assert told[0] == (k, 2 * k) and told[-1] == (2 * k, 2 * k) and session.inversions_computed == 1
