"""The shapes world: procedurally drawn scenes whose every object mask is known.

A scene is a 64×64 RGB image on a light background with two non-overlapping objects, each a
shape from ``SHAPES`` and a colour from ``COLOURS``, named left to right in the caption:
``"a red circle and a blue square"``. Because we draw the world ourselves, the true mask of
every object — and so of every edit — is exact, which lets us *measure* DiffEdit.

Objects are drawn at 4× resolution and box-filtered down, so edges are anti-aliased like
a real photograph's, and the pixel masks are the objects' coverage > 1/2.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64
SUPERSAMPLE = 4
SHAPES = ("circle", "square", "triangle")
COLOURS = {
    "red": (215, 40, 40),
    "green": (40, 165, 60),
    "blue": (40, 80, 215),
    "yellow": (235, 200, 30),
}
BACKGROUND = (238, 236, 230)
WORDS = ("a", "and", *SHAPES, *COLOURS)


@dataclass(frozen=True)
class Obj:
    """One object: its shape, colour name, centre (cx, cy) and half-size r, in pixels."""

    shape: str
    colour: str
    cx: float
    cy: float
    r: float

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass
class Scene:
    """A drawn scene: ``image`` (H, W, 3) uint8, ``caption``, and per object a bool mask."""

    objects: tuple[Obj, ...]
    image: np.ndarray
    masks: tuple[np.ndarray, ...]

    @property
    def caption(self) -> str:
        return caption(self.objects)


@dataclass
class Edit:
    """An edit of one object: the scene before and after, both captions, the true edited region."""

    scene: Scene
    target_scene: Scene
    source: str
    target: str
    mask: np.ndarray
    index: int
    kind: str  # "shape" or "colour"


def caption(objects: tuple[Obj, ...]) -> str:
    """Objects named left to right: ``"a red circle and a blue square"``."""
    ordered = sorted(objects, key=lambda o: o.cx)
    return " and ".join(f"a {o.name}" for o in ordered)


def _polygon(o: Obj, s: int) -> list[tuple[float, float]] | None:
    cx, cy, r = o.cx * s, o.cy * s, o.r * s
    if o.shape == "square":
        r = r * 0.88  # a square of the same "size" as a circle looks bigger; even them out
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if o.shape == "triangle":
        return [(cx, cy - r), (cx + r * 1.05, cy + r * 0.8), (cx - r * 1.05, cy + r * 0.8)]
    return None


def coverage(o: Obj, size: int = SIZE) -> np.ndarray:
    """Fraction of each pixel covered by the object, (size, size) float32 in [0, 1]."""
    s = SUPERSAMPLE
    canvas = Image.new("L", (size * s, size * s), 0)
    draw = ImageDraw.Draw(canvas)
    poly = _polygon(o, s)
    if poly is None:
        cx, cy, r = o.cx * s, o.cy * s, o.r * s
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    else:
        draw.polygon(poly, fill=255)
    big = np.asarray(canvas, dtype=np.float32) / 255.0
    return big.reshape(size, s, size, s).mean(axis=(1, 3))


def render(objects: tuple[Obj, ...], size: int = SIZE) -> Scene:
    """Draw the objects over the background: x = Σ_k a_k·colour_k + (1 − Σ_k a_k)·background."""
    image = np.empty((size, size, 3), np.float32)
    image[:] = BACKGROUND
    masks = []
    for o in objects:
        a = coverage(o, size)[..., None]
        image = a * np.array(COLOURS[o.colour], np.float32) + (1 - a) * image
        masks.append(a[..., 0] > 0.5)
    return Scene(tuple(objects), np.round(image).clip(0, 255).astype(np.uint8), tuple(masks))


def _overlaps(a: Obj, b: Obj, gap: float) -> bool:
    return abs(a.cx - b.cx) < a.r + b.r + gap and abs(a.cy - b.cy) < a.r + b.r + gap


def random_objects(rng: np.random.Generator, size: int = SIZE) -> tuple[Obj, Obj]:
    """Two objects with random shape, colour, size and position; non-overlapping, and far
    enough apart horizontally that "left" and "right" are unambiguous."""
    while True:
        objs = []
        for _ in range(2):
            r = rng.uniform(7.0, 12.0)
            objs.append(
                Obj(
                    shape=str(rng.choice(SHAPES)),
                    colour=str(rng.choice(list(COLOURS))),
                    cx=rng.uniform(r + 2, size - r - 2),
                    cy=rng.uniform(r + 2, size - r - 2),
                    r=r,
                )
            )
        a, b = objs
        if not _overlaps(a, b, gap=3.0) and abs(a.cx - b.cx) >= 10.0:
            return tuple(sorted(objs, key=lambda o: o.cx))


def make_scene(seed: int | np.random.Generator) -> Scene:
    """A random scene; the same seed draws the same scene."""
    rng = np.random.default_rng(seed)
    return render(random_objects(rng))


def make_edit(seed: int | np.random.Generator, kind: str | None = None) -> Edit:
    """A random edit: change the shape or the colour of one object of a random scene.

    The true edited region is the union of the object before and after the edit (for a
    colour change, the object itself).
    """
    rng = np.random.default_rng(seed)
    scene = render(random_objects(rng))
    kind = kind or str(rng.choice(["shape", "colour"]))
    if kind not in ("shape", "colour"):
        raise ValueError(f"kind must be 'shape' or 'colour', got {kind!r}")
    i = int(rng.integers(2))
    old = scene.objects[i]
    if kind == "shape":
        new = replace(old, shape=str(rng.choice([s for s in SHAPES if s != old.shape])))
    else:
        new = replace(old, colour=str(rng.choice([c for c in COLOURS if c != old.colour])))
    objects = tuple(new if k == i else o for k, o in enumerate(scene.objects))
    target_scene = render(objects)
    mask = scene.masks[i] | target_scene.masks[i]
    return Edit(scene, target_scene, scene.caption, target_scene.caption, mask, i, kind)
