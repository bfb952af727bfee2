"""The demo's Snakemake report, built and opened in a real (headless) Chromium.

Runs the demo workflow in a temporary folder, then ``snakemake --report
report.html`` there, and checks:

* every QC result of every FOV is in the report under its category, and every
  picture is a real picture (pixel variance), not a blank;
* the main page (rule graph, workflow description, categories) renders in
  Chromium: screenshot not blank, DOM has the categories;
* a FOV page renders: Snakemake's report is a single-page app without URLs,
  so the report is opened through :func:`pyama_flow.report.deep_links.add_report_deep_links`
  (``report.html#result=results/demo/fov_000/qc/outlines.png`` opens that
  result in its category/subcategory); the screenshot shows the outlines;
* the per-frame statistics table has one row per frame (its HTML page, taken
  from the report, rendered by Chromium and read back from the DOM).

Skipped, with the reason, only when Chromium is not installed
(``apt-get install -y chromium``) or cannot start.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pyama_flow.report.deep_links import add_report_deep_links
from pyama_flow.report.display import track_color

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
FOVS = ("000", "001")
N_FRAMES = 40
WINDOW = (1600, 1000)

pytestmark = pytest.mark.slow


def _snakemake(workdir: Path, *args: str) -> None:
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(ROOT / "config" / "config.yaml"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")


def _chromium(profile: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--hide-scrollbars",
        f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=10000",
        "--run-all-compositor-stages-before-draw",  # finished transitions: stable pictures
        *args, url,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def screenshot(profile: Path, url: str, out: Path) -> np.ndarray:
    """Chromium's screenshot of ``url`` as float RGB in [0, 1]."""
    from PIL import Image

    proc = _chromium(profile, url, f"--screenshot={out}")
    assert out.exists(), f"no screenshot of {url}:\n{proc.stderr[-3000:]}"
    return np.asarray(Image.open(out).convert("RGB"), dtype=np.float64) / 255.0


def dump_dom(profile: Path, url: str) -> str:
    """The DOM after the page's scripts ran, as Chromium serialises it."""
    proc = _chromium(profile, url, "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _script_json(page: str, name: str):
    m = re.search(rf'<script id="{name}">\s*var \w+ = (.*?);\s*</script>', page, re.S)
    assert m, f"no <script id={name}> in the report"
    return json.loads(m.group(1))


def _decode(data_uri: str) -> bytes:
    return base64.b64decode(data_uri.split("base64,", 1)[1])


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found ({CHROMIUM}): apt-get install -y chromium")
    profile = tmp_path_factory.mktemp("chromium-profile")
    probe = tmp_path_factory.mktemp("probe") / "probe.html"
    probe.write_text("<html><body>ok</body></html>")
    try:
        proc = _chromium(profile, probe.as_uri(), "--dump-dom")
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"Chromium cannot run here: {exc}")
    if "ok" not in proc.stdout:
        pytest.skip(f"Chromium cannot run here: {proc.stderr[-500:]}")
    return profile


@pytest.fixture(scope="module")
def report(tmp_path_factory, chromium):
    work = tmp_path_factory.mktemp("report")
    _snakemake(work, "--cores", "2")
    _snakemake(work, "--report", "report.html")
    path = work / "report.html"
    page = path.read_text(encoding="utf-8")
    return {
        "work": work,
        "path": path,
        "page": page,
        "results": _script_json(page, "results"),
        "categories": _script_json(page, "categories"),
    }


def _qc(fov: str, name: str) -> str:
    return f"results/demo/fov_{fov}/qc/{name}"


EXPECTED = {
    "1 Raw frames": ["frames.png"],
    "2 Frame statistics": [f"frame_stats_ch{c}.{e}" for c in (0, 1) for e in ("png", "html")],
    "3 Segmentation and tracking": ["outlines.png"],
    "4 Background": ["background_ch1.png"],
    "5 Cells and filters": ["cells.png"],
}


def test_every_qc_result_is_in_its_category(report):
    cats = report["categories"]
    for cat, names in EXPECTED.items():
        assert set(cats[cat]) == {"control", "treated"}, cat  # one subcategory per sample
        for sample, fov in (("control", "000"), ("treated", "001")):
            assert sorted(cats[cat][sample]) == sorted(_qc(fov, n) for n in names)
            for n in names:
                labels = report["results"][_qc(fov, n)]["labels"]
                assert labels["FOV"] == fov
    for sample in ("control", "treated"):
        plots = {f"results/samples/{sample}/qc/maturation_{p}.png"
                 for p in ("parameters", "r_squared", "examples", "median_trace", "pca")}
        assert set(cats["6 Fits and analysis"][sample]) == plots
    assert cats["7 Parameters"]["configuration"] == ["results/qc/config.html"]
    assert sorted(cats["0 Overview"]["every FOV and sample"]) == sorted(
        f"results/qc/overview/{n}" for n in ("overview.html", "fovs.csv", "samples.csv", "traces_0.png",
                                             "samples.png"))
    config_page = _decode(report["results"]["results/qc/config.html"]["data_uri"]).decode()
    assert "min_iou" in config_page and "tile_size" in config_page
    # the workflow description (main page, beside the rule graph) is there
    assert "pyama-flow report" in report["page"]


def test_report_pictures_are_not_blank(report):
    from PIL import Image

    pngs = [p for p in report["results"] if p.endswith(".png")]
    # per FOV: frames, outlines, background, cells, 2 x statistics; per sample: 5 analysis plots;
    # the overview: traces of every FOV (one page) and the samples compared
    assert len(pngs) == 2 * 6 + 2 * 5 + 5 + 2  # per FOV, per sample, experiment-wide analysis, overview
    for path in pngs:
        img = np.asarray(Image.open(io.BytesIO(_decode(report["results"][path]["data_uri"]))).convert("L"),
                         dtype=np.float64)
        assert img.shape[0] > 250 and img.shape[1] > 400, path
        assert img.std() > 15, f"{path} looks blank (std {img.std():.1f})"
        # the same bytes as the workflow wrote
        assert _decode(report["results"][path]["data_uri"]) == (report["work"] / path).read_bytes()


def test_main_page_renders(report, chromium, tmp_path):
    url = report["path"].as_uri()
    shot = screenshot(chromium, url, tmp_path / "main.png")
    assert shot.shape[:2] == (WINDOW[1], WINDOW[0])
    assert shot.std() > 0.1
    dom = dump_dom(chromium, url)
    assert '<div id="app"><div' in dom  # the React app rendered
    for cat in ["0 Overview", *EXPECTED, "6 Fits and analysis", "7 Parameters"]:
        assert cat in dom, f"category {cat!r} not in the menu"
    assert "pyama-flow report" in dom  # workflow description beside the rule graph
    assert "<canvas" in dom or "<svg" in dom  # the rule graph (vega)
    # the navbar (dark) and the content (white) are both there
    assert (shot.mean(axis=-1) < 0.5).mean() > 0.05 and (shot.mean(axis=-1) > 0.9).mean() > 0.3


def test_overview_answers_cells_per_fov_and_sample_differences(report, chromium, tmp_path):
    """The overview page (first category) has a row per FOV with the cell counts of
    its trace_stats.json and the samples' fitted parameters with units; it renders."""
    page = _decode(report["results"]["results/qc/overview/overview.html"]["data_uri"]).decode()
    fovs = pd.read_csv(report["work"] / "results/qc/overview/fovs.csv")
    assert fovs["fov"].tolist() == [0, 1] and fovs["sample"].tolist() == ["control", "treated"]
    for fov in (0, 1):
        st = json.loads((report["work"] / f"results/demo/fov_{fov:03d}/trace_stats.json").read_text())
        row = fovs.set_index("fov").loc[fov]
        assert row["cells_detected"] == st["cells_detected"] and row["cells_kept"] == st["cells_kept"]
        assert row["fitted_maturation"] >= row["reliable_maturation"] > 0
    assert "Every FOV (2)" in page and "a.u./h" in page and "mRNA degradation rate" in page
    samples = pd.read_csv(report["work"] / "results/qc/overview/samples.csv")
    assert set(samples["sample"]) == {"control", "treated"} and "km" not in set(samples["parameter"])
    html_file = tmp_path / "overview.html"
    html_file.write_text(page, encoding="utf-8")
    shot = screenshot(chromium, html_file.as_uri(), tmp_path / "overview.png")
    assert shot.std() > 0.05
    dom = dump_dom(chromium, html_file.as_uri())
    assert "Every FOV (2)" in dom and dom.count("<tr>") >= 3


def test_fov_page_shows_outlines(report, chromium, tmp_path):
    linked = report["work"] / "report_links.html"
    linked.write_text(add_report_deep_links(report["page"]), encoding="utf-8")
    result = _qc("000", "outlines.png")
    url = f"{linked.as_uri()}#result={result}"
    shot = screenshot(chromium, url, tmp_path / "fov.png")
    dom = dump_dom(chromium, url)
    assert 'data-deep-link="done"' in dom
    # the subcategory table (FOV 000 of sample control) and the picture itself
    assert "control" in dom and "3 Segmentation and tracking" in dom
    assert report["results"][result]["data_uri"][:200] in dom
    # the outlines are on screen: pixels in the colours of tracks 1..8
    found = 0
    for tid in range(1, 9):
        colour = np.asarray(track_color(tid))
        found += int(((np.abs(shot - colour).max(axis=-1)) < 0.08).sum() > 30)
    assert found >= 6, f"only {found} of 8 track colours on the FOV page"
    # compared with the main page, the content area is now a picture (grey phase contrast)
    content = shot[:, 400:]
    assert content.std() > 0.1


def test_statistics_table_page_has_one_row_per_frame(report, chromium, tmp_path):
    for fov in FOVS:
        for c in (0, 1):
            result = _qc(fov, f"frame_stats_ch{c}.html")
            page = tmp_path / f"stats_{fov}_{c}.html"
            page.write_bytes(_decode(report["results"][result]["data_uri"]))
            dom = dump_dom(chromium, page.as_uri())
            body = dom.split('<table id="frame-statistics">')[1].split("</tbody>")[0].split("<tbody>")[1]
            rows = re.findall(r"<tr[ >].*?</tr>", body, re.S)
            assert len(rows) == N_FRAMES, (result, len(rows))
            stats = pd.read_csv(report["work"] / f"results/demo/fov_{fov}/frame_stats_ch{c}.csv")
            assert len(stats) == N_FRAMES
            first = re.findall(r"<td>(.*?)</td>", rows[0])
            assert int(first[0]) == 0 and float(first[2]) == pytest.approx(stats["mean"][0], abs=0.005)
    # and the table is visible inside the report's FOV page (an iframe)
    linked = report["work"] / "report_links.html"
    linked.write_text(add_report_deep_links(report["page"]), encoding="utf-8")
    shot = screenshot(chromium, f"{linked.as_uri()}#result={_qc('000', 'frame_stats_ch1.html')}",
                      tmp_path / "table.png")
    assert shot[:, 400:].std() > 0.05
