"""The explorer notebook in a real browser: JupyterLab 4 + ipywidgets 8, driven headless.

Starts JupyterLab on a free loopback port (no token) over a temporary copy of the notebooks,
opens notebooks/05_explorer.ipynb in Debian's Chromium through Playwright (never
``playwright install``: it downloads a browser of its own), runs all cells, and checks that
the widgets rendered — sliders and the Run button present, no "Error displaying widget" — that
moving a slider in the page re-thresholds the mask, and that clicking Run in the page makes an
edit. A screenshot is saved to artifacts/explorer.png.

Skipped only where Chromium is not installed (``scripts/install_browser.sh`` installs it; the
Makefile's test target runs that script first).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "05_explorer.ipynb"
CHROMIUM = Path(os.environ.get("DIFFEDIT_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = ROOT / "artifacts"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_S = 120
RUN_ALL_S = 420  # model load, mask and one 25-step edit on a slow, shared CPU


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "api/status", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"JupyterLab did not answer within {SERVER_START_S} s:\n{log.read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    """Terminate a server started by a fixture (killed if it does not stop within 20 s)."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a copy of notebooks/, its URL; stopped afterwards."""
    import importlib.util

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed and could not be installed here "
                    "(scripts/install_browser.sh: apt-get install chromium)")
    missing = [m for m in ("playwright", "jupyterlab", "jupyterlab_widgets") if importlib.util.find_spec(m) is None]
    assert not missing, (f"the browser test needs {missing} in the test environment (pip install playwright "
                         "jupyterlab jupyterlab_widgets; never `playwright install`)")
    if not (ROOT / "notebooks" / NOTEBOOK).is_file():
        pytest.fail(f"notebooks/{NOTEBOOK} is missing")

    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "notebooks"
    shutil.copytree(ROOT / "notebooks", root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    settings = tmp / "settings" / "@jupyterlab"
    for extension, name, values in [
        ("apputils-extension", "notification", {"fetchNews": "false", "checkForUpdates": False}),  # no network
        ("notebook-extension", "tracker", {"windowingMode": "none"}),  # every cell stays in the DOM
    ]:
        (settings / extension).mkdir(parents=True)
        (settings / extension / f"{name}.jupyterlab-settings").write_text(json.dumps(values))
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), JUPYTER_CONFIG_DIR=str(tmp / "config"),
               HF_HUB_OFFLINE="1", MPLBACKEND="module://matplotlib_inline.backend_inline")
    log = tmp / "lab.log"
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           "--ServerApp.port_retries=0", "--IdentityProvider.token=", "--ServerApp.password=",
           "--ServerApp.disable_check_xsrf=True", f"--ServerApp.root_dir={root}",
           f"--LabApp.user_settings_dir={tmp / 'settings'}", f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
           "--LabServerApp.open_browser=False"] + (["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_server(url, proc, log)
        yield {"url": url, "tmp": tmp, "log": log}
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def page(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            user_data_dir=str(lab["tmp"] / "chromium-profile"),  # a fresh profile
            executable_path=str(CHROMIUM), headless=True, args=FLAGS, viewport={"width": 1400, "height": 1000},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(60_000)
            yield page
        finally:
            context.close()


def accept_kernel_dialog(page, wait_s: float = 20) -> None:
    """JupyterLab may ask which kernel to start (the notebook's own, preselected): accept it."""
    button = page.locator(".jp-Dialog button:has-text('Select')")
    try:
        button.first.wait_for(state="visible", timeout=wait_s * 1000)
    except Exception:  # no dialog: the kernel was started without asking
        return
    button.first.click()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


STATUS = ".jupyter-widgets .widget-html-content"  # the explorer's status line
EXPLORER_CELLS = [  # a short explorer notebook for the tests that drive it off the script
    "import torch\ntorch.set_num_threads(1)\nfrom diffedit_lab.widgets import explorer",
    "app = explorer(scene=0, kind='colour', settings={'steps': 10, 'n': 4})\napp",
]


def write_notebook(path: Path, cells: list[str] = EXPLORER_CELLS) -> None:
    """A notebook of ``cells`` (code, no outputs) at ``path``."""
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": src}
                    for src in cells],
          "nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}}
    path.write_text(json.dumps(nb))


def nudge_threshold(page, key: str = "ArrowRight") -> None:
    """Move the threshold slider two steps with the keyboard and wait until the mask strip
    re-thresholds (no model call)."""
    strip = page.locator(".jupyter-widgets .jp-OutputArea-output:has-text('τ =')").first
    before = strip.inner_text()
    handle = page.locator(".widget-slider:has(.widget-label:text-is('threshold τ')) .noUi-handle").first
    handle.focus()
    page.keyboard.press(key)
    page.keyboard.press(key)
    page.wait_for_function(
        "before => [...document.querySelectorAll('.jupyter-widgets .jp-OutputArea-output')]"
        ".some(e => e.innerText.includes('τ =') && e.innerText !== before)", arg=before, timeout=60_000)


def test_explorer_renders_and_runs_in_jupyterlab(lab, page):
    page.goto(lab["url"] + f"lab/tree/{NOTEBOOK}", wait_until="domcontentloaded")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    accept_kernel_dialog(page)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
    try:
        # Run ▸ Run All Cells
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

        # the app is drawn, and the cell that drives it from code ends with an edit: its figure and
        # caption appear in the app's output (the status line may already show a later message:
        # sliders drawn after the cell ran can report their value back, which re-thresholds)
        page.wait_for_selector(".jupyter-widgets button:has-text('Run edit')", timeout=RUN_ALL_S * 1000)
        page.wait_for_selector(".jupyter-widgets .jp-OutputArea-output:has-text('edit 1 done')",
                               timeout=RUN_ALL_S * 1000)
        page.wait_for_selector(".jupyter-widgets .jp-OutputArea-output:has-text('vs true mask: IoU')")
        text = page.locator(".jp-Notebook").inner_text()
        assert "Error displaying widget" not in text
        assert "Failed to load model class" not in text
        assert page.locator(".jupyter-widgets .widget-slider").count() >= 7  # n, s, κ, τ, r, steps, w
        assert page.locator(".widget-upload").count() == 1

        # move the threshold slider in the page: the mask strip re-thresholds (no model call)
        nudge_threshold(page, "ArrowRight")

        # click Run edit in the page: a second edit
        page.locator(".jupyter-widgets button:has-text('Run edit')").first.click()
        page.wait_for_selector(".widget-html-content:has-text('edit 2 done')", timeout=RUN_ALL_S * 1000)
        page.wait_for_selector(".jupyter-widgets button:has-text('Run edit'):not([disabled])")
        assert "⚠" not in page.locator(".jupyter-widgets").first.inner_text()
    finally:
        shot = screenshot(page, "explorer.png")
        print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000
