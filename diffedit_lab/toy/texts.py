"""Which edit do two texts describe? Captions read with the shapes world's own words.

A student who leaves the script types texts of their own: "a purple star and a yellow
square", or "a blue square" for a scene "a green square and a yellow square". To score the
edit honestly (true region, IoU, pixel checker) the explorer must know *which* object the
texts change and into what — or that the world cannot say.

**Reading a text** (:func:`parse`). Words are lower-case runs of letters. The vocabulary is
that of the scene's world (``Scene.world``): for the classic world — the shipped model's —
``world.CLASSIC_SHAPES``, ``world.CLASSIC_COLOURS`` and ``world.WORDS`` (the glue words "a",
"and"); for the rich world ``world.SHAPES``, ``world.COLOURS``, ``world.SIZES``,
``world.BACKGROUNDS`` and the rest of ``world.VOCABULARY`` ("on", "at", "night"). An object is ``[size] colour shape``; a background word anywhere names the
background. Any other word is *unknown*.

**Reading an edit** (:func:`read_edit`), given the scene (its objects, left to right):

* a target naming as many objects as the scene: object ``k`` of the target is object ``k``
  of the scene (captions name objects left to right). It is a whole caption, and the world's
  captions leave "plain" and "day" unsaid: in the rich world no background word means the
  plain background, no "night" means day;
* a target naming fewer objects (e.g. "a blue square"): the source says which object it
  replaces when it names as many objects ("a green square" → "a blue square": the scene's one
  green square); with no usable source, the one scene object that differs from the target in
  a single attribute. Rich world: a target that names every object but one, each as it is,
  removes that one ("a big green triangle and a big yellow star" → "a big yellow star"). The
  background and time of day stay the scene's unless the target names them.

The texts describe an edit the world can score when they make exactly one change of a kind
the world draws: one attribute of one object (a field of ``world.Obj``: colour, shape, size)
to a value of its word list; in the rich world also the background, one object removed, or
day → night. Then the edit is rebuilt like ``world.make_edit`` builds its own — the target
scene drawn over the scene's own backdrop, colours at their names' RGB, a new size at the
same place in the other size's range of radii — and its true region is the world's:
``T = M_before ∪ M_after`` for an object (for a colour change, the object itself), the
removed object's area, the background, or the whole image (night). Otherwise — an unknown
word, two changes, nothing changed, an added object, an ambiguous object, night → day — there
is no true mask, and :class:`Reading` says why in one line.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import world

ATTRIBUTES = ("colour", "shape", "size")
"""What a phrase can name about an object, in caption order: ``[size] colour shape``."""


def _names(value: Any) -> tuple[str, ...]:
    """The names of a world word list (a tuple of names, or a dict keyed by name)."""
    return tuple(str(k).lower() for k in (value or ()))


def vocabulary(world_name: str = "classic") -> dict[str, tuple[str, ...]]:
    """The words of ``world_name``'s captions by role, read from ``diffedit_lab.toy.world`` at call
    time: ``shapes``, ``colours``, ``sizes``, ``backgrounds`` (empty where the world has none) and
    ``other`` (its remaining words, e.g. "a", "and"). ``"classic"``: the shipped model's world
    (``CLASSIC_SHAPES``, ``CLASSIC_COLOURS``, ``WORDS``); ``"rich"``: the whole ``VOCABULARY``."""
    if world_name == "classic":
        roles = {"shapes": _names(getattr(world, "CLASSIC_SHAPES", world.SHAPES)),
                 "colours": _names(getattr(world, "CLASSIC_COLOURS", world.COLOURS)),
                 "sizes": (), "backgrounds": ()}
        glue = getattr(world, "WORDS", ("a", "and"))
    else:
        roles = {
            "shapes": _names(world.SHAPES),
            "colours": _names(world.COLOURS),
            "sizes": _names(getattr(world, "SIZES", ())),
            "backgrounds": _names(getattr(world, "BACKGROUNDS", ())),
        }
        glue = getattr(world, "VOCABULARY", getattr(world, "WORDS", ("a", "and")))
    named = {w for ws in roles.values() for w in ws}
    roles["other"] = tuple(w for w in _names(glue) if w not in named)
    return roles


@dataclass(frozen=True)
class Phrase:
    """One object as a text names it: colour and shape, and the size word if one is given."""

    colour: str
    shape: str
    size: str | None = None

    @property
    def name(self) -> str:
        return " ".join(w for w in (self.size, self.colour, self.shape) if w)


@dataclass(frozen=True)
class Caption:
    """A text read with the world's words: its objects left to right, the background word (if
    any), the words that are not the world's (``unknown``, in order of appearance) and whether
    it says "night" (a word of the rich world only)."""

    text: str
    objects: tuple[Phrase, ...]
    background: str | None
    unknown: tuple[str, ...]
    night: bool = False


def parse(text: str, world_name: str = "classic") -> Caption:
    """Read ``text`` with the world's words (module docstring): ``"a red circle and a blue square"``
    → objects ``(red circle, blue square)``. A colour or size word not followed by a shape (or
    a shape with no colour) names no object."""
    voc = vocabulary(world_name)
    shapes, colours, sizes, backgrounds = (set(voc[k]) for k in ("shapes", "colours", "sizes", "backgrounds"))
    known = shapes | colours | sizes | backgrounds | set(voc["other"])
    words = re.findall(r"[a-z]+", str(text).lower())
    unknown = tuple(dict.fromkeys(w for w in words if w not in known))
    objects, background = [], None
    for k, w in enumerate(words):
        if w in backgrounds and w not in shapes and w not in colours:
            background = w
        if w in shapes and k > 0 and words[k - 1] in colours:
            size = words[k - 2] if k > 1 and words[k - 2] in sizes else None
            objects.append(Phrase(words[k - 1], w, size))
    night = "night" in words and "night" in known
    return Caption(str(text), tuple(objects), background, unknown, night)


@dataclass(frozen=True)
class Reading:
    """What two texts say about a scene: ``edit`` (a ``world.Edit`` the checker can score, with
    its true region ``edit.mask``) or ``None``, and ``reason`` (one line: what the edit is, or
    why there is no true mask)."""

    edit: Any
    reason: str

    def __bool__(self) -> bool:
        return self.edit is not None


def _scene_of(scene_or_edit):
    return getattr(scene_or_edit, "scene", scene_or_edit)


def _phrase(obj) -> Phrase:
    size = getattr(obj, "size", None)
    return Phrase(obj.colour, obj.shape, size if isinstance(size, str) else None)


def _changes(old: Phrase, new: Phrase) -> list[tuple[str, str]]:
    """``(attribute, new value)`` for each attribute ``new`` names differently from ``old``."""
    out = []
    for attr in ATTRIBUTES:
        value = getattr(new, attr)
        if value is not None and value != getattr(old, attr):
            out.append((attr, value))
    return out


def _matches(obj: Phrase, phrase: Phrase) -> bool:
    return not _changes(obj, phrase)


def _no(reason: str) -> Reading:
    return Reading(None, reason)


def read_edit(scene, source: str, target: str) -> Reading:
    """The edit ``source`` → ``target`` describes on ``scene`` (a ``world.Scene``, or a
    ``world.Edit`` whose ``scene`` is used), or why there is none (module docstring). An
    ``Edit`` read with its own two texts is itself: the world knows its edit (which of two
    alike objects went, the new radius) better than its texts can say."""
    if isinstance(scene, world.Edit) and (source, target) == (scene.source, scene.target):
        return Reading(scene, f"the scene's own {scene.kind} edit")
    scene = _scene_of(scene)
    words_of = scene.world  # the scene's world decides the words
    tgt = parse(target, words_of)
    if tgt.unknown:
        words = ", ".join(f"“{w}”" for w in tgt.unknown)
        return _no(f"{words} {'is not a word' if len(tgt.unknown) == 1 else 'are not words'} of the shapes world")
    order = sorted(range(len(scene.objects)), key=lambda k: scene.objects[k].cx)  # left to right
    current = [_phrase(scene.objects[k]) for k in order]
    background, night = _setting(scene, tgt, whole=len(tgt.objects) == len(current))
    if night != scene.night:
        return _night_edit(scene, tgt, current, night, background)
    if not tgt.objects:
        if background != scene.background:
            return _edit_background(scene, background)
        return _no("the target names no “colour shape” object")
    if len(tgt.objects) > len(current):
        return _no(f"the target names {len(tgt.objects)} objects, the scene has {len(current)}: "
                   "the world scores changes of objects already there")
    if background != scene.background:
        if not _as_they_are(current, tgt):
            return _no("the target changes the background and objects: the checker scores one change")
        return _edit_background(scene, background)
    if len(tgt.objects) == len(current):
        pairs = [(order[j], current[j], tgt.objects[j]) for j in range(len(current))]
    else:
        removed = _removed(current, tgt) if words_of == "rich" else None
        if removed is not None:
            return removed if isinstance(removed, Reading) else _edit_remove(scene, order[removed])
        pair = _anchor(current, order, parse(source, words_of), tgt)
        if isinstance(pair, Reading):
            return pair
        pairs = [pair]
    changed = [(k, ch) for k, old, new in pairs if (ch := _changes(old, new))]
    if not changed:
        return _no("the target describes the scene as it is: nothing to edit")
    if len(changed) > 1 or len(changed[0][1]) > 1:
        n = sum(len(ch) for _, ch in changed)
        return _no(f"the target makes {n} changes: the checker scores one change of one object")
    (index, ((attr, value),)) = changed[0]
    return _edit_object(scene, index, attr, value)


def _setting(scene, tgt: Caption, whole: bool) -> tuple[str, bool]:
    """The background and time of day the target asks for. A target that names every object
    is a whole caption, and the world's captions leave "plain" and "day" unsaid: no background
    word means plain, no "night" means day. A target naming fewer objects keeps the scene's
    unless it names them."""
    if scene.world != "rich":
        return scene.background, scene.night
    if whole:
        return tgt.background or "plain", tgt.night
    return tgt.background or scene.background, tgt.night or scene.night


def _as_they_are(current: list[Phrase], tgt: Caption) -> bool:
    """Whether the target names the scene's objects unchanged: a whole caption each at its place,
    a shorter one each somewhere in the scene."""
    if len(tgt.objects) == len(current):
        return all(map(_matches, current, tgt.objects))
    return all(any(_matches(p, t) for p in current) for t in tgt.objects)


def _removed(current: list[Phrase], tgt: Caption) -> int | Reading | None:
    """For a target that names one object fewer than the scene, all of them as they are (in
    order): the place (left to right) of the object it leaves out — a removal; a
    :class:`Reading` when two or more could be the one; ``None`` when the target
    is not the scene less one object (then it names a change of an object)."""
    if len(tgt.objects) != len(current) - 1:
        return None
    gone = [j for j in range(len(current))
            if all(_matches(p, t) for p, t in zip(current[:j] + current[j + 1:], tgt.objects))]
    if len(gone) > 1:
        names = ", ".join(dict.fromkeys(current[j].name for j in gone))
        return _no(f"the target leaves out one of {len(gone)} objects it could be ({names}): no true region")
    return gone[0] if gone else None


def _anchor(current, order, src: Caption, tgt: Caption):
    """For a target naming fewer objects than the scene: ``(scene index, scene phrase, target
    phrase)`` of the one object it changes, or a :class:`Reading` saying why none."""
    if not src.unknown and len(src.objects) == len(tgt.objects):
        differ = [j for j, (s, t) in enumerate(zip(src.objects, tgt.objects)) if s != t]
        if len(differ) != 1:
            return _no("the source and target differ in more than one object" if differ
                       else "the target describes the scene as it is: nothing to edit")
        said = src.objects[differ[0]]
        hits = [j for j, p in enumerate(current) if _matches(p, said)]
        if len(hits) != 1:
            return _no(f"the scene has {'no' if not hits else 'two'} “{said.name}” for the source to name")
        return order[hits[0]], current[hits[0]], tgt.objects[differ[0]]
    if len(tgt.objects) != 1:
        return _no("the target names only some objects: say in the source which ones it replaces")
    new = tgt.objects[0]
    hits = [j for j, p in enumerate(current) if len(_changes(p, new)) == 1]
    if any(_matches(p, new) for p in current):
        return _no(f"the scene already has a “{new.name}”: nothing to edit")
    if len(hits) != 1:
        return _no(f"“{new.name}” could replace {'no' if not hits else 'either'} object with one change: "
                   "name the object in the source")
    return order[hits[0]], current[hits[0]], new


def _render(scene, objects, background: str | None = None, night: bool | None = None):
    """``scene``'s objects replaced by ``objects``, drawn as its world draws them: the classic
    world over its one background (``world.render``), the rich world over the scene's own
    backdrop (``world.render_rich``) — or, for another ``background``, over a texture of it
    (drawn from seed 0: the checker reads the background's name, not its exact pixels)."""
    if scene.world != "rich":
        return world.render(tuple(objects))
    background = scene.background if background is None else background
    night = scene.night if night is None else night
    backdrop = scene.backdrop if background == scene.background else world.texture(
        background, np.random.default_rng(0), scene.image.shape[0])
    return world.render_rich(tuple(objects), backdrop, background, night)


def _new_edit(scene, target_scene, mask, index: int, kind: str):
    values = dict(scene=scene, target_scene=target_scene, source=scene.caption, target=target_scene.caption,
                  mask=np.asarray(mask, bool), index=index, kind=kind)
    names = {f.name for f in dataclasses.fields(world.Edit)}
    return world.Edit(**{k: v for k, v in values.items() if k in names})


def _edit_object(scene, index: int, attr: str, value: str) -> Reading:
    old = scene.objects[index]
    fields = {f.name for f in dataclasses.fields(old)}
    if attr not in fields or not isinstance(getattr(old, attr), str):
        return _no(f"the world cannot draw a {attr} change")
    changes = {attr: value}
    if attr == "colour" and "rgb" in fields:
        changes["rgb"] = None  # the colour's own RGB (the world's jitter is a draw, not a name)
    if attr == "size":
        r = _new_radius(scene, index, value)
        if r is None:
            return _no(f"a {value} {old.colour} {old.shape} has no room there: the world cannot draw this size change")
        changes["r"] = r
    new = dataclasses.replace(old, **changes)
    objects = tuple(new if k == index else o for k, o in enumerate(scene.objects))
    target_scene = _render(scene, objects)
    mask = scene.masks[index] | target_scene.masks[index]
    edit = _new_edit(scene, target_scene, mask, index, attr)
    return Reading(edit, f"{attr} edit: the {old.name if hasattr(old, 'name') else _phrase(old).name} becomes "
                         f"a {_phrase(new).name}")


def _new_radius(scene, index: int, size: str) -> float | None:
    """A radius of ``size`` for object ``index`` at its place, as the world draws a size change:
    the same place in the other size's range of radii, or the nearest radius of that range that
    leaves the others clear (``None``: none does)."""
    old = scene.objects[index]
    (lo, hi), (lo2, hi2) = world.SIZE_RANGE[old.size], world.SIZE_RANGE[size]
    same_place = lo2 + (min(max(old.r, lo), hi) - lo) / (hi - lo) * (hi2 - lo2)
    others = [o for k, o in enumerate(scene.objects) if k != index]
    for r in [same_place, *sorted(np.linspace(lo2, hi2, 11), key=lambda r: abs(r - same_place))]:
        if world._fits(dataclasses.replace(old, r=float(r)), others):
            return float(r)
    return None


def _edit_background(scene, background: str) -> Reading:
    if scene.world != "rich":
        return _no("the world cannot draw a background change")
    target_scene = _render(scene, scene.objects, background=background)
    mask = scene.background_mask
    return Reading(_new_edit(scene, target_scene, mask, -1, "background"), f"background edit: {background}")


def _edit_remove(scene, index: int) -> Reading:
    objects = tuple(o for k, o in enumerate(scene.objects) if k != index)
    target_scene = _render(scene, objects)
    edit = _new_edit(scene, target_scene, scene.masks[index].copy(), index, "remove")
    return Reading(edit, f"remove edit: the {scene.objects[index].name} goes")


def _night_edit(scene, tgt: Caption, current: list[Phrase], night: bool, background: str) -> Reading:
    """Day → night, everything else as it is (the world's whole-image kind); night → day is no
    edit of the world."""
    when = "turns night into day (no “at night”)" if not night else "makes it night"
    if not _as_they_are(current, tgt):
        return _no(f"the target changes objects and {when}: the checker scores one change")
    if background != scene.background:
        return _no(f"the target changes the background and {when}: the checker scores one change")
    if not night:
        return _no("the target turns night into day: the world has no such edit (say “at night”)")
    target_scene = _render(scene, scene.objects, night=True)
    mask = np.ones(scene.image.shape[:2], bool)
    return Reading(_new_edit(scene, target_scene, mask, -1, "night"), "night edit: the whole image")


def edit_from_texts(scene, source: str, target: str):
    """The ``world.Edit`` the texts describe on ``scene``, or ``None`` (see :func:`read_edit`)."""
    return read_edit(scene, source, target).edit


# --------------------------------------------------------------------------- the model's world


def words_world(words: set[str]) -> tuple[str, str]:
    """``(world, why)`` for a model that knows these whole ``words``: ``"rich"`` when they are exactly
    the rich world's :data:`~diffedit_lab.toy.world.VOCABULARY` (a model trained by
    ``toy.train --world rich``), else ``"classic"`` — a real Stable Diffusion knows every word but
    was never trained on either world."""
    if words == set(world.VOCABULARY):
        return "rich", f"the model's words are the rich world's {len(world.VOCABULARY)}"
    if words == set(world.WORDS):
        return "classic", f"the model's words are the classic world's {len(world.WORDS)}"
    missing = [w for w in world.VOCABULARY if w not in words]
    if missing:
        return "classic", f"the model does not know {', '.join(map(repr, missing[:4]))}{', …' if len(missing) > 4 else ''}"
    return "classic", "the model's vocabulary is not a shapes world's; pass --world rich to measure it there"


def tokenizer_words(tokenizer) -> set[str]:
    """The whole words a tokenizer has one token for (:func:`diffedit_lab.inputs.whole_words`)."""
    from ..inputs import whole_words

    return set(whole_words(tokenizer.get_vocab()))


def model_world(c) -> tuple[str, str]:
    """:func:`words_world` of a loaded model's tokenizer."""
    return words_world(tokenizer_words(c.tokenizer))


def folder_world(folder) -> tuple[str, str]:
    """:func:`words_world` of a model folder, read from its ``tokenizer/vocab.json`` without loading
    the model (the explorer's scene picker, before the model is loaded)."""
    import json
    from pathlib import Path

    vocab = Path(folder) / "tokenizer" / "vocab.json"
    if not vocab.is_file():
        return "classic", f"{vocab} not found"
    from ..inputs import whole_words

    return words_world(set(whole_words(json.loads(vocab.read_text()))))
