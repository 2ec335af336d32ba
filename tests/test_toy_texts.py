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
            r = texts.read_edit(e, e.source, e.target)
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
