"""diffedit_lab.toy.texts: texts read with the world's word lists, and the edit they describe on a scene."""

from __future__ import annotations

import numpy as np
import pytest

from diffedit_lab.toy import texts, world
from diffedit_lab.toy.checker import check_edit


@pytest.fixture(scope="module")
def spec():
    e = world.make_edit(0, "colour")  # "a green square and a yellow square" → "… green square"
    assert e.source == "a green square and a yellow square" and e.index == 1
    return e


def test_parse_reads_objects_left_to_right_and_names_unknown_words():
    cap = texts.parse("A red circle and a blue square.")
    assert [(p.colour, p.shape) for p in cap.objects] == [("red", "circle"), ("blue", "square")]
    assert cap.unknown == () and cap.background is None
    cap = texts.parse("a purple star and a yellow square")
    assert cap.unknown == ("purple", "star")
    assert [(p.colour, p.shape) for p in cap.objects] == [("yellow", "square")]
    assert texts.parse("red and blue").objects == ()  # colours without shapes name no object


def test_parse_follows_the_world_word_lists(monkeypatch):
    """Words come from the scene's world: the classic lists (the shipped model's words) or the
    rich world's SHAPES / COLOURS / SIZES / BACKGROUNDS, read at call time."""
    assert texts.parse("a big purple star on grass").unknown == ("big", "purple", "star", "on", "grass")
    cap = texts.parse("a big purple star on grass", "rich")
    assert cap.unknown == ()
    assert cap.objects == (texts.Phrase("purple", "star", "big"),)
    assert cap.background == "grass"
    monkeypatch.setattr(world, "CLASSIC_SHAPES", (*world.CLASSIC_SHAPES, "star"))
    monkeypatch.setattr(world, "CLASSIC_COLOURS", {**world.CLASSIC_COLOURS, "purple": (140, 50, 180)})
    assert texts.parse("a purple star").objects == (texts.Phrase("purple", "star", None),)
    rich = world.make_scene(3, world="rich")
    assert texts.parse(rich.caption, "rich").unknown == ()


def test_the_scene_s_own_texts_give_its_own_edit():
    for seed in range(12):
        for kind in ("colour", "shape"):
            e = world.make_edit(seed, kind)
            assert texts.read_edit(e, e.source, e.target).edit is e  # an edit's own texts: itself
            r = texts.read_edit(e.scene, e.source, e.target)  # rebuilt from the scene and the texts
            assert r, (seed, kind, r.reason)
            assert (r.edit.index, r.edit.kind, r.edit.target) == (e.index, e.kind, e.target)
            assert np.array_equal(r.edit.mask, e.mask)
            assert np.array_equal(r.edit.target_scene.image, e.target_scene.image)


def test_another_object_is_scored_as_that_edit(spec):
    r = texts.read_edit(spec, spec.source, "a blue square and a yellow square")
    assert r and r.edit.index == 0 and r.edit.kind == "colour"  # the green square, not the scene's yellow one
    assert np.array_equal(r.edit.mask, spec.scene.masks[0])
    assert check_edit(r.edit.target_scene.image, r.edit) == (True, True)  # the checker follows it
    assert check_edit(spec.target_scene.image, r.edit) == (False, False)  # the scene's own edit fails it
    shape = texts.read_edit(spec, spec.source, "a green square and a yellow triangle")
    assert shape and shape.edit.kind == "shape" and shape.edit.index == 1
    assert np.array_equal(shape.edit.mask, spec.scene.masks[1] | shape.edit.target_scene.masks[1])
    assert shape.edit.target_scene.objects[1].shape == "triangle"


@pytest.mark.parametrize("target, words", [
    ("a purple star and a yellow square", ["not words", "purple", "star"]),
    ("a blue circle and a yellow square", ["2 changes"]),
    ("a green square and a yellow square", ["nothing to edit"]),
    ("a red square and a blue square and a red circle", ["3 objects"]),
    ("a square", ["no “colour shape”"]),
])
def test_unscorable_targets_say_why(spec, target, words):
    r = texts.read_edit(spec, spec.source, target)
    assert not r and r.edit is None and texts.edit_from_texts(spec, spec.source, target) is None
    for word in words:
        assert word in r.reason, (word, r.reason)


def test_partial_texts_use_the_source_to_find_the_object(spec):
    ambiguous = texts.read_edit(spec, "", "a red square")  # either square could become red
    assert not ambiguous and "source" in ambiguous.reason
    r = texts.read_edit(spec, "a green square", "a red square")
    assert r and r.edit.index == 0 and r.edit.target == "a red square and a yellow square"
    r = texts.read_edit(spec, "", "a yellow circle")  # only the yellow square is one change away
    assert r and r.edit.index == 1 and r.edit.kind == "shape"
    assert not texts.read_edit(spec, "a blue square", "a red square")  # the scene has no blue square


@pytest.mark.parametrize("kind", world.KINDS)
def test_rich_scenes_own_texts_give_its_own_edit(kind):
    """Every kind of the rich world read back from its own texts: the same kind and true region
    (size: the same object grown or shrunk, at a radius of its own), and the checker built from the
    texts passes the world's true target and fails the untouched scene — textures and night kept."""
    for seed in range(10):
        e = world.make_edit(seed, kind, world="rich")
        r = texts.read_edit(e.scene, e.source, e.target)
        assert r and r.edit.kind == kind, (seed, r.reason)
        assert r.edit.target == e.target and r.edit.target_scene.background == e.target_scene.background
        assert r.edit.target_scene.night == e.target_scene.night
        if kind != "size":
            assert np.array_equal(r.edit.mask, e.mask)
        else:
            assert r.edit.mask[e.scene.masks[e.index]].all() and r.edit.index == e.index
        assert check_edit(e.target_scene.image, r.edit) == (True, True), (seed, e.source, e.target)
        assert check_edit(e.scene.image, r.edit)[0] is False


def test_rich_texts_read_the_world_s_caption_conventions():
    e = world.make_edit(1, "colour", world="rich")  # "a big orange cross and a small orange star on bricks"
    assert e.scene.background == "bricks" and len(e.scene.objects) == 2
    # a whole caption without a background word asks for the plain background: a second change
    r = texts.read_edit(e, e.source, e.target.replace(" on bricks", ""))
    assert not r and "one change" in r.reason
    # the background alone
    r = texts.read_edit(e, e.source, e.source.replace("bricks", "sand"))
    assert r and r.edit.kind == "background" and r.edit.target_scene.background == "sand"
    assert np.array_equal(r.edit.mask, e.scene.background_mask)
    # one object left out, the other as it is: a removal
    r = texts.read_edit(e, e.source, "a big orange cross on bricks")
    assert r and r.edit.kind == "remove" and r.edit.index == 1 and len(r.edit.target_scene.objects) == 1
    assert np.array_equal(r.edit.mask, e.scene.masks[1])
    # a short text keeps the scene's background: "a small green star" changes the star's colour
    r = texts.read_edit(e, "", "a small green star")
    assert r and r.edit.kind == "colour" and r.edit.target_scene.background == "bricks"
    # day → night is an edit of the whole image; night → day is none
    r = texts.read_edit(e, e.source, e.source + " at night")
    assert r and r.edit.kind == "night" and r.edit.mask.all() and r.edit.target_scene.night
    r = texts.read_edit(e.scene, e.source, e.source.replace(" on bricks", " at night"))  # and plain: two changes
    assert not r and "background and makes it night" in r.reason
    night = world.make_edit(0, "colour", world="rich")  # a night scene
    assert night.scene.night
    r = texts.read_edit(night, night.source, night.source.replace(" at night", ""))
    assert not r and "night into day" in r.reason
    r = texts.read_edit(night.scene, night.source, "a big purple star and a small red star")  # and a new shape
    assert not r and "changes objects and turns night into day" in r.reason
    r = texts.read_edit(night.scene, night.source, night.target)
    assert r and r.edit.target_scene.night and check_edit(night.target_scene.image, r.edit) == (True, True)


def test_rich_removal_of_one_of_two_alike_objects_is_not_scored():
    scene = world.render_rich(
        (world.Obj("cross", "red", 16.0, 20.0, 7.0, "small"), world.Obj("cross", "red", 46.0, 40.0, 7.0, "small")),
        world.texture("water", np.random.default_rng(0)), "water")
    r = texts.read_edit(scene, scene.caption, "a small red cross on water")
    assert not r and "leaves out one of 2" in r.reason  # which one goes? left and right differ in region
    three = world.render_rich(scene.objects + (world.Obj("star", "blue", 30.0, 50.0, 7.0, "small"),),
                              world.texture("water", np.random.default_rng(0)), "water")
    r = texts.read_edit(three, three.caption, "a small red cross and a small red cross on water")
    assert r and r.edit.kind == "remove" and three.objects[r.edit.index].shape == "star"
