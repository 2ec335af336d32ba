"""The pixel checker: reads rendered and degraded scenes back, and rejects wrong captions."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageFilter

from diffedit_lab.toy.checker import (
    as_objects,
    check,
    check_edit,
    classify_pixels,
    detect,
    judge,
    label_components,
    open3,
    parse_caption,
    shape_features,
)
from diffedit_lab.toy.world import BACKGROUND, COLOURS, Obj, make_edit, make_scene, render

SEED0 = 555_000  # scenes not used to tune the thresholds (seeds 0–199 and 10 000–10 999 were)


def _blur(img, rng):
    return np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(1.0)))


def _noise(img, rng):
    return np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)


def _jpeg(img, rng):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=30)
    return np.asarray(Image.open(buf))


def _jitter(img, rng):  # brightness/contrast gain and a colour cast
    return np.clip(img * rng.uniform(0.85, 1.15) + rng.uniform(-20, 20, 3), 0, 255).astype(np.uint8)


def _resample(img, rng):  # soft edges, like a VAE decoder's
    small = Image.fromarray(img).resize((32, 32), Image.BILINEAR)
    return np.asarray(small.resize((64, 64), Image.BICUBIC))


def _speckle(img, rng):
    out = img.copy()
    ys, xs = rng.integers(0, 64, 30), rng.integers(0, 64, 30)
    out[ys, xs] = rng.integers(0, 256, (30, 3))
    return out


def _all(img, rng):
    return _jitter(_noise(_blur(img, rng), rng), rng)


DEGRADATIONS = dict(
    blur=_blur, noise=_noise, jpeg=_jpeg, jitter=_jitter, resample=_resample, speckle=_speckle, all=_all
)


def _rate(images_and_captions) -> float:
    results = [check(img, cap).all_ok for img, cap in images_and_captions]
    return float(np.mean(results))


def test_accuracy_on_clean_renders():
    scenes = [make_scene(SEED0 + s) for s in range(200)]
    assert _rate((sc.image, sc.caption) for sc in scenes) >= 0.99


@pytest.mark.parametrize("name", list(DEGRADATIONS))
def test_accuracy_on_degraded_renders(name):
    degrade = DEGRADATIONS[name]
    pairs = []
    for s in range(100):
        scene = make_scene(SEED0 + 1000 + s)
        pairs.append((degrade(scene.image, np.random.default_rng(s)), scene.caption))
    assert _rate(pairs) >= 0.96


def test_detections_match_the_true_objects():
    for s in range(40):
        scene = make_scene(SEED0 + 2000 + s)
        found = detect(scene.image)
        assert [(d.colour, d.shape) for d in found] == [(o.colour, o.shape) for o in scene.objects]
        for d, m in zip(found, scene.masks):
            ys, xs = np.nonzero(m)
            assert abs(d.cx - xs.mean()) < 1 and abs(d.cy - ys.mean()) < 1  # tips trimmed
            # ≠ 1: opening trims sharp tips; edge rows at exactly ½ coverage are a tie
            assert (d.mask & m).sum() / (d.mask | m).sum() > 0.8


def _wrong_captions(objects: tuple[Obj, Obj]) -> dict[str, list[tuple[str, str]]]:
    a, b = [(o.colour, o.shape) for o in objects]
    other_colour = next(c for c in COLOURS if c != a[0])
    other_shape = next(s for s in ("circle", "square", "triangle") if s != b[1])
    wrong = {
        "wrong colour": [(other_colour, a[1]), b],
        "wrong shape": [a, (b[0], other_shape)],
        "missing object": [a],
        "extra object": [a, b, ("green", "square")],
    }
    if a != b:
        wrong["swapped order"] = [b, a]
    if a[0] != b[0]:
        wrong["swapped colours"] = [(b[0], a[1]), (a[0], b[1])]
    if a[1] != b[1]:
        wrong["swapped shapes"] = [(a[0], b[1]), (b[0], a[1])]
    return wrong


def test_rejects_wrong_captions():
    tried = rejected = 0
    kinds = set()
    for s in range(100):
        scene = make_scene(SEED0 + 3000 + s)
        found = detect(scene.image)
        assert judge(found, scene.caption).all_ok
        for kind, objects in _wrong_captions(scene.objects).items():
            tried += 1
            kinds.add(kind)
            rejected += not judge(found, objects).all_ok
    assert len(kinds) == 7
    assert rejected == tried


def test_per_object_verdicts():
    scene = render((Obj("circle", "red", 16, 30, 9), Obj("square", "blue", 46, 34, 9)))
    r = check(scene.image, "a red circle and a blue square")
    assert r.all_ok and r.present == [True, True] and r.order_ok
    r = check(scene.image, "a blue square and a red circle")
    assert r.present == [True, True] and not r.order_ok and not r.all_ok
    r = check(scene.image, "a red triangle and a blue square")
    assert r.present == [False, True] and r.colour_ok == [True, True] and r.shape_ok == [False, True]
    assert not r.all_ok
    r = check(scene.image, "a red circle and a blue square and a green square")
    assert r.present == [True, True, False] and not r.all_ok
    r = check(scene.image, "a red circle")  # present, but the image shows more
    assert r.present == [True] and r.order_ok and not r.all_ok


def test_empty_and_off_palette_images():
    blank = np.full((64, 64, 3), BACKGROUND, np.uint8)
    assert detect(blank) == []
    r = check(blank, "a red circle and a blue square")
    assert r.present == [False, False] and not r.order_ok and not r.all_ok
    purple = render((Obj("circle", "red", 20, 30, 10),)).image.copy()
    purple[(purple == COLOURS["red"]).all(-1)] = (150, 50, 200)
    assert detect(purple) == []


def test_small_speckles_are_ignored():
    scene = make_scene(SEED0 + 4000)
    img = scene.image.copy()
    img[2:5, 2:5] = COLOURS["green"]  # 9 px blob, below the 15 px minimum
    img[60, 60] = COLOURS["red"]
    assert check(img, scene.caption).all_ok
    img[2:8, 2:8] = COLOURS["green"]  # 36 px: a real (extra) object
    assert not check(img, scene.caption).all_ok


def test_parse_caption_and_object_specs():
    assert parse_caption("a red circle and a blue square") == [("red", "circle"), ("blue", "square")]
    assert parse_caption("A Yellow Triangle.") == [("yellow", "triangle")]
    with pytest.raises(ValueError):
        parse_caption("a cat")
    expected = [("red", "circle"), ("blue", "square")]
    assert as_objects([("circle", "red"), ("square", "blue")]) == expected
    assert as_objects([("red", "circle"), ("blue", "square")]) == expected
    assert as_objects([Obj("circle", "red", 0, 0, 1), Obj("square", "blue", 0, 0, 1)]) == expected
    with pytest.raises(ValueError):
        as_objects([("red", "cat")])


def test_input_types_agree():
    scene = make_scene(SEED0 + 5000)
    as_uint8 = detect(scene.image)
    for image in (Image.fromarray(scene.image), scene.image / 255.0):
        assert [(d.name, d.area) for d in detect(image)] == [(d.name, d.area) for d in as_uint8]


def test_check_edit():
    for s in range(20):
        e = make_edit(SEED0 + 6000 + s)
        assert check_edit(e.target_scene.image, e) == (True, True)
        assert check_edit(e.scene.image, e) == (False, True)  # nothing edited
        kept = e.scene.objects[1 - e.index]
        only_target = render((e.target_scene.objects[e.index],)).image
        assert check_edit(only_target, e) == (True, False)  # untouched object lost
        moved = replace(kept, cy=kept.cy + kept.r if kept.cy < 32 else kept.cy - kept.r)
        others = (e.target_scene.objects[e.index], moved)
        if not (render(others).masks[0] & render(others).masks[1]).any():
            assert check_edit(render(others).image, e) == (True, False)  # it moved away


# --------------------------------------------------------------------------- building blocks


def test_label_components_finds_u_shapes_and_separates_colours():
    classes = np.full((6, 7), -1)
    classes[1:5, 1] = 0
    classes[4, 1:6] = 0
    classes[1:5, 5] = 0  # a U: its arms join only through the bottom row
    classes[1:3, 3] = 1  # another colour in the middle
    classes[0, 6] = 1  # touches nothing of colour 1
    labels = label_components(classes)
    assert len(np.unique(labels[labels >= 0])) == 3
    assert (labels[classes == 0] == labels[1, 1]).all()
    assert labels[1, 1] == np.flatnonzero(classes == 0).min()  # smallest flat index
    assert (labels[classes < 0] == -1).all()
    spiral = np.full((9, 9), -1)
    spiral[0, :] = spiral[:, 8] = spiral[8, :] = spiral[2:, 0] = spiral[2, :7] = 0
    spiral[2:7, 6] = spiral[6, 2:7] = spiral[4:7, 2] = spiral[4, 2:5] = 0
    assert len(np.unique(label_components(spiral)[spiral == 0])) == 1


def test_open3_removes_thin_parts_only():
    m = np.zeros((10, 12), bool)
    m[2:7, 2:7] = True  # a 5×5 block stays whole
    m[4, 7:11] = True  # a 1-px line goes
    m[0, 0] = True
    assert np.array_equal(open3(m), np.pad(np.ones((5, 5), bool), ((2, 3), (2, 5))))


def test_classify_pixels_uses_coverage_over_half():
    red = np.array(COLOURS["red"], np.float32)
    bg = np.array(BACKGROUND, np.float32)
    a = np.linspace(0, 1, 21, dtype=np.float32)
    strip = (a[:, None] * red + (1 - a[:, None]) * bg)[None].repeat(5, 0)  # (5, 21, 3)
    strip = np.concatenate([np.repeat(bg[None, None], 5, 1).repeat(5, 0), strip], axis=1)
    classes = classify_pixels(strip, background=bg)[2, 5:]
    assert (classes[a > 0.5 + 1e-6] == 0).all() and (classes[a < 0.5 - 1e-6] == -1).all()


@pytest.mark.parametrize(
    "shape, skew, squareness",
    [("circle", 0.0, 2 / 3), ("square", 0.0, 1.0), ("triangle", -2 * np.sqrt(2) / 5, None)],
)
def test_shape_features_match_their_formulas(shape, skew, squareness):
    o = Obj(shape, "red", 32.2, 31.7, 25.0)  # large: pixelation is small
    got_skew, got_sq = shape_features(render((o,), size=64).masks[0])
    assert got_skew == pytest.approx(skew, abs=0.02)
    if squareness is not None:
        assert got_sq == pytest.approx(squareness, abs=0.02)


# --------------------------------------------------------------------------- the rich world

from diffedit_lab.toy import rich_checker  # noqa: E402
from diffedit_lab.toy.world import BACKGROUNDS, KINDS, SHAPES, SIZES, render_rich, texture  # noqa: E402

RICH0 = 600_000  # rich scenes not looked at while writing the reader (0–299 and 5 000–5 299 were)


def test_rich_reader_on_clean_renders():
    scenes = [make_scene(RICH0 + s, "rich") for s in range(150)]
    assert np.mean([rich_checker.check(sc.image, sc.caption).all_ok for sc in scenes]) >= 0.97


@pytest.mark.parametrize("name, bar", [("blur", 0.85), ("noise", 0.85), ("resample", 0.7)])
def test_rich_reader_on_degraded_renders(name, bar):
    """Soft edges, noise, and a 2× resampling (a small star is 5 px wide at 32 px: 77 % when
    this test was written)."""
    degrade = {"blur": lambda img, rng: np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(0.7))),
               "noise": lambda img, rng: np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8),
               "resample": _resample}[name]
    scenes = [make_scene(RICH0 + 1000 + s, "rich") for s in range(60)]
    rate = np.mean([rich_checker.check(degrade(sc.image, np.random.default_rng(i)), sc.caption).all_ok
                    for i, sc in enumerate(scenes)])
    assert rate >= bar


def test_rich_reader_rejects_wrong_captions():
    rejected = tried = read_right = 0
    for s in range(40):
        scene = make_scene(RICH0 + 2000 + s, "rich")
        reading = rich_checker.read(scene.image)
        if not rich_checker.judge(reading, scene.caption).all_ok:
            continue  # a misreading of the true caption (≤ 3 %, test above): nothing to reject
        read_right += 1
        o = scene.objects[0]
        wrong_objects = [
            replace(o, colour=next(c for c in COLOURS if c != o.colour)),
            replace(o, shape=next(x for x in SHAPES if x != o.shape)),
            replace(o, size=next(x for x in SIZES if x != o.size)),
        ]
        from diffedit_lab.toy.world import caption

        wrong = [caption((w,) + scene.objects[1:], scene.background, scene.night) for w in wrong_objects]
        wrong.append(caption(scene.objects, next(b for b in BACKGROUNDS if b != scene.background), scene.night))
        wrong.append(caption(scene.objects, scene.background, not scene.night))
        wrong.append(caption(scene.objects + (Obj("cross", "green", 70, 5, 5, "small"),), scene.background, scene.night))
        if len(scene.objects) > 1:
            wrong.append(caption(scene.objects[1:], scene.background, scene.night))  # one missing
        for w in wrong:
            tried += 1
            rejected += not rich_checker.judge(reading, w).all_ok
    assert read_right >= 36 and rejected == tried


def test_rich_parse_caption():
    assert rich_checker.parse_caption("a small red star and a big blue circle on grass at night") == (
        [("small", "red", "star"), ("big", "blue", "circle")], "grass", True)
    assert rich_checker.parse_caption("a red circle and a blue square") == (
        [(None, "red", "circle"), (None, "blue", "square")], "plain", False)
    with pytest.raises(ValueError):
        rich_checker.parse_caption("a cat on grass")


@pytest.mark.parametrize("kind", KINDS)
def test_rich_check_edit(kind):
    other_changed = 0
    for s in range(8):
        e = make_edit(RICH0 + 3000 + s, kind, "rich")
        tgt = e.target_scene
        assert check_edit(e.target_scene.image, e) == (True, True)  # a perfect edit
        assert check_edit(e.scene.image, e) == (False, True)  # nothing edited
        # another object changed (its colour): the untouched object is not kept. A background or
        # night edit touches no object: any object changed fails it — the one at e.index too.
        untouched_all = kind in ("remove", "background", "night")
        others = [k for k in range(len(tgt.objects)) if untouched_all or k != e.index]
        if others:
            k = e.index if kind in ("background", "night") else others[0]
            o = tgt.objects[k]
            changed = replace(o, colour=next(c for c in ("blue", "yellow") if c != o.colour), rgb=None)
            objs = tuple(changed if j == k else x for j, x in enumerate(tgt.objects))
            img = render_rich(objs, tgt.backdrop, tgt.background, tgt.night).image
            assert check_edit(img, e) == (True, False)
            other_changed += 1
        if kind not in ("background", "night"):  # the background swapped: not kept either
            bg = next(b for b in BACKGROUNDS if b != tgt.background)
            img = render_rich(tgt.objects, texture(bg, np.random.default_rng(s)), bg, tgt.night).image
            assert check_edit(img, e)[1] is False
    assert other_changed >= 3


def test_rich_reader_reads_classic_scenes_and_bigger_images():
    classic = [make_scene(RICH0 + 4000 + s) for s in range(40)]
    assert np.mean([rich_checker.check(sc.image, sc.caption).all_ok for sc in classic]) >= 0.95
    big = [make_scene(RICH0 + 5000 + s, "rich", size=128) for s in range(15)]
    assert np.mean([rich_checker.check(sc.image, sc.caption).all_ok for sc in big]) >= 0.9
