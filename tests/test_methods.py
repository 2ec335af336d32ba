"""diffedit_lab.methods: DiffEdit's successors' masks (cross-attention, intersection, LEDITS++)
on the tiny random model, one run on the embedded shapes-world model, and the scorer."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0

from diffedit_lab import ddim_invert, fast_unet, noise_diff_mask
from diffedit_lab.methods import (
    METHODS,
    CrossAttentionRecorder,
    changed_token_positions,
    cross_attention,
    cross_attention_mask,
    edit_with_mask,
    intersect_masks,
    intersection,
    ledits_cross_attention_usable,
    ledits_pipeline,
    ledits_pp,
    record_cross_attention,
    run_methods,
)
from diffedit_lab.methods.attention import CrossAttentionStore
from diffedit_lab.sampling import takes_fast_unet, unet_output

SOURCE, TARGET = "a red circle and a blue square", "a red circle and a green square"
FAST = dict(steps=4, n=2, encoding_ratio=0.5, mask_noise=0.5, guidance=3.0)


def disc_image():
    """The conftest's tiny_image (a red disc on blue, 32×32), for module-scoped fixtures."""
    from PIL import Image

    yy, xx = np.mgrid[:32, :32]
    img = np.zeros((32, 32, 3), np.uint8)
    img[...] = (30, 60, 200)
    img[(yy - 16) ** 2 + (xx - 16) ** 2 < 64] = (220, 30, 30)
    return Image.fromarray(img)


def isolated(c):
    """``c`` with its own copy of the UNet: tests that change processors leave the shared fixture alone."""
    return dataclasses.replace(c, unet=copy.deepcopy(c.unet))


def processor_types(unet) -> set:
    return {type(p) for p in unet.attn_processors.values()}


@pytest.fixture(scope="module")
def tiny_runs(tiny_components):
    """All methods on the tiny model, twice with the same seed (determinism)."""
    image = disc_image()
    run = lambda: run_methods(tiny_components, image, SOURCE, TARGET, seed=3, **FAST)  # noqa: E731
    return run(), run()


# --------------------------------------------------------------------------- changed tokens


def test_changed_token_positions(tiny_components):
    tok = tiny_components.tokenizer
    ids = tok(TARGET).input_ids
    positions = changed_token_positions(tok, SOURCE, TARGET)
    assert [tok.decode([ids[p]]).strip() for p in positions] == ["green"]
    # an inserted word counts, a removed one has no position in the target
    assert len(changed_token_positions(tok, "a circle", "a big red circle")) == 2
    with pytest.raises(ValueError, match="no word that is not in source"):
        changed_token_positions(tok, "a big red circle", "a circle")
    with pytest.raises(ValueError, match="change a word"):
        changed_token_positions(tok, TARGET, TARGET)


# --------------------------------------------------------------------------- the recorder


def test_recorder_falls_back_to_diffusers_forward_and_is_removed(tiny_components):
    c = isolated(tiny_components)
    z = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    emb = torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(1))
    assert takes_fast_unet(c) and fast_unet.usable(c.unet)
    before = unet_output(c, z, 500, emb)
    with record_cross_attention(c.unet, [3]) as store:
        assert not fast_unet.usable(c.unet) and not takes_fast_unet(c)
        inside = unet_output(c, z, 500, emb)
        recorded = store.recorded()
    # the recorder ran (so diffusers' forward was used: the lean path never calls processors) ...
    n_cross = sum(name.endswith("attn2.processor") for name in c.unet.attn_processors)
    assert len(recorded) == 1 and len(recorded[0]) == n_cross > 0
    # ... and the UNet computed the same numbers as without it (it calls the replaced processor)
    assert torch.allclose(before, inside, atol=1e-5)
    # processors restored: the lean path is usable again
    assert processor_types(c.unet) == {AttnProcessor2_0} and takes_fast_unet(c)


def test_recorder_restores_processors_on_error(tiny_components):
    c = isolated(tiny_components)
    with pytest.raises(RuntimeError, match="boom"):
        with record_cross_attention(c.unet, [1]):
            raise RuntimeError("boom")
    assert processor_types(c.unet) == {AttnProcessor2_0} and fast_unet.usable(c.unet)


def test_recorded_maps_are_attention_probabilities(tiny_components):
    """Σ over *all* tokens of a softmax row is 1; disjoint token sets add up."""
    c = isolated(tiny_components)
    z = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    emb = torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(1))

    def maps(positions):
        with record_cross_attention(c.unet, positions) as store:
            unet_output(c, z, 500, emb)
        return store.recorded()[0]

    every = maps(list(range(16)))
    assert all(torch.allclose(m, torch.ones_like(m), atol=1e-5) for m in every)
    a, b, ab = maps([2]), maps([5]), maps([2, 5])
    assert all(torch.allclose(x + y, xy, atol=1e-6) for x, y, xy in zip(a, b, ab))
    assert all((x < 1).all() for x in a)


def test_lean_unet_refuses_the_recorder():
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=16,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=4,
                                norm_num_groups=8).eval()
    assert fast_unet.usable(unet)
    procs = {k: CrossAttentionRecorder(CrossAttentionStore([1]), p) if k.endswith("attn2.processor") else p
             for k, p in unet.attn_processors.items()}
    unet.set_attn_processor(procs)
    assert not fast_unet.usable(unet)


# --------------------------------------------------------------------------- the masks on the tiny model


@pytest.mark.parametrize("method", METHODS)
def test_every_mask_has_latent_and_image_shapes(tiny_runs, method):
    r = tiny_runs[0][method]
    assert r.mask.shape == (1, 16, 16) and r.mask_image.shape == (1, 32, 32)
    for m in (r.mask, r.mask_image):
        assert set(torch.unique(m).tolist()) <= {0.0, 1.0}
    assert r.image.size == (32, 32) and r.masked_images[0].size == (32, 32)


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_masks_and_images(tiny_runs, method):
    a, b = tiny_runs[0][method], tiny_runs[1][method]
    assert torch.equal(a.mask, b.mask) and torch.equal(a.mask_image, b.mask_image)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert np.array_equal(np.asarray(a.masked_images[0]), np.asarray(b.masked_images[0]))


def test_intersection_is_inside_both(tiny_runs):
    r = tiny_runs[0]
    d, a, i = r["diffedit"], r["cross_attention"], r["intersection"]
    for res in ("mask", "mask_image"):
        mi, md, ma = getattr(i, res), getattr(d, res), getattr(a, res)
        assert torch.equal(mi, md * ma)
        assert bool((mi <= md).all()) and bool((mi <= ma).all())
    with pytest.raises(ValueError, match="same shape"):
        intersect_masks(d.mask, a.mask_image)


def test_methods_decode_on_diffedits_own_inversion(tiny_runs):
    """The attention mask is read over the very DDIM encoding DiffEdit decodes from."""
    r = tiny_runs[0]
    assert r["cross_attention"].details["inversion"] is r["diffedit"].details["inversion"]


def test_edit_with_mask_reproduces_diffedit_and_follows_the_mask(tiny_components, tiny_runs):
    """DiffEdit's decoding with DiffEdit's mask is DiffEdit's edit; with an empty mask, the input."""
    d = tiny_runs[0]["diffedit"]
    inversion, g = d.details["inversion"], d.details["settings"]["guidance"]
    images, latents = edit_with_mask(tiny_components, inversion, d.mask, TARGET, guidance=g)
    assert torch.equal(latents, d.latents)
    with pytest.warns(UserWarning):  # the library warns about an all-zero mask
        _, kept = edit_with_mask(tiny_components, inversion, torch.zeros_like(d.mask), TARGET, guidance=g)
    assert torch.equal(kept, inversion.z0)


def test_one_method_functions_and_extra_masks(tiny_components, tiny_runs):
    image = disc_image()
    alone = cross_attention(tiny_components, image, SOURCE, TARGET, seed=3, **FAST)
    assert torch.equal(alone.mask, tiny_runs[0]["cross_attention"].mask)
    assert torch.equal(intersection(tiny_components, image, SOURCE, TARGET, seed=3, **FAST).mask,
                       tiny_runs[0]["intersection"].mask)
    box = torch.zeros(16, 16)
    box[4:8, 4:8] = 1
    r = run_methods(tiny_components, image, SOURCE, TARGET, methods=("diffedit",), seed=3, extra_masks={"box": box},
                    **FAST)
    assert r["box"].mask.shape == (1, 16, 16) and int(r["box"].mask_image.sum()) == 64
    assert r["box"].details == {} and r["box"].soft is None


def test_attention_mask_depends_on_the_changed_words_not_on_noise_draws(tiny_components, tiny_image):
    """DiffEdit's mask changes with the seed of its noise draws; the attention mask has none. Changing
    *which* word changes changes the attention mask."""
    c = tiny_components
    inv = ddim_invert(c, tiny_image, encoding_ratio=0.5, steps=4, progress=False)
    green = cross_attention_mask(c, inv, SOURCE, TARGET)
    assert green.words == ["green"] and green.source_words == ["blue"]
    again = cross_attention_mask(c, inv, SOURCE, TARGET)
    assert torch.equal(green.normalized, again.normalized)
    seeds = [noise_diff_mask(c, inv.z0, SOURCE, TARGET, n=2, steps=4, seed=s).normalized for s in (0, 1)]
    assert not torch.equal(*seeds)
    dog = cross_attention_mask(c, inv, "a red circle and a blue dog", "a red circle and a blue cat")
    assert not torch.allclose(green.attention, dog.attention)
    # only the target's words: no source side
    added = cross_attention_mask(c, inv, "", "a red circle")
    assert added.source_attention is None and added.per_layer.shape[0] == 1
    # a removal: only the source's dropped words, read under the source
    removed = cross_attention_mask(c, inv, SOURCE, "a red circle")
    assert removed.attention is None and removed.words == [] and removed.per_layer.shape[0] == 1
    assert "blue" in removed.source_words and "square" in removed.source_words
    from diffedit_lab.methods.attention import _minmax

    assert torch.equal(removed.normalized, _minmax(removed.source_attention))
    with pytest.raises(ValueError, match="the same words"):
        cross_attention_mask(c, inv, SOURCE, SOURCE)
    long = " and ".join(["a red circle"] * 8)  # beyond the tiny text encoder's 16 tokens
    with pytest.raises(ValueError, match="differ only after the text encoder's first 16 tokens"):
        cross_attention_mask(c, inv, long + " and a blue square", long + " and a green square")


def test_methods_run_on_a_removal(tiny_components, tiny_image):
    """Removing an object (the target only drops words): the attention mask reads the dropped
    words, LEDITS++'s default concepts steer away from them."""
    from diffedit_lab.methods.ledits import _changed_words

    assert _changed_words(tiny_components.tokenizer, SOURCE, "a red circle") == ("", "and a blue square")
    out = run_methods(tiny_components, tiny_image, SOURCE, "a red circle", methods=("cross_attention", "ledits_pp"),
                      seed=3, **FAST)
    assert out["cross_attention"].mask.shape == (1, 16, 16)
    assert out["ledits_pp"].details["ledits"].concepts == ["and a blue square"]
    assert out["ledits_pp"].details["ledits"].reverse == [True]


def test_attention_threshold_cuts_the_normalized_map(tiny_components, tiny_image):
    c = tiny_components
    am = cross_attention_mask(c, tiny_image, SOURCE, TARGET, encoding_ratio=0.5, steps=4, threshold=0.5)
    assert float(am.normalized.max()) == pytest.approx(1.0)
    assert torch.equal(am.mask, (am.normalized > 0.5).float())
    assert am.rethreshold(0.9).mask.sum() <= am.mask.sum() <= am.rethreshold(0.1).mask.sum()


def test_bad_inputs_fail_before_any_model_call(tiny_components, tiny_image):
    c = tiny_components
    with pytest.raises(ValueError, match="unknown method"):
        run_methods(c, tiny_image, SOURCE, TARGET, methods=("p2p",))
    with pytest.raises(ValueError, match="change, add or remove a word"):
        cross_attention_mask(c, tiny_image, TARGET, TARGET)
    with pytest.raises(ValueError, match="change, add or remove a word"):  # before DiffEdit runs
        run_methods(c, tiny_image, TARGET, TARGET, methods=("diffedit", "intersection"), **FAST)
    with pytest.raises(ValueError, match="multiples of 32"):
        run_methods(c, tiny_image.resize((48, 48)), SOURCE, TARGET, **FAST)
    with pytest.raises(ValueError, match="multiples of 32"):
        ledits_pp(c, tiny_image.resize((40, 40)), SOURCE, TARGET)
    with pytest.raises(ValueError, match="cross_attention=True"):
        ledits_pp(c, tiny_image, SOURCE, TARGET, cross_attention=True)
    with pytest.raises(ValueError, match="dtype='float32'"):  # fp16 UNet beside the fp32 VAE (CUDA default)
        ledits_pp(dataclasses.replace(c, dtype=torch.float16), tiny_image, SOURCE, TARGET)


# --------------------------------------------------------------------------- LEDITS++


def test_ledits_mask_is_a_fixed_fraction_per_step(tiny_runs):
    """LEDITS++'s noise-guidance mask keeps the top 1 − λ of |γ| at every step, whatever the
    object: each concept's mask covers ≈ 10 % of the grid (λ = 0.9) — DiffEdit's has no such rule."""
    r = tiny_runs[0]["ledits_pp"]
    info = r.details["ledits"]
    assert info.concepts == ["green", "blue"] and info.reverse == [False, True]
    assert not info.cross_attention
    per_step = info.per_step  # (T, K, B, h, w)
    assert per_step.shape[1:] == (2, 1, 16, 16)
    area = per_step.mean((-1, -2)).flatten()
    assert bool(((area >= 0.1) & (area <= 0.2)).all()), area
    assert torch.equal(r.mask, (info.frequency > 0.5).float())


def test_ledits_leaves_the_unet_as_it_was(tiny_components, tiny_image):
    c = isolated(tiny_components)
    ledits_pp(c, tiny_image, SOURCE, TARGET, steps=3)
    assert processor_types(c.unet) == {AttnProcessor2_0} and takes_fast_unet(c)


def test_ledits_cross_attention_fails_on_our_layout(tiny_components, tiny_image):
    """What ledits_cross_attention_usable predicts: diffusers' pipeline with its default
    intersection mask finds no attention map at 1/4 of the latent grid on this UNet."""
    c = isolated(tiny_components)
    assert not ledits_cross_attention_usable(c, (16, 16))
    pipe = ledits_pipeline(c)
    pipe.invert(image=tiny_image, num_inversion_steps=3, generator=torch.Generator().manual_seed(0))
    with pytest.raises((RuntimeError, ValueError), match="non-empty list"):  # torch.cat of no map
        pipe(editing_prompt=["green"], use_intersect_mask=True)


def test_ledits_cross_attention_works_where_predicted(tiny_components, tiny_image):
    """On an SD-1.x-like layout (cross-attention at 1/1, 1/2, 1/4 of the grid) the prediction is
    yes and the pipeline's intersection mask runs: M = M_noise · M_attention ⊆ M_attention."""
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16, block_out_channels=(32, 32, 32, 32), layers_per_block=1, cross_attention_dim=32,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, attention_head_dim=4, norm_num_groups=8,
    ).eval()
    c = dataclasses.replace(tiny_components, unet=unet)
    assert ledits_cross_attention_usable(c, (16, 16)) and not ledits_cross_attention_usable(c, (18, 18))
    r = ledits_pp(c, tiny_image, SOURCE, TARGET, steps=3)
    assert r.details["ledits"].cross_attention and r.mask.shape == (1, 16, 16)
    assert processor_types(c.unet) == {AttnProcessor2_0}


# --------------------------------------------------------------------------- the embedded model


@pytest.fixture(scope="module")
def embedded():
    from diffedit_lab import load_components

    return load_components(device="cpu")


def test_all_methods_on_the_embedded_model(embedded):
    from PIL import Image

    from diffedit_lab.toy.quality import held_out_edits

    e = held_out_edits(2)[1]  # a colour edit
    r = run_methods(embedded, Image.fromarray(e.scene.image), e.source, e.target, seed=0, steps=5, n=2)
    for name in METHODS:
        assert r[name].mask.shape == (1, 16, 16) and r[name].mask_image.shape == (1, 64, 64), name
    assert not r["ledits_pp"].details["ledits"].cross_attention
    assert not ledits_cross_attention_usable(embedded, (16, 16))
    assert bool((r["intersection"].mask <= r["diffedit"].mask).all())
    assert takes_fast_unet(embedded)


# --------------------------------------------------------------------------- the scorer


def test_precision_recall():
    from diffedit_lab.toy.successors import precision_recall

    p = np.zeros((4, 4), bool)
    t = np.zeros((4, 4), bool)
    p[:2, :2] = True  # 4 px
    t[:2, :] = True  # 8 px
    assert precision_recall(p, t) == (1.0, 0.5)
    assert np.isnan(precision_recall(np.zeros_like(p), t)[0])
    with pytest.raises(ValueError, match="differ in size"):
        precision_recall(p, np.zeros((8, 8), bool))


def test_scorer_rows_on_the_tiny_model(tiny_components):
    from diffedit_lab.toy.successors import ROWS, best_by_iou, measure

    report = measure(tiny_components, edits=1, steps=3, n=2, progress=False)
    assert [r["method"] for r in report["rows"]] == list(ROWS)
    table = report["table"]
    assert table["true"]["mask_iou"] == 1.0 and table["true"]["precision"] == 1.0
    assert table["ledits_pp"]["mask_iou"] == table["ledits_pp_own"]["mask_iou"]
    for name in ROWS:
        assert 0 <= table[name]["mask_iou"] <= 1
    best = best_by_iou(table)
    assert best not in ("true", "ledits_pp_own")
    assert table[best]["mask_iou"] == max(table[m]["mask_iou"] for m in METHODS)
