"""The explorer off the script, in a real browser (JupyterLab + Chromium, as tests/test_browser.py).

A student types their own target texts and uploads their own picture:

* a target the scene cannot score ("a purple star and a yellow square": three changes) → the app
  says "no true mask for this text", and why, and shows no IoU; a target that scores *another*
  object ("… a small blue star at night" on "a big purple circle and a small red star at night") →
  the true mask is that object's, with its IoU;
* an out-of-world upload (sky gradient, sun, grass) → the warning beside the upload with its
  round-trip PSNR — the very figure ``metrics.representability`` measures here — and the same
  warning after the edit;
* after Run, the two difference images and their line: what the edit did, what the autoencoder loses.

Screenshots: artifacts/explorer_texts.png, artifacts/explorer_upload.png.
"""

from __future__ import annotations

import re

import pytest

from test_browser import (  # noqa: F401  (fixtures)
    RUN_ALL_S, STATUS, accept_kernel_dialog, lab, page, screenshot, write_notebook)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = "explorer_off_script.ipynb"


def type_text(page, label: str, text: str) -> None:
    """Type into the explorer's text box ``label`` and press Enter (the boxes update on Enter)."""
    box = page.locator(f".widget-text:has(.widget-label:text-is('{label}')) input").first
    box.fill(text)
    box.press("Enter")


def wait_status(page, text: str, timeout_s: float = 120) -> None:
    page.wait_for_selector(f"{STATUS}:has-text('{text}')", timeout=timeout_s * 1000)


@pytest.fixture(scope="module")
def sky_png(tmp_path_factory):
    from diffedit_lab.toy.representable import sky_picture

    path = tmp_path_factory.mktemp("upload") / "sky.png"
    sky_picture(300, 200).save(path)
    return path


@pytest.fixture(scope="module")
def sky_psnr(sky_png):
    """The round-trip PSNR of the sky picture, measured here the way the explorer measures it."""
    import torch

    from diffedit_lab import load_components
    from diffedit_lab.metrics import representability
    from diffedit_lab.widgets import fit_to_model

    torch.set_num_threads(1)
    c = load_components(device="cpu")
    rt = representability(c, fit_to_model(c, sky_png))
    assert not rt.ok  # the picture is out of the built-in model's world
    return rt.psnr


def test_explorer_off_script(lab, page, sky_png, sky_psnr):
    write_notebook(lab["tmp"] / "notebooks" / NOTEBOOK)
    page.goto(lab["url"] + f"lab/tree/{NOTEBOOK}", wait_until="domcontentloaded")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    accept_kernel_dialog(page)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
    shot = None
    page.set_viewport_size({"width": 1400, "height": 2400})  # the whole app in one screenshot
    try:
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        page.wait_for_selector(".jupyter-widgets button:has-text('Run edit')", timeout=RUN_ALL_S * 1000)
        wait_status(page, "IoU with the true mask", RUN_ALL_S)  # the scene's own texts: scored
        app = page.locator(".jupyter-widgets.widget-vbox:has-text('DiffEdit explorer')").first
        app_text = app.inner_text
        assert "VAE round trip" in app_text() and "✓" in app_text()  # an in-world scene: no warning
        assert page.locator(".diffedit-warning").count() == 0

        # 1. a target the world cannot score: no true mask, no IoU
        type_text(page, "target Q", "a purple star and a yellow square")
        wait_status(page, "no true mask for this text")
        status = page.locator(STATUS, has_text="no true mask").first.inner_text()
        assert "changes" in status and "IoU" not in status  # why: the target changes more than one object
        assert "vs true mask" not in app_text()  # the mask strip has no comparison panel

        # 2. a target that changes the *other* object (scene 0: "a big purple circle and a small red star
        # at night", whose edit recolours the circle): scored against the star
        type_text(page, "target Q", "a big purple circle and a small blue star at night")
        wait_status(page, "IoU with the true mask")
        iou = float(re.search(r"IoU with the true mask (\d\.\d\d)", app_text()).group(1))
        assert iou > 0.3, app_text()  # the mask moved onto the star, and so did the truth
        page.locator(".jupyter-widgets button:has-text('Run edit')").first.click()
        wait_status(page, "edit 1 done", RUN_ALL_S)
        text = app_text()
        assert "toy checker: target object" in text and "no true mask" not in text
        # 3. the difference images: the edit's figure and its line
        assert "what the edit did" in text and "what the autoencoder loses" in text
        assert page.locator(".jupyter-widgets .jp-OutputArea-output img").count() >= 2
        shot = screenshot(page, "explorer_texts.png")

        # 4. an out-of-world upload: the warning with its measured round-trip PSNR, beside the upload
        with page.expect_file_chooser() as chooser:  # ipywidgets 8 keeps its <input type=file> out of the page
            page.locator(".widget-upload").first.click()
        chooser.value.set_files(str(sky_png))
        page.wait_for_selector(".diffedit-warning", timeout=RUN_ALL_S * 1000)
        warning = page.locator(".diffedit-warning").first.inner_text()
        assert f"{sky_psnr:.1f} dB" in warning, (warning, sky_psnr)
        assert "real checkpoint" in warning and "06_real_models" in warning
        assert page.locator(".jupyter-widgets img[alt='VAE(input)']").count() == 1
        type_text(page, "source R", "a sky")
        type_text(page, "target Q", "a red circle")
        wait_status(page, "press Run edit", RUN_ALL_S)
        page.locator(".jupyter-widgets button:has-text('Run edit')").first.click()
        wait_status(page, "edit 2 done", RUN_ALL_S)
        status = page.locator(STATUS, has_text="edit 2 done").first.inner_text()
        assert f"{sky_psnr:.1f} dB" in status and "toy checker" not in status  # an upload: nothing to score
        shot = screenshot(page, "explorer_upload.png")
        assert "Error displaying widget" not in page.locator(".jp-Notebook").inner_text()
    finally:
        if shot is None:
            shot = screenshot(page, "explorer_off_script_failed.png")
        print(f"screenshot: {shot}")
