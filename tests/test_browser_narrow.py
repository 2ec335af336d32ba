"""The explorer in a narrow window and with a bad upload, in a real browser (JupyterLab +
Chromium, the set-up of tests/test_browser.py; issue 18).

* a 1000-px window with JupyterLab's file browser open: every slider keeps a usable track (its
  row wraps instead of squeezing it to a handle), the upload button shows its whole label and a
  real tooltip;
* a file that is not an image, uploaded: one line saying so and what to upload — no
  ``UnidentifiedImageError`` and no ``<_io.BytesIO …>``.

Screenshot: artifacts/explorer_narrow.png.
"""

from __future__ import annotations


import pytest

from test_browser import (  # noqa: F401  (fixtures)
    RUN_ALL_S, STATUS, accept_kernel_dialog, lab, page, screenshot, write_notebook)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = "explorer_narrow.ipynb"
MIN_TRACK_PX = 80  # a slider track shorter than this is a bare handle


def test_explorer_in_a_narrow_window_and_a_bad_upload(lab, page, tmp_path):
    write_notebook(lab["tmp"] / "notebooks" / NOTEBOOK)
    page.set_viewport_size({"width": 1000, "height": 1400})
    page.goto(lab["url"] + f"lab/tree/{NOTEBOOK}", wait_until="domcontentloaded")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    accept_kernel_dialog(page)
    # a narrow window hides the toolbar's kernel indicator: wait for it in the page, not on screen
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", state="attached", timeout=120_000)
    shot = None
    try:
        if not page.locator(".jp-FileBrowser").first.is_visible():  # open the file browser beside the notebook
            page.locator(".lm-TabBar-tab[data-id='filebrowser']").first.click()
        page.wait_for_selector(".jp-FileBrowser", state="visible")
        assert page.locator(".jp-FileBrowser").first.bounding_box()["width"] > 150
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        page.wait_for_selector(".jupyter-widgets button:has-text('Run edit')", timeout=RUN_ALL_S * 1000)
        page.wait_for_selector(f"{STATUS}:has-text('press Run edit')", timeout=RUN_ALL_S * 1000)

        # 1. every slider keeps a usable track
        tracks = page.locator(".jupyter-widgets .widget-slider .noUi-target")
        assert tracks.count() >= 7  # n, s, κ, τ, r, steps, w
        widths = [tracks.nth(i).bounding_box()["width"] for i in range(tracks.count())]
        assert min(widths) >= MIN_TRACK_PX, widths
        # 2. the upload button: its whole label, and a tooltip that says what it is for
        upload = page.locator(".widget-upload").first
        assert "Upload image" in upload.inner_text()
        assert upload.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), "the upload label is cut off"
        title = upload.get_attribute("title") or ""
        assert "image" in title and title != "null", title
        shot = screenshot(page, "explorer_narrow.png")

        # 3. a file that is not an image
        bad = tmp_path / "notes.png"
        bad.write_text("these are my notes, not a picture\n")
        with page.expect_file_chooser() as chooser:
            upload.click()
        chooser.value.set_files(str(bad))
        page.wait_for_selector(f"{STATUS}:has-text('is not an image this explorer can read')", timeout=RUN_ALL_S * 1000)
        status = page.locator(STATUS, has_text="is not an image").first.inner_text()
        assert "notes.png" in status and "PNG, JPEG or WebP" in status and "\n" not in status.strip()
        text = page.locator(".jupyter-widgets").first.inner_text()
        assert "BytesIO" not in text and "UnidentifiedImageError" not in text
        shot = screenshot(page, "explorer_bad_upload.png")
    finally:
        if shot is None:
            shot = screenshot(page, "explorer_narrow_failed.png")
        print(f"screenshot: {shot}")
