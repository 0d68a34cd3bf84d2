"""The class's own setup: JupyterLab in a real (headless) browser runs notebook 06 and its upload widget.

Needs Chromium (Debian's `chromium`; `.ci/run` installs it) and Playwright's Python driver (the test extra).
Where Chromium is missing the test is skipped, unless FACEATTR_REQUIRE_BROWSER=1 (set by `.ci/run`) makes
that a failure.
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
from matplotlib import cbook

from faceattr.model import build_model
from faceattr.runs import RunFolder

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# As the machine notes say: no sandbox as root, and no background connections on a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TOKEN = "faceattr-test"

if not CHROMIUM and os.environ.get("FACEATTR_REQUIRE_BROWSER") != "1":
    pytest.skip("Chromium is not installed (apt-get install chromium)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def lab(tmp_path, sample_dir):
    """JupyterLab serving a copy of notebook 06 beside a run folder with a small model trained on 'the sample'."""
    (tmp_path / "notebooks").mkdir()
    shutil.copy(ROOT / "notebooks" / "06_faces_in_the_wild.ipynb", tmp_path / "notebooks")
    run = RunFolder(tmp_path / "runs" / "notebooks")
    run.root.mkdir(parents=True)
    build_model(image_size=32, trunk_filters=(8, 16)).save(run.model)
    with run.writing(replacing=[]):  # config.json is written under the run folder's lock
        run.write_run_config(sample_dir, synthetic=True, seed=42, image_size=32, arch="default")
    settings = tmp_path / ".jupyter" / "lab" / "user-settings" / "@jupyterlab"
    for extension, name, value in (("notebook-extension", "tracker", {"windowingMode": "none",  # all cells in the page
                                                                       "autoStartDefaultKernel": True}),
                                   ("apputils-extension", "notification", {"fetchNews": "false"})):
        (settings / extension).mkdir(parents=True, exist_ok=True)
        (settings / extension / f"{name}.jupyterlab-settings").write_text(json.dumps(value))
    port = free_port()
    env = {**os.environ, "FACEATTR_DATA": str(sample_dir), "JUPYTER_CONFIG_DIR": str(tmp_path / ".jupyter"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / ".workspaces")}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={tmp_path}", "--allow-root",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, stdout=subprocess.DEVNULL, stderr=(tmp_path / "lab.log").open("w"))
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        yield base, tmp_path
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_notebook_06_runs_in_jupyterlab_and_its_upload_widget_shows_the_faces(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    base, root = lab
    not_a_photo = tmp_path / "notes.jpg"
    not_a_photo.write_text("not a photo")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            drive(page, base, not_a_photo)
        finally:
            page.screenshot(path=str(root / "lab.png"))
            browser.close()


def run_all(page) -> None:
    """Run > Run All Cells."""
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_text("Run All Cells", exact=True).click()


def choose(page, button, path: str) -> None:
    """Press the upload button and pick `path` in the file chooser it opens."""
    with page.expect_file_chooser() as chooser:
        button.click()
    chooser.value.set_files(path)


def drive(page, base: str, not_a_photo: Path) -> None:
    """Open notebook 06, run every cell, upload Grace Hopper, then a file that is not a photo."""
    from playwright.sync_api import expect

    page.goto(f"{base}/lab/tree/notebooks/06_faces_in_the_wild.ipynb?token={TOKEN}")
    expect(page.locator(".jp-Notebook")).to_be_visible(timeout=60_000)
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1, timeout=60_000)
    expect(page.locator(".jp-StatusBar-Widget", has_text="faceattr (.venv) | Idle")).to_have_count(
        1, timeout=60_000)
    upload = page.locator("button.widget-upload")
    run_all(page)
    select = page.locator(".jp-Dialog").get_by_role("button", name="Select", exact=True)
    for _ in range(240):  # JupyterLab may still ask which kernel to use: accept its choice and run again
        if upload.count():
            break
        if select.count():
            select.click()
            run_all(page)
        page.wait_for_timeout(1000)
    expect(upload).to_have_count(1)
    choose(page, upload, cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    shown = page.locator(".widget-output")
    expect(shown.locator("img")).to_have_count(1, timeout=120_000)
    shown.scroll_into_view_if_needed()
    choose(page, upload, str(not_a_photo))
    expect(shown).to_contain_text("notes.jpg is not a readable image", timeout=60_000)
    expect(shown.locator("img")).to_have_count(0)
    assert page.locator("[data-mime-type='application/vnd.jupyter.error']").count() == 0
