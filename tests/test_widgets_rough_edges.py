"""The explorer's rough edges of issue 18, headless (the browser side: tests/test_browser_narrow.py):
a non-image upload is one line saying what to upload; a control moved after a run marks the edit
shown as stale; the upload button says what it is; sliders keep a minimum width in rows that wrap."""

from __future__ import annotations

import datetime

import matplotlib

matplotlib.use("Agg")

import pytest

from diffedit_lab import widgets

pytestmark = pytest.mark.widgets

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
SMALL = {"n": 2, "steps": 4, "encoding_ratio": 0.5}


@pytest.fixture()
def app(tiny_components):
    return widgets.explorer(tiny_components, scene=3, settings=SMALL)


def test_a_non_image_upload_is_one_line_saying_what_to_upload(app):
    data = b"these are my notes, not a picture\n"
    app.controls["upload"].value = ({"name": "notes.png", "type": "image/png", "size": len(data),
                                     "content": memoryview(data), "last_modified": NOW},)
    status = app.status.value
    assert "notes.png is not an image this explorer can read: upload a PNG, JPEG or WebP file." in status
    assert "BytesIO" not in status and "UnidentifiedImageError" not in status and "\n" not in status
    assert app.edit_spec is not None  # the scene is still there


def test_moving_tau_after_a_run_marks_the_edit_stale(app):
    app.controls["target"].value = app.controls["target"].value  # the scene's own texts
    app.run_button.click()
    assert app.last_error is None and not app.is_stale()
    app.controls["threshold"].value = round(app.controls["threshold"].value - 0.1, 2)
    assert app.is_stale() and "stale (threshold changed" in app.status.value and "press Run edit" in app.status.value
    app.run_button.click()
    assert not app.is_stale() and "stale" not in app.status.value
    app.controls["guidance"].value = app.controls["guidance"].value + 1.0  # no model call, but the edit shown is old
    assert app.is_stale() and "guidance" in app.status.value


def test_upload_button_and_slider_layout(app):
    upload = app.controls["upload"]
    assert upload.description == "Upload image" and "image" in upload.tooltip
    sliders = [w for w in app.controls.values() if isinstance(w, (widgets.W.FloatSlider, widgets.W.FloatLogSlider, widgets.W.IntSlider))]
    assert len(sliders) >= 7 and all(s.layout.min_width == widgets.SLIDER_LAYOUT["min_width"] for s in sliders)
    rows = [b for b in app.widget.children if isinstance(b, widgets.W.HBox) and any(s in b.children for s in sliders)]
    assert rows and all(r.layout.flex_flow == "row wrap" for r in rows)


def test_explorer_without_a_model_starts_at_the_built_in_models_settings():
    """widgets.explorer() (the model loaded on first use) starts where explorer(c) does: the
    built-in model's recorded settings, not the paper's (notebook 05's table says so)."""
    import diffedit_lab as dl

    lazy = widgets.explorer(settings={"steps": 10})
    c = lazy.components()
    wanted = dl.EditSettings.for_model(c, steps=10)
    shown = lazy.edit_settings()
    assert shown == wanted, (shown, wanted)
    assert wanted != dl.EditSettings.for_model(None, steps=10)  # the model records its own values


def test_explorer_keeps_settings_outside_its_sliders_usual_ranges(tiny_components):
    """A setting beyond a slider's usual range (valid, just unusual) starts where it is: the
    sliders widen to hold it instead of silently moving it to an end (κ = 100 once became 10)."""
    import diffedit_lab as dl

    unusual = dict(n=30, mask_noise=0.95, clamp_ratio=0.3, threshold=0.98, close=5, encoding_ratio=0.05,
                   steps=120, guidance=20.0)
    app = widgets.explorer(tiny_components, scene=0, settings=unusual, auto_mask=False)
    assert app.edit_settings() == dl.EditSettings.for_model(tiny_components, **unusual)
