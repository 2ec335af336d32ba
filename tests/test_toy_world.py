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
