"""The HTML report in a real browser: headless Chromium renders the figures and the table (not a blank page).

Needs Debian's ``chromium`` (the CI script installs it); skipped with a visible reason when it is missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fairser.report import build_report
from test_report import assert_self_contained, make_fake_benchmark

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and Path("/usr/bin/chromium").is_file():
    CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium); browser test skipped"
)

# Run after load in a COPY of the report (the report itself has no script): counts images that decoded
# with a non-zero natural size and the rows of the paper table, and writes them into the DOM.
_PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0 && i.naturalHeight > 0; });
  var m = document.createElement("div");
  m.id = "render-probe";
  m.setAttribute("data-images", imgs.length);
  m.setAttribute("data-decoded", ok.length);
  m.setAttribute("data-sizes", imgs.map(function (i) { return i.naturalWidth + "x" + i.naturalHeight; }).join(","));
  m.setAttribute("data-table-rows", document.querySelectorAll("table.paper tbody tr").length);
  m.setAttribute("data-banner", document.getElementById("synthetic-banner") ? "yes" : "no");
  document.body.appendChild(m);
});
</script>"""


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = make_fake_benchmark(tmp_path_factory.mktemp("browser") / "results")
    return build_report(root, n_boot=100)


def test_report_renders_in_headless_chromium(report, tmp_path):
    page = report.html.read_text()
    assert_self_contained(page)
    # the Markdown tables: the gaps with their uncertainty (headline) and the paper-style table
    tables = [t.split("</table>", 1)[0] for t in page.split('<table class="paper">')[1:]]
    assert len(tables) == 2
    n_body = sum(len(re.findall(r"<tr>", t)) - 1 for t in tables)  # one header row per table

    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    dom = _chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    marker = re.search(r'<div id="render-probe"([^>]*)>', dom.stdout)
    assert marker, "the load probe never ran: " + dom.stdout[:500]
    attrs = dict(re.findall(r'data-([\w-]+)="([^"]*)"', marker.group(1)))
    assert attrs["images"] == "4" and attrs["decoded"] == "4", attrs
    sizes = [tuple(map(int, s.split("x"))) for s in attrs["sizes"].split(",")]
    expected = [Image.open(p).size for p in report.figures.values()]
    assert sizes == expected  # the browser decoded exactly the PNGs written to figures/
    assert int(attrs["table-rows"]) == n_body >= 10  # header rows excluded
    assert attrs["banner"] == "yes"

    shot = tmp_path / "report.png"
    res = _chromium(
        tmp_path, "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1280,2000", report.html.as_uri()
    )
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (2000, 1280)
    # Not a blank page: much ink, varied, and dark pixels (text, banner, figures) spread down the page.
    assert pixels.std() > 40, pixels.std()
    dark = pixels < 128
    assert dark.mean() > 0.03
    bands = np.array_split(dark, 8, axis=0)
    assert sum(b.mean() > 0.005 for b in bands) >= 6  # content all the way down, not just a header
    # The black "SYNTHETIC DATA" banner near the top: a wide run of dark rows.
    top = dark[:400]
    assert (top.mean(axis=1) > 0.5).sum() >= 20
