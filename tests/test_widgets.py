"""diffedit_lab.widgets, headless: build each app on the tiny random model, move every control
over its range, click every button; outputs change, nothing raises, errors land in the output area."""

from __future__ import annotations

import datetime
import html
import io

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from PIL import Image

from diffedit_lab import widgets
from diffedit_lab.metrics import mask_iou

pytestmark = pytest.mark.widgets

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
SMALL = {"n": 2, "steps": 4, "encoding_ratio": 0.5}  # keep the tiny model's runs short


def same(value):
    """``value`` to compare with: approximately for a number, exactly for a text."""
    return value if isinstance(value, str) else pytest.approx(value)


def outputs(out) -> str:
    """A hashable fingerprint of what an Output widget shows."""
    return repr(out.outputs)


def kinds(out) -> list[str]:
    return [o.get("name") or next(iter(o.get("data", {"": 0}))) for o in out.outputs]


def sweep(control):
    """Values across a control's whole range: both ends and the middle (a checkbox: flipped, back;
    a dropdown: every other option, then back)."""
    if isinstance(control.value, bool):
        return [not control.value, control.value]
    if isinstance(control, widgets.W.Dropdown):
        return [v for _, v in control.options if v != control.value] + [control.value]
    lo, hi = control.min, control.max
    if isinstance(control, widgets.W.FloatLogSlider):  # min and max are exponents
        return [control.base ** e for e in (lo, lo + (hi - lo) / 2, hi)]
    mid = lo + (hi - lo) / 2
    if isinstance(control.value, int):
        mid = int(mid)
    return [lo, mid, hi]


@pytest.fixture(scope="module")
def image32():
    yy, xx = np.mgrid[:32, :32]
    img = np.full((32, 32, 3), 230, np.uint8)
    img[(yy - 16) ** 2 + (xx - 12) ** 2 < 50] = (215, 40, 40)
    return Image.fromarray(img)


@pytest.fixture(scope="module")
def mask_result(tiny_components, image32):
    from diffedit_lab import noise_diff_mask

    return noise_diff_mask(tiny_components, image32, "red circle", "blue circle", n=3, seed=1, steps=10,
                           progress=False)


# --------------------------------------------------------------------------- helpers


def test_show_replaces_outputs_at_once():
    from matplotlib.figure import Figure

    out = widgets.W.Output()
    fig = Figure()
    fig.add_subplot().plot([0, 1])
    widgets.show(out, fig, "hello", None)
    assert kinds(out) == ["image/png", "stdout"]
    assert out.outputs[0]["data"]["image/png"]  # base64 PNG
    widgets.show(out)
    assert out.outputs == ()


def test_error_line():
    assert widgets.error_line(ValueError("bad value\nmore")) == "⚠ ValueError: bad value"
    assert widgets.error_line(KeyError()) == "⚠ KeyError"


# --------------------------------------------------------------------------- mask explorer


def test_mask_explorer_rethresholds_without_model(mask_result, image32, monkeypatch):
    truth = np.zeros((32, 32), bool)
    truth[8:24, 4:20] = True
    app = widgets.mask_explorer(mask_result, image32, true_mask=truth)
    assert set(app.controls) == {"clamp_ratio", "threshold", "rescale", "fill_holes", "close"}
    assert app.redraws == 1 and kinds(app.output) == ["text/html"]
    assert "IoU" in app.status.value and "IoU" in app.output.outputs[0]["data"]["text/plain"]

    import diffedit_lab.mask as mask_module

    def no_model(*a, **k):
        raise AssertionError("re-thresholding must not call the model")

    monkeypatch.setattr(mask_module, "noise_diff_mask", no_model)
    seen = {outputs(app.output)}
    for name, control in app.controls.items():
        for value in sweep(control):
            control.value = value
            assert getattr(app.result, name) == same(control.value)
            seen.add(outputs(app.output))
    assert app.redraws == 1 + 6 + 2 + 2 + 2  # κ, τ (3 each), rescale, fill (2), close (from 0: 1, 3)
    assert len(seen) > 2  # the figure changed
    assert app.last_error is None
    # the shown mask is the library's re-threshold of the same maps
    app.controls["fill_holes"].value = True
    expected = mask_result.rethreshold(clamp_ratio=app.controls["clamp_ratio"].value,
                                       threshold=app.controls["threshold"].value, fill_holes=True)
    assert app.result.fill_holes and torch.equal(app.result.mask, expected.mask)
    iou = float(app.status.value.split("IoU with the true mask ")[1][:4])
    assert iou == pytest.approx(mask_iou(expected.upsampled((32, 32))[0], truth), abs=0.006)


def test_mask_explorer_rescale_dropdown_rethresholds_without_model(mask_result, image32, monkeypatch):
    import diffedit_lab.mask as mask_module

    app = widgets.mask_explorer(mask_result, image32)
    assert app.controls["rescale"].value == mask_result.rescale == "mean"
    assert [v for _, v in app.controls["rescale"].options] == ["mean", "range"]
    monkeypatch.setattr(mask_module, "noise_diff_mask", None)  # any model call would fail
    monkeypatch.setattr(mask_module, "unet_output", None)
    shown = outputs(app.output)
    app.controls["rescale"].value = "range"
    expected = mask_result.rethreshold(clamp_ratio=app.controls["clamp_ratio"].value,
                                       threshold=app.controls["threshold"].value, rescale="range")
    assert app.result.rescale == "range" and torch.equal(app.result.normalized, expected.normalized)
    assert torch.equal(app.result.mask, expected.mask) and outputs(app.output) != shown
    assert app.last_error is None and app.redraws == 2


def test_mask_explorer_computes_from_components(tiny_components, image32):
    app = widgets.mask_explorer(tiny_components, image32, "red circle", "blue circle", n=2, seed=0, steps=10)
    assert app.result.n == 2 and kinds(app.output) == ["text/html"]
    detailed = widgets.mask_explorer(app.result, image32, detailed=True)  # the matplotlib figure
    assert kinds(detailed.output) == ["image/png"]
    with pytest.raises(ValueError):
        widgets.mask_explorer(tiny_components, image32)


def test_mask_explorer_shows_errors(mask_result, image32, monkeypatch):
    app = widgets.mask_explorer(mask_result, image32)

    def broken(*a, **k):
        raise RuntimeError("drawing failed\nsecond line")

    monkeypatch.setattr(widgets.viz, "mask_strip", broken)
    app.controls["threshold"].value = 0.3  # must not raise
    assert "RuntimeError: drawing failed" in app.status.value
    assert app.output.outputs[-1]["name"] == "stderr"
    assert "second line" not in app.output.outputs[-1]["text"]


# --------------------------------------------------------------------------- explorer


@pytest.fixture()
def app(tiny_components):
    return widgets.explorer(tiny_components, scene=3, settings=SMALL)


def test_explorer_starts_on_a_toy_scene(app):
    assert app.image is not None and app.edit_spec is not None
    assert app.controls["source"].value == app.edit_spec.source
    assert app.controls["target"].value == app.edit_spec.target
    assert app.mask is not None and app.mask_computations == 1
    assert kinds(app.mask_output) == ["text/html"]
    assert app.last_error is None and "IoU" in app.status.value
    expected = {"scene", "kind", "upload", "source", "target", "n", "mask_noise", "seed", "clamp_ratio",
                "threshold", "rescale", "fill_holes", "close", "encoding_ratio", "steps", "guidance"}
    assert set(app.controls) == expected


def test_explorer_threshold_sliders_are_free(app):
    before = app.mask_computations
    seen = {outputs(app.mask_output)}
    for name in ("clamp_ratio", "threshold", "rescale", "fill_holes"):
        for value in sweep(app.controls[name]):
            app.controls[name].value = value
            seen.add(outputs(app.mask_output))
            assert getattr(app.mask, name) == same(value)
    assert app.mask_computations == before  # no model call
    assert len(seen) > 2 and app.last_error is None


def test_explorer_ignores_float_noise_from_the_browser(app):
    """Browsers echo slider values with float noise (0.4 → 0.39999999999999997): no redo."""
    app.run_button.click()
    done = app.status.value
    redraw = outputs(app.mask_output)
    computations = app.mask_computations
    for name in ("threshold", "clamp_ratio", "mask_noise"):
        app.controls[name].value = app.controls[name].value * (1 + 1e-15) - 1e-17
    assert app.mask_computations == computations and outputs(app.mask_output) == redraw
    assert app.status.value == done  # "edit 1 done …" is not overwritten
    assert widgets.moved({"old": 0.4, "new": 0.45}) and not widgets.moved({"old": 0.4, "new": 0.39999999999999997})


@pytest.mark.parametrize("name", ["n", "mask_noise", "seed", "steps"])
def test_explorer_mask_inputs_recompute(app, name):
    control = app.controls[name]
    app.controls["steps"].value = 20  # so that every mask strength covers a DDIM step
    values = sweep(control) if name != "seed" else [1, 12345]
    if name == "steps":  # keep the tiny model's mask timestep well defined and quick
        values = [control.min, 10, 25]
    for value in values:
        before, changed = app.mask_computations, control.value != value
        control.value = value
        assert app.mask_computations == before + changed, name
        assert app.last_error is None, app.last_error
    if name == "n":
        assert app.mask.n == control.value


def test_explorer_scene_and_kind(app):
    old = app.image
    app.controls["scene"].value = 7
    assert app.image is not old and app.controls["target"].value == app.edit_spec.target
    app.controls["kind"].value = "shape"
    assert app.edit_spec.kind == "shape"
    app.controls["scene"].value = app.controls["scene"].max  # extreme seeds are fine too
    assert app.last_error is None


def test_explorer_texts(app):
    app.controls["source"].value = ""  # the empty reference is allowed
    assert app.last_error is None and app.mask.n == SMALL["n"]
    app.controls["target"].value = ""
    assert app.mask is None and "target" in app.status.value  # asks for Q, no error
    app.run_button.click()  # running without Q: a message, not an exception
    assert "⚠ ValueError" in app.status.value and app.output.outputs[-1]["name"] == "stderr"
    app.controls["target"].value = "a blue circle"
    assert app.mask is not None


def test_explorer_run_matches_edit(app, tiny_components):
    from diffedit_lab import edit

    app.run_button.click()
    assert app.last_error is None, app.last_traceback
    assert app.runs == 1 and app.inversions == 1
    assert kinds(app.output) == ["image/png", "stdout"]
    assert "toy checker" in app.output.outputs[1]["text"]
    assert app.progress.value == app.progress.max
    ctl = app.controls
    ref = edit(tiny_components, app.image, ctl["source"].value, ctl["target"].value, n=ctl["n"].value,
               mask_noise=ctl["mask_noise"].value, clamp_ratio=ctl["clamp_ratio"].value,
               threshold=ctl["threshold"].value, encoding_ratio=ctl["encoding_ratio"].value, steps=ctl["steps"].value,
               guidance=ctl["guidance"].value, seed=ctl["seed"].value, fill_holes=ctl["fill_holes"].value,
               rescale=ctl["rescale"].value, progress=False)
    assert torch.allclose(app.result.latents, ref.latents, atol=1e-5)


def test_explorer_run_sweeps_and_caches(app):
    app.run_button.click()
    first = outputs(app.output)
    for value in sweep(app.controls["guidance"]):
        app.controls["guidance"].value = value
        app.run_button.click()
    assert app.inversions == 1  # guidance does not change the encoding: cached
    for value in (0.25, app.controls["encoding_ratio"].max):
        app.controls["encoding_ratio"].value = value
        app.run_button.click()
    assert app.inversions == 3 and app.runs == 6
    assert outputs(app.output) != first and app.last_error is None, app.last_traceback
    assert not app.run_button.disabled


def test_explorer_too_small_strength_is_a_message(app):
    app.controls["steps"].value = 2
    app.controls["encoding_ratio"].value = app.controls["encoding_ratio"].min  # 2 × 0.1 covers no DDIM step
    app.run_button.click()
    assert "⚠ ValueError" in app.status.value and not app.run_button.disabled


def test_explorer_upload(app):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 80, 3), dtype=np.uint8)).save(buf, "PNG")
    data = buf.getvalue()
    app.controls["upload"].value = ({"name": "x.png", "type": "image/png", "size": len(data),
                                     "content": memoryview(data), "last_modified": NOW},)
    assert app.edit_spec is None and app.true_mask is None
    side = app.c.unet.config.sample_size * app.c.vae_scale_factor
    assert app.image.size == (side, side)  # centre-cropped square at the model's size
    assert app.mask is None  # the scene's texts were cleared: type Q
    app.controls["target"].value = "a red circle"
    app.run_button.click()
    assert app.last_error is None and "toy checker" not in app.status.value
    app.controls["upload"].value = ({"name": "bad.png", "type": "image/png", "size": 3,
                                     "content": memoryview(b"abc"), "last_modified": NOW},)
    assert "⚠" in app.status.value  # not an image: a message


def test_explorer_without_model_reports(monkeypatch):
    import diffedit_lab.models as models

    def missing(*a, **k):
        raise models.ModelNotFoundError("no model here")

    monkeypatch.setattr(models, "load_components", missing)
    app = widgets.explorer()  # the widget is built all the same
    assert "ModelNotFoundError: no model here" in app.status.value
    app.run_button.click()
    assert "ModelNotFoundError" in app.output.outputs[-1]["text"]
    assert app.widget.children  # still a live widget


def test_fit_to_model(tiny_components):
    img = Image.new("RGBA", (90, 40), (255, 0, 0, 128))
    out = widgets.fit_to_model(tiny_components, img)
    assert out.mode == "RGB" and out.size == (32, 32)
    assert widgets.fit_to_model(tiny_components, img, side=16).size == (16, 16)
    assert widgets.uploaded_image(()) is None


# --------------------------------------------------------------------------- off the script (issue 17)


def html_of(out) -> str:
    return "".join(o.get("data", {}).get("text/html", "") + o.get("text", "") for o in out.outputs)


@pytest.fixture()
def scene0(tiny_components):
    app = widgets.explorer(tiny_components, scene=0, settings=SMALL)  # a green square and a yellow square
    assert app.edit_spec.source == "a green square and a yellow square" and app.edit_spec.index == 1
    return app


def test_explorer_scores_the_texts_as_typed(scene0):
    app, spec = scene0, scene0.edit_spec
    assert np.array_equal(app.true_mask, spec.mask) and "IoU with the true mask" in app.status.value
    # a target the world cannot score: no true mask, no IoU, no checker verdict
    app.controls["target"].value = "a purple star and a yellow square"
    assert app.true_mask is None and app.scored_edit is None and not app.reading
    assert "no true mask for this text" in app.status.value and "IoU" not in app.status.value
    assert "purple" in app.status.value
    assert "vs true mask" not in html_of(app.mask_output)
    app.run_button.click()
    assert app.last_error is None, app.last_traceback
    assert "toy checker: no true mask for this text" in app.output.outputs[-1]["text"]
    # another object: the green square becomes blue — scored against the green square
    app.controls["target"].value = "a blue square and a yellow square"
    assert app.scored_edit.index == 0 and np.array_equal(app.true_mask, spec.scene.masks[0])
    assert "IoU with the true mask" in app.status.value and "vs true mask" in html_of(app.mask_output)
    iou = mask_iou(app.mask.upsampled(spec.mask.shape[::-1])[0], spec.scene.masks[0])
    assert f"IoU with the true mask {iou:.2f}" in app.status.value
    app.run_button.click()
    text = app.output.outputs[-1]["text"]
    assert "toy checker: target object" in text and "no true mask" not in text
    # back to another scene: its own edit again
    app.controls["scene"].value = 5
    assert np.array_equal(app.true_mask, app.edit_spec.mask) and app.scored_edit.target == app.edit_spec.target


def test_explorer_shows_the_round_trip_and_split_differences(app):
    rt = app.roundtrip
    assert rt is not None and np.asarray(rt.reconstruction).shape == np.asarray(app.image).shape
    shown = html_of(app.input_output)
    assert f"{rt.psnr:.1f} dB" in shown and "alt='VAE(input)'" in shown
    app.run_button.click()
    assert app.last_error is None, app.last_traceback
    text = app.output.outputs[-1]["text"]
    assert "what the edit did, |output − VAE(input)|" in text and "what the autoencoder loses" in text
    from diffedit_lab import viz

    d_edit, d_vae = viz.difference_maps(app.image, rt.reconstruction, app.result.image)
    keep = ~viz.resize_mask(app.result.mask, d_edit.shape[::-1])
    assert f"mean {float(d_edit[keep].mean()):.3f} outside" in text
    assert f"mean {float(d_vae[keep].mean()):.3f} outside" in text


def test_builtin_explorer_explains_only_an_image_it_cannot_represent():
    """The built-in model: a failing round trip comes with how far the image is from its world;
    an in-world scene's passing one with nothing more (those figures would only distract)."""
    from diffedit_lab import load_components
    from diffedit_lab.toy.representable import sky_picture

    toy = load_components(device="cpu")
    app = widgets.explorer(toy, image=sky_picture(), target="a red circle", settings=SMALL)
    assert not app.roundtrip.ok and app.world_fit is not None
    assert "shapes world:" in html_of(app.input_output) and "diffedit-warning" in html_of(app.input_output)
    app = widgets.explorer(toy, scene=0, settings=SMALL)
    assert app.roundtrip.ok and app.world_fit is None and "shapes world:" not in html_of(app.input_output)


def test_builtin_explorer_scores_rich_scenes_by_their_own_world():
    """A textured or night scene of the built-in model's rich world is scored as the world drew it:
    the scene's own texts score the scene's own edit, and a text the student types is read with
    the scene's background and time of day (the world's true target passes that checker)."""
    from dataclasses import replace

    from diffedit_lab import load_components
    from diffedit_lab.toy.checker import check_edit
    from diffedit_lab.toy.world import render_rich

    app = widgets.explorer(load_components(device="cpu"), scene=1, kind="background", settings=SMALL)
    spec = app.edit_spec
    assert spec.scene.background != "plain" and app.scored_edit is spec
    app.run_button.click()  # the verdict is named for the kind
    assert "toy checker: new background" in app.status.value and "the rest kept" in app.status.value
    app.controls["target"].value = spec.source + " at night"  # the student's own edit: night
    assert app.scored_edit.kind == "night" and app.scored_edit.target_scene.background == spec.scene.background
    app.controls["kind"].value = "colour"
    app.controls["scene"].value = 0  # a night scene
    spec = app.edit_spec
    assert spec.scene.night and app.scored_edit is spec
    other = next(c for c in ("red", "blue") if c not in spec.target)
    obj = spec.target_scene.objects[spec.index]
    app.controls["target"].value = spec.target.replace(f"{obj.colour} {obj.shape}", f"{other} {obj.shape}", 1)
    assert app.scored_edit.kind == "colour" and app.scored_edit.target_scene.night
    truth = replace(spec.target_scene.objects[spec.index], colour=other, rgb=None)
    objs = tuple(truth if k == spec.index else o for k, o in enumerate(spec.target_scene.objects))
    image = render_rich(objs, spec.scene.backdrop, spec.scene.background, True).image
    assert check_edit(image, app.scored_edit) == (True, True)


def test_explorer_warns_on_an_upload_the_model_cannot_represent(tiny_components):
    """The tiny *random* model represents nothing (a real-checkpoint stand-in): the figure and a
    warning with no toy-specific advice."""
    from diffedit_lab.toy.representable import sky_picture

    app = widgets.explorer(tiny_components, image=sky_picture(), target="a red circle", settings=SMALL)
    warning = app.input_warning()
    assert warning and f"{app.roundtrip.psnr:.1f} dB" in warning and "notebook" not in warning
    assert "diffedit-warning" in html_of(app.input_output) and app.world_fit is None
    app.run_button.click()
    assert f"⚠ {warning}" in html.unescape(app.status.value)


def test_explorer_without_auto_mask_still_says_when_nothing_is_scored(tiny_components):
    app = widgets.explorer(tiny_components, scene=0, settings=SMALL, auto_mask=False)
    assert app.mask is None and np.array_equal(app.true_mask, app.edit_spec.mask)
    app.controls["target"].value = "a yellow star"
    assert app.true_mask is None and "no true mask for this text" in app.status.value


@pytest.fixture(scope="module")
def rich_components(tmp_path_factory):
    """A tiny random model whose tokenizer knows exactly the rich shapes world's words."""
    from diffedit_lab import load_components
    from diffedit_lab.testing import save_tiny_model
    from diffedit_lab.toy.world import VOCABULARY

    folder = tmp_path_factory.mktemp("tiny_rich")
    save_tiny_model(folder, words=VOCABULARY)
    return load_components(folder, device="cpu")


def test_explorer_offers_the_kinds_of_the_models_world(app, rich_components):
    from diffedit_lab.toy.world import KINDS

    assert app.world == "classic"  # the tiny model knows the classic words only
    assert [v for _, v in app.controls["kind"].options] == ["colour", "shape"]
    with pytest.raises(ValueError, match="not an edit of this model's classic world"):
        widgets.explorer(app.c, kind="background")
    rich = widgets.explorer(rich_components, scene=5, kind="background", settings=SMALL)
    assert rich.world == "rich" and [v for _, v in rich.controls["kind"].options] == list(KINDS)
    assert rich.edit_spec.kind == "background" and rich.edit_spec.scene.world == "rich"
    assert rich.controls["source"].value == rich.edit_spec.source and " on " in rich.edit_spec.target
    for kind in KINDS:  # every kind gives a scene, its texts and a mask, without an error
        rich.controls["kind"].value = kind
        assert rich.edit_spec.kind == kind and rich.last_error is None, (kind, rich.last_error)
        assert rich.controls["target"].value == rich.edit_spec.target
    assert rich.mask is not None


def test_explorer_rescale_is_free_then_marks_the_edit_stale_and_runs_with_it(app, tiny_components):
    from diffedit_lab import edit

    app.run_button.click()
    before, base = app.mask_computations, app.mask
    assert base.rescale == "mean" and not app.is_stale()
    app.controls["rescale"].value = "range"
    assert app.mask_computations == before and app.mask.rescale == "range"  # no model call
    assert torch.equal(app.mask.mask, base.rethreshold(rescale="range").mask)
    assert app.is_stale() and "rescale" in app.status.value
    app.run_button.click()
    assert app.last_error is None and not app.is_stale() and app.result.mask.rescale == "range"
    ctl = app.controls
    ref = edit(tiny_components, app.image, ctl["source"].value, ctl["target"].value, settings=app.edit_settings(),
               seed=ctl["seed"].value, progress=False)
    assert ref.edit_settings.rescale == "range" and torch.equal(app.result.mask.mask, ref.mask.mask)
