"""The shapes world: procedurally drawn scenes whose every object mask is known.

Two worlds share this module (``world=`` of :func:`make_scene` / :func:`make_edit`):

* ``"classic"`` (the default, what the shipped model was trained and measured on): a 64×64
  RGB image on a light background with two non-overlapping objects, each a shape from
  ``CLASSIC_SHAPES`` and a colour from ``CLASSIC_COLOURS``, named left to right:
  ``"a red circle and a blue square"``. Edits change one object's shape or colour.
* ``"rich"`` (a superset, for the next model): 1–3 objects from all of ``SHAPES`` ×
  ``COLOURS`` × ``SIZES``, on a background from ``BACKGROUNDS`` (plain, or a procedural
  texture), optionally ``"at night"``, e.g. ``"a small red star and a big blue circle on
  grass"``. Every colour is drawn with a jitter of hue and brightness, every background with
  a varying tone, sizes from a range — so a user's own drawing of "a red circle" is one of
  the world's drawings. Edits: ``"colour"``, ``"shape"``, ``"size"``, ``"background"``,
  ``"remove"`` and the whole-image ``"night"`` (where no mask can help).

Because we draw the world ourselves, the true mask of every object — and so of every edit —
is exact, which lets us *measure* DiffEdit. Objects are drawn at 4× resolution and
box-filtered down, so edges are anti-aliased like a real photograph's, and the pixel masks are
the objects' coverage > 1/2; a scene is composited as
``x = Σ_k a_k·colour_k + (1 − Σ_k a_k)·background`` (then, at night, ``x ← x·NIGHT_GAIN``).
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64
SUPERSAMPLE = 4
SHAPES = ("circle", "square", "triangle", "star", "diamond", "cross")
COLOURS = {
    "red": (215, 40, 40),
    "green": (40, 165, 60),
    "blue": (40, 80, 215),
    "yellow": (235, 200, 30),
    "purple": (140, 55, 185),
    "orange": (245, 125, 25),
}
SIZES = ("small", "big")
BACKGROUNDS = ("plain", "grass", "sand", "water", "bricks")  # "plain" goes unnamed in captions
BACKGROUND = (238, 236, 230)
CLASSIC_SHAPES = SHAPES[:3]
CLASSIC_COLOURS = {k: COLOURS[k] for k in ("red", "green", "blue", "yellow")}
WORLDS = ("classic", "rich")
KINDS = ("colour", "shape", "size", "background", "remove", "night")
WHOLE_IMAGE_KINDS = ("night",)
"""Edits of the whole image, where a mask cannot help: tuned and judged apart from the masked kinds."""
#: the words of the classic world (the shipped model's vocabulary)
WORDS = ("a", "and", *CLASSIC_SHAPES, *CLASSIC_COLOURS)
#: every word a caption of either world uses (the next model's vocabulary)
VOCABULARY = ("a", "and", "on", "at", "night", *SIZES, *SHAPES, *COLOURS, *BACKGROUNDS[1:])
#: radius ranges (px on the 64-px canvas) of the named sizes; the classic world draws 7–12
SIZE_RANGE = {"small": (6.0, 8.0), "big": (10.0, 13.0)}
#: the night transform, a per-channel gain (dark, blue-tinted)
NIGHT_GAIN = (0.4, 0.42, 0.6)


@dataclass(frozen=True)
class Obj:
    """One object: its shape, colour name, centre (cx, cy) and half-size r, in pixels."""

    shape: str
    colour: str
    cx: float
    cy: float
    r: float
    size: str | None = None  # "small"/"big" in the rich world (named in its caption)
    rgb: tuple[float, float, float] | None = None  # the drawn colour (jittered); None: COLOURS

    @property
    def name(self) -> str:
        if self.size:
            return f"{self.size} {self.colour} {self.shape}"
        return f"{self.colour} {self.shape}"

    @property
    def drawn_rgb(self) -> tuple[float, float, float]:
        return self.rgb if self.rgb is not None else COLOURS[self.colour]


@dataclass
class Scene:
    """A drawn scene: ``image`` (H, W, 3) uint8, ``caption``, and per object a bool mask."""

    objects: tuple[Obj, ...]
    image: np.ndarray
    masks: tuple[np.ndarray, ...]
    background: str = "plain"
    night: bool = False
    backdrop: np.ndarray | None = field(default=None, repr=False)  # the background alone (day)
    world: str = "classic"

    @property
    def caption(self) -> str:
        return caption(self.objects, self.background, self.night)

    @property
    def background_mask(self) -> np.ndarray:
        """Pixels that are background (no object's coverage > 1/2)."""
        fg = np.zeros(self.image.shape[:2], bool)
        for m in self.masks:
            fg |= m
        return ~fg


@dataclass
class Edit:
    """An edit of one object: the scene before and after, both captions, the true edited region."""

    scene: Scene
    target_scene: Scene
    source: str
    target: str
    mask: np.ndarray
    index: int
    kind: str  # one of KINDS ("shape" or "colour" in the classic world)


def caption(objects: tuple[Obj, ...], background: str = "plain", night: bool = False) -> str:
    """Objects named left to right, then the background (unless plain) and the time:
    ``"a red circle and a blue square"``, ``"a small red star on grass at night"``."""
    ordered = sorted(objects, key=lambda o: o.cx)
    text = " and ".join(f"a {o.name}" for o in ordered)
    if background != "plain":
        text += f" on {background}"
    return text + (" at night" if night else "")


def _split_caption(text: str) -> tuple[list[str], str]:
    """``"a red circle and a blue star on grass at night"`` → ``(["a red circle", "a blue star"],
    " on grass at night")``: the named objects, and the background and time as written."""
    objects, sep, rest = text.partition(" on ")
    if not sep:
        objects, sep, rest = text.partition(" at night")
    return objects.split(" and "), sep + rest


def reverse_caption(text: str) -> str:
    """A caption with its objects named right to left — the caption of the mirrored scene:
    ``"a red circle and a big blue star on grass"`` → ``"a big blue star and a red circle on grass"``."""
    objects, tail = _split_caption(text)
    return " and ".join(reversed(objects)) + tail


def short_caption(text: str) -> str:
    """A caption one object short — the last named (rightmost) object left out, background and
    time kept: ``"a red circle and a big blue star on grass"`` → ``"a red circle on grass"``;
    a caption of one object comes back unchanged (there is nothing to leave out)."""
    objects, tail = _split_caption(text)
    return " and ".join(objects[:-1] or objects) + tail


def _polygon(o: Obj, s: int) -> list[tuple[float, float]] | None:
    cx, cy, r = o.cx * s, o.cy * s, o.r * s
    if o.shape == "square":
        r = r * 0.88  # a square of the same "size" as a circle looks bigger; even them out
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if o.shape == "triangle":
        return [(cx, cy - r), (cx + r * 1.05, cy + r * 0.8), (cx - r * 1.05, cy + r * 0.8)]
    if o.shape == "diamond":
        r = r * 1.1
        return [(cx, cy - r), (cx + r * 0.85, cy), (cx, cy + r), (cx - r * 0.85, cy)]
    if o.shape == "star":  # five points, inner radius 0.45 r
        r = r * 1.15
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else 0.45 * r
            ang = -np.pi / 2 + k * np.pi / 5
            pts.append((cx + rad * np.cos(ang), cy + 0.08 * r + rad * np.sin(ang)))
        return pts
    if o.shape == "cross":  # a plus sign, arms 0.38 r half-wide
        w = 0.38 * r
        return [(cx - w, cy - r), (cx + w, cy - r), (cx + w, cy - w), (cx + r, cy - w), (cx + r, cy + w),
                (cx + w, cy + w), (cx + w, cy + r), (cx - w, cy + r), (cx - w, cy + w), (cx - r, cy + w),
                (cx - r, cy - w), (cx - w, cy - w)]
    return None


def coverage(o: Obj, size: int = SIZE, scale: float = 1.0) -> np.ndarray:
    """Fraction of each pixel covered by the object, (size, size) float32 in [0, 1];
    ``scale``: pixels per unit of the object's coordinates (``size / 64`` for a rich scene
    drawn at ``size`` px)."""
    s = SUPERSAMPLE
    canvas = Image.new("L", (size * s, size * s), 0)
    draw = ImageDraw.Draw(canvas)
    poly = _polygon(o, s * scale)
    if poly is None:
        cx, cy, r = o.cx * s * scale, o.cy * s * scale, o.r * s * scale
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
        image = a * np.array(o.drawn_rgb, np.float32) + (1 - a) * image
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
                    shape=str(rng.choice(CLASSIC_SHAPES)),
                    colour=str(rng.choice(list(CLASSIC_COLOURS))),
                    cx=rng.uniform(r + 2, size - r - 2),
                    cy=rng.uniform(r + 2, size - r - 2),
                    r=r,
                )
            )
        a, b = objs
        if not _overlaps(a, b, gap=3.0) and abs(a.cx - b.cx) >= 10.0:
            return tuple(sorted(objs, key=lambda o: o.cx))


def make_scene(seed: int | np.random.Generator, world: str = "classic", size: int = SIZE) -> Scene:
    """A random scene of ``world`` (``"classic"`` or ``"rich"``); the same seed draws the same
    scene. ``size``: pixels of the rich world's image (its geometry is on a 64-px canvas)."""
    _check_world(world)
    rng = np.random.default_rng(seed)
    if world == "rich":
        return rich_scene(rng, size)
    return render(random_objects(rng))


def make_edit(seed: int | np.random.Generator, kind: str | None = None, world: str = "classic",
              size: int = SIZE) -> Edit:
    """A random edit of one random scene of ``world``.

    Classic world: change the shape or the colour of one object (``kind`` None: either, at
    random). Rich world: ``kind`` one of ``KINDS`` (None: one at random). The true edited region
    (``Edit.mask``) is what the edit changes: the object before ∪ after (colour: the object;
    remove: the object's area), the background for ``"background"``, the whole image for
    ``"night"``.
    """
    _check_world(world)
    rng = np.random.default_rng(seed)
    if world == "rich":
        return rich_edit(rng, kind, size)
    scene = render(random_objects(rng))
    kind = kind or str(rng.choice(["shape", "colour"]))
    if kind not in ("shape", "colour"):
        raise ValueError(f"kind must be 'shape' or 'colour' in the classic world, got {kind!r}; "
                         f"pass world='rich' for {', '.join(map(repr, KINDS))}")
    i = int(rng.integers(2))
    old = scene.objects[i]
    if kind == "shape":
        new = replace(old, shape=str(rng.choice([s for s in CLASSIC_SHAPES if s != old.shape])))
    else:
        new = replace(old, colour=str(rng.choice([c for c in CLASSIC_COLOURS if c != old.colour])))
    objects = tuple(new if k == i else o for k, o in enumerate(scene.objects))
    target_scene = render(objects)
    mask = scene.masks[i] | target_scene.masks[i]
    return Edit(scene, target_scene, scene.caption, target_scene.caption, mask, i, kind)


def _check_world(world: str) -> None:
    if world not in WORLDS:
        raise ValueError(f"world must be one of {WORLDS}, got {world!r}")


# --------------------------------------------------------------------------- the rich world


def jitter_colour(name: str, rng: np.random.Generator) -> tuple[float, float, float]:
    """``COLOURS[name]`` with its hue moved by up to ±0.012 turns, saturation ×[0.85, 1] and
    brightness ×[0.85, 1.08] (HSV)."""
    h, sat, v = colorsys.rgb_to_hsv(*(c / 255 for c in COLOURS[name]))
    h = (h + rng.uniform(-0.012, 0.012)) % 1.0
    sat = min(1.0, sat * rng.uniform(0.85, 1.0))
    v = min(1.0, v * rng.uniform(0.85, 1.08))
    return tuple(float(c * 255) for c in colorsys.hsv_to_rgb(h, sat, v))


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise: a ``cells``×``cells`` grid of N(0, 1) bilinearly upsampled to ``size`` px."""
    grid = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((size, size), Image.BILINEAR)
    return np.asarray(img, np.float32)


def texture(name: str, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A procedural background, (size, size, 3) float32 in [0, 255], with a random tone.

    plain: one light colour; grass: green with vertical blade streaks; sand: beige grain with
    diagonal ripples; water: blue with wavy horizontal bands; bricks: a running-bond wall of
    red-brown bricks (each its own tone) and light mortar. Coordinates are on the 64-px canvas
    (``u = pixel · 64 / size``), so a bigger ``size`` draws the same kind of texture finer.
    """
    if name not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, got {name!r}")
    k = size / SIZE
    tone = rng.uniform(0.9, 1.08) * (1 + rng.uniform(-0.04, 0.04, 3))  # brightness and tint
    v, u = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / k  # rows, columns
    if name == "plain":
        img = np.empty((size, size, 3), np.float32)
        img[:] = np.array(BACKGROUND, np.float32) * np.clip(tone, 0, 1.06)
        return img.clip(0, 255)
    if name == "grass":
        base, light = np.array((78, 138, 52), np.float32), np.array((128, 176, 70), np.float32)
        blades = rng.standard_normal((size, size)).astype(np.float32)
        ker = max(1, int(round(5 * k)))  # streaks: noise averaged along the columns
        blades = np.stack([np.convolve(c, np.ones(ker) / ker, mode="same") for c in blades.T], 1)
        t = 0.45 + 0.9 * blades / blades.std() * 0.25 + 0.12 * _smooth_noise(rng, size, 4)
    elif name == "sand":
        base, light = np.array((200, 172, 118), np.float32), np.array((236, 214, 160), np.float32)
        phase = rng.uniform(0, 2 * np.pi)
        ripples = np.sin(2 * np.pi * (u + 0.6 * v) / rng.uniform(9, 13) + phase)
        t = 0.55 + 0.18 * ripples + 0.12 * rng.standard_normal((size, size)) + 0.1 * _smooth_noise(rng, size, 3)
    elif name == "water":
        base, light = np.array((40, 98, 150), np.float32), np.array((110, 170, 210), np.float32)
        p1, p2 = rng.uniform(0, 2 * np.pi, 2)
        waves = np.sin(2 * np.pi * v / rng.uniform(6, 9) + 1.2 * np.sin(2 * np.pi * u / rng.uniform(14, 22) + p1) + p2)
        t = 0.4 + 0.25 * waves + 0.05 * rng.standard_normal((size, size)) + 0.08 * _smooth_noise(rng, size, 3)
    else:  # bricks
        brick, mortar = np.array((150, 74, 52), np.float32), np.array((196, 188, 172), np.float32)
        h, w = rng.uniform(7, 9), rng.uniform(14, 18)
        ou, ov = rng.uniform(0, w), rng.uniform(0, h)
        row = np.floor((v + ov) / h)
        uu = u + ou + (row % 2) * w / 2
        col = np.floor(uu / w)
        tones = rng.uniform(0.85, 1.12, (int(row.max()) + 2, int(col.max()) + 2)).astype(np.float32)
        per_brick = tones[row.astype(int), col.astype(int)]
        dv, du = (v + ov) - row * h, uu - col * w
        in_mortar = (np.minimum(dv, h - dv) < 0.75) | (np.minimum(du, w - du) < 0.75)
        bricks = brick * per_brick[..., None] * (1 + 0.05 * rng.standard_normal((size, size, 1)))
        img = np.where(in_mortar[..., None], mortar, bricks)
        return (img * tone).clip(0, 255).astype(np.float32)
    t = np.clip(t, 0, 1)[..., None]
    return ((base + t * (light - base)) * tone).clip(0, 255).astype(np.float32)


def render_rich(objects: tuple[Obj, ...], backdrop: np.ndarray, background: str, night: bool = False) -> Scene:
    """Draw the objects (their jittered ``rgb``) over ``backdrop`` (a :func:`texture`), then
    apply the night gain: ``x = (Σ_k a_k·c_k + (1 − Σ_k a_k)·backdrop)·(NIGHT_GAIN if night)``."""
    size = backdrop.shape[0]
    image = backdrop.astype(np.float32).copy()
    masks = []
    for o in objects:
        a = coverage(o, size, size / SIZE)[..., None]
        image = a * np.array(o.drawn_rgb, np.float32) + (1 - a) * image
        masks.append(a[..., 0] > 0.5)
    if night:
        image = image * np.array(NIGHT_GAIN, np.float32)
    return Scene(tuple(objects), np.round(image).clip(0, 255).astype(np.uint8), tuple(masks),
                 background, night, backdrop, "rich")


def _fits(o: Obj, others, gap: float = 2.0, order_gap: float = 6.0) -> bool:
    """Inside the canvas (2 px margin), clear of ``others`` and far enough from each of them
    horizontally that left and right are unambiguous."""
    if not (o.r + 2 <= o.cx <= SIZE - o.r - 2 and o.r + 2 <= o.cy <= SIZE - o.r - 2):
        return False
    return all(not _overlaps(o, b, gap) and abs(o.cx - b.cx) >= order_gap for b in others)


def random_rich_objects(rng: np.random.Generator, n: int) -> tuple[Obj, ...]:
    """``n`` objects of random shape, colour (jittered), size and place, left to right."""
    while True:
        objs: list[Obj] = []
        for _ in range(n):
            size = str(rng.choice(SIZES))
            colour = str(rng.choice(list(COLOURS)))
            r = float(rng.uniform(*SIZE_RANGE[size]))
            o = Obj(str(rng.choice(SHAPES)), colour, 0.0, 0.0, r, size, jitter_colour(colour, rng))
            for _ in range(30):
                o = replace(o, cx=float(rng.uniform(r + 2, SIZE - r - 2)), cy=float(rng.uniform(r + 2, SIZE - r - 2)))
                if _fits(o, objs):
                    objs.append(o)
                    break
            else:
                break
        if len(objs) == n:
            return tuple(sorted(objs, key=lambda o: o.cx))


def rich_scene(rng: np.random.Generator, size: int = SIZE, n_objects: int | None = None,
               background: str | None = None, night: bool | None = None) -> Scene:
    """A rich-world scene: 1–3 objects (1: 25 %, 2: 45 %, 3: 30 %), a background (plain 30 %,
    each texture 17.5 %), at night 10 % of the time."""
    n = n_objects or int(rng.choice([1, 2, 3], p=[0.25, 0.45, 0.30]))
    background = background or str(rng.choice(BACKGROUNDS, p=[0.3, 0.175, 0.175, 0.175, 0.175]))
    night = bool(rng.random() < 0.1) if night is None else night
    objects = random_rich_objects(rng, n)
    return render_rich(objects, texture(background, rng, size), background, night)


def rich_edit(rng: np.random.Generator, kind: str | None = None, size: int = SIZE) -> Edit:
    """A rich-world edit of ``kind`` (``KINDS``; None: one at random) — see :func:`make_edit`.

    "size": small ↔ big at the same centre (a new radius from the other range that still
    fits); "remove": scenes of 2–3 objects; "night": a day scene gets " at night"; the others
    keep the scene's night. The edited object is chosen at random; draws that cannot take
    the edit (a size change with no room) are redrawn from the same generator."""
    kind = kind or str(rng.choice(KINDS, p=[0.2, 0.2, 0.15, 0.15, 0.15, 0.15]))
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    while True:
        n = int(rng.choice([2, 3])) if kind == "remove" else None
        scene = rich_scene(rng, size, n_objects=n, night=False if kind == "night" else None)
        objects, i = scene.objects, int(rng.integers(len(scene.objects)))
        old = objects[i]
        background, night = scene.background, scene.night
        if kind == "shape":
            new = replace(old, shape=str(rng.choice([s for s in SHAPES if s != old.shape])))
        elif kind == "colour":
            colour = str(rng.choice([c for c in COLOURS if c != old.colour]))
            new = replace(old, colour=colour, rgb=jitter_colour(colour, rng))
        elif kind == "size":
            other = "big" if old.size == "small" else "small"
            new = replace(old, size=other, r=float(rng.uniform(*SIZE_RANGE[other])))
            if not _fits(new, [o for k, o in enumerate(objects) if k != i]):
                continue
        else:
            new = old
        if kind == "remove":
            target_objects = tuple(o for k, o in enumerate(objects) if k != i)
        else:
            target_objects = tuple(new if k == i else o for k, o in enumerate(objects))
        if kind == "background":
            background = str(rng.choice([b for b in BACKGROUNDS if b != scene.background]))
            backdrop = texture(background, rng, size)
        else:
            backdrop = scene.backdrop
        night = True if kind == "night" else night
        target = render_rich(target_objects, backdrop, background, night)
        if kind == "background":
            mask = scene.background_mask
        elif kind == "night":
            mask = np.ones(scene.image.shape[:2], bool)
        elif kind == "remove":
            mask = scene.masks[i].copy()
        else:
            mask = scene.masks[i] | target.masks[i]
        return Edit(scene, target, scene.caption, target.caption, mask, i, kind)
