"""`make app`: the explorer (notebook 05) served by Voilà, driven in a real browser.

Starts Voilà on a free loopback port with the notebook the Makefile's ``app`` target serves, opens
the page in Debian's Chromium through Playwright (the set-up of tests/test_browser.py: never
``playwright install``), and checks that the page shows the app without code cells, that moving
the threshold slider re-thresholds the mask, and that clicking *Run edit* makes an edit whose
result is drawn. A screenshot is saved to artifacts/app.png.

Skipped only where Chromium is not installed (``scripts/install_browser.sh`` installs it).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the browser set-up of tests/test_browser.py
from test_browser import CHROMIUM, FLAGS, RUN_ALL_S, free_port, nudge_threshold, screenshot, stop_server  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
SERVER_START_S = 120


def app_command() -> list[str]:
    """What `make app` runs (make -n: printed, not run), as an argument list."""
    out = subprocess.run(["make", "-s", "-n", "app", "STAMP=", f"VENV={Path(sys.prefix)}"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.strip().splitlines()
    [line] = [x for x in out if "voila" in x]
    return shlex.split(line)


def test_make_app_serves_the_explorer_with_voila():
    cmd = app_command()
    assert Path(cmd[0]).name == "voila" and cmd[1] == "notebooks/05_explorer.ipynb", cmd
    assert (ROOT / cmd[1]).is_file()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """Voilà serving the explorer notebook, its URL; stopped afterwards."""
    import importlib.util

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed and could not be installed here "
                    "(scripts/install_browser.sh: apt-get install chromium)")
    missing = [m for m in ("playwright", "voila") if importlib.util.find_spec(m) is None]
    assert not missing, f"`make app` and its test need {missing} (pip install -e '.[dev]')"
    notebook = app_command()[1]
    tmp = tmp_path_factory.mktemp("voila")
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), JUPYTER_CONFIG_DIR=str(tmp / "config"),
               HF_HUB_OFFLINE="1", MPLBACKEND="module://matplotlib_inline.backend_inline")
    log = tmp / "voila.log"
    cmd = [sys.executable, "-m", "voila", notebook, "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"voila exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:  # any HTTP answer means the server is up (the page itself runs the notebook: slow)
                with urllib.request.urlopen(url + "voila/static/", timeout=2):
                    break
            except urllib.error.HTTPError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"voila did not answer within {SERVER_START_S} s:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield {"url": url, "tmp": tmp, "log": log}
    finally:
        stop_server(proc)


def test_app_page_moves_the_threshold_and_runs_an_edit(app):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            user_data_dir=str(app["tmp"] / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=FLAGS, viewport={"width": 1400, "height": 1000})
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(60_000)
        try:
            page.goto(app["url"], wait_until="domcontentloaded", timeout=RUN_ALL_S * 1000)
            run = page.locator(".jupyter-widgets button:has-text('Run edit')").first
            run.wait_for(timeout=RUN_ALL_S * 1000)
            # the notebook's own cell that drives the app from code makes the first edit
            page.wait_for_selector(".widget-html-content:has-text('edit 1 done')", timeout=RUN_ALL_S * 1000)
            text = page.locator("body").inner_text()
            assert "Error displaying widget" not in text and "Traceback" not in text, text[-2000:]
            assert "load_components" not in text, "Voilà must not show the code cells"
            assert page.locator(".jupyter-widgets .widget-slider").count() >= 7

            # the threshold slider: the mask strip re-thresholds (no model call)
            nudge_threshold(page, "ArrowLeft")

            # Run edit in the page: a second edit, and its figure in the app's output
            images_before = page.locator(".jupyter-widgets .jp-OutputArea-output img").count()
            run.click()
            page.wait_for_selector(".widget-html-content:has-text('edit 2 done')", timeout=RUN_ALL_S * 1000)
            page.wait_for_selector(".jupyter-widgets button:has-text('Run edit'):not([disabled])")
            result = page.locator(".jupyter-widgets .jp-OutputArea-output:has-text('vs true mask: IoU')")
            assert result.count() >= 1, "the edit's result (its caption) is not on the page"
            assert page.locator(".jupyter-widgets .jp-OutputArea-output img").count() >= max(1, images_before)
            assert "⚠" not in page.locator(".jupyter-widgets").first.inner_text()
        finally:
            shot = screenshot(page, "app.png")
            print(f"screenshot: {shot}")
            context.close()
    assert shot.stat().st_size > 10_000
