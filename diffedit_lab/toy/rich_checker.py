"""Read a rich-world image back into objects, background and time of day — from the pixels,
with no learned model (the rich world's counterpart of :mod:`diffedit_lab.toy.checker`).

How an image is read (:func:`read`):

1. **Background and night.** The image's 2-px frame (objects keep 2 px from the edge) is
   compared with each background's texture colours, by day and times ``NIGHT_GAIN`` by
   night: the one with the least mean nearest-colour distance names the background and time. Night pixels are
   then divided by the gain (back to day colours).
2. **Pixels.** Each pixel takes the class of its nearest reference colour: the object colours
   drawn with the world's own jitter (``jitter_colour``), or the named background's texture
   colours (drawn by ``texture`` with tones across their range). A pixel nearest an object
   colour but farther than ``MAX_DIST`` from it is background. A component of a colour is kept
   (whole, so that a small star keeps its points) only if something of it survives an opening
   by a 3×3 square: one-pixel edge rings, thin lines and lone pixels go.
3. **Objects.** 4-connected components per colour, holes filled, blobs under ``MIN_AREA`` (on
   the 64-px canvas) dropped. The shape is the template — each shape drawn at the blob's
   centroid with the blob's area — of highest IoU with the blob; the size is "small" when the
   template's radius is below ``SMALL_MAX`` (between the size ranges), else "big".

:func:`check` matches a caption to a reading; :func:`check_edit` judges an edit of any kind.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, replace

import numpy as np

from .checker import fill_holes, label_components, open3, to_rgb_array
from .world import (BACKGROUNDS, COLOURS, NIGHT_GAIN, SHAPES, SIZE, SIZE_RANGE, SIZES, Edit, Obj,
                    coverage, jitter_colour, texture)

COLOUR_NAMES = tuple(COLOURS)
MAX_DIST = 70.0  # RGB distance: farther from every object colour sample → background
MIN_AREA = 12  # px on the 64-px canvas: smaller blobs are speckles
SMALL_MAX = 0.5 * (SIZE_RANGE["small"][1] + SIZE_RANGE["big"][0])  # 8 px: radius between the ranges
GAIN = np.array(NIGHT_GAIN, np.float32)


@dataclass
class Detection:
    """One object read from an image (coordinates on the 64-px canvas, whatever the image's
    size): shape, colour, size names, centroid, area (px of the image), mask, template IoU."""

    shape: str
    colour: str
    size: str
    cx: float
    cy: float
    area: int
    mask: np.ndarray = field(repr=False)
    iou: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.size} {self.colour} {self.shape}"


@dataclass
class Reading:
    """What an image shows: objects left to right, the background name, and whether at night."""

    objects: list[Detection]
    background: str
    night: bool


@dataclass
class CheckResult:
    """A caption against a reading: per named object ``present`` (a detection with its shape,
    colour and size), ``order_ok`` (all present, left to right), ``background_ok``,
    ``night_ok``; ``all_ok``: all of them and no extra object."""

    expected: list[tuple[str | None, str, str]]
    reading: Reading
    present: list[bool]
    order_ok: bool
    background_ok: bool
    night_ok: bool
    all_ok: bool

    def __bool__(self) -> bool:
        return self.all_ok


# --------------------------------------------------------------------------- references


@functools.lru_cache(maxsize=None)
def background_samples(name: str) -> np.ndarray:
    """(N, 3) day colours of ``name``'s texture over its range of tones (8 draws, subsampled)."""
    rng = np.random.default_rng(12345)
    px = np.concatenate([texture(name, rng, SIZE).reshape(-1, 3) for _ in range(8)])
    return px[rng.choice(len(px), 600, replace=False)] if len(px) > 600 else px


@functools.lru_cache(maxsize=None)
def colour_samples() -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) jittered colours of every object colour and (N,) their colour indices."""
    rng = np.random.default_rng(777)
    cols, idx = [], []
    for k, name in enumerate(COLOUR_NAMES):
        for _ in range(80):
            cols.append(jitter_colour(name, rng))
            idx.append(k)
    return np.array(cols, np.float32), np.array(idx)


@functools.lru_cache(maxsize=None)
def _template_area(shape: str) -> float:
    """Area (px) of ``shape`` at r = 1 on the 64-px canvas (measured at r = 20)."""
    return float(coverage(Obj(shape, "red", 32.0, 32.0, 20.0)).sum()) / 400.0


# --------------------------------------------------------------------------- reading


def _dist(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(P, N) Euclidean distances between rows of ``x`` (P, 3) and ``ref`` (N, 3), by
    ``‖x‖² − 2·x·r + ‖r‖²`` (one matrix product)."""
    x, ref = x.astype(np.float32), ref.astype(np.float32)
    d2 = (x * x).sum(1)[:, None] - 2 * x @ ref.T + (ref * ref).sum(1)[None]
    return np.sqrt(np.maximum(d2, 0))


def _frame(rgb: np.ndarray, w: int = 2) -> np.ndarray:
    return np.concatenate([rgb[:w].reshape(-1, 3), rgb[-w:].reshape(-1, 3),
                           rgb[w:-w, :w].reshape(-1, 3), rgb[w:-w, -w:].reshape(-1, 3)])


def read_background(rgb: np.ndarray) -> tuple[str, bool]:
    """(background, night) that explains the image's 2-px frame best: the least mean distance
    from a frame pixel to its nearest texture colour of that background (times the night gain
    by night) — nearest colours, not a mean, because a texture (bricks and mortar) has several."""
    frame = _frame(rgb)
    best, best_d = ("plain", False), np.inf
    for night in (False, True):
        for b in BACKGROUNDS:
            ref = background_samples(b) * (GAIN if night else 1)
            d = float(_dist(frame, ref).min(1).mean())
            if d < best_d:
                best, best_d = (b, night), d
    return best


def classify_pixels(day_rgb: np.ndarray, background: str) -> np.ndarray:
    """Colour index per pixel (into ``COLOUR_NAMES``), −1 for background (module docstring, 2)."""
    cols, idx = colour_samples()
    bg = background_samples(background)
    x = day_rgb.reshape(-1, 3)
    d_obj = _dist(x, cols)  # (P, N)
    d_bg = _dist(x, bg).min(1)
    j = d_obj.argmin(1)
    d = d_obj[np.arange(len(j)), j]
    classes = np.where((d < d_bg) & (d < MAX_DIST), idx[j], -1).reshape(day_rgb.shape[:2])
    labels = label_components(classes)
    for k in range(len(COLOUR_NAMES)):  # keep the components that survive a 3×3 opening, whole
        core = open3(classes == k)
        keep = np.isin(labels, np.unique(labels[core]))
        classes[(classes == k) & ~keep] = -1
    return classes


def _template(shape: str, cx: float, cy: float, r: float, size: int) -> np.ndarray:
    """``shape`` with radius ``r`` placed so that its mask's centroid is at (cx, cy) (64-px units)."""
    scale = size / SIZE
    m = coverage(Obj(shape, "red", cx, cy, r), size, scale) > 0.5
    if not m.any():
        return m
    ys, xs = np.nonzero(m)
    dx, dy = cx - (xs.mean() + 0.5) / scale, cy - (ys.mean() + 0.5) / scale
    return coverage(Obj(shape, "red", cx + dx, cy + dy, r), size, scale) > 0.5


def classify_shape(mask: np.ndarray) -> tuple[str, str, float]:
    """(shape, size, IoU) of the best template for a blob (module docstring, step 3)."""
    size = mask.shape[0]
    scale = size / SIZE
    ys, xs = np.nonzero(mask)
    cx, cy = (xs.mean() + 0.5) / scale, (ys.mean() + 0.5) / scale
    area = len(ys) / scale**2
    best = ("circle", "small", -1.0)
    for shape in SHAPES:
        r = float(np.sqrt(area / _template_area(shape)))
        t = _template(shape, cx, cy, r, size)
        iou = float((t & mask).sum() / max(1, (t | mask).sum()))
        if iou > best[2]:
            best = (shape, "small" if r < SMALL_MAX else "big", iou)
    return best


def read(image, min_area: int = MIN_AREA) -> Reading:
    """The objects (left to right), background and time of an image (module docstring)."""
    rgb = to_rgb_array(image)
    background, night = read_background(rgb)
    day = rgb / GAIN if night else rgb
    classes = classify_pixels(day, background)
    labels = label_components(classes)
    scale2 = (rgb.shape[0] / SIZE) ** 2
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    found: list[Detection] = []
    for lab, n in sorted(zip(ids, counts), key=lambda t: -t[1]):
        if n < min_area * scale2:
            continue
        mask = fill_holes(labels == lab)
        if any(d.mask[mask].mean() > 0.5 for d in found):
            continue
        shape, size, iou = classify_shape(mask)
        ys, xs = np.nonzero(mask)
        s = rgb.shape[0] / SIZE
        found.append(Detection(shape, COLOUR_NAMES[classes.flat[lab]], size, float((xs.mean() + 0.5) / s),
                               float((ys.mean() + 0.5) / s), len(ys), mask, iou))
    return Reading(sorted(found, key=lambda d: d.cx), background, night)


# --------------------------------------------------------------------------- captions


def parse_caption(caption: str) -> tuple[list[tuple[str | None, str, str]], str, bool]:
    """``"a small red star and a big blue circle on grass at night"`` →
    ``([("small", "red", "star"), ("big", "blue", "circle")], "grass", True)``; classic
    captions give size None."""
    words = re.findall(r"[a-z]+", caption.lower())
    objects = []
    for k, w in enumerate(words):
        if w in SHAPES and k > 0 and words[k - 1] in COLOURS:
            size = words[k - 2] if k > 1 and words[k - 2] in SIZES else None
            objects.append((size, words[k - 1], w))
    if not objects:
        raise ValueError(f"no '<colour> <shape>' in caption {caption!r}")
    background = next((words[k + 1] for k, w in enumerate(words[:-1]) if w == "on" and words[k + 1] in BACKGROUNDS), "plain")
    night = any(a == "at" and b == "night" for a, b in zip(words, words[1:]))
    return objects, background, night


def _fits(d: Detection, size: str | None, colour: str, shape: str) -> bool:
    return d.colour == colour and d.shape == shape and (size is None or d.size == size)


def check(image, caption: str) -> CheckResult:
    """Does ``image`` show exactly the objects a caption names (size, colour, shape, left to
    right), on its background, at its time of day?"""
    return judge(read(image), caption)


def judge(reading: Reading, caption: str) -> CheckResult:
    expected, background, night = parse_caption(caption)
    found = reading.objects
    # greedy left-to-right matching: each named object takes the next fitting detection
    present, j, order_ok = [], 0, True
    for size, colour, shape in expected:
        k = next((k for k in range(j, len(found)) if _fits(found[k], size, colour, shape)), None)
        if k is None:
            present.append(any(_fits(d, size, colour, shape) for d in found))
            order_ok = False
        else:
            present.append(True)
            j = k + 1
    order_ok = order_ok and all(present)
    bg_ok, night_ok = reading.background == background, reading.night == night
    all_ok = order_ok and bg_ok and night_ok and len(found) == len(expected)
    return CheckResult(expected, reading, present, order_ok, bg_ok, night_ok, all_ok)


# --------------------------------------------------------------------------- edits


def find_object(found: list[Detection], obj: Obj, true_mask: np.ndarray, exclude=frozenset()) -> int | None:
    """Index of the detection with ``obj``'s shape, colour (and size, if named) nearest to the
    centroid of its true mask, within ``max(3, r/2)`` px (64-px canvas); otherwise None."""
    s = true_mask.shape[0] / SIZE
    ys, xs = np.nonzero(true_mask)
    cx, cy = (xs.mean() + 0.5) / s, (ys.mean() + 0.5) / s
    best, best_d = None, max(3.0, obj.r / 2)
    for j, d in enumerate(found):
        dist = float(np.hypot(d.cx - cx, d.cy - cy))
        if j not in exclude and _fits(d, obj.size, obj.colour, obj.shape) and dist <= best_d:
            best, best_d = j, dist
    return best


def check_edit(output, edit: Edit, min_area: int = MIN_AREA) -> tuple[bool, bool]:
    """``(success, untouched_kept)`` for an edit of the rich world.

    untouched_kept: every object the edit does not touch (background, night: every object) is
    found unchanged at its place (distinct detections), and — unless the edit changes them —
    the background and the time of day read as the target's. success, by kind:
    colour/shape/size — the edited object is found in its new form at its place; remove — no
    detection covers more than a third of the removed object's area (nor has its centroid in
    it) and the background reads as the target's; background — the background reads as the
    target's; night — the image reads as night, on the target's background."""
    r = read(output, min_area)
    src, tgt, i, kind = edit.scene, edit.target_scene, edit.index, edit.kind
    bg_ok, night_ok = r.background == tgt.background, r.night == tgt.night
    if kind in ("remove", "background", "night"):  # every object the target shows is one the edit leaves
        others = [(o, m) for o, m in zip(tgt.objects, tgt.masks)]
    else:
        others = [(o, m) for k, (o, m) in enumerate(zip(tgt.objects, tgt.masks)) if k != i]
    used: set[int] = set()
    kept = True
    for o, m in others:
        j = find_object(r.objects, o, m, used)
        kept &= j is not None
        if j is not None:
            used.add(j)
    if kind not in ("background", "night"):
        kept = kept and bg_ok and night_ok
    if kind in ("colour", "shape", "size"):
        success = find_object(r.objects, tgt.objects[i], tgt.masks[i], used) is not None
    elif kind == "remove":
        area = src.masks[i]
        s = area.shape[0] / SIZE
        covered = any((d.mask & area).sum() > area.sum() / 3
                      or area[min(area.shape[0] - 1, int(d.cy * s)), min(area.shape[1] - 1, int(d.cx * s))]
                      for k, d in enumerate(r.objects) if k not in used)
        success = not covered and bg_ok
    elif kind == "background":
        success = bg_ok and night_ok
    else:  # night
        success = r.night and r.background == tgt.background
    return bool(success), bool(kept)
