"""How far an image is from the shapes world — why the built-in model cannot represent it.

The built-in model's VAE saw only shapes-world scenes. In the classic world: a few palette
colours over one background, mixed at anti-aliased edges, ``x = a·C_k + (1 − a)·B``
(``world.render``); in the rich world: six jittered colours over textured backgrounds, some at
night (``world.render_rich``). Its round trip ``D(E(x))`` (:func:`diffedit_lab.metrics.representability`)
is good on such images and poor on anything else. Two figures say *what* is foreign in an image,
in RGB units (0–255 per channel, distances up to 441):

* ``background``: ``‖B̂ − B‖``, the median colour of the image's border ``B̂`` (where the world
  puts its background) against the nearest world background colour — classic: the background
  colour; rich: the border colour of any of :data:`SAMPLED_SCENES` rendered scenes;
* ``off_world``: the fraction of pixels farther than :data:`TOLERANCE` from every colour the
  world draws — classic: every mixture ``a·C_k + (1 − a)·B``, ``a ∈ [0, 1]``, of a palette colour
  with the background; rich: every colour of the :data:`SAMPLED_SCENES` rendered scenes
  (:func:`rich_world_colours`, to within :data:`QUANTUM`) — and ``distance``, the 95th
  percentile of that distance.

``python -m diffedit_lab.toy.representable`` measures the round-trip PSNR of in-world scenes and
of images out of the world: the figures behind ``metrics.ROUNDTRIP_PSNR_MIN_BUILTIN``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from . import world
from .checker import estimate_background, to_rgb_array

TOLERANCE = 30.0
"""RGB distance beyond which a pixel is not a colour of the world (JPEG noise and slight
brightness changes stay within it)."""
SAMPLED_SCENES = 300
"""Rich world: how many rendered scenes (seeds 0 …) stand for the colours it draws."""
QUANTUM = 4
"""Rich world: the sampled colours are kept on a grid of this many RGB units (error ≤ 3.5)."""


def _rgb(value) -> np.ndarray | None:
    arr = np.asarray(value, dtype=np.float32) if not isinstance(value, str) else None
    return arr if arr is not None and arr.shape == (3,) else None


def world_backgrounds() -> np.ndarray:
    """(K, 3) the world's plain background colours (``world.BACKGROUND``, and the RGB values of
    ``world.BACKGROUNDS`` where the world names several)."""
    found = [_rgb(getattr(world, "BACKGROUND", None))]
    backgrounds = getattr(world, "BACKGROUNDS", {})
    if isinstance(backgrounds, dict):
        found += [_rgb(v) for v in backgrounds.values()]
    found = [f for f in found if f is not None]
    return np.stack(found) if found else np.zeros((0, 3), np.float32)


def world_palette() -> np.ndarray:
    """(K, 3) the object colours of the shipped model's world (``world.CLASSIC_COLOURS``)."""
    return np.stack([np.asarray(v, np.float32) for v in world.CLASSIC_COLOURS.values()])


def distance_to_world(rgb: np.ndarray) -> np.ndarray:
    """(H, W) RGB distance of each pixel to the nearest colour the world draws: a background
    ``B``, or a mixture ``a·C + (1 − a)·B`` of a palette colour ``C`` with it (``a`` clipped to
    [0, 1] — the point nearest the pixel on the segment from ``B`` to ``C``)."""
    x = np.asarray(rgb, np.float32)
    best = np.full(x.shape[:2], np.inf, np.float32)
    for b in world_backgrounds():
        for colour in world_palette():
            d = colour - b
            a = np.clip(((x - b) @ d) / float(d @ d), 0.0, 1.0)
            best = np.minimum(best, np.linalg.norm(x - b - a[..., None] * d, axis=-1))
    return best


@lru_cache(maxsize=1)
def rich_world_colours() -> tuple[np.ndarray, np.ndarray]:
    """The rich world's colours: ``(colours (K, 3), borders (S, 3))`` — every pixel colour of
    :data:`SAMPLED_SCENES` rendered scenes (``world.make_scene(seed, "rich")``: every background,
    colour and size, night included), on a :data:`QUANTUM` grid, and each scene's border colour."""
    scenes = [world.make_scene(seed, "rich") for seed in range(SAMPLED_SCENES)]
    pixels = np.concatenate([sc.image.reshape(-1, 3) for sc in scenes]).astype(np.int32) // QUANTUM
    colours = (np.unique(pixels, axis=0) * QUANTUM + QUANTUM / 2).astype(np.float32)
    borders = np.stack([estimate_background(sc.image.astype(np.float32)) for sc in scenes])
    return colours, borders


def distance_to_colours(rgb: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """(H, W) RGB distance of each pixel to the nearest of ``colours`` (K, 3) (each distinct
    pixel colour compared once)."""
    x = np.asarray(rgb, np.float32)
    flat = x.reshape(-1, 3)
    unique, inverse = np.unique(flat, axis=0, return_inverse=True)
    c2 = (colours ** 2).sum(1)
    best = np.empty(len(unique), np.float32)
    for i in range(0, len(unique), 512):
        u = unique[i:i + 512]
        d2 = (u ** 2).sum(1)[:, None] - 2 * u @ colours.T + c2[None]
        best[i:i + 512] = np.sqrt(np.maximum(d2.min(1), 0))
    return best[inverse.reshape(-1)].reshape(x.shape[:2])


@dataclass
class WorldFit:
    """``background``: RGB distance of the image's border colour to the world's background;
    ``off_world``: fraction of pixels farther than :data:`TOLERANCE` from the world's colours;
    ``distance``: 95th percentile of the per-pixel distance (module docstring)."""

    background: float
    off_world: float
    distance: float

    def line(self) -> str:
        """One line for the explorer."""
        return (f"shapes world: background {self.background:.0f} RGB units from the world's, "
                f"{self.off_world:.0%} of the pixels off its colours")


def world_fit(image, world_name: str = "classic") -> WorldFit:
    """How far ``image`` (PIL, uint8 array or float array in [0, 1]) is from the shapes world
    ``world_name`` (``"classic"`` or ``"rich"``: the built-in model's, ``toy.texts.model_world``)."""
    rgb = to_rgb_array(image)
    border = estimate_background(rgb)
    if world_name == "rich":
        colours, backgrounds = rich_world_colours()
        d = distance_to_colours(rgb, colours)
    elif world_name == "classic":
        backgrounds = world_backgrounds()
        d = distance_to_world(rgb)
    else:
        raise ValueError(f"world_name must be 'classic' or 'rich', got {world_name!r}")
    background = float(np.linalg.norm(backgrounds - border, axis=-1).min()) if len(backgrounds) else float("nan")
    return WorldFit(background, float((d > TOLERANCE).mean()), float(np.percentile(d, 95)))


# --------------------------------------------------------------------------- measurement


def sky_picture(width: int = 300, height: int = 200):
    """An image out of the world: a blue sky gradient, a yellow sun and green grass (PIL)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(img)
    for y in range(height):
        t = y / height
        draw.line([(0, y), (width, y)], fill=(int(90 + 120 * t), int(150 + 80 * t), 255))
    draw.rectangle([0, int(height * 0.65), width, height], fill=(60, 160, 50))
    s = min(width, height)
    draw.ellipse([width - s // 2, s // 10, width - s // 4, s // 10 + s // 4], fill=(255, 220, 60))
    return img


def out_of_world_images(size: int = world.SIZE) -> dict:
    """Named images the built-in model was never shown (PIL, ``size`` pixels square, except the
    sky). (A purple star and a darker scene are no longer among them: purple, stars and night are
    words of the rich world the model knows.)"""
    from PIL import Image, ImageDraw

    k = size / 64
    primaries = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(primaries)
    draw.ellipse([10 * k, 10 * k, 30 * k, 30 * k], fill=(255, 0, 0))
    draw.rectangle([36 * k, 30 * k, 56 * k, 50 * k], fill=(0, 0, 255))
    return {
        "sky, sun and grass": sky_picture(),
        "pure red and blue on white": primaries,
        "a scene, red and blue swapped": Image.fromarray(world.make_scene(1).image[..., ::-1].copy()),
    }


def main(scenes: int = 60) -> None:
    """Print the built-in model's round-trip PSNR of ``scenes`` in-world scenes and of
    :func:`out_of_world_images` (each fitted to the model's size as the explorer does)."""
    from ..metrics import representability
    from ..models import load_components
    from ..widgets import fit_to_model

    from .texts import model_world

    c = load_components()
    known = model_world(c)[0]
    for name in ("rich", "classic"):
        values = [representability(c, world.make_scene(s, name).image).psnr for s in range(scenes)]
        print(f"in-world scenes, {name} world ({scenes}): min {min(values):.1f} dB, "
              f"5th percentile {np.percentile(values, 5):.1f}, median {np.median(values):.1f}")
    for name, img in out_of_world_images().items():
        rt = representability(c, fit_to_model(c, img))
        print(f"{name}: {rt.psnr:.1f} dB · {world_fit(rt.image, known).line()}")


if __name__ == "__main__":
    main()
