"""The shapes world: deterministic, non-overlapping, captions left to right, exact edit masks."""

from __future__ import annotations

import numpy as np
import pytest

from diffedit_lab.toy.world import (
    BACKGROUND,
    COLOURS,
    SHAPES,
    SIZE,
    SUPERSAMPLE,
    Obj,
    caption,
    coverage,
    make_edit,
    make_scene,
    render,
)

SEEDS = range(60)


def test_same_seed_same_scene_and_edit():
    a, b = make_scene(7), make_scene(7)
    assert a.objects == b.objects and np.array_equal(a.image, b.image)
    e1, e2 = make_edit(7), make_edit(7)
    assert (e1.source, e1.target, e1.index, e1.kind) == (e2.source, e2.target, e2.index, e2.kind)
    assert np.array_equal(e1.mask, e2.mask)


def test_different_seeds_differ():
    captions = {make_scene(s).caption for s in SEEDS}
    assert len(captions) > 20


def test_scene_layout():
    for s in SEEDS:
        scene = make_scene(s)
        assert scene.image.shape == (SIZE, SIZE, 3) and scene.image.dtype == np.uint8
        assert len(scene.objects) == 2 == len(scene.masks)
        a, b = scene.masks
        assert a.any() and b.any() and not (a & b).any()  # non-overlapping
        assert scene.objects[0].cx + 10 <= scene.objects[1].cx  # sorted, well apart
        for o in scene.objects:
            assert o.shape in SHAPES and o.colour in COLOURS
            assert o.r + 2 <= o.cx <= SIZE - o.r - 2 and o.r + 2 <= o.cy <= SIZE - o.r - 2


def test_caption_names_objects_left_to_right():
    left = Obj("square", "blue", 40, 30, 8)
    right = Obj("circle", "red", 12, 30, 8)
    assert caption((left, right)) == "a red circle and a blue square"
    for s in SEEDS:
        scene = make_scene(s)
        o1, o2 = scene.objects
        assert scene.caption == f"a {o1.colour} {o1.shape} and a {o2.colour} {o2.shape}"


def test_image_shows_objects_in_their_masks():
    for s in range(20):
        scene = make_scene(s)
        outside = ~(scene.masks[0] | scene.masks[1])
        far = outside.copy()
        for m in scene.masks:  # away from anti-aliased edges
            grown = m.copy()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    grown |= np.roll(np.roll(m, dy, 0), dx, 1)
            far &= ~grown
        assert (scene.image[far] == BACKGROUND).all()
        for o, m in zip(scene.objects, scene.masks):
            inner = m & np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1)
            assert (scene.image[inner] == COLOURS[o.colour]).all(1).mean() > 0.9


# PIL fills a shape's boundary pixels too: at 4× supersampling each edge grows by 1/8 px.
GROW = 1 / (2 * SUPERSAMPLE)
R = 10.0
TRIANGLE_SIDE = float(np.hypot(1.05 * R, 1.8 * R))


@pytest.mark.parametrize(
    "shape, area",
    [
        ("circle", np.pi * (R + GROW) ** 2),
        ("square", (2 * 0.88 * R + 2 * GROW) ** 2),
        ("triangle", 0.5 * 2.1 * R * 1.8 * R + GROW * (2.1 * R + 2 * TRIANGLE_SIDE)),
    ],
)
def test_coverage_area_matches_geometry(shape, area):
    o = Obj(shape, "red", 32.3, 31.6, R)
    assert coverage(o).sum() == pytest.approx(area, rel=0.01)


def test_masks_are_coverage_over_half():
    o = Obj("circle", "green", 30.5, 33.2, 9.0)
    scene = render((o,))
    assert np.array_equal(scene.masks[0], coverage(o) > 0.5)


def test_edit_kinds_and_captions():
    kinds = {make_edit(s).kind for s in SEEDS}
    assert kinds == {"shape", "colour"}
    for s in SEEDS:
        for kind in ("shape", "colour"):
            e = make_edit(s, kind)
            old, new = e.scene.objects[e.index], e.target_scene.objects[e.index]
            other = 1 - e.index
            assert e.kind == kind and e.source == e.scene.caption and e.target == e.target_scene.caption
            assert e.scene.objects[other] == e.target_scene.objects[other]
            assert (old.cx, old.cy, old.r) == (new.cx, new.cy, new.r)
            if kind == "shape":
                assert new.shape != old.shape and new.colour == old.colour
            else:
                assert new.colour != old.colour and new.shape == old.shape
    with pytest.raises(ValueError):
        make_edit(0, "size")


def test_edit_mask_covers_the_edited_object_only():
    for s in SEEDS:
        e = make_edit(s)
        i, k = e.index, 1 - e.index
        assert (e.mask >= e.scene.masks[i]).all() and (e.mask >= e.target_scene.masks[i]).all()
        assert not (e.mask & e.scene.masks[k]).any()
        changed = (e.scene.image != e.target_scene.image).any(-1)
        assert not (changed & ~_grow(e.mask, 2)).any()  # anti-aliased tips: ≤ 2 px out
        if e.kind == "colour":
            assert np.array_equal(e.mask, e.scene.masks[i])


def _grow(mask: np.ndarray, px: int) -> np.ndarray:
    """``mask`` grown by ``px`` steps of 4-adjacency."""
    for _ in range(px):
        out = mask.copy()
        for ax in (0, 1):
            for d in (1, -1):
                out |= np.roll(mask, d, ax)
        mask = out
    return mask


# --------------------------------------------------------------------------- the classic world stays


def test_classic_world_is_unchanged():
    """The shipped model's quality figures use the classic world's held-out edits: the default
    arguments must draw exactly what they drew before the rich world was added (digest
    computed with the code of commit 1585288)."""
    import hashlib

    h = hashlib.sha256()
    for s in range(50):
        e = make_edit(s)
        h.update(e.scene.image.tobytes() + e.target_scene.image.tobytes() + e.mask.tobytes()
                 + e.source.encode() + e.target.encode())
        h.update(make_scene(s).image.tobytes())
    assert h.hexdigest() == "2c224aa81598b37b9db9ed7f14d4019d3a3788bddf7b2f1c1100a4d450f71734"


# --------------------------------------------------------------------------- the rich world

from diffedit_lab.toy.world import (  # noqa: E402
    BACKGROUNDS,
    CLASSIC_COLOURS,
    CLASSIC_SHAPES,
    KINDS,
    NIGHT_GAIN,
    SIZE_RANGE,
    SIZES,
    VOCABULARY,
    WORDS,
    texture,
)

RICH = range(300)


def test_word_lists():
    assert len(SHAPES) >= 6 and len(COLOURS) >= 6 and SIZES == ("small", "big") and len(BACKGROUNDS) >= 5
    assert set(CLASSIC_SHAPES) <= set(SHAPES) and CLASSIC_COLOURS.items() <= COLOURS.items()
    assert set(WORDS) <= set(VOCABULARY)  # the new vocabulary covers today's captions
    assert len(set(VOCABULARY)) == len(VOCABULARY)


def test_rich_same_seed_same_scene_and_edit():
    a, b = make_scene(11, "rich"), make_scene(11, "rich")
    assert a.objects == b.objects and np.array_equal(a.image, b.image) and a.caption == b.caption
    for kind in KINDS + (None,):
        e1, e2 = make_edit(11, kind, "rich"), make_edit(11, kind, "rich")
        assert (e1.source, e1.target, e1.index, e1.kind) == (e2.source, e2.target, e2.index, e2.kind)
        assert np.array_equal(e1.target_scene.image, e2.target_scene.image) and np.array_equal(e1.mask, e2.mask)
    assert make_scene(11, "rich").caption != make_scene(12, "rich").caption


def test_rich_scene_layout_and_variety():
    seen = {"n": set(), "shape": set(), "colour": set(), "size": set(), "bg": set(), "night": set()}
    for s in RICH:
        scene = make_scene(s, "rich")
        n = len(scene.objects)
        assert 1 <= n <= 3 and len(scene.masks) == n and scene.world == "rich"
        union = np.zeros((SIZE, SIZE), int)
        for o, m in zip(scene.objects, scene.masks):
            assert o.shape in SHAPES and o.colour in COLOURS and o.size in SIZES
            lo, hi = SIZE_RANGE[o.size]
            assert lo <= o.r <= hi and o.r + 2 <= o.cx <= SIZE - o.r - 2 and o.r + 2 <= o.cy <= SIZE - o.r - 2
            assert m.any()
            union += m
        assert union.max() <= 1  # non-overlapping
        assert all(a.cx + 6 <= b.cx for a, b in zip(scene.objects, scene.objects[1:]))  # left to right
        for key, v in (("n", n), ("bg", scene.background), ("night", scene.night)):
            seen[key].add(v)
        for o in scene.objects:
            seen["shape"].add(o.shape), seen["colour"].add(o.colour), seen["size"].add(o.size)
    assert seen["n"] == {1, 2, 3} and seen["shape"] == set(SHAPES) and seen["colour"] == set(COLOURS)
    assert seen["size"] == set(SIZES) and seen["bg"] == set(BACKGROUNDS) and seen["night"] == {False, True}


def test_rich_captions():
    import re

    pattern = re.compile(rf"^a ({'|'.join(SIZES)}) ({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})"
                         rf"( and a ({'|'.join(SIZES)}) ({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})){{0,2}}"
                         rf"( on ({'|'.join(BACKGROUNDS[1:])}))?( at night)?$")
    for s in RICH:
        scene = make_scene(s, "rich")
        assert pattern.match(scene.caption), scene.caption
        assert set(scene.caption.split()) <= set(VOCABULARY)
        named = " and ".join(f"a {o.size} {o.colour} {o.shape}" for o in scene.objects)
        assert scene.caption.startswith(named)
        assert (f" on {scene.background}" in scene.caption) == (scene.background != "plain")
        assert scene.caption.endswith(" at night") == scene.night


def test_colour_jitter_stays_nearest_its_name():
    drawn = {c: [] for c in COLOURS}
    for s in RICH:
        for o in make_scene(s, "rich").objects:
            drawn[o.colour].append(o.rgb)
    names = list(COLOURS)
    palette = np.array([COLOURS[c] for c in names], float)
    for c, rgbs in drawn.items():
        rgbs = np.array(rgbs)
        assert rgbs.std(0).max() > 3  # there is variation within a name
        nearest = np.linalg.norm(rgbs[:, None] - palette[None], axis=-1).argmin(1)
        assert (nearest == names.index(c)).all(), c


def test_textures_differ_and_vary_in_tone():
    means = {}
    for b in BACKGROUNDS:
        imgs = [texture(b, np.random.default_rng(s)) for s in range(6)]
        assert all(i.shape == (SIZE, SIZE, 3) and 0 <= i.min() and i.max() <= 255 for i in imgs)
        tones = [i.mean() for i in imgs]
        assert max(tones) - min(tones) > 3  # tone varies from scene to scene
        if b != "plain":
            assert imgs[0].std(axis=(0, 1)).max() > 5  # a texture, not a flat colour
        means[b] = np.mean([i.mean((0, 1)) for i in imgs], 0)
    for a in BACKGROUNDS:
        for b in BACKGROUNDS:
            if a < b:
                assert np.linalg.norm(means[a] - means[b]) > 30, (a, b)
    with pytest.raises(ValueError, match="background"):
        texture("lava", np.random.default_rng(0))


def test_rich_image_is_backdrop_outside_objects_and_masks_are_coverage():
    for s in range(40):
        scene = make_scene(s, "rich")
        far = scene.background_mask & ~_grow(~scene.background_mask, 3)  # star tips: ≤ 3 px out
        expected = scene.backdrop * (np.array(NIGHT_GAIN) if scene.night else 1)
        assert np.abs(scene.image[far].astype(float) - expected[far]).max() <= 0.51
        for o, m in zip(scene.objects, scene.masks):
            assert np.array_equal(m, coverage(o, SIZE) > 0.5)


def test_rich_scene_at_other_resolutions():
    small, big = make_scene(3, "rich"), make_scene(3, "rich", size=128)
    assert big.image.shape == (128, 128, 3) and big.caption == small.caption
    for a, b in zip(small.masks, big.masks):
        assert b.sum() == pytest.approx(4 * a.sum(), rel=0.15)


@pytest.mark.parametrize("kind", KINDS)
def test_rich_edit_kinds(kind):
    for s in range(25):
        e = make_edit(s, kind, "rich")
        src, tgt, i = e.scene, e.target_scene, e.index
        assert e.kind == kind and e.source == src.caption and e.target == tgt.caption and e.source != e.target
        assert set(e.target.split()) <= set(VOCABULARY)
        old = src.objects[i]
        others_src = [o for k, o in enumerate(src.objects) if k != i]
        if kind == "remove":
            assert len(src.objects) >= 2 and list(tgt.objects) == others_src
            assert np.array_equal(e.mask, src.masks[i])
        else:
            new = tgt.objects[i]
            assert [o for k, o in enumerate(tgt.objects) if k != i] == others_src
            assert (old.cx, old.cy) == (new.cx, new.cy)
        if kind == "colour":
            assert new.colour != old.colour and (new.shape, new.size, new.r) == (old.shape, old.size, old.r)
            assert np.array_equal(e.mask, src.masks[i])
        if kind == "shape":
            assert new.shape != old.shape and (new.colour, new.size, new.rgb) == (old.colour, old.size, old.rgb)
            assert np.array_equal(e.mask, src.masks[i] | tgt.masks[i])
        if kind == "size":
            assert new.size != old.size and SIZE_RANGE[new.size][0] <= new.r <= SIZE_RANGE[new.size][1]
            assert (new.shape, new.colour) == (old.shape, old.colour)
            assert np.array_equal(e.mask, src.masks[i] | tgt.masks[i])
        if kind == "background":
            assert tgt.background != src.background and tgt.objects == src.objects
            assert np.array_equal(e.mask, src.background_mask)
        else:
            assert tgt.background == src.background
        if kind == "night":
            assert tgt.night and not src.night and e.mask.all() and tgt.objects == src.objects
        else:
            assert tgt.night == src.night
        if kind not in ("background", "night"):
            changed = (src.image != tgt.image).any(-1)
            assert not (changed & ~_grow(e.mask, 3)).any()  # outside the region: only faint tips, ≤ 3 px


def test_random_kind_and_bad_arguments():
    assert {make_edit(s, world="rich").kind for s in range(80)} == set(KINDS)
    with pytest.raises(ValueError, match="kind"):
        make_edit(0, "paint", "rich")
    with pytest.raises(ValueError, match="world='rich'"):
        make_edit(0, "background")  # the classic world has one background
    with pytest.raises(ValueError, match="world"):
        make_scene(0, "fantasy")


def test_reverse_caption_names_the_objects_right_to_left_as_the_mirrored_scene_would():
    from dataclasses import replace

    from diffedit_lab.toy.world import caption, reverse_caption

    for i in range(60):
        scene = make_scene(i, "rich")
        mirrored = tuple(replace(o, cx=-o.cx) for o in scene.objects)
        assert reverse_caption(scene.caption) == caption(mirrored, scene.background, scene.night)
    assert reverse_caption("a red circle and a blue square") == "a blue square and a red circle"
    assert reverse_caption("a big red star at night") == "a big red star at night"


def test_short_caption_leaves_out_the_last_named_object_and_keeps_the_rest():
    from diffedit_lab.toy.world import caption, short_caption

    for i in range(60):
        scene = make_scene(i, "rich")
        ordered = sorted(scene.objects, key=lambda o: o.cx)
        expected = caption(tuple(ordered[:-1]), scene.background, scene.night) if len(ordered) > 1 else scene.caption
        assert short_caption(scene.caption) == expected
    assert short_caption("a red circle and a blue square") == "a red circle"
    assert short_caption("a small red star and a big blue star on water at night") == "a small red star on water at night"
    assert short_caption("a big red star at night") == "a big red star at night"
