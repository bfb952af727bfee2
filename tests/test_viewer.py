"""The results viewer (``pyama-flow view``): every endpoint on a small results tree
built here, safety (nothing outside the results is served, edits only to
the decisions log curation.csv), and one test on a real demo run that checks that
marking a cell reruns only the fits."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import logging
import re
import shutil
import subprocess
import sys
import threading
import time
import wsgiref.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from pyama_flow.traces import curation

from pyama_flow.io import framestats
from pyama_flow.report import display
from pyama_flow.background.model import fit_tiles, save_models
from pyama_flow.io.source import write_source
from pyama_flow.io.stacks import StackReader, write_stack
from pyama_flow.fitting.models import get_model
from pyama_flow.traces.features import TraceBuilder, read_traces, write_traces
from pyama_flow.viewer import ViewerApp, make_viewer_server
from pyama_flow.viewer import render as vrender
from pyama_flow.viewer.data import set_good_text

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

H, W, T = 96, 128, 6
TIMES = [0.0, 15.0, 30.0, 45.0, 60.0, 75.0]
#: cell id -> (centre y, centre x, radius y, radius x, first frame)
CELLS = {1: (30, 34, 10, 14, 0), 2: (60, 90, 12, 9, 0), 7: (70, 40, 8, 8, 2)}
MATURATION = dict(t0=0.1, ktl=900.0, km=1.28, delta=0.2, beta=0.00522, offset=50.0)


# -- a minimal results tree --------------------------------------------------------------


def _fingerprint(path):
    """The content fingerprint extract records for an input (write_source's ``fingerprint``)."""
    from pyama_flow.io import open_image
    from pyama_flow.io.fingerprint import fingerprint, plane_bytes_of

    with open_image(str(path)) as reader:
        return fingerprint(str(path), plane_bytes_of(reader.metadata))


def _labels(t: int) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    lab = np.zeros((H, W), np.uint32)
    for cid, (cy, cx, ry, rx, first) in CELLS.items():
        if t >= first:
            lab[((yy - cy - t) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = cid
    return lab


def _frames(seed: int):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    phase, gfp = [], []
    for t in range(T):
        lab = _labels(t)
        p = 1000 + 2 * xx + rng.normal(0, 20, (H, W)) - 300 * (lab > 0)
        g = 200 + 0.5 * yy + rng.normal(0, 5, (H, W)) + (lab > 0) * (20 + 60 * t)
        phase.append(np.clip(p, 0, 65535).astype(np.uint16))
        gfp.append(np.clip(g, 0, 65535).astype(np.uint16))
    return phase, gfp


def build_fov(fov_dir: Path, fov: int) -> None:
    """raw_ch0/1.tif, labels.tif, background_ch1.npz, traces.csv, fits_maturation.csv of one FOV."""
    fov_dir.mkdir(parents=True)
    phase, gfp = _frames(fov)
    labels = [_labels(t) for t in range(T)]
    write_stack(fov_dir / "raw_ch0.tif", phase, T, (H, W), np.uint16)
    write_stack(fov_dir / "raw_ch1.tif", gfp, T, (H, W), np.uint16)
    write_stack(fov_dir / "labels.tif", labels, T, (H, W), np.uint32)
    models = [fit_tiles(g, lab, tile_size=32, dilation=5) for g, lab in zip(gfp, labels)]
    save_models(str(fov_dir / "background_ch1.npz"), models, 32, 5)
    builder = TraceBuilder(fov, 0, [1])
    for t in range(T):
        builder.add_frame(t, TIMES[t], labels[t], {1: gfp[t]})
    write_traces(builder.table(), str(fov_dir / "traces.csv"))
    names = get_model("maturation").PARAMS
    rows = []
    for k, cid in enumerate(sorted(CELLS)):
        p = {n: MATURATION[n] * (1 + 0.1 * k) if n in ("ktl", "delta") else MATURATION[n] for n in names}
        ok = cid != 7
        rows.append({"fov": fov, "cell": cid, "model": "maturation", "success": ok, "r_squared": 0.97 if ok else np.nan,
                     **{n: (p[n] if ok else np.nan) for n in names},
                     **{f"{n}_se": (0.01 if ok else np.nan) for n in names},
                     "residual_std": 3.5, "aic": 10.0, "bic": 12.0, "n_points": T})
    pd.DataFrame(rows).to_csv(fov_dir / "fits_maturation.csv", index=False, float_format="%.9g")


def build_results(base: Path) -> Path:
    """A results folder: dataset ``demo`` with FOVs 0 and 1, sample ``control`` (FOV 0)."""
    results = base / "results"
    meta = {"path": "input.ome.tif", "format": "ome-tiff", "n_fovs": 2, "n_frames": T, "n_channels": 2,
            "n_z": 1, "height": H, "width": W, "dtype": "uint16", "channel_names": ["Phase", "GFP"],
            "time_min": TIMES, "pixel_size_um": 0.65, "objective": None, "microscope": None,
            "file_size": 1, "extra": {}, "dims": {"P": 2, "T": T, "C": 2, "Z": 1, "Y": H, "X": W},
            "fov_times_min": {"0": TIMES, "1": TIMES}, "time_source": {"0": "file", "1": "file"}}
    (results / "demo").mkdir(parents=True)
    (results / "demo" / "metadata.json").write_text(json.dumps(meta))
    for fov in (0, 1):
        build_fov(results / "demo" / f"fov_{fov:03d}", fov)
    qc_dir = results / "demo" / "fov_000" / "qc"
    qc_dir.mkdir()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(qc_dir / "outlines.png")
    sample = results / "samples" / "control"
    sample.mkdir(parents=True)
    pd.DataFrame({"time": [0.0], "fov": [0], "cell": [1], "value": [1.0]}).to_csv(
        sample / "control_intensity_total_ch_1.csv", index=False)
    # things that must never be served: a file beside the results, symlinks out of them
    (base / "secret.txt").write_text("secret")
    (results / "demo" / "fov_000" / "link_out.txt").symlink_to(base / "secret.txt")
    outside = base / "outside_ds"
    shutil.copytree(results / "demo", outside)
    (results / "evil").symlink_to(outside, target_is_directory=True)
    return results


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return build_results(tmp_path_factory.mktemp("viewer"))


@pytest.fixture
def fresh(tmp_path) -> Path:
    """A tree of its own, for tests that edit it."""
    return build_results(tmp_path)


class Client:
    """Calls the WSGI app like a server would (a test client without a socket)."""

    def __init__(self, app: ViewerApp, host: str = "127.0.0.1:8765") -> None:
        self.app, self.host = app, host

    def request(self, method: str, path: str, query: str = "", body: bytes = b"",
                headers: dict | None = None) -> tuple[int, dict, bytes]:
        env: dict = {}
        wsgiref.util.setup_testing_defaults(env)
        env.update(REQUEST_METHOD=method, PATH_INFO=path, QUERY_STRING=query, HTTP_HOST=self.host,
                   CONTENT_LENGTH=str(len(body)), **{"wsgi.input": io.BytesIO(body)})
        for k, v in (headers or {}).items():
            key = k.upper().replace("-", "_")
            env[key if key in ("CONTENT_TYPE",) else f"HTTP_{key}"] = v
        out: dict = {}

        def start_response(status, hdrs):
            out["status"], out["headers"] = int(status.split()[0]), dict(hdrs)

        body = self.app(env, start_response)
        data = b"".join(body)
        getattr(body, "close", lambda: None)()
        return out["status"], out["headers"], data

    def get(self, path: str, query: str = "") -> tuple[int, dict, bytes]:
        return self.request("GET", path, query)

    def json(self, path: str, query: str = "") -> dict:
        status, headers, data = self.get(path, query)
        assert status == 200, data
        assert headers["Content-Type"] == "application/json"
        return json.loads(data)

    def png(self, path: str, query: str = "") -> tuple[np.ndarray, dict]:
        status, headers, data = self.get(path, query)
        assert status == 200, data
        assert headers["Content-Type"] == "image/png"
        return np.asarray(Image.open(io.BytesIO(data))), headers

    def mark(self, dataset: str, fov: int, cell: int, good: bool, **headers) -> tuple[int, dict]:
        hdrs = {"Content-Type": "application/json", **headers}
        status, _, data = self.request("POST", f"/api/mark/{dataset}/{fov}/{cell}",
                                       body=json.dumps({"good": good}).encode(), headers=hdrs)
        return status, json.loads(data)


@pytest.fixture(scope="module")
def client(tree) -> Client:
    return Client(ViewerApp(tree, allowed_hosts={"127.0.0.1", "localhost"}))


# -- datasets, FOVs, samples ---------------------------------------------------------------


def test_page_and_static_files(client):
    status, headers, body = client.get("/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"/static/viewer.js" in body and b"<canvas" in body
    for name in ("viewer.js", "viewer.css"):
        status, _, body = client.get(f"/static/{name}")
        assert status == 200 and len(body) > 1000
    # no external resources: the page works offline
    text = client.get("/")[2] + client.get("/static/viewer.js")[2] + client.get("/static/viewer.css")[2]
    assert not re.search(rb"(src|href)=\"(https?:)?//", text)
    assert b"https://" not in client.get("/static/viewer.js")[2]


def test_datasets_fovs_samples(client, tree):
    d = client.json("/api/datasets")
    assert [x["name"] for x in d["datasets"]] == ["demo"]  # the symlinked 'evil' is not listed
    demo = d["datasets"][0]
    assert demo["fovs"] == [0, 1] and demo["channel_names"] == ["Phase", "GFP"]
    assert d["samples"] == {"control": [{"dataset": "demo", "fov": 0}]}
    assert client.json("/api/samples") == d["samples"]
    meta = client.json("/api/datasets/demo")
    assert meta["metadata"] == json.loads((tree / "demo" / "metadata.json").read_text())
    assert meta["fovs"] == [0, 1]


def test_workflow_folder_is_accepted(tree):
    app = ViewerApp(tree.parent)  # the folder that contains results/
    assert app.results.root == tree.resolve()


def test_fov_info(client):
    info = client.json("/api/fov/demo/0")
    assert [c["name"] for c in info["channels"]] == ["Phase", "GFP"]
    assert [c["phase"] for c in info["channels"]] == [True, False]
    assert [c["background"] for c in info["channels"]] == [False, True]
    assert info["n_frames"] == T and (info["height"], info["width"]) == (H, W)
    assert info["times"] == TIMES and info["sample"] == "control"
    assert info["traces"] == "traces.csv" and info["n_cells"] == 3 and info["n_good"] == 3
    assert info["value_column"] == "intensity_total_ch_1"
    assert info["models"] == ["maturation"] and info["fits_stale"] == {"maturation": False}
    assert info["qc"] == ["demo/fov_000/qc/outlines.png"]
    status, headers, body = client.get("/files/demo/fov_000/qc/outlines.png")
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(body)).size == (8, 8) and int(headers["Content-Length"]) == len(body)
    assert headers["Content-Security-Policy"] == "sandbox"
    assert client.get("/api/fov/demo/5")[0] == 404
    assert client.get("/api/fov/nosuch/0")[0] == 404


# -- frames ---------------------------------------------------------------------------------


def test_frame_png_size_and_contrast(client):
    img, headers = client.png("/api/frame/demo/0.png", "channel=0&t=3")
    assert img.shape == (H, W) and img.dtype == np.uint8  # grey, full size (small frame)
    assert img.std() > 10 and img.min() == 0 and img.max() == 255  # 1-99 percentile stretch
    with StackReader(Path(client.app.results.root) / "demo/fov_000/raw_ch0.tif") as r:
        expected = display.percentile_stretch(r[3].astype(np.float32))
    np.testing.assert_array_equal(img, expected)
    small, headers = client.png("/api/frame/demo/0.png", "channel=1&t=2&max_side=64")
    f = int(headers["X-Scale-Factor"])
    assert f == 2 and small.shape == (H // f, W // f)
    # upscale: a small frame is magnified by an integer to fit max_side (outlines drawn at that size)
    big, headers = client.png("/api/frame/demo/0.png", "channel=0&t=3&max_side=400&upscale=1")
    assert headers["X-Magnification"] == "3" and float(headers["X-Scale"]) == pytest.approx(1 / 3)
    np.testing.assert_array_equal(big, np.repeat(np.repeat(expected, 3, axis=0), 3, axis=1))
    big, _ = client.png("/api/frame/demo/0.png", "channel=0&t=3&max_side=400&upscale=1&outlines=1")
    native, _ = client.png("/api/frame/demo/0.png", "channel=0&t=3&outlines=1")
    np.testing.assert_array_equal(big, vrender.magnify(native, 3))
    for layer in ("background", "corrected"):
        img, _ = client.png("/api/frame/demo/0.png", f"channel=1&t=4&layer={layer}")
        assert img.shape == (H, W) and img.std() > 1
    assert client.get("/api/frame/demo/0.png", "channel=0&t=0&layer=background")[0] == 404  # phase: no model
    assert client.get("/api/frame/demo/0.png", "channel=0&t=99")[0] == 404
    assert client.get("/api/frame/demo/0.png", "channel=5&t=0")[0] == 404
    assert client.get("/api/frame/demo/0.png", "channel=0&t=x")[0] == 400
    assert client.get("/api/frame/demo/0.png", "layer=nope")[0] == 400


def test_outlines_and_ids_drawn(client):
    t = 3
    lab = _labels(t)
    plain, _ = client.png("/api/frame/demo/0.png", f"channel=0&t={t}")
    outlined, _ = client.png("/api/frame/demo/0.png", f"channel=0&t={t}&outlines=1")
    assert outlined.shape == (H, W, 3)
    edge = display.label_outlines(lab)
    for cid in CELLS:
        want = np.rint(np.asarray(display.track_color(cid)) * 255).astype(np.uint8)
        np.testing.assert_array_equal(outlined[edge & (lab == cid)], np.broadcast_to(want, ((edge & (lab == cid)).sum(), 3)))
    # away from outlines: the grey frame, dimmed to 85 %
    inside = ~edge
    grey = np.rint(plain[inside].astype(np.float64) / 255 * 0.85 * 255)
    assert np.abs(outlined[inside][:, 0] - grey).max() <= 1
    with_ids, _ = client.png("/api/frame/demo/0.png", f"channel=0&t={t}&outlines=1&ids=1")
    changed = np.any(with_ids != outlined, axis=2)
    ids, cy, cx = display.label_centroids(lab)
    for y, x in zip(cy, cx):  # text is written at every centroid
        assert changed[int(y) - 4:int(y) + 5, int(x) - 4:int(x) + 5].any()
    assert not changed[:10, :].any()  # and nowhere else (top rows have no cell)


def test_frame_reads_only_the_requested_page(client, monkeypatch):
    read = []
    original = StackReader.__getitem__

    def spy(self, t):
        read.append((Path(self.path).name, t))
        return original(self, t)

    monkeypatch.setattr(StackReader, "__getitem__", spy)
    client.png("/api/frame/demo/1.png", "channel=1&t=4&outlines=1&low=2")
    assert sorted(read) == [("labels.tif", 4), ("raw_ch1.tif", 4)]


def test_frames_from_a_source_reference(client, fresh, monkeypatch, tmp_path):
    """storage.raw: source leaves raw_ch{c}.json (a reference into the input) instead of
    raw_ch{c}.tif: the viewer reads the frames from the input file, the same pixels;
    a relative input path is found from the folder above the results."""
    import tifffile

    from pyama_flow.io.source import write_source

    fov_dir = fresh / "demo" / "fov_000"
    workdir = fresh.parent  # the folder the workflow runs in, beside results/
    phase, gfp = _frames(0)
    with tifffile.TiffWriter(workdir / "input.ome.tif", ome=True) as tw:
        tw.write(np.stack([np.stack([p, g]) for p, g in zip(phase, gfp)]), metadata={"axes": "TCYX"})
    for c in (0, 1):
        (fov_dir / f"raw_ch{c}.tif").unlink()
        write_source(fov_dir / f"raw_ch{c}.json", "input.ome.tif", {}, 0, c, 0, (T, H, W), np.uint16,
                     fingerprint=_fingerprint(workdir / "input.ome.tif"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not the workflow's folder: the relative path is found from the reference
    source = Client(ViewerApp(fresh, allowed_hosts={"127.0.0.1", "localhost"}))
    info = source.json("/api/fov/demo/0")
    assert [c["index"] for c in info["channels"]] == [0, 1] and info["n_frames"] == T
    for query in ("channel=0&t=3", "channel=1&t=5&outlines=1", "channel=1&t=2&layer=corrected"):
        assert np.array_equal(source.png("/api/frame/demo/0.png", query)[0],
                              client.png("/api/frame/demo/0.png", query)[0]), query
    assert source.json("/api/stats/demo/0", "t=4") == client.json("/api/stats/demo/0", "t=4")


def test_rendered_frames_are_cached_and_refreshed(fresh):
    c = Client(ViewerApp(fresh, cache_bytes=10**6))
    _, h1 = c.png("/api/frame/demo/0.png", "channel=1&t=1")
    _, h2 = c.png("/api/frame/demo/0.png", "channel=1&t=1")
    assert (h1["X-Cached"], h2["X-Cached"]) == ("0", "1")
    # a rewritten stack (new mtime) is rendered again, not served stale
    raw = fresh / "demo/fov_000/raw_ch1.tif"
    frames = [np.full((H, W), 7, np.uint16)] * T
    time.sleep(0.01)
    write_stack(raw, frames, T, (H, W), np.uint16)
    img, h3 = c.png("/api/frame/demo/0.png", "channel=1&t=1")
    assert h3["X-Cached"] == "0" and img.max() == 0  # flat frame


def test_byte_lru_is_bounded():
    lru = vrender.ByteLRU(max_bytes=100)
    for i in range(10):
        lru.put(i, bytes(30))
    assert lru.size <= 100 and len(lru) == 3
    assert lru.get(0) is None and lru.get(9) == bytes(30)
    lru.get(7)
    lru.put("new", bytes(30))  # evicts the least recently used (8), not 7
    assert lru.get(7) is not None and lru.get(8) is None
    lru.put("huge", bytes(1000))
    assert lru.get("huge") is None and lru.size <= 100


def test_frame_statistics(client, tree):
    d = client.json("/api/stats/demo/0", "t=2")
    assert [c["name"] for c in d["channels"]] == ["Phase", "GFP"]
    for entry in d["channels"]:
        with StackReader(tree / f"demo/fov_000/raw_ch{entry['channel']}.tif") as r:
            want = framestats.frame_statistics(r[2], 2)
        for key, value in want.items():
            assert entry[key] == pytest.approx(value), key
    assert client.get("/api/stats/demo/0", "t=50")[0] == 404


def test_2048_frame_renders(tmp_path):
    """A 2048² FOV renders from its TIFF page, down-sampled to 1024 (ms printed, not asserted)."""
    results = tmp_path / "results"
    d = results / "big" / "fov_000"
    d.mkdir(parents=True)
    (results / "big" / "metadata.json").write_text(json.dumps({"channel_names": ["Phase"]}))
    rng = np.random.default_rng(1)
    n = 2048
    frame = (1000 + rng.normal(0, 50, (n, n))).astype(np.uint16)
    lab = np.zeros((n, n), np.uint32)
    k = 0
    for y in range(40, n - 40, 90):
        for x in range(40, n - 40, 90):
            k += 1
            lab[y - 25:y + 25, x - 20:x + 20] = k
    write_stack(d / "raw_ch0.tif", [frame] * 2, 2, (n, n), np.uint16)
    write_stack(d / "labels.tif", [lab] * 2, 2, (n, n), np.uint32)
    c = Client(ViewerApp(results))
    for query in ("channel=0&t=1", "channel=0&t=1&outlines=1&ids=1"):
        start = time.perf_counter()
        img, headers = c.png("/api/frame/big/0.png", query)
        ms = (time.perf_counter() - start) * 1000
        print(f"2048² frame ({query}): {ms:.0f} ms, render {headers['X-Render-Ms']} ms, "
              f"{img.shape[1]}×{img.shape[0]} px shown")
        assert img.shape[:2] == (1024, 1024) and img.std() > 0
    _, cached = c.png("/api/frame/big/0.png", "channel=0&t=1&outlines=1&ids=1")
    assert cached["X-Cached"] == "1"
    print(f"2048² frame from the cache: {cached['X-Render-Ms']} ms")
    assert c.json("/api/cell_at/big/0", "t=0&x=40.5&y=40.5")["cell"] == 1


# -- cells, traces, fits ------------------------------------------------------------------


def test_cell_lookup_by_click(client):
    q = lambda x, y, **kw: client.json("/api/cell_at/demo/0", f"t=3&x={x}&y={y}" + "".join(f"&{k}={v}" for k, v in kw.items()))
    cy, cx = CELLS[2][0] + 3, CELLS[2][1]  # cell 2 moved down by t = 3 px
    hit = q(cx + 0.4, cy + 0.7)
    assert hit["cell"] == 2 and hit["in_traces"] and hit["good"] is True
    # a click on the background finds the nearest cell only within the radius
    x_edge = cx + CELLS[2][3] + 3
    assert q(x_edge, cy)["cell"] is None
    assert q(x_edge, cy, radius=5)["cell"] == 2
    assert q(-1, 5)["cell"] is None and q(W + 3, 5)["cell"] is None
    # a click in display coordinates of a down-sampled frame: pixel p covers [p f, (p + 1) f)
    _, headers = client.png("/api/frame/demo/0.png", "channel=0&t=3&max_side=40")
    f = int(headers["X-Scale-Factor"])
    px, py = cx // f, cy // f
    assert q((px + 0.5) * f, (py + 0.5) * f)["cell"] == 2
    assert client.get("/api/cell_at/demo/0", "t=0")[0] == 400
    assert client.get("/api/cell_at/demo/0", "t=40&x=1&y=1")[0] == 404


def test_traces_equal_the_csv(client, tree):
    d = client.json("/api/traces/demo/0")
    df = pd.read_csv(tree / "demo/fov_000/traces.csv")
    assert d["file"] == "traces.csv"
    assert d["columns"] == ["area_ch_0", "intensity_total_ch_1"]
    assert [c["cell"] for c in d["cells"]] == sorted(df["cell"].unique())
    for cell in d["cells"]:
        sub = df[df["cell"] == cell["cell"]]
        assert cell["frame"] == sub["frame"].tolist()
        assert cell["time"] == sub["time"].tolist()
        for col in d["columns"]:
            assert cell[col] == sub[col].tolist()
    one = client.json("/api/traces/demo/0", "columns=intensity_total_ch_1")
    assert one["columns"] == ["intensity_total_ch_1"] and "area_ch_0" not in one["cells"][0]
    assert client.get("/api/traces/demo/0", "columns=nope")[0] == 400


def test_cell_trace_and_fitted_curve(client, tree):
    d = client.json("/api/cell/demo/0/2")
    df = pd.read_csv(tree / "demo/fov_000/traces.csv")
    sub = df[df["cell"] == 2]
    for col in df.columns:
        assert d["rows"][col] == sub[col].tolist(), col
    assert d["value_column"] == "intensity_total_ch_1" and d["good"] is True
    fits = pd.read_csv(tree / "demo/fov_000/fits_maturation.csv")
    row = fits[fits["cell"] == 2].iloc[0]
    (fit,) = d["fits"]
    model = get_model("maturation")
    assert list(fit["params"]) == list(model.PARAMS)
    for p in model.PARAMS:
        assert fit["params"][p] == row[p] and fit["se"][p] == row[f"{p}_se"]
    assert fit["r_squared"] == row["r_squared"] and fit["success"] is True and fit["n_points"] == T
    curve = fit["curve"]
    t_min = np.asarray(curve["time"])
    assert len(t_min) >= 200 and t_min[0] == sub["time"].min() and t_min[-1] == sub["time"].max()
    np.testing.assert_allclose(curve["t_hours"], t_min / 60.0)  # traces in minutes, models in hours
    want = model.evaluate(t_min / 60.0, {p: row[p] for p in model.PARAMS})
    np.testing.assert_allclose(curve["value"], want, rtol=1e-12)
    failed = client.json("/api/cell/demo/0/7")["fits"][0]
    assert failed["success"] is False and failed["curve"] is None
    assert client.get("/api/cell/demo/0/99")[0] == 404
    assert client.get("/api/cell/demo/0/2", "column=nope")[0] == 400


# -- curation ------------------------------------------------------------------------------


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_mark_bad_records_a_decision(fresh):
    c = Client(ViewerApp(fresh))
    fov_dir = fresh / "demo/fov_000"
    before = _sha(fov_dir / "traces.csv")
    status, r = c.mark("demo", 0, 2, False)
    assert status == 200 and r["rows"] == T and r["file"] == "demo/fov_000/curation.csv"
    assert _sha(fov_dir / "traces.csv") == before  # the workflow's file is untouched
    assert not (fov_dir / "traces_inspected.csv").exists()  # no frozen copy any more
    log = pd.read_csv(fov_dir / "curation.csv")
    assert list(log.columns) == ["cell", "good", "time", "fingerprint"]
    assert log["cell"].tolist() == [2] and log["good"].tolist() == [False]
    assert log["fingerprint"].iloc[0] == curation.fingerprints(read_traces(str(fov_dir / "traces.csv")))[2]
    # the viewer applies the decision to the current traces, and the fits are older than it
    info = c.json("/api/fov/demo/0")
    assert info["traces"] == "traces.csv" and info["decisions"] and info["n_good"] == 2
    assert info["stale_decisions"] == []
    assert info["fits_stale"] == {"maturation": True}
    assert c.json("/api/cell/demo/0/2")["good"] is False
    assert c.json("/api/cell/demo/0/1")["good"] is True
    # a second mark keeps the first; the last decision on a cell wins
    c.mark("demo", 0, 1, False)
    traces = {e["cell"]: e["good"] for e in c.json("/api/traces/demo/0")["cells"]}
    assert traces == {1: False, 2: False, 7: True}
    c.mark("demo", 0, 1, True)
    c.mark("demo", 0, 2, True)
    traces = {e["cell"]: e["good"] for e in c.json("/api/traces/demo/0")["cells"]}
    assert traces == {1: True, 2: True, 7: True}
    assert len(pd.read_csv(fov_dir / "curation.csv")) == 4  # an append-only log
    assert _sha(fov_dir / "traces.csv") == before


def test_mark_is_atomic(fresh, monkeypatch):
    """A failed append leaves the log as it was (one write call per line)."""
    c = Client(ViewerApp(fresh))
    fov_dir = fresh / "demo/fov_000"
    c.mark("demo", 0, 1, False)
    before = _sha(fov_dir / "curation.csv")

    def broken(fd, data):
        raise OSError("disk full")

    monkeypatch.setattr("pyama_flow.traces.curation.os.write", broken)
    status, _ = c.mark("demo", 0, 2, False)
    assert status == 500
    assert _sha(fov_dir / "curation.csv") == before
    assert [e["cell"] for e in c.json("/api/traces/demo/0")["cells"] if not e["good"]] == [1]


def test_mark_requests_are_checked(fresh):
    c = Client(ViewerApp(fresh, allowed_hosts={"127.0.0.1", "localhost"}))
    assert c.mark("demo", 0, 99, False)[0] == 404  # no such cell
    assert c.mark("demo", 5, 1, False)[0] == 404  # no such FOV
    assert c.mark("evil", 0, 1, False)[0] == 404  # symlinked out of the results
    status, _, _ = c.request("POST", "/api/mark/demo/0/1", body=b'{"good": false}',
                             headers={"Content-Type": "text/plain"})
    assert status == 400  # a form post from another site cannot be JSON without a preflight
    status, _, _ = c.request("POST", "/api/mark/demo/0/1", body=b'{"good": "no"}',
                             headers={"Content-Type": "application/json"})
    assert status == 400
    assert c.mark("demo", 0, 1, False, Origin="http://evil.example")[0] == 403
    assert Client(c.app, host="evil.example:8765").get("/api/datasets")[0] == 403  # DNS rebinding
    assert c.get("/api/mark/demo/0/1")[0] == 405
    assert not (fresh / "demo/fov_000/curation.csv").exists()
    assert c.mark("demo", 0, 1, False, Origin="http://127.0.0.1:8765")[0] == 200


def test_set_good_text_keeps_other_bytes():
    text = "fov,cell,frame,good,x\r\n0,1,0,1,0.5\r\n0,2,0,1,0.25\r\n0,2,1,1,\r\n"
    new, n = set_good_text(text, 2, False)
    assert n == 2 and new == "fov,cell,frame,good,x\r\n0,1,0,1,0.5\r\n0,2,0,0,0.25\r\n0,2,1,0,\r\n"
    with pytest.raises(KeyError):
        set_good_text(text, 3, False)


# -- safety ------------------------------------------------------------------------------------


TRAVERSALS = [
    "/files/../secret.txt",
    "/files/demo/../../secret.txt",
    "/files/./demo/metadata.json",
    "/files//etc/passwd",
    "/files/demo/fov_000/link_out.txt",  # symlink out of the results
    "/files/evil/metadata.json",  # symlinked dataset
    "/api/fov/evil/0",
    "/api/datasets/..",
    "/api/frame/../0.png",
    "/static/../app.py",
    "/static/results.py",
    "/../../etc/passwd",
]


def test_traversal_attempts_are_404_and_logged(client, caplog):
    assert client.get("/files/demo/metadata.json")[0] == 200
    for path in TRAVERSALS:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="pyama_flow.viewer"):
            status, _, body = client.get(path)
        assert status == 404, path
        assert b"secret" not in body
        if ".." in path or "link_out" in path or "evil" in path or "//" in path:
            assert any("refused" in r.getMessage() for r in caplog.records), path


@pytest.fixture
def live(tree):
    server = make_viewer_server(str(tree), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address
    server.shutdown()
    server.server_close()


def test_live_server_on_loopback(live):
    host, port = live
    assert host == "127.0.0.1"
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request("GET", "/api/datasets")
    r = conn.getresponse()
    assert r.status == 200 and json.loads(r.read())["datasets"][0]["name"] == "demo"
    # raw request lines: percent-encoded and plain traversals (a browser would normalise them)
    for target in ("/files/../secret.txt", "/files/%2e%2e/secret.txt", "/files/..%2fsecret.txt",
                   "/files/%2Fetc%2Fpasswd", "/files/demo/fov_000/link_out.txt"):
        conn.request("GET", target)
        r = conn.getresponse()
        body = r.read()
        assert r.status == 404 and b"secret" not in body, target
    conn.request("GET", "/api/frame/demo/0.png?channel=1&t=2&outlines=1&ids=1")
    r = conn.getresponse()
    img = np.asarray(Image.open(io.BytesIO(r.read())))
    assert r.status == 200 and img.shape == (H, W, 3)
    conn.close()


def test_cli_parser_defaults_and_help():
    from pyama_flow.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["view", "results"])
    assert (args.results_dir, args.port, args.host) == ("results", 8765, "127.0.0.1")
    sub = next(a for a in parser._actions if a.dest == "command").choices["view"]
    text = sub.format_help()
    assert "ssh -L 8765:127.0.0.1:8765 cluster" in text
    assert "curation.csv" in text


def test_cli_refuses_a_folder_without_results(tmp_path, capsys):
    from pyama_flow.cli import main

    assert main(["view", str(tmp_path)]) == 2
    assert "no results" in capsys.readouterr().err


# -- a real demo run: marking a cell reruns only the fits ----------------------------------------


def _snakemake(work: Path, *args: str) -> str:
    proc = subprocess.run(
        [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(work),
         "--configfile", str(work / "run.yaml"), *args],
        capture_output=True, text=True, cwd=work,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _planned(work: Path, *args: str) -> dict[str, int]:
    """Rules and job counts a dry run would execute."""
    out = _snakemake(work, "-n", *args)
    if "Nothing to be done" in out:
        return {}
    table = out[out.index("Job stats:"):].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.mark.slow
def test_demo_run_mark_refits_only(tmp_path):
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["simulate"]["n_fovs"] = 1
    cfg["samples"] = [{"name": "control", "dataset": "demo", "fovs": "0"}]
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    _snakemake(tmp_path, "--cores", "2")
    assert _planned(tmp_path) == {}
    results = tmp_path / "results"
    c = Client(ViewerApp(results))
    fov_dir = results / "demo" / "fov_000"
    # endpoints on real results
    info = c.json("/api/fov/demo/0")
    assert info["models"] == ["maturation"] and info["sample"] == "control"
    img, _ = c.png("/api/frame/demo/0.png", "channel=1&t=20&outlines=1&ids=1")
    assert img.shape == (320, 320, 3) and img.std() > 0
    traces = pd.read_csv(fov_dir / "traces.csv")
    cell = int(traces["cell"].iloc[0])
    row = traces[(traces["cell"] == cell) & (traces["frame"] == 20)].iloc[0]
    hit = c.json("/api/cell_at/demo/0", f"t=20&x={row['centroid_x'] + 0.5}&y={row['centroid_y'] + 0.5}&radius=3")
    assert hit["cell"] == cell and hit["in_traces"]
    d = c.json(f"/api/cell/demo/0/{cell}")
    fit = pd.read_csv(fov_dir / "fits_maturation.csv").set_index("cell").loc[cell]
    model = get_model("maturation")
    want = model.evaluate(np.asarray(d["fits"][0]["curve"]["t_hours"]), {p: fit[p] for p in model.PARAMS})
    np.testing.assert_allclose(d["fits"][0]["curve"]["value"], want, rtol=1e-12)
    assert d["rows"]["intensity_total_ch_1"] == traces.loc[traces["cell"] == cell, "intensity_total_ch_1"].tolist()
    # marking a cell bad: only the readers of the curated traces (the FOV's fit,
    # its sample's merged tables, the tidy table) and what depends on them rerun
    assert c.mark("demo", 0, cell, False)[0] == 200
    planned = _planned(tmp_path)
    print("planned after marking a cell:", planned)
    assert planned == {"fit": 1, "merge": 2, "tidy": 1, "qc_sample": 1, "analysis": 1, "qc_cells": 1,
                       "qc_overview": 1, "all": 1}
    _snakemake(tmp_path, "--cores", "2")
    refit = pd.read_csv(fov_dir / "fits_maturation.csv")
    assert cell not in set(refit["cell"])  # a cell without good rows is not fitted
    assert set(refit["cell"]) == set(traces["cell"]) - {cell}
    assert _planned(tmp_path) == {}


# -- access token (a shared login node) ------------------------------------------------------


def test_every_request_needs_the_token(fresh):
    tok = "s3cret-token"
    c = Client(ViewerApp(fresh, allowed_hosts={"127.0.0.1", "localhost"}, token=tok))
    for path in ("/", "/static/viewer.js", "/api/datasets", "/api/fov/demo/0", "/files/demo/metadata.json",
                 "/api/frame/demo/0.png"):
        status, _, body = c.get(path)
        assert status == 403 and b"access token" in body, path
        assert c.get(path, "token=wrong")[0] == 403, path
    assert c.mark("demo", 0, 1, False)[0] == 403
    assert c.mark("demo", 0, 1, False, **{"X-Pyama-Token": "wrong"})[0] == 403
    assert not (fresh / "demo/fov_000/curation.csv").exists()
    # the printed URL: the page loads and sets the cookie
    status, headers, body = c.get("/", f"token={tok}")
    assert status == 200 and b"/static/viewer.js" in body
    assert headers["Set-Cookie"] == f"pyama_flow_token={tok}; Path=/; HttpOnly; SameSite=Strict"
    cookie = {"Cookie": f"pyama_flow_token={tok}"}
    assert c.request("GET", "/api/datasets", headers=cookie)[0] == 200
    assert c.request("GET", "/static/viewer.js", headers=cookie)[0] == 200
    assert c.request("GET", "/api/datasets", headers={"Cookie": "pyama_flow_token=nope"})[0] == 403
    assert c.request("GET", "/api/fov/demo/0", headers={"X-Pyama-Token": tok})[0] == 200
    assert c.get("/api/datasets", f"token={tok}")[0] == 200
    assert c.mark("demo", 0, 1, False, **{"X-Pyama-Token": tok})[0] == 200
    assert pd.read_csv(fresh / "demo/fov_000/curation.csv")["cell"].tolist() == [1]


def test_cli_makes_a_token_unless_no_token(fresh, monkeypatch, capsys):
    from pyama_flow.cli import build_parser, main

    assert build_parser().parse_args(["view", "r", "--no-token"]).no_token is True
    seen = {}

    class Stop(Exception):
        pass

    def fake_server(results_dir, host, port, cache_mb, token=None):
        seen["token"] = token
        raise FileNotFoundError("stop here")

    monkeypatch.setattr("pyama_flow.viewer.make_viewer_server", fake_server)
    assert main(["view", str(fresh)]) == 2
    assert isinstance(seen["token"], str) and len(seen["token"]) >= 32
    first = seen["token"]
    main(["view", str(fresh)])
    assert seen["token"] != first  # a new token at each start
    main(["view", str(fresh), "--no-token"])
    assert seen["token"] is None


# -- frames unavailable; inputs resolved from the results' own experiment ------------------------


def test_fov_without_frames_still_opens(fresh):
    """storage.raw: source with a moved input, or the raw copies deleted: the FOV
    opens, traces, fits and curation work, the page is told the frames are missing."""
    from pyama_flow.io.source import write_source

    fov_dir = fresh / "demo/fov_000"
    for c in (0, 1):
        (fov_dir / f"raw_ch{c}.tif").unlink()
        write_source(fov_dir / f"raw_ch{c}.json", "moved/input.ome.tif", {}, 0, c, 0, (T, H, W), np.uint16)
    c = Client(ViewerApp(fresh))
    info = c.json("/api/fov/demo/0")
    assert info["frames_missing"].startswith("frames unavailable: ") and "input.ome.tif" in info["frames_missing"]
    assert (info["height"], info["width"], info["n_frames"]) == (H, W, T)  # from labels.tif
    assert info["n_cells"] == 3 and info["models"] == ["maturation"]
    assert [e["cell"] for e in c.json("/api/traces/demo/0")["cells"]] == [1, 2, 7]
    assert c.json("/api/cell/demo/0/2")["fits"][0]["fitted"] is True
    status, _, body = c.get("/api/frame/demo/0.png", "channel=1&t=2")
    assert status == 404 and b"frames unavailable" in body
    assert c.get("/api/stats/demo/0", "t=2")[0] == 404
    assert c.mark("demo", 0, 2, False)[0] == 200
    assert c.json("/api/cell/demo/0/2")["good"] is False
    # the temporary raw copies deleted (no reference either): the FOV opens too
    for p in fov_dir.glob("raw_ch*.json"):
        p.unlink()
    info = c.json("/api/fov/demo/0")
    assert info["channels"] == [] and info["frames_missing"] is None and info["n_frames"] == T


def test_inputs_resolve_from_the_results_experiment_not_the_cwd(small_experiment, tmp_path, monkeypatch):
    """A relative input in raw_ch{c}.json is found above the results folder even
    when the viewer runs in another experiment's folder that has the same path."""
    from pyama_flow.io import open_image
    from pyama_flow.devtools.simulate import SimulationConfig, simulate_experiment

    exp = tmp_path / "exp"
    results = build_results(exp)
    (exp / "input").mkdir()
    shutil.copy(small_experiment["path"], exp / "input" / "exp.ome.tif")
    decoy = tmp_path / "other"
    simulate_experiment(decoy / "input" / "exp.ome.tif", decoy / "truth",
                        SimulationConfig(n_fovs=2, n_frames=12, seed=11))
    fov_dir = results / "demo/fov_001"
    (fov_dir / "raw_ch1.tif").unlink()
    write_source(fov_dir / "raw_ch1.json", "input/exp.ome.tif", {}, 1, 1, 0, (12, 320, 320), np.uint16,
                 fingerprint=_fingerprint(exp / "input" / "exp.ome.tif"))
    monkeypatch.chdir(decoy)  # the viewer started from another experiment's folder
    c = Client(ViewerApp(results))
    got = {s["channel"]: s for s in c.json("/api/stats/demo/1", "t=5")["channels"]}[1]
    with open_image(str(exp / "input" / "exp.ome.tif")) as src:
        want = framestats.frame_statistics(src.read_frame(1, 5, 1))
    with open_image(str(decoy / "input" / "exp.ome.tif")) as src:
        other = framestats.frame_statistics(src.read_frame(1, 5, 1))
    assert got["mean"] == pytest.approx(want["mean"]) and got["mean"] != pytest.approx(other["mean"])
    # the workflow's jobs resolve a relative input from their working directory: there
    # they find the other experiment's file, and its content fingerprint refuses it
    from pyama_flow.io import InputError
    from pyama_flow.io.source import open_frames

    with pytest.raises(InputError, match="changed since extraction"):
        open_frames(fov_dir / "raw_ch1.json")


def test_two_viewers_marking_at_once_lose_nothing(fresh):
    """Two viewer processes on the same results (two apps here, threads
    interleaving): every acknowledged mark is in the log and applied."""
    apps = [Client(ViewerApp(fresh)), Client(ViewerApp(fresh))]
    marks = [(i % 2, cell, i % 3 == 0) for i, cell in enumerate([1, 2, 7] * 10)]
    statuses = []

    def worker(k):
        for i, (app, cell, good) in enumerate(marks):
            if app == k:
                statuses.append(apps[k].mark("demo", 0, cell, good)[0])

    threads = [threading.Thread(target=worker, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * len(marks)
    log = pd.read_csv(fresh / "demo/fov_000/curation.csv")
    assert len(log) == len(marks)
    assert sorted(zip(log["cell"], log["good"])) == sorted((c, g) for _a, c, g in marks)
    last = log.groupby("cell")["good"].last().to_dict()
    seen = {e["cell"]: e["good"] for e in apps[1].json("/api/traces/demo/0")["cells"]}
    assert seen == last


def test_cli_prints_the_token_url_and_runs_from_another_cwd(tree, tmp_path):
    """`pyama-flow view` started outside the experiment: the printed URL carries
    a fresh token that opens the page; without it every request is 403."""
    import os
    import urllib.error
    import urllib.request

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "pyama_flow.cli", "view", str(tree), "--port", "0"],
                            cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for _ in range(20):
            line = proc.stderr.readline()
            if m := re.search(r"serving on (http://\S+)", line):
                url = m.group(1)
                break
        assert url and re.search(r"/\?token=[\w-]{32,}$", url), url
        base = url.split("?")[0]
        with urllib.request.urlopen(f"{url}") as r:
            assert r.status == 200 and "pyama_flow_token=" in r.headers["Set-Cookie"]
        token = url.split("token=")[1]
        req = urllib.request.Request(f"{base}api/datasets", headers={"X-Pyama-Token": token})
        with urllib.request.urlopen(req) as r:
            assert json.loads(r.read())["datasets"][0]["name"] == "demo"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}api/datasets")
        assert err.value.code == 403
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_stale_decision_is_shown_and_ignored(fresh, caplog):
    """New labels give cell 2's id to another object: the viewer shows the
    decision as stale and the cell keeps the good of the new traces."""
    c = Client(ViewerApp(fresh))
    fov_dir = fresh / "demo/fov_000"
    c.mark("demo", 0, 2, False)
    c.mark("demo", 0, 1, False)
    traces = pd.read_csv(fov_dir / "traces.csv")
    traces.loc[traces["cell"] == 2, ["bbox_x0", "bbox_x1"]] += 4  # another object now
    traces.to_csv(fov_dir / "traces.csv", index=False)
    info = c.json("/api/fov/demo/0")
    assert info["stale_decisions"] == [2] and info["n_good"] == 2
    d2, d1 = c.json("/api/cell/demo/0/2"), c.json("/api/cell/demo/0/1")
    assert (d2["good"], d2["stale_decision"]) == (True, True)
    assert (d1["good"], d1["stale_decision"]) == (False, False)


def test_cell_list_carries_fit_quality_and_review_state(fresh):
    """/api/traces gives each cell the first model's R² and status and whether a
    decision was made on it: what the list sorts by and the 'u' key skips."""
    fits_path = fresh / "demo/fov_000/fits_maturation.csv"
    fits = pd.read_csv(fits_path)
    fits["status"] = ["ok" if s else "failed" for s in fits["success"]]
    fits.loc[fits["cell"] == 2, ["r_squared", "status"]] = [0.41, "poor_fit"]
    fits.to_csv(fits_path, index=False)
    c = Client(ViewerApp(fresh))
    cells = {e["cell"]: e for e in c.json("/api/traces/demo/0")["cells"]}
    assert {k: (e["r_squared"], e["status"], e["reviewed"]) for k, e in cells.items()} == {
        1: (0.97, "ok", False), 2: (0.41, "poor_fit", False), 7: (None, "failed", False)}
    assert c.mark("demo", 0, 2, False)[0] == 200
    got = c.json("/api/traces/demo/0")
    assert got["review_model"] == "maturation"
    assert [e["cell"] for e in got["cells"] if e["reviewed"]] == [2]
    # the page has the sort control and the key
    page = c.get("/")[2].decode()
    assert 'id="sort"' in page and "<kbd>u</kbd> next unreviewed" in page
