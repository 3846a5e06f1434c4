"""report.html in a real headless Chromium: the page paints, the plots and the item table are in
the DOM after the scripts ran, and the filter/sort script works (driven through the URL).

Skips when no Chromium is installed, except under CI=true (`.ci/run` installs Debian's
`chromium`), where a missing browser fails the test."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from obliviate.report.html import write_html_report

WIDTH, HEIGHT = 1400, 2200


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true but no chromium on PATH (.ci/run installs it with apt-get install -y chromium)")
    pytest.skip("no chromium on PATH (apt-get install -y chromium)")


def _run(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    # --no-sandbox: CI containers run as root; a private profile keeps runs independent
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--user-data-dir={tmp / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


@pytest.fixture
def page(run_dir):
    return write_html_report(run_dir)


def test_screenshot_is_a_painted_png_of_the_window_size(page, tmp_path):
    shot = tmp_path / "report.png"
    _run(f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}", page.as_uri(), tmp=tmp_path)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (WIDTH, HEIGHT)  # IHDR width, height
    from PIL import Image

    img = Image.open(shot).convert("RGB").resize((140, 220))
    colours = img.getcolors(maxcolors=140 * 220)
    white = max(colours)[0] / (140 * 220)
    assert len(colours) > 200 and white < 0.95, (len(colours), white)  # text and plots, not a blank page


def test_dom_after_scripts_has_plots_and_a_filtered_sorted_item_table(page, tmp_path):
    dom = _run("--dump-dom", page.as_uri(), tmp=tmp_path).stdout
    assert dom.count("<svg") == 6 and 'id="item-table"' in dom
    assert 'id="item-count">4 of 4 items shown<' in dom  # the script ran on load
    # ?filter= keeps the items whose row mentions "Bo Lin"; ?sort= orders by the oracle's column
    dom = _run("--dump-dom", page.as_uri() + "?filter=Bo%20Lin&set=retain", tmp=tmp_path).stdout
    assert 'id="item-count">2 of 4 items shown<' in dom
    rows = re.findall(r'<tr data-set="(\w+)"( hidden="")?>.*?<td>([^<]*\?)</td>', dom, re.S)
    assert [(s, bool(h)) for s, h, _ in rows] == [("forget", True), ("forget", True), ("retain", False),
                                                   ("retain", False)]
    dom = _run("--dump-dom", page.as_uri() + "?sort=%23&order=desc", tmp=tmp_path).stdout
    indexes = re.findall(r'<tr data-set="\w+"[^>]*><td>\w+</td><td data-v="(\d+)">', dom)
    assert indexes == ["1", "1", "0", "0"] and 'data-order="desc"' in dom
