"""ipywidgets apps for notebooks, thin over the library's pure functions.

* :func:`mask_explorer` — clamp-ratio, threshold and rescale controls over a computed
  :class:`~diffedit_lab.MaskResult`: every move re-thresholds (``MaskResult.rethreshold``, no
  model call) and redraws the map → mask → overlay figure.
* :func:`explorer` — the whole edit: a toy scene (by seed) or an uploaded image, the two texts,
  the mask settings (the overlay follows the clamp ratio and threshold live), the encoding and
  decoding settings, and a Run button with a progress bar. Beside the input, its VAE round trip
  and PSNR (a warning when the model cannot represent it); the "true mask", its IoU and the toy
  checker follow the texts as typed (:mod:`diffedit_lab.toy.texts`); the edit's difference is
  shown split in what the edit did and what the autoencoder loses.

Figures are drawn with :mod:`diffedit_lab.viz` into PNGs and put in ``Output`` widgets by
replacing their ``outputs`` in one assignment (the same effect as ``clear_output(wait=True)``
followed by ``display``: no flicker, no ipympl, and it works without a kernel, so the apps can be
tested headless). Every callback catches its errors and shows a one-line message in the app's
status line and output area — a bad input never leaves a dead widget.

Each app object exposes ``.controls`` (name → widget), its buttons, ``.output`` and ``.widget``
(the root box); the object itself displays as its widget.
"""

from __future__ import annotations

import base64
import io
import math
import time
import traceback
import warnings
from typing import Any, Callable

import numpy as np
import ipywidgets as W

from . import viz
from .metrics import mask_iou

SLOW = dict(continuous_update=False)
THRESHOLD_KEYS = ("clamp_ratio", "threshold", "rescale", "fill_holes", "close")
"""The mask settings that only re-threshold ``D`` (``MaskResult.rethreshold``: no model call)."""
STYLE = {"description_width": "initial"}


# --------------------------------------------------------------------------- output helpers


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.get_dpi())
    return buf.getvalue()


def figure_output(fig) -> dict:
    """A figure as one notebook ``display_data`` output (PNG)."""
    return {
        "output_type": "display_data",
        "data": {"image/png": base64.b64encode(figure_png(fig)).decode("ascii"), "text/plain": repr(fig)},
        "metadata": {},
    }


def image_output(image) -> dict:
    """A PIL image as one notebook ``display_data`` output (PNG)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return {
        "output_type": "display_data",
        "data": {"image/png": base64.b64encode(buf.getvalue()).decode("ascii"), "text/plain": repr(image)},
        "metadata": {},
    }


def strip_output(image, titles, panel: int) -> dict:
    """A :func:`~diffedit_lab.viz.mask_strip` picture with its panel titles above, as HTML."""
    import html

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    caps = "".join(f"<div style='width:{panel}px;font-size:12px;text-align:center'>{html.escape(t)}</div>"
                   for t in titles)
    src = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    body = f"<div style='display:flex;gap:6px'>{caps}</div><img src='{src}' alt='mask'/>"
    return {"output_type": "display_data", "data": {"text/html": body, "text/plain": " | ".join(titles)},
            "metadata": {}}


def text_output(text: str, stream: str = "stdout") -> dict:
    """A line of text as one notebook ``stream`` output."""
    return {"output_type": "stream", "name": stream, "text": text if text.endswith("\n") else text + "\n"}


def show(output: W.Output, *items) -> None:
    """Replace what ``output`` shows by ``items`` (figures, strings or output dicts), at once."""
    outs = []
    for item in items:
        if item is None:
            continue
        if isinstance(item, dict):
            outs.append(item)
        elif isinstance(item, str):
            outs.append(text_output(item))
        elif hasattr(item, "save") and hasattr(item, "mode"):  # PIL image
            outs.append(image_output(item))
        else:
            outs.append(figure_output(item))
    output.outputs = tuple(outs)


def moved(change) -> bool:
    """Whether a trait change is a real one. Browsers send slider values back with float noise
    (``0.4`` → ``0.39999999999999997``); reacting to those would redo work and overwrite messages."""
    old, new = change["old"], change["new"]
    if isinstance(old, float) and isinstance(new, float):
        return not math.isclose(old, new, rel_tol=1e-9, abs_tol=1e-12)
    return old != new


def error_line(err: BaseException) -> str:
    """One line for the user: the error's type and first line of message."""
    msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"⚠ {type(err).__name__}: {msg}" if msg else f"⚠ {type(err).__name__}"


class _App:
    """Shared plumbing: a status line, an output area, safe callbacks, rich display."""

    widget: W.Widget
    output: W.Output
    status: W.HTML

    def _report(self, err: BaseException) -> None:
        line = error_line(err)
        self.status.value = f"<span style='color:#b00020'>{_escape(line)}</span>"
        self.last_error = err
        self.last_traceback = traceback.format_exc()
        show(self.output, text_output(line, "stderr"))

    def _safe(self, fn: Callable[..., Any]) -> Callable[..., None]:
        def handler(*args, **kwargs):
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    fn(*args, **kwargs)
                notes = "; ".join(dict.fromkeys(str(w.message).splitlines()[0] for w in caught))
                if notes and not self.status.value.startswith("<span style='color:#b00020'>"):
                    self.status.value += f" <span style='color:#8a6d00'>({_escape(notes)})</span>"
            except Exception as err:  # shown to the user, never raised into the widget machinery
                self._report(err)

        return handler

    def _set_status(self, text: str) -> None:
        self.status.value = _escape(text)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def _ipython_display_(self):  # ipywidgets < 8 / plain IPython
        from IPython.display import display

        display(self.widget)


def _escape(text: str) -> str:
    import html

    return html.escape(text)


SLIDER_LAYOUT = dict(min_width="250px", flex="1 1 250px")
"""A slider keeps at least 250 px (handle, track, readout): in a narrow window (a 1000-px browser
with JupyterLab's file browser open) its row wraps (:func:`_row`) instead of squeezing it to a handle."""


def _row(children) -> W.HBox:
    """A row of controls that wraps onto a second line when the notebook is too narrow for it."""
    return W.HBox(children, layout=W.Layout(flex_flow="row wrap", width="100%"))


def _float_slider(description, value, lo, hi, step, **kw):
    """A slider over [lo, hi], widened to hold ``value``: a setting outside the usual range starts
    where it is, never silently moved to an end (every slider of the apps is built here or below)."""
    value = float(value)
    return W.FloatSlider(value=value, min=min(lo, value), max=max(hi, value), step=step, description=description,
                         style=STYLE, readout_format=".2f", layout=W.Layout(**SLIDER_LAYOUT), **kw)


def _clamp_slider(value: float):
    """κ on a log scale from 0.5 to 100 (widened to hold the value, as :func:`_float_slider`):
    diffusers' κ = 3 and a model's κ = 100 (with the paper's min–max rescale: no clamp at all) both
    start where they are."""
    value = float(value)
    return W.FloatLogSlider(value=value, base=10, min=np.log10(min(0.5, value)), max=np.log10(max(100.0, value)),
                            step=0.01, description="clamp ratio κ", style=STYLE, readout_format=".3g",
                            layout=W.Layout(**SLIDER_LAYOUT))


def _fill_checkbox(value: bool):
    return W.Checkbox(value=bool(value), description="fill holes", indent=False, layout=W.Layout(width="110px"),
                      tooltip="fill the holes of a mask under half the image (an object's inside; "
                              "a larger mask's holes are the objects it keeps)")


RESCALE_LABELS = (("÷ κ·mean (diffusers)", "mean"), ("min–max (paper)", "range"))
"""The ``rescale`` dropdown's choices: (label, value)."""


def _rescale_dropdown(value: str):
    return W.Dropdown(options=RESCALE_LABELS, value=value, description="rescale D", style=STYLE,
                      tooltip="how the clamped difference map is rescaled to [0, 1] before τ",
                      layout=W.Layout(width="250px"))


def _close_slider(value: int):
    slider = _int_slider("close (cells)", value, 0, 3,
                         tooltip="close the mask over gaps of up to 2k cells before filling: a broken ring becomes a region")
    slider.layout.flex = "0 1 320px"  # four values: no need to stretch across a row of its own
    return slider


def _threshold_controls(settings) -> dict:
    """The controls of :data:`THRESHOLD_KEYS` (κ, τ, the rescale, hole filling, closing), each
    starting at ``settings``' value (a ``MaskResult`` or an ``EditSettings``: both carry the five)."""
    return {
        "clamp_ratio": _clamp_slider(settings.clamp_ratio),
        "threshold": _float_slider("threshold τ", settings.threshold, 0.05, 0.95, 0.05),
        "rescale": _rescale_dropdown(settings.rescale),
        "fill_holes": _fill_checkbox(settings.fill_holes),
        "close": _close_slider(settings.close),
    }


def _iou(result, true_mask, index: int = 0) -> float:
    """IoU of ``result``'s mask with a true mask: at the true mask's resolution via
    ``MaskResult.upsampled`` (as ``diffedit_lab.toy.quality`` scores it)."""
    h, w = np.asarray(true_mask).shape[-2:]
    return float(mask_iou(result.upsampled((w, h))[index], true_mask))


def _int_slider(description, value, lo, hi, **kw):
    """The integer :func:`_float_slider`: [lo, hi] widened to hold ``value``."""
    value = int(value)
    return W.IntSlider(value=value, min=min(lo, value), max=max(hi, value), description=description, style=STYLE,
                       layout=W.Layout(**SLIDER_LAYOUT), **kw)


# --------------------------------------------------------------------------- mask explorer


class MaskExplorer(_App):
    """Clamp ratio κ, threshold τ, the rescale of D and hole filling over a computed mask; the
    figure follows every move.

    ``.controls``: ``clamp_ratio``, ``threshold``, ``rescale``, ``fill_holes``, ``close``; ``.result``: the re-thresholded
    ``MaskResult`` now shown; ``.redraws``: how many figures were drawn (no model is called).
    ``detailed``: draw the full matplotlib figure (``viz.mask_steps``: D, D̃, M, overlay, with
    colour bars) instead of the fast strip (``viz.mask_strip``: milliseconds a move).
    """

    def __init__(self, result, image=None, *, true_mask=None, index: int = 0, detailed: bool = False, panel: int = 180):
        self.base = result
        self.result = result
        self.image = image
        self.true_mask = true_mask
        self.index = index
        self.detailed = detailed
        self.panel = panel
        self.redraws = 0
        self.last_error = None
        self.controls = _threshold_controls(result)
        self.status = W.HTML()
        self.output = W.Output()
        for w in self.controls.values():
            w.observe(self._safe(lambda change: moved(change) and self.update()), names="value")
        self.widget = W.VBox([W.HBox(list(self.controls.values())), self.status, self.output])
        self._safe(self.update)()

    def update(self) -> None:
        """Re-threshold (free) and redraw."""
        self.result = self.base.rethreshold(**{k: w.value for k, w in self.controls.items()})
        if self.detailed:
            show(self.output, viz.mask_steps(self.result, self.image, index=self.index, true_mask=self.true_mask))
        else:
            strip, titles = viz.mask_strip(self.result, self.image, index=self.index, true_mask=self.true_mask,
                                           panel=self.panel)
            show(self.output, strip_output(strip, titles, self.panel))
        self.redraws += 1
        area = float(self.result.mask[self.index].mean())
        text = f"mask covers {area:.0%} of the image"
        if self.true_mask is not None:
            text += f" · IoU with the true mask {_iou(self.result, self.true_mask, self.index):.2f}"
        self._set_status(text)


def mask_explorer(result_or_c, image=None, source=None, target=None, *, true_mask=None, index: int = 0,
                  detailed: bool = False, **mask_kwargs) -> MaskExplorer:
    """Controls for the clamp ratio, threshold and rescale of a mask, re-thresholding instantly.

    ``mask_explorer(result, image)`` explores a ``MaskResult`` already computed;
    ``mask_explorer(c, image, source, target, n=…, seed=…)`` computes it first with
    :func:`~diffedit_lab.noise_diff_mask` (its keyword arguments pass through).
    ``true_mask`` (optional, any resolution): shown against the mask, with the IoU.
    ``detailed``: the full matplotlib figure (slower) instead of the fast strip.
    """
    result = result_or_c
    if not hasattr(result, "rethreshold"):
        from .mask import noise_diff_mask

        if image is None or target is None:
            raise ValueError("mask_explorer(c, image, source, target, ...): the image and the texts are needed")
        mask_kwargs.setdefault("progress", False)
        result = noise_diff_mask(result_or_c, image, source or "", target, **mask_kwargs)
    return MaskExplorer(result, image, true_mask=true_mask, index=index, detailed=detailed)


# --------------------------------------------------------------------------- the explorer app


def fit_to_model(c, image, side: int | None = None):
    """An image as the model expects it: see :func:`diffedit_lab.inputs.fit_to_model` (the input
    policy of the built-in model, kept in the core so that ``edit`` and the CLI do the same)."""
    from .inputs import fit_to_model as fit

    return fit(c, image, side)


def fit_display(image, side: int):
    """An image nearest-upscaled to ``side`` pixels wide, for display."""
    from PIL import Image

    from .latents import load_image

    img = load_image(image)
    return img.resize((side, round(side * img.size[1] / img.size[0])), resample=Image.NEAREST)


def array_image(rgb: np.ndarray):
    """An (H, W, 3) float array in [0, 1] as a PIL image."""
    from PIL import Image

    return Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8))


def _tiles_html(images, titles, panel: int) -> str:
    """PIL images side by side, each with its title above, as HTML (no matplotlib: milliseconds)."""
    import html

    cells = []
    for img, title in zip(images, titles):
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        src = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
        cells.append(f"<div style='width:{panel}px'><div style='font-size:11px;text-align:center'>"
                     f"{html.escape(title)}</div><img src='{src}' alt='{html.escape(title)}' width='{panel}'/></div>")
    return f"<div style='display:flex;gap:6px'>{''.join(cells)}</div>"


def uploaded_image(value):
    """The first file of a ``FileUpload`` value (ipywidgets 8: a tuple of dicts; 7: a dict) as a PIL image."""
    files = list(value.values()) if isinstance(value, dict) else list(value or ())
    if not files:
        return None
    from PIL import UnidentifiedImageError

    from .inputs import open_image

    name = files[0].get("name") or "the uploaded file"
    try:
        return open_image(io.BytesIO(bytes(files[0]["content"])))  # the input policy: EXIF, pixel limit
    except (UnidentifiedImageError, ValueError) as err:
        if not isinstance(err, UnidentifiedImageError) and not isinstance(err.__cause__, UnidentifiedImageError):
            raise  # an image, but too large: the input policy's own message
        raise ValueError(f"{name} is not an image this explorer can read: upload a PNG, JPEG or WebP file.") from None


KIND_LABELS = {"colour": "change a colour", "shape": "change a shape", "size": "change a size",
               "background": "change the background", "remove": "remove an object",
               "night": "make it night (whole image)"}
"""The explorer's names for the shapes world's edit kinds (``toy.world.KINDS``)."""
CHECKED = {"colour": ("target object", "other objects"), "shape": ("target object", "other objects"),
           "size": ("target object", "other objects"), "background": ("new background", "the rest"),
           "remove": ("object removed", "other objects"), "night": ("night", "the rest")}
"""What the toy checker's two verdicts mean for each kind of edit, in the explorer's status line:
``(success, kept)`` names."""


class Explorer(_App):
    """The DiffEdit explorer (notebook 05). See :func:`explorer`.

    ``.controls``: ``scene``, ``kind``, ``upload``, ``source``, ``target``, ``n``,
    ``mask_noise``, ``seed``, ``clamp_ratio``, ``threshold``, ``encoding_ratio``, ``steps``,
    ``guidance`` (the settings' own names, :class:`~diffedit_lab.EditSettings`); ``.run_button``, ``.progress``, ``.status``; ``.mask_output`` (the live mask)
    and ``.output`` (the edit); ``.input_output`` (the input, its VAE round trip and the warning).
    State: ``.image``, ``.edit_spec`` (the toy scene's edit, or ``None`` for an upload),
    ``.reading`` (what the typed texts say about the scene: ``toy.texts.Reading``; ``None`` for an
    upload), ``.scored_edit`` and ``.true_mask`` (the edit the texts describe and its true region,
    or ``None`` — then nothing is scored), ``.roundtrip`` (``metrics.RoundTrip`` of the input),
    ``.world_fit`` (``toy.representable.WorldFit``, built-in model only), ``.world`` (the shapes
    world the model knows, ``"classic"`` or ``"rich"``: the ``kind`` picker offers its edits), ``.mask`` (the
    ``MaskResult`` at the current κ, τ), ``.result`` (the last ``EditResult``); counters
    ``.mask_computations`` (mask requests: κ and τ never make one),
    ``.inversions`` (DDIM encodings computed), ``.runs``. The model work goes through an
    :class:`~diffedit_lab.EditSession` per image (``.session()``), so going back to earlier
    settings is free.
    """

    def __init__(self, c=None, *, scene: int = 0, kind: str | None = "colour", image=None, source: str = "",
                 target: str = "", auto_mask: bool = True, settings: dict | None = None):
        from .settings import EditSettings

        self.c = c
        self.auto_mask = auto_mask
        self.image = None
        self._session = None
        self.edit_spec = None
        self.reading = None
        self.scored_edit = None
        self.true_mask = None
        self.roundtrip = None
        self.world_fit = None
        self._mask_base = None  # MaskResult as computed (before re-thresholding)
        self.mask = None
        self.result = None
        self.last_error = None
        self.mask_computations = self.inversions = self.runs = 0
        self._quiet = False  # set while the app itself changes controls

        from .toy.texts import folder_world, model_world
        from .toy.world import KINDS

        if c is None:  # the built-in model, loaded on first use: its recorded settings now (the sliders start there)
            import types

            from .models import DEFAULT_MODEL_DIR, _read_defaults

            recorded = types.SimpleNamespace(defaults=_read_defaults(DEFAULT_MODEL_DIR))
            self.world = folder_world(DEFAULT_MODEL_DIR)[0]
        else:
            recorded = c
            self.world = model_world(c)[0]
        # the scene picker offers the edits of the model's own world (``toy.world.make_edit``)
        kinds = KINDS if self.world == "rich" else ("colour", "shape")
        if kind is not None and kind not in kinds:
            raise ValueError(f"kind={kind!r} is not an edit of this model's {self.world} world: pick one of "
                             f"{', '.join(map(repr, kinds))}")
        s = EditSettings.for_model(recorded, **(settings or {}))  # the paper's, the model's, then ``settings``
        self.controls = {
            "scene": W.BoundedIntText(value=scene, min=0, max=1_000_000, description="toy scene (seed)",
                                      style=STYLE, layout=W.Layout(width="210px"), **SLOW),
            "kind": W.Dropdown(options=[(KIND_LABELS[k], k) for k in kinds],
                               value=kind or "colour", description="edit", style=STYLE,
                               layout=W.Layout(width="220px")),
            "upload": W.FileUpload(accept="image/*", multiple=False, description="Upload image",
                                   tooltip="edit an image of your own (PNG, JPEG, WebP …) instead of a toy scene",
                                   layout=W.Layout(width="auto", min_width="150px")),
            "source": W.Text(value=source, description="source R", placeholder="a caption of the input (may be empty)",
                             style=STYLE, layout=W.Layout(width="48%"), **SLOW),
            "target": W.Text(value=target, description="target Q", placeholder="what it should become",
                             style=STYLE, layout=W.Layout(width="48%"), **SLOW),
            "n": _int_slider("noise draws n", s.n, 1, 20, **SLOW),
            "mask_noise": _float_slider("mask noise s", s.mask_noise, 0.1, 0.9, 0.05, **SLOW),
            "seed": W.BoundedIntText(value=0, min=0, max=2**31 - 1, description="seed", style=STYLE,
                                     layout=W.Layout(width="160px"), **SLOW),
            **_threshold_controls(s),
            "encoding_ratio": _float_slider("encoding ratio r", s.encoding_ratio, 0.1, 1.0, 0.05, **SLOW),
            "steps": _int_slider("DDIM steps", s.steps, 2, 100, **SLOW),
            "guidance": _float_slider("guidance w", s.guidance, 1.0, 15.0, 0.5, **SLOW),
        }
        self.settings = s
        self.run_button = W.Button(description="Run edit", button_style="primary", icon="play")
        self.progress = W.IntProgress(value=0, min=0, max=1, description="", layout=W.Layout(width="240px"))
        self.status = W.HTML()
        self.mask_output = W.Output()
        self.input_output = W.Output()
        self.output = W.Output()
        ctl = self.controls

        ctl["scene"].observe(self._safe(lambda ch: moved(ch) and self._on_scene()), names="value")
        ctl["kind"].observe(self._safe(lambda ch: moved(ch) and self._on_scene()), names="value")
        ctl["upload"].observe(self._safe(lambda ch: self._on_upload(ch["new"])), names="value")
        for name in ("source", "target", "n", "mask_noise", "seed", "steps"):  # the mask's t depends on the steps
            ctl[name].observe(self._safe(lambda ch: moved(ch) and self._on_mask_input()), names="value")
        for name in THRESHOLD_KEYS:
            ctl[name].observe(self._safe(lambda ch: moved(ch) and self._on_threshold()), names="value")
        for name in ("encoding_ratio", "guidance"):  # no model call until Run: only the shown edit goes stale
            ctl[name].observe(self._safe(lambda ch: moved(ch) and self.is_stale() and self._set_status(self.stale_line())),
                              names="value")
        self.run_button.on_click(self._safe(lambda _b: self.run()))

        head = W.HTML("<b>DiffEdit explorer</b> — the mask follows κ, τ and the rescale live; "
                      "<i>Run edit</i> encodes and decodes.")
        self.widget = W.VBox([
            head,
            _row([ctl["scene"], ctl["kind"], ctl["upload"]]),
            self.input_output,
            W.HBox([ctl["source"], ctl["target"]]),
            W.HTML("<b>1 · mask</b> (a model call when these change)"),
            _row([ctl["n"], ctl["mask_noise"], ctl["seed"]]),
            W.HTML("<b>mask threshold</b> (instant: no model call)"),
            _row([ctl[name] for name in THRESHOLD_KEYS]),
            self.mask_output,
            W.HTML("<b>2 · encode and 3 · decode</b>"),
            _row([ctl["encoding_ratio"], ctl["steps"], ctl["guidance"]]),
            W.HBox([self.run_button, self.progress]),
            self.status,
            self.output,
        ])
        if image is not None:
            self._safe(self.set_image)(image, source=source, target=target)
        else:
            self._safe(self._on_scene)()

    # ----------------------------------------------------------------- model and inputs

    def components(self):
        """The model (loaded on first use: the embedded toy model when none was given)."""
        if self.c is None:
            from .models import load_components

            self._set_status("loading the model …")
            self.c = load_components()
        return self.c

    def _on_scene(self) -> None:
        from .toy.world import make_edit

        spec = make_edit(int(self.controls["scene"].value), self.controls["kind"].value, self.world)
        self.edit_spec = spec
        self._set_inputs(spec.scene.image, spec.mask, spec.source, spec.target)

    def _on_upload(self, value) -> None:
        img = uploaded_image(value)
        if img is None:
            return
        self.set_image(img, source=self.controls["source"].value if self.edit_spec is None else "",
                       target=self.controls["target"].value if self.edit_spec is None else "")

    def set_image(self, image, *, source: str = "", target: str = "", true_mask=None) -> None:
        """Edit this image (any size: centre-cropped and resized to the model's size)."""
        img = fit_to_model(self.components(), image)
        self.edit_spec = None
        self._set_inputs(img, true_mask, source, target)

    def _set_inputs(self, image, true_mask, source, target) -> None:
        self.image = image
        self.true_mask = true_mask
        self.scored_edit = self.edit_spec
        self.reading = None
        self._session = None
        self._mask_base = self.mask = None
        self.result = None
        self._quiet = True
        try:
            self.controls["source"].value = source
            self.controls["target"].value = target
        finally:
            self._quiet = False
        show(self.output)
        self._show_representation()
        self._on_mask_input()

    # ----------------------------------------------------------------- mask

    def _on_mask_input(self) -> None:
        if self._quiet:
            return
        self._score_texts()
        self._mask_base = self.mask = None
        if self.auto_mask and self.controls["target"].value.strip():
            self.compute_mask()
        else:
            self._draw_input()

    def session(self):
        """The :class:`~diffedit_lab.EditSession` of the current image (created on first use): it
        encodes the image once and caches text embeddings, mask draws, masks and inversions."""
        from .edit import EditSession

        if self._session is None:
            self._session = EditSession(self.components(), self.image)
        return self._session

    def edit_settings(self):
        """The :class:`~diffedit_lab.settings.EditSettings` the sliders show (on the model's)."""
        from .settings import EditSettings

        ctl = self.controls
        return EditSettings.for_model(
            self.components(), n=ctl["n"].value, mask_noise=ctl["mask_noise"].value,
            **{k: ctl[k].value for k in THRESHOLD_KEYS},
            encoding_ratio=ctl["encoding_ratio"].value, steps=ctl["steps"].value, guidance=ctl["guidance"].value,
        )

    def compute_mask(self):
        """Step 1 (model calls, unless cached): the mask for the current texts and settings."""
        ctl = self.controls
        if not ctl["target"].value.strip():
            raise ValueError("type a target text Q first")
        self._set_status("computing the mask …")
        self._mask_base = self.session().mask(ctl["source"].value, ctl["target"].value, self.edit_settings(),
                                              seed=ctl["seed"].value)
        self.mask_computations += 1
        self._on_threshold()
        return self.mask

    def _on_threshold(self) -> None:
        if self._mask_base is None:
            return
        self.mask = self._mask_base.rethreshold(
            **{k: self.controls[k].value for k in THRESHOLD_KEYS})
        strip, titles = viz.mask_strip(self.mask, self.image, true_mask=self.true_mask, panel=160)
        show(self.mask_output, strip_output(strip, titles, 160))
        text = f"mask: {float(self.mask.mask[0].mean()):.0%} of the image"
        if self.true_mask is not None:
            text += f", IoU with the true mask {_iou(self.mask, self.true_mask):.2f}"
        elif self.reading is not None:
            text += f" · {self.no_score_line()}"
        self._set_status(text + (f" — {self.stale_line()}" if self.is_stale() else " — press Run edit"))

    def _draw_input(self) -> None:
        if self.image is not None:
            show(self.mask_output, fit_display(self.image, 160))
        if not self.controls["target"].value.strip():
            self._set_status("type a target text Q")
        else:
            self._set_status(self.no_score_line() if self.reading is not None and not self.reading else "")

    # ----------------------------------------------------------------- edit

    def run(self):
        """Steps 2 and 3 through the session (the DDIM encoding is cached per r and steps): decode
        with Q inside the mask; shows input, mask, output and their difference. Returns the ``EditResult``."""
        ctl = self.controls
        t0 = time.perf_counter()
        key = self._control_values()  # a control moved while this runs makes the result stale
        self.run_button.disabled = True
        try:
            if self.mask is None:
                self.compute_mask()
            session = self.session()
            encoded_before = session.inversions_computed
            target = ctl["target"].value

            def on_progress(done: int, total: int) -> None:
                self.progress.max, self.progress.value = total, done
                self._set_status(f"DDIM encoding ({total // 2} steps) …" if done < total // 2
                                 else f"decoding with “{target}” ({total // 2} steps) …")

            self.progress.value = 0
            self.result = session.run(ctl["source"].value, target, self.edit_settings(), seed=ctl["seed"].value,
                                      progress=False, callback=on_progress)
            self.inversions += session.inversions_computed - encoded_before
        finally:
            self.run_button.disabled = False
        self.runs += 1
        self._run_values = key
        self._show_result(time.perf_counter() - t0)
        return self.result

    STALE_KEYS = ("source", "target", "n", "mask_noise", "seed", "clamp_ratio", "threshold", "rescale", "fill_holes",
                  "close", "encoding_ratio", "steps", "guidance")

    def _control_values(self) -> dict:
        return {k: self.controls[k].value for k in self.STALE_KEYS}

    def is_stale(self) -> bool:
        """Whether the edit shown was made with other settings or texts than the controls show now
        (e.g. τ moved while it ran)."""
        return self.result is not None and getattr(self, "_run_values", None) != self._control_values()

    def stale_line(self) -> str:
        """One line naming what changed since the edit shown was made."""
        old, now = getattr(self, "_run_values", None) or {}, self._control_values()
        changed = [k for k in self.STALE_KEYS if old.get(k) != now[k]]
        return f"the edit shown is stale ({', '.join(changed)} changed since it ran) — press Run edit"

    # ----------------------------------------------------------------- what is shown of an edit

    def _show_result(self, seconds: float) -> None:
        """The edit figure (the difference split in what the edit did and what the autoencoder
        loses), the checker's verdict on the edit the texts describe, and the input's warning."""
        lines = [f"edit {self.runs} done in {seconds:.1f} s"]
        if self.scored_edit is not None:
            from .toy.checker import check_edit

            made, kept = check_edit(self.result.image, self.scored_edit)
            success, rest = CHECKED[self.scored_edit.kind]
            lines.append(f"toy checker: {success} {'✓' if made else '✗'}, {rest} kept {'✓' if kept else '✗'}")
        elif self.reading is not None:
            lines.append(f"toy checker: {self.no_score_line()}")
        warning = self.input_warning()
        if warning:
            lines.append(f"⚠ {warning}")
        recon = self.roundtrip.reconstruction if self.roundtrip is not None else None
        figure = viz.edit_figure(self.image, self.result, true_mask=self.true_mask, reconstruction=recon)
        show(self.output, figure, "\n".join(filter(None, [self.difference_line(), " · ".join(lines)])))
        self._set_status(" · ".join(lines))

    def difference_line(self) -> str | None:
        """One line on the last edit's two difference images (means over the image and outside the mask)."""
        if self.result is None or self.roundtrip is None:
            return None
        d_edit, d_vae = viz.difference_maps(self.image, self.roundtrip.reconstruction, self.result.image)
        keep = ~viz.resize_mask(self.result.mask, (d_edit.shape[1], d_edit.shape[0]))
        out = (lambda d: float(d[keep].mean())) if keep.any() else (lambda d: float("nan"))
        return (f"difference images — what the edit did, |output − VAE(input)|: mean {out(d_edit):.3f} outside "
                f"the mask; what the autoencoder loses, |VAE(input) − input|: mean {out(d_vae):.3f} outside "
                f"the mask (round trip {self.roundtrip.psnr:.1f} dB)")

    # ----------------------------------------------------------------- scores that follow the texts

    def _score_texts(self) -> None:
        """The true mask and the checker's edit follow the texts as typed (``toy.texts.read_edit``):
        the edit they describe on the scene, or none (then nothing is scored)."""
        if self.edit_spec is None:
            return
        from .toy.texts import read_edit

        self.reading = read_edit(self.edit_spec, self.controls["source"].value, self.controls["target"].value)
        self.scored_edit = self.reading.edit
        self.true_mask = None if self.scored_edit is None else self.scored_edit.mask

    def no_score_line(self) -> str:
        """Why the current texts are not scored, in one line."""
        why = f" ({self.reading.reason})" if self.reading is not None and self.reading.reason else ""
        return f"no true mask for this text{why}"

    # ----------------------------------------------------------------- can the model represent the input?

    def _show_representation(self) -> None:
        """The input, its VAE round trip ``D(E(x))`` and their difference, with the round-trip PSNR;
        a warning below the threshold (``metrics.representability``); for the built-in model, how
        far the image is from the shapes world when the round trip fails (``toy.representable.world_fit``:
        its figures explain a failure; on an image the model represents they would only distract)."""
        import html

        from .metrics import representability

        self.roundtrip = rt = representability(self.components(), self.image, latents=self.session().z0)
        self.world_fit = None
        if rt.builtin and not rt.ok:
            from .toy.representable import world_fit

            self.world_fit = world_fit(rt.image, self.world)
        d = np.abs(np.asarray(rt.reconstruction, np.float32) - np.asarray(rt.image, np.float32)).mean(2) / 255
        from matplotlib import colormaps

        heat = array_image(colormaps[viz.HEAT_CMAP](np.clip(d / max(float(d.max()), 1e-6), 0, 1))[..., :3])
        panel = 120
        tiles = [fit_display(rt.image, panel), fit_display(rt.reconstruction, panel), fit_display(heat, panel)]
        titles = ["input", "VAE(input)", "|VAE(input) − input|"]
        figure = _tiles_html(tiles, titles, panel)
        verdict = (f"VAE round trip PSNR(input, VAE(input)) = {rt.psnr:.1f} dB"
                   + (f" ✓ (a warning below {rt.threshold:g} dB)" if rt.ok else f" — below {rt.threshold:g} dB")
                   + (f" · {self.world_fit.line()}" if self.world_fit is not None else ""))
        lines = [f"<div style='font-size:12px'>{html.escape(verdict)}</div>"]
        warning = self.input_warning()
        if warning:
            lines.append(f"<div class='diffedit-warning' style='color:#8a4b00;font-weight:bold'>⚠ "
                         f"{html.escape(warning)}</div>")
        body = f"<div>{figure}{''.join(lines)}</div>"
        show(self.input_output, {"output_type": "display_data", "metadata": {},
                                 "data": {"text/html": body, "text/plain": verdict + (f"\n⚠ {warning}" if warning else "")}})

    def input_warning(self) -> str | None:
        """The round-trip warning of the current input (one line, saying what to do), or None."""
        return None if self.roundtrip is None else self.roundtrip.warning()


def explorer(c=None, **kwargs) -> Explorer:
    """The DiffEdit explorer: pick a toy scene (seed, colour or shape edit) or upload an image,
    type the source and target texts, set the mask (n, noise s, seed) and watch it follow the
    clamp ratio and threshold live; set the encoding ratio, DDIM steps and guidance, and Run.

    ``c``: a :class:`~diffedit_lab.Components`; ``None`` loads the embedded toy model on first use.
    Keyword arguments: ``scene``, ``kind``, ``image`` (start from this image instead of a scene),
    ``source``, ``target``, ``auto_mask`` (recompute the mask when its inputs change; default
    True — cheap on the toy model), ``settings`` (initial slider values, e.g. ``{"steps": 20}``).
    """
    return Explorer(c, **kwargs)
