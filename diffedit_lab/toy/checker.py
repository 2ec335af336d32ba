"""Read a shapes-world image back into objects — from the pixels, with no learned model.

Used to *score* generated and edited images: does the picture show the objects its caption
names, with the right shapes, colours and left-to-right order?

How an image is read (:func:`detect`):

1. **Background.** The median of the image border (objects keep ≥ 2 px from the edge, so
   the border is mostly background); estimating it from the image makes the reader robust
   to brightness and colour shifts of the whole picture.
2. **Colour unmixing.** The world draws every pixel as ``x = a·C_k + (1 − a)·B`` (``render``).
   For each palette colour ``C_k`` we project the pixel onto the segment from ``B`` to
   ``C_k``: ``a_k = ⟨x − B, C_k − B⟩ / ‖C_k − B‖²`` and measure the residual
   ``e_k = ‖x − B − a_k (C_k − B)‖ / ‖C_k − B‖``. A pixel belongs to colour ``k`` when
   ``k`` has the smallest residual, ``a_k > 1/2`` (the same "coverage > 1/2" rule as the true
   masks) and ``e_k`` is small; otherwise it is background. Anti-aliased edges therefore
   fall on the right side, and colours off the palette (purple, grey, …) are not taken.
   The directions ``C_k − B`` are the world's own, so a gain on the whole picture only
   scales ``a_k``. Each colour's pixels are then opened by a 3×3 square (thin lines, lone
   pixels and ragged half-covered edge rows go).
3. **Objects.** 4-connected components of each colour (numpy min-label propagation with
   pointer jumping — no scipy), holes filled, blobs under ``min_area`` pixels dropped.
4. **Shape.** Two moments that blur and ragged edges hardly move (:func:`shape_features`):
   the vertical skewness (an upright triangle is bottom-heavy, ≈ −0.57; circle and square
   0) and the "squareness" ``E[u²v²]/(E[u²]E[v²])`` (square 1, disc 2/3).

:func:`check` matches a caption's objects to the detections; :func:`check_edit` asks
whether an edit produced its target object and kept the other one.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Sequence, Union

import numpy as np
from PIL import Image

from .world import BACKGROUND, Edit, Obj
from .world import CLASSIC_COLOURS as COLOURS  # this reader knows the classic world
from .world import CLASSIC_SHAPES as SHAPES

ImageLike = Union[Image.Image, np.ndarray]
ObjectsLike = Union[str, Sequence[Union[Obj, tuple[str, str]]]]

PALETTE = np.array([COLOURS[k] for k in COLOURS], np.float32)  # (K, 3), in COLOURS order
DIRECTIONS = PALETTE - np.array(BACKGROUND, np.float32)  # (K, 3): background → colour k
COLOUR_NAMES = tuple(COLOURS)
MIN_AREA = 15  # px: smaller blobs are speckles
MAX_RESIDUAL = 0.35  # e_k above this (relative to ‖C_k − B‖): not this colour
TRIANGLE_SKEW = -0.2
SQUARE_MIN = 0.76
MIN_MIX = 0.15  # colours with less estimated coverage are not candidates for a pixel


@dataclass
class Detection:
    """One object read from an image: shape and colour names, centroid (cx, cy) in pixels,
    area in pixels, its (H, W) bool mask, and the shape features (:func:`shape_features`)."""

    shape: str
    colour: str
    cx: float
    cy: float
    area: int
    mask: np.ndarray = field(repr=False)
    skew: float = 0.0
    squareness: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass
class CheckResult:
    """The caption's objects (colour, shape) left to right, what was detected, and per object:
    ``present`` (an object of that shape *and* colour was found), ``colour_ok``/``shape_ok``
    (the detection matched to it has the right colour / shape). ``order_ok``: every object
    is present and their detections run left to right in caption order. ``all_ok``: exactly
    the named objects — no more, no fewer — with right shapes, colours and order."""

    expected: list[tuple[str, str]]
    detections: list[Detection]
    present: list[bool]
    colour_ok: list[bool]
    shape_ok: list[bool]
    order_ok: bool
    all_ok: bool

    def __bool__(self) -> bool:
        return self.all_ok


# --------------------------------------------------------------------------- image → pixels


def to_rgb_array(image: ImageLike) -> np.ndarray:
    """(H, W, 3) float32 in [0, 255] from a PIL image, a uint8 array or a float array in [0, 1]."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), np.float32)
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) image, got shape {arr.shape}")
    arr = arr[..., :3]
    if np.issubdtype(arr.dtype, np.floating) and arr.max(initial=0.0) <= 1.0:
        return arr.astype(np.float32) * 255.0
    return arr.astype(np.float32)


def estimate_background(rgb: np.ndarray) -> np.ndarray:
    """Median colour of the 1-pixel border of the image, (3,)."""
    border = np.concatenate([rgb[0], rgb[-1], rgb[1:-1, 0], rgb[1:-1, -1]])
    return np.median(border, axis=0)


def classify_pixels(rgb: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
    """Colour index per pixel, (H, W) int: ``k`` into ``COLOUR_NAMES``, or −1 for background.

    Unmixing against each palette colour (module docstring, step 2). The colour is chosen
    *before* the coverage test — the best-explaining colour among those with ``a_k > MIN_MIX``
    — so that an edge pixel 45 % red is background, not a 55 % yellow."""
    bg = estimate_background(rgb) if background is None else np.asarray(background, np.float32)
    d = DIRECTIONS  # a gain g on the whole image scales x − B by g, keeping its direction
    norm2 = (d**2).sum(-1)  # (K,)
    x = rgb - bg  # (H, W, 3)
    a = (x @ d.T) / norm2  # (H, W, K): coverage estimate per colour
    e = np.sqrt(np.maximum((x**2).sum(-1, keepdims=True) / norm2 - a**2, 0))  # Pythagoras
    k = np.where(a > MIN_MIX, e, np.inf).argmin(-1)
    a_k = np.take_along_axis(a, k[..., None], -1)[..., 0]
    e_k = np.take_along_axis(e, k[..., None], -1)[..., 0]
    classes = np.where((a_k > 0.5) & (e_k < MAX_RESIDUAL), k, -1)
    for j in range(len(PALETTE)):  # drop thin lines, ragged edge rows and lone pixels
        classes[(classes == j) & ~open3(classes == j)] = -1
    return classes


def _pool3(mask: np.ndarray, op) -> np.ndarray:
    """``op`` (np.logical_or / np.logical_and) over each pixel's 3×3 neighbourhood; outside
    the image counts as the op's neutral element."""
    p = np.full((mask.shape[0] + 2, mask.shape[1] + 2), op is np.logical_and)
    p[1:-1, 1:-1] = mask
    rows = op(op(p[:-2], p[1:-1]), p[2:])
    return op(op(rows[:, :-2], rows[:, 1:-1]), rows[:, 2:])


def open3(mask: np.ndarray) -> np.ndarray:
    """Morphological opening by a 3×3 square: the pixels of ``mask`` lying in a 3×3 block
    entirely inside it."""
    return _pool3(_pool3(mask, np.logical_and), np.logical_or)


# --------------------------------------------------------------------------- components


def label_components(classes: np.ndarray) -> np.ndarray:
    """4-connected components of equal, non-negative class values, (H, W) int.

    Each pixel's label is the smallest flat index in its component (−1 where ``classes < 0``):
    labels start as the pixel's own index and repeatedly take the minimum over same-class
    neighbours, then jump to their label's label (``L ← L[L]``), until nothing changes."""
    h, w = classes.shape
    fg = classes >= 0
    big = h * w
    labels = np.where(fg, np.arange(big).reshape(h, w), big)
    same_down = fg[1:] & (classes[1:] == classes[:-1])  # pixel (i+1, j) joins (i, j)
    same_right = fg[:, 1:] & (classes[:, 1:] == classes[:, :-1])
    while True:
        new = labels.copy()
        np.minimum(new[1:], np.where(same_down, labels[:-1], big), out=new[1:])
        np.minimum(new[:-1], np.where(same_down, labels[1:], big), out=new[:-1])
        np.minimum(new[:, 1:], np.where(same_right, labels[:, :-1], big), out=new[:, 1:])
        np.minimum(new[:, :-1], np.where(same_right, labels[:, 1:], big), out=new[:, :-1])
        flat = np.append(new.ravel(), big)
        new = np.where(fg, flat[flat[new]], big)  # pointer jumping
        if np.array_equal(new, labels):
            break
        labels = new
    return np.where(fg, labels, -1)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every background region enclosed by it filled (works in its bounding box,
    grown by one pixel so the outside is connected)."""
    ys, xs = np.nonzero(mask)
    y0, x0 = ys.min(), xs.min()
    box = np.zeros((ys.max() - y0 + 3, xs.max() - x0 + 3), bool)
    box[ys - y0 + 1, xs - x0 + 1] = True
    labels = label_components(np.where(box, -1, 0))
    out = mask.copy()
    inner = (labels != labels[0, 0])[1:-1, 1:-1]
    out[y0 : y0 + inner.shape[0], x0 : x0 + inner.shape[1]] |= inner
    return out


# --------------------------------------------------------------------------- shapes


def shape_features(mask: np.ndarray) -> tuple[float, float]:
    """``(skew, squareness)`` of a blob, from the moments of its pixels' coordinates
    ``u = x − x̄``, ``v = y − ȳ`` (y grows downwards).

    ``skew = E[v³] / E[v²]^{3/2}``: an upright triangle has its mass at the bottom (row width
    ∝ depth, density 2t on [0, 1]: skew = −2√2/5 ≈ −0.57); circles and squares are
    symmetric (0).

    ``squareness = E[u²v²] / (E[u²]·E[v²])``: 1 for a square (u and v independent), 2/3 for
    a disc (``E[u²v²] = R⁴/24``, ``E[u²] = E[v²] = R²/4``).

    Both use every pixel of the blob, so a ragged edge row moves them little — unlike the
    fill of the bounding box (square ≈ 1, circle ≈ π/4), which hangs on the outermost rows."""
    ys, xs = np.nonzero(mask)
    u, v = xs - xs.mean(), ys - ys.mean()
    vu, vv = (u * u).mean(), (v * v).mean()
    if vu == 0 or vv == 0:  # a line: neither
        return 0.0, 0.0
    return float((v**3).mean() / vv**1.5), float((u * u * v * v).mean() / (vu * vv))


def classify_shape(skew: float, squareness: float) -> str:
    """Triangle if ``skew < TRIANGLE_SKEW``, else square if ``squareness > SQUARE_MIN``,
    else circle.

    Thresholds sit between the classes as measured on 300 single-object renders each clean,
    blurred (σ = 1.5 px), noisy and JPEG-compressed: triangle skew ≤ −0.29, others
    |skew| ≤ 0.07; square squareness ≥ 0.80, circle ≤ 0.72."""
    if skew < TRIANGLE_SKEW:
        return "triangle"
    return "square" if squareness > SQUARE_MIN else "circle"


# --------------------------------------------------------------------------- detection


def detect(image: ImageLike, min_area: int = MIN_AREA) -> list[Detection]:
    """The objects of an image, left to right (module docstring for the method)."""
    classes = classify_pixels(to_rgb_array(image))
    labels = label_components(classes)
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    found: list[Detection] = []
    for lab, n in sorted(zip(ids, counts), key=lambda t: -t[1]):
        if n < min_area:
            continue
        mask = fill_holes(labels == lab)
        if any(d.mask[mask].mean() > 0.5 for d in found):
            continue  # a blob inside a bigger object (a speckle of another colour)
        skew, squareness = shape_features(mask)
        ys, xs = np.nonzero(mask)
        colour = COLOUR_NAMES[classes.flat[lab]]
        shape = classify_shape(skew, squareness)
        found.append(Detection(shape, colour, float(xs.mean()), float(ys.mean()), len(ys), mask, skew, squareness))
    return sorted(found, key=lambda d: d.cx)


# --------------------------------------------------------------------------- captions


def parse_caption(caption: str) -> list[tuple[str, str]]:
    """``"a red circle and a blue square"`` → ``[("red", "circle"), ("blue", "square")]``."""
    words = re.findall(r"[a-z]+", caption.lower())
    pairs = []
    for w1, w2 in zip(words, words[1:]):
        if w1 in COLOURS and w2 in SHAPES:
            pairs.append((w1, w2))
    if not pairs:
        raise ValueError(f"no '<colour> <shape>' in caption {caption!r}")
    return pairs


def as_objects(spec: ObjectsLike) -> list[tuple[str, str]]:
    """(colour, shape) pairs from a caption, ``Obj``s, or pairs in either order."""
    if isinstance(spec, str):
        return parse_caption(spec)
    out = []
    for item in spec:
        if isinstance(item, Obj):
            out.append((item.colour, item.shape))
            continue
        a, b = item
        colour, shape = (a, b) if a in COLOURS else (b, a)
        if colour not in COLOURS or shape not in SHAPES:
            raise ValueError(f"not a (colour, shape) pair: {item!r}")
        out.append((colour, shape))
    return out


def _match(expected: list[tuple[str, str]], found: list[Detection]) -> list[int | None]:
    """Detection index for each expected object (or None): the assignment with the most
    full matches, then most colour/shape matches, then left-to-right order kept."""
    n, m = len(expected), len(found)
    slots = list(range(m)) + [None] * n
    best, best_key = [None] * n, (-1, -1, -1)
    for perm in set(itertools.permutations(slots, n)):
        full = part = 0
        for (colour, shape), j in zip(expected, perm):
            if j is not None:
                c, s = found[j].colour == colour, found[j].shape == shape
                full += c and s
                part += c + s
        used = [j for j in perm if j is not None]
        key = (full, part, int(used == sorted(used)))
        if key > best_key:
            best, best_key = list(perm), key
    return best


def check(image: ImageLike, objects: ObjectsLike, min_area: int = MIN_AREA) -> CheckResult:
    """Does ``image`` show exactly the objects named (a caption, or (colour, shape) pairs /
    ``Obj``s left to right), with right shapes, colours and left-to-right order?"""
    return judge(detect(image, min_area), objects)


def judge(found: list[Detection], objects: ObjectsLike) -> CheckResult:
    """:func:`check` on detections already made (to test many captions against one image)."""
    expected = as_objects(objects)
    match = _match(expected, found[:8])
    hits = [None if j is None else found[j] for j in match]
    colour_ok = [d is not None and d.colour == c for d, (c, _) in zip(hits, expected)]
    shape_ok = [d is not None and d.shape == s for d, (_, s) in zip(hits, expected)]
    present = [c and s for c, s in zip(colour_ok, shape_ok)]
    order_ok = all(present) and match == sorted(match)
    all_ok = order_ok and len(found) == len(expected)
    return CheckResult(expected, found, present, colour_ok, shape_ok, order_ok, all_ok)


# --------------------------------------------------------------------------- edits


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


def find_object(found: list[Detection], obj: Obj, true_mask: np.ndarray, exclude: set[int] = frozenset()) -> int | None:
    """Index of the detection with ``obj``'s shape and colour nearest to the centroid of its
    true mask, if within ``max(3, r/2)`` pixels; otherwise None."""
    cx, cy = _centroid(true_mask)
    tol = max(3.0, obj.r / 2)
    best, best_d = None, tol
    for j, d in enumerate(found):
        dist = float(np.hypot(d.cx - cx, d.cy - cy))
        if j not in exclude and d.shape == obj.shape and d.colour == obj.colour and dist <= best_d:
            best, best_d = j, dist
    return best


def check_edit(output: ImageLike, edit: Edit, min_area: int | None = None) -> tuple[bool, bool]:
    """``(target_ok, untouched_ok)`` for an edited image: the edited object is there in its
    new shape/colour at its place, and the other object is still there, unchanged, at its
    place (each near the centroid of its true mask; two different detections).

    An edit of the rich world (``edit.scene.world == "rich"``, every kind) is judged by
    :func:`diffedit_lab.toy.rich_checker.check_edit`."""
    if edit.scene.world == "rich":
        from . import rich_checker

        return rich_checker.check_edit(output, edit, rich_checker.MIN_AREA if min_area is None else min_area)
    found = detect(output, MIN_AREA if min_area is None else min_area)
    i, k = edit.index, 1 - edit.index
    kept = find_object(found, edit.scene.objects[k], edit.scene.masks[k])
    exclude = set() if kept is None else {kept}
    target = find_object(found, edit.target_scene.objects[i], edit.target_scene.masks[i], exclude)
    return target is not None, kept is not None
