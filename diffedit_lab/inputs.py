"""The input policy: what an image or a text becomes before the model sees it, and when it is refused.

Every rule here is listed in the README's "Input policy" section; the step functions, ``edit``,
``EditSession``, the command line and the explorer all go through it.

**Images.**

* A file is read with its EXIF orientation applied (``ImageOps.exif_transpose``: a phone photo
  comes out the way a person sees it). Multi-frame files (animated GIF/WebP, multi-page TIFF)
  give a warning naming the frame count; the first frame is used.
* Files with more than ``max_input_pixels`` pixels (default :data:`MAX_INPUT_PIXELS`, 64
  million, e.g. 8000×8000; ``$DIFFEDIT_MAX_INPUT_PIXELS`` overrides) are refused *before*
  decoding, with one line saying how to allow them.
* Modes: 16-bit greyscale (``I;16*``; ``I`` with values above 255) is scaled by 255/65535;
  float greyscale (``F``) in [0, 1] by 255, in [0, 255] kept, else refused; transparent pixels
  are composited on white; everything else is converted to RGB by Pillow.
* **Size, tied to the model.** With :math:`f` the VAE factor, the sides must be multiples of
  ``f``. An image with a side below ``max(8, f)`` pixels is refused (it would be enlarged from
  almost nothing). The **built-in toy model** works at one size (its training size, 64×64):
  every other image is centre-cropped to a square and resized to it, with a warning — as the
  explorer does with uploads (:func:`fit_to_model`). **Other checkpoints**: the longer side is at
  most ``max_side`` (default :data:`MAX_SIDE` = 1024 px, ``$DIFFEDIT_MAX_SIDE`` overrides); a
  larger image is resized down (aspect kept) with a warning, then rounded down to multiples of
  ``f`` (as diffusers' ``VaeImageProcessor``).

**Texts** (:func:`text_problems`). Each word of a text is tokenized on its own; a word that
becomes several pieces or maps to the unknown token is named in a warning — for the built-in
model as a word it never saw, with the list of the words it knows (:func:`known_words`). A text
longer than the text encoder's window (77 tokens for CLIP, 16 for the toy model) is truncated:
the warning says from which word on. A text that tokenizes to nothing (spaces, emoji the
tokenizer does not know) is the empty text ∅: an error for the target, a warning elsewhere.
"""

from __future__ import annotations

import os
import re
import string
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .checks import warn

MAX_SIDE = 1024
"""Longest image side for checkpoints other than the built-in model (``$DIFFEDIT_MAX_SIDE``)."""

MAX_INPUT_PIXELS = 64_000_000
"""Largest image file read at all, in pixels (``$DIFFEDIT_MAX_INPUT_PIXELS``)."""

MIN_SIDE = 8
"""Shortest image side accepted (or the VAE factor, if larger)."""


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"${name}={text!r}: expected a whole number of pixels.") from None
    if value < 1:
        raise ValueError(f"${name}={text!r}: expected a number of pixels ≥ 1.")
    return value


def max_side() -> int:
    """:data:`MAX_SIDE`, or ``$DIFFEDIT_MAX_SIDE``."""
    return _env_int("DIFFEDIT_MAX_SIDE", MAX_SIDE)


def max_input_pixels() -> int:
    """:data:`MAX_INPUT_PIXELS`, or ``$DIFFEDIT_MAX_INPUT_PIXELS``."""
    return _env_int("DIFFEDIT_MAX_INPUT_PIXELS", MAX_INPUT_PIXELS)


# ----------------------------------------------------------------------------------- files


def _too_big(path, size) -> ValueError:
    w, h = size
    return ValueError(
        f"`image`: {path} is {w}×{h} = {w * h / 1e6:.0f} million pixels, above the limit of "
        f"{max_input_pixels() / 1e6:.0f} million: shrink it first, or set DIFFEDIT_MAX_INPUT_PIXELS={w * h} to allow it."
    )


def open_image(path) -> Image.Image:
    """Read an image file (a path, or a binary file object such as an upload's bytes): size
    checked before decoding, first frame, EXIF orientation applied."""
    if isinstance(path, (str, Path)):
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"`image`: no such file: {path}")
        name, label = path.name, str(path)
    else:
        name = label = getattr(path, "name", None) or "the upload"
    limit = max_input_pixels()
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit  # Pillow's own bomb check then agrees with ours
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.size[0] * img.size[1] > limit:
                    raise _too_big(label, img.size)
                frames = getattr(img, "n_frames", 1)
                if frames > 1:
                    warn(f"`image`: {name} has {frames} frames ({img.format}); only the first is used.")
                img.seek(0)
                img.load()
                out = ImageOps.exif_transpose(img)
                return out if out is not img else img.copy()
    except Image.DecompressionBombError as err:
        size = re.findall(r"\((\d+) pixels\)", str(err))
        raise ValueError(
            f"`image`: {label} has {size[0] if size else 'too many'} pixels, above the limit of {limit}: "
            "shrink it first, or set DIFFEDIT_MAX_INPUT_PIXELS to allow it."
        ) from None
    except ValueError:
        raise
    except (OSError, SyntaxError, EOFError) as err:
        raise ValueError(f"`image`: cannot read {label} as an image ({err}).") from err
    finally:
        Image.MAX_IMAGE_PIXELS = old


# ----------------------------------------------------------------------------------- modes


def to_rgb(img: Image.Image) -> Image.Image:
    """A PIL image of any mode as RGB, read as a person sees it (see the module docstring)."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if img.mode.startswith("I;16") or img.mode == "I":
        arr = np.asarray(img).astype(np.float64)
        deep = img.mode.startswith("I;16") or (arr.size and arr.max() > 255)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ValueError(f"`image`: integer pixels must be in [0, 65535], got [{arr.min():.0f}, {arr.max():.0f}].")
        arr = arr * (255 / 65535) if deep else arr
        return Image.fromarray(arr.round().astype(np.uint8), "L").convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img).astype(np.float64)
        if arr.size and not np.isfinite(arr).all():
            raise ValueError("`image`: a float image has NaN or infinite pixels.")
        low, high = (arr.min(), arr.max()) if arr.size else (0.0, 0.0)
        if low < 0 or high > 255:
            raise ValueError(f"`image`: float pixels must be in [0, 1] or [0, 255], got [{low:.4g}, {high:.4g}].")
        arr = arr * 255 if high <= 1 else arr
        return Image.fromarray(arr.round().astype(np.uint8), "L").convert("RGB")
    return img.convert("RGB")


# ----------------------------------------------------------------------------------- sizes


def model_side(c) -> int:
    """The model's training size in pixels: the UNet's ``sample_size`` × the VAE factor."""
    sample = getattr(c.unet.config, "sample_size", 64)
    sample = sample[0] if isinstance(sample, (tuple, list)) else sample
    return int(sample) * c.vae_scale_factor


def min_side(c) -> int:
    """The shortest image side accepted: ``max(MIN_SIDE, f)``."""
    return max(MIN_SIDE, c.vae_scale_factor)


def plan_size(c, size: tuple[int, int]) -> tuple[tuple[int, int, int, int] | None, tuple[int, int], str | None]:
    """What the policy does to an image of ``size`` (width, height) for model ``c``:
    ``(crop box or None, new size, warning or None)``; a ``ValueError`` for a too small image."""
    w, h = size
    f = c.vae_scale_factor
    if min(w, h) < min_side(c):
        raise ValueError(
            f"`image`: {w}×{h} pixels is too small for this model (at least {min_side(c)} px a side; "
            f"it works at {model_side(c)}×{model_side(c)}): pass a larger image."
        )
    if getattr(c, "builtin", False):
        side, s = model_side(c), min(w, h)
        if (w, h) == (side, side):
            return None, (w, h), None
        box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
        how = "enlarged" if s < side else "resized"
        crop = f"centre-cropped to {s}×{s} and " if w != h else ""
        return box, (side, side), (f"image {w}×{h} {crop}{how} to {side}×{side}: the built-in model works at that "
                                   "size only.")
    limit = max_side()
    new = (w, h)
    note = None
    if max(w, h) > limit:
        scale = limit / max(w, h)
        new = (max(1, round(w * scale)), max(1, round(h * scale)))
        note = (f"image {w}×{h} is larger than the maximum side {limit} px: resized to "
                "{size} (set DIFFEDIT_MAX_SIDE to change the limit).")
    fitted = tuple(max(f, s - s % f) for s in new)
    if fitted != (w, h) and note is None:
        note = f"image size {(w, h)} (width, height) is not a multiple of the VAE factor {f}: resized to {{size}}."
    return None, fitted, note.format(size=fitted) if note else None


def fit_image(c, img: Image.Image, *, quiet: bool = False) -> Image.Image:
    """``img`` (RGB) at the size the policy gives for model ``c`` (Lanczos), with its warning."""
    box, size, note = plan_size(c, img.size)
    if note and not quiet:
        warn(note)
    if box is not None:
        img = img.crop(box)
    return img.resize(size, resample=Image.LANCZOS) if size != img.size else img


def fit_tensor(c, pixels, *, quiet: bool = False):
    """A (B, 3, H, W) tensor at the size the policy gives (bicubic, antialiased), with its warning."""
    import torch.nn.functional as F

    box, (width, height), note = plan_size(c, (pixels.shape[-1], pixels.shape[-2]))
    if note and not quiet:
        warn(note)
    if box is not None:
        pixels = pixels[..., box[1]:box[3], box[0]:box[2]]
    if (height, width) != tuple(pixels.shape[-2:]):
        pixels = F.interpolate(pixels, (height, width), mode="bicubic", antialias=True)
    return pixels


def fit_to_model(c, image, side: int | None = None) -> Image.Image:
    """An image as the model was trained: RGB, centre-cropped to a square and resized to ``side``
    pixels (default: :func:`model_side`). The built-in model's policy; the explorer's uploads."""
    from .latents import load_image

    img = load_image(image)
    side = model_side(c) if side is None else side
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    return img.resize((side, side), resample=Image.LANCZOS) if s != side else img


# ----------------------------------------------------------------------------------- texts


def _vocab(tokenizer) -> dict:
    return tokenizer.get_vocab()


def whole_words(vocab) -> list[str]:
    """The whole words of a CLIP BPE vocabulary (its ``"word</w>"`` tokens), sorted; single
    letters other than "a" left out (BPE keeps every letter as a piece)."""
    words = [t[: -len("</w>")] for t in vocab if t.endswith("</w>")]
    return sorted(w for w in words if len(w) > 1 or w == "a")


def known_words(c) -> list[str] | None:
    """The whole words the built-in model's tokenizer has a token for (sorted); ``None`` for
    other checkpoints (a real CLIP vocabulary knows ~49 000 pieces)."""
    if not getattr(c, "builtin", False):
        return None
    return whole_words(_vocab(c.tokenizer))


def text_problems(c, text: str) -> tuple[list[str], bool]:
    """``(problems, empty)`` of one text for model ``c``: one message per kind of problem (see
    the module docstring), and whether the text tokenizes to nothing."""
    tok = c.tokenizer
    unk = getattr(tok, "unk_token", None)
    specials = set(getattr(tok, "all_special_tokens", []))
    # word by word (CLIP splits on whitespace first): the same pieces, without transformers'
    # "sequence longer than the maximum" message for a long text
    pieces = [p for w in text.split() for p in tok.tokenize(w) if p not in specials or p == unk]
    meaningful = [p for p in pieces if p != unk]
    problems: list[str] = []
    known = known_words(c)
    split, unknown = [], []
    for raw in text.split():
        word = raw.strip(string.punctuation)
        if not word:
            continue
        parts = tok.tokenize(word)
        if known is not None:
            if word.lower() not in known:
                unknown.append(word)
        elif not parts or unk in parts or any(p in specials for p in parts):
            unknown.append(word)
        elif len(parts) > 1:
            split.append(f"{word} → {' + '.join(p.replace('</w>', '') for p in parts)}")
    if unknown and known is not None:
        problems.append(f"the built-in model never saw {', '.join(map(repr, unknown))} (it knows: {', '.join(known)})")
    elif unknown:
        problems.append(f"the tokenizer does not know {', '.join(map(repr, unknown))}")
    if split:
        problems.append(f"split into pieces: {'; '.join(split)}")
    window = int(tok.model_max_length) - 2  # start and end tokens
    if len(pieces) > window:
        rest = " ".join("".join(pieces[window:]).replace("</w>", " ").split())
        problems.append(f"{len(pieces)} tokens, the model reads {window}: ignored from {rest[:40]!r} on")
    return problems, not meaningful


def check_text(c, name: str, text, *, required: bool = False, quiet: bool = False) -> None:
    """Warn about ``text`` (a text or a list of texts; tensors pass) as :func:`text_problems`
    finds (unless ``quiet``); a ``ValueError`` if it is ``required`` and tokenizes to nothing."""
    if not isinstance(text, (str, list, tuple)):
        return
    for t in [text] if isinstance(text, str) else text:
        if not isinstance(t, str) or not t.strip():
            continue
        problems, empty = text_problems(c, t)
        if empty and required:
            raise ValueError(f"`{name}` {t!r} tokenizes to nothing the model knows: type words (it would be the empty text).")
        if empty:
            problems.append("it tokenizes to nothing: the model reads it as the empty text")
        if problems and not quiet:
            warn(f"`{name}` {t!r}: " + "; ".join(problems) + ".")
