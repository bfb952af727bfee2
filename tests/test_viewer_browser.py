"""The viewer's page in headless Chromium: it loads, preselects a FOV / cell from
the URL hash, and shows the frame with outlines beside the cell's trace and fit."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pyama_flow.viewer import make_viewer_server
from test_viewer import build_results

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             "/usr/bin/chromium") if p and Path(p).exists()), None)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

#: The access token of these tests' server (as printed by `pyama-flow view`).
TOKEN = "browser-test-token"

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--run-all-compositor-stages-before-draw", "--hide-scrollbars"]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    results = build_results(tmp_path_factory.mktemp("viewer_browser"))
    server = make_viewer_server(str(results), "127.0.0.1", 0, token=TOKEN)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}/?token={TOKEN}#ds=demo&fov=0&cell=2&t=3&ch=1"
    server.shutdown()
    server.server_close()


def _chromium(tmp_path: Path, *args: str, budget_ms: int = 15000) -> subprocess.CompletedProcess:
    """Run headless Chromium; the page gets ``budget_ms`` of virtual time to load and settle."""
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}",
                           f"--virtual-time-budget={budget_ms}", *args],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_page_preselects_fov_cell_and_frame(url, tmp_path):
    dom = _chromium(tmp_path, "--dump-dom", url).stdout
    assert 'data-ready="1"' in dom, dom[-2000:]
    assert 'data-cell="2"' in dom and 'data-frame-loaded="3"' in dom
    assert "cell 2 · FOV 0" in dom
    assert 'class="fit"' in dom  # the fitted curve is drawn in the trace plot
    assert dom.count('class="data') == 6  # one point per frame of cell 2
    assert re.search(r'<img id="image" alt="frame" src="blob:', dom)  # the fetched PNG is shown


def test_screenshot_is_not_blank(url, tmp_path):
    shot = tmp_path / "viewer.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,900", url)
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape == (900, 1400, 3)
    assert img.std() > 20
    colours = np.unique(img.reshape(-1, 3)[::7], axis=0)
    assert len(colours) > 200  # text, plots and the frame, not a flat page
    # the frame panel holds the rendered image: many grey levels, not the page background
    frame_area = img[150:650, 240:800]
    assert len(np.unique(frame_area.reshape(-1, 3), axis=0)) > 100
    print(f"screenshot: {shot} ({shot.stat().st_size // 1024} KB)")


# -- interaction: click a cell, keyboard shortcuts ------------------------------------------------

#: A same-origin page (test only) that loads the viewer in a frame, clicks on cell 2,
#: presses b, n, b, p, g and the right arrow, and writes what the viewer showed.
HARNESS = """<!doctype html><html><body>
<iframe id="f" src="/?token=TOKEN#ds=demo&fov=0&t=3&ch=0" width="1400" height="900"></iframe>
<pre id="out"></pre>
<script>
const log = [];
function wait(cond, what) {
  return new Promise((ok, fail) => {
    const t0 = Date.now();
    (function loop() {
      let v = false; try { v = cond(); } catch (e) {}
      if (v) ok(); else if (Date.now() - t0 > 8000) fail(new Error("timeout: " + what)); else setTimeout(loop, 25);
    })();
  });
}
document.getElementById("f").onload = async () => {
  const w = document.getElementById("f").contentWindow, d = w.document;
  const key = (k) => d.dispatchEvent(new w.KeyboardEvent("keydown", { key: k, bubbles: true }));
  const cell = () => d.body.dataset.cell, state = () => d.getElementById("cell-state").textContent;
  try {
    await wait(() => d.body.dataset.ready === "1" && d.body.dataset.frameLoaded === "3", "page");
    const ov = d.getElementById("overlay"), r = ov.getBoundingClientRect();
    ov.dispatchEvent(new w.MouseEvent("click", { bubbles: true,
      clientX: r.left + (CX + 0.5) / W * r.width, clientY: r.top + (CY + 0.5) / H * r.height }));
    await wait(() => cell() === "2", "click"); log.push("click:" + cell());
    key("b"); await wait(() => state() === "bad", "b"); log.push("b:" + cell() + "=" + state());
    key("n"); await wait(() => cell() === "7", "n"); log.push("n:" + cell());
    key("b"); await wait(() => state() === "bad", "b7"); log.push("b:" + cell() + "=" + state());
    key("p"); await wait(() => cell() === "2", "p"); log.push("p:" + cell());
    key("g"); await wait(() => state() === "good", "g"); log.push("g:" + cell() + "=" + state());
    const before = d.body.dataset.frameLoaded;
    key("ArrowRight"); await wait(() => d.body.dataset.frameLoaded !== before, "arrow");
    log.push("frame:" + d.body.dataset.frameLoaded);
  } catch (e) { log.push("error:" + e.message); }
  document.getElementById("out").textContent = log.join(" ");
  document.body.dataset.done = "1";
};
</script></body></html>"""


def test_click_and_keyboard_shortcuts(tmp_path):
    from wsgiref.simple_server import make_server

    from pyama_flow.traces.features import read_traces
    from pyama_flow.viewer import ViewerApp
    from pyama_flow.viewer.server import QuietHandler, ThreadingWSGIServer
    from test_viewer import CELLS, H, W

    results = build_results(tmp_path / "tree")
    viewer = ViewerApp(results, token=TOKEN)
    cy, cx = CELLS[2][0] + 3, CELLS[2][1]  # cell 2 at frame 3
    page = (HARNESS.replace("TOKEN", TOKEN).replace("CX", str(cx)).replace("CY", str(cy))
            .replace("/ W", f"/ {W}").replace("/ H", f"/ {H}")).encode()

    def app(environ, start_response):
        if environ.get("PATH_INFO") == "/harness.html":
            start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(page)))])
            return [page]
        return viewer(environ, start_response)

    server = make_server("127.0.0.1", 0, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host, port = server.server_address[:2]
        dom = _chromium(tmp_path, "--window-size=1500,1000", "--dump-dom",
                        f"http://{host}:{port}/harness.html", budget_ms=60000).stdout
    finally:
        server.shutdown()
        server.server_close()
    out = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S).group(1)
    assert out == "click:2 b:2=bad n:7 b:7=bad p:2 g:2=good frame:4", out
    from pyama_flow.traces.curation import read_curated

    assert not (results / "demo/fov_000/traces_inspected.csv").exists()
    edited = read_curated(results / "demo/fov_000/traces.csv")
    assert set(edited.loc[~edited["good"], "cell"]) == {7}
    assert edited.loc[edited["cell"] == 7, "good"].eq(False).all()
    assert read_traces(str(results / "demo/fov_000/traces.csv"))["good"].all()  # untouched
