"""QC rendering: statistics against numpy, contrast stretch, outlines, saturation, figures."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pyama_flow.io import framestats
from pyama_flow.report import display, figures, statistics
from pyama_flow.report.background import render_background
from pyama_flow.report.cells import render_cells
from pyama_flow.report.config_page import config_html
from pyama_flow.report.frames import render_frames
from pyama_flow.report.outlines import render_outlines
from pyama_flow.report.statistics import render_frame_statistics
from pyama_flow.io.stacks import write_stack


def _png_pixels(path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)


# -- statistics ------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32])
def test_frame_statistics_equal_numpy(dtype):
    rng = np.random.default_rng(1)
    frame = rng.gamma(2.0, 40.0, (97, 131)).astype(dtype)
    s = framestats.frame_statistics(frame, 5)
    assert s["frame"] == 5
    assert s["mean"] == frame.mean(dtype=np.float64)
    if frame.dtype.kind == "u":  # from the histogram: exact sums, correctly rounded std
        values = frame.astype(np.int64).ravel()
        n, s1, s2 = values.size, int(values.sum()), int((values**2).sum())
        assert s["std"] == np.sqrt(np.float64((n * s2 - s1 * s1) / (n * n)))
        assert s["std"] == pytest.approx(frame.std(dtype=np.float64), rel=1e-13)
    else:
        assert s["std"] == frame.std(dtype=np.float64)
    assert s["min"] == float(frame.min()) and s["max"] == float(frame.max())
    p1, p50, p99 = np.percentile(frame, [1, 50, 99])
    assert (s["p1"], s["p50"], s["p99"]) == (p1, p50, p99)


def test_histogram_percentiles_equal_numpy_everywhere():
    rng = np.random.default_rng(2)
    q = np.linspace(0, 100, 201)
    for n in (1, 2, 3, 10, 1001):
        a = rng.integers(0, 4096, n).astype(np.uint16)
        np.testing.assert_array_equal(framestats.percentiles(a, q), np.percentile(a, q))
    a = np.array([0, 65535, 65535, 7], np.uint16)
    np.testing.assert_array_equal(framestats.percentiles(a, q), np.percentile(a, q))


def test_known_frame_statistics():
    frame = np.arange(101, dtype=np.uint16).reshape(1, 101)  # 0..100
    s = framestats.frame_statistics(frame)
    assert (s["p1"], s["p50"], s["p99"]) == (1.0, 50.0, 99.0)
    assert s["mean"] == 50.0 and s["min"] == 0.0 and s["max"] == 100.0
    assert s["std"] == pytest.approx(np.sqrt((101**2 - 1) / 12))


def test_saturation_flag_counts_pixels_at_dtype_max():
    frame = np.full((8, 8), 1000, np.uint16)
    assert not framestats.frame_statistics(frame)["saturated"]
    frame[2, 3] = frame[5, 5] = 65535
    frame[0, 0] = 65534  # one below the maximum is not saturated
    s = framestats.frame_statistics(frame)
    assert s["saturated"] and s["n_saturated"] == 2 and s["dtype_max"] == 65535
    f8 = np.zeros((4, 4), np.uint8)
    f8[0, :3] = 255
    assert framestats.frame_statistics(f8)["n_saturated"] == 3
    fl = np.full((4, 4), 1e9, np.float32)
    s = framestats.frame_statistics(fl)
    assert not s["saturated"] and np.isnan(s["dtype_max"])


def test_statistics_table_roundtrip(tmp_path):
    frames = [np.full((4, 4), v, np.uint16) for v in (10, 20, 65535)]
    df = statistics.statistics_table(framestats.frame_statistics(f, t) for t, f in enumerate(frames))
    assert list(df.columns) == framestats.STAT_COLUMNS
    statistics.write_statistics(df, str(tmp_path / "s.csv"))
    back = statistics.read_statistics(str(tmp_path / "s.csv"))
    assert back["frame"].tolist() == [0, 1, 2]
    assert back["mean"].tolist() == [10.0, 20.0, 65535.0]
    assert back["saturated"].tolist() == [False, False, True]


def test_statistics_csv_without_pandas_has_the_same_bytes(tmp_path):
    """The extract step writes the table with ``framestats`` (no pandas import):
    byte for byte what pandas writes, NaN, booleans and rounding included."""
    from pyama_flow.io import framestats
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 4000, (9, 13)).astype(np.uint16), np.full((3, 3), 65535, np.uint16),
              rng.gamma(2.0, 40.0, (5, 7)).astype(np.float32), np.array([[0.1234565, 2.5e-7]], np.float64)]
    rows = [framestats.frame_statistics(f, t) for t, f in enumerate(frames)]
    statistics.write_statistics(statistics.statistics_table(rows), str(tmp_path / "pandas.csv"))
    framestats.write_statistics_rows(rows, str(tmp_path / "plain.csv"))
    assert (tmp_path / "plain.csv").read_bytes() == (tmp_path / "pandas.csv").read_bytes()
    assert ",True," in (tmp_path / "plain.csv").read_text() and ",\n" in (tmp_path / "plain.csv").read_text()


# -- stretch, outlines, composite ---------------------------------------------


def test_percentile_stretch_maps_1st_and_99th_percentile_to_0_and_255():
    rng = np.random.default_rng(3)
    frame = rng.integers(100, 5000, (64, 64)).astype(np.uint16)
    lo, hi = np.percentile(frame, [1, 99])
    out = display.percentile_stretch(frame)
    assert out.dtype == np.uint8
    # pixels at or below the 1st percentile are 0, at or above the 99th 255
    assert np.all(out[frame <= lo] == 0) and np.all(out[frame >= hi] == 255)
    # linear in between
    expected = np.clip(np.rint((frame - lo) * 255.0 / (hi - lo)), 0, 255)
    np.testing.assert_array_equal(out, expected)
    assert len(np.unique(out)) > 200  # the stretch uses the full 8-bit range
    # the limits themselves map exactly; linear in between
    lim = display.percentile_stretch(np.array([[lo, hi, (lo + hi) / 2]]), limits=(lo, hi))
    assert lim.tolist() == [[0, 255, 128]]
    assert display.stretch_limits(frame) == (lo, hi)


def test_percentile_stretch_flat_frame():
    out = display.percentile_stretch(np.full((5, 5), 7, np.uint16))
    assert out.dtype == np.uint8 and np.all(out == 0)


def test_outlines_exactly_on_object_borders():
    labels = np.zeros((12, 14), np.uint32)
    labels[2:7, 3:9] = 4  # 5 x 6 rectangle
    labels[7:10, 3:9] = 9  # touches object 4 along row 6/7
    labels[0:3, 11:14] = 2  # cut by the top and right frame edges
    edge = display.label_outlines(labels)
    expected = np.zeros_like(edge)
    # object 4: its whole ring (the bottom row borders object 9)
    expected[2, 3:9] = expected[6, 3:9] = True
    expected[2:7, 3] = expected[2:7, 8] = True
    # object 9: ring of a 3 x 6 rectangle
    expected[7, 3:9] = expected[9, 3:9] = True
    expected[7:10, 3] = expected[7:10, 8] = True
    # object 2: closed along the frame edge too
    expected[0, 11:14] = expected[2, 11:14] = True
    expected[0:3, 11] = expected[0:3, 13] = True
    np.testing.assert_array_equal(edge, expected)
    assert not edge[labels == 0].any()


def test_draw_outlines_colours_border_pixels_per_track():
    labels = np.zeros((10, 10), np.uint32)
    labels[2:8, 2:8] = 3
    rgb = np.zeros((10, 10, 3), np.float32)
    out = display.draw_outlines(rgb, labels)
    edge = display.label_outlines(labels)
    np.testing.assert_allclose(out[edge], np.tile(display.track_color(3), (edge.sum(), 1)), rtol=1e-6)
    assert np.all(out[~edge] == 0)


def test_centroids_and_downsampling():
    labels = np.zeros((8, 8), np.uint16)
    labels[0:2, 0:4] = 5
    ids, cy, cx = display.label_centroids(labels)
    assert ids.tolist() == [5] and cy.tolist() == [0.5] and cx.tolist() == [1.5]
    frame = np.arange(64, dtype=np.uint16).reshape(8, 8)
    small = display.downsample(frame, 2)
    assert small.shape == (4, 4) and small[0, 0] == np.mean([0, 1, 8, 9])
    assert display.downsample_labels(labels, 2).shape == (4, 4)
    assert display.thumbnail_factor((2048, 2048), 360) == 6


def test_composite_adds_channels_in_their_colours():
    a = np.full((2, 2), 255, np.uint8)
    b = np.zeros((2, 2), np.uint8)
    out = display.composite([a, b], [(0.0, 1.0, 0.0), (1.0, 0.0, 1.0)])
    np.testing.assert_allclose(out[0, 0], [0, 1, 0])
    out = display.composite([a, a], [(0.6, 0.6, 0.6), (0.6, 0.0, 0.0)])
    np.testing.assert_allclose(out[0, 0], [1.0, 0.6, 0.6])  # clipped at 1


def test_colours_and_time_units():
    assert display.channel_color("GFP") == display.channel_color("eGFP-488")
    assert display.channel_color("Phase", phase=True) == display.PHASE_COLOR
    assert display.channel_color("mCherry") != display.channel_color("GFP")
    names = ["a", "b", "c"]
    assert display.sample_color("b", names) == display.SAMPLE_PALETTE[1]
    assert display.sample_color(None, names) == display.NO_SAMPLE_COLOR
    assert figures.time_unit([0, 100]) == (1.0, "min")
    assert figures.time_unit([0, 600]) == (60.0, "h")
    assert display.select_frames(40) == [0, 20, 39] and display.select_frames(1) == [0]


def test_statistics_html_one_row_per_frame_and_marks_saturation():
    frames = [np.full((4, 4), 10 * (t + 1), np.uint16) for t in range(7)]
    frames[4][0, 0] = 65535
    df = statistics.statistics_table(framestats.frame_statistics(f, t) for t, f in enumerate(frames))
    page = statistics.statistics_html(df, [20.0 * t for t in range(7)], "FOV 000")
    body = page.split("<tbody>")[1].split("</tbody>")[0]
    assert body.count("<tr") == 7
    assert body.count('class="sat"') == 1
    assert "<td>4</td><td>80.0</td>" in body  # frame 4 at 80 min


# -- figures from files ---------------------------------------------------------


@pytest.fixture(scope="module")
def fov_files(tmp_path_factory):
    """A tiny FOV: phase and GFP stacks, labels, background, metadata, traces."""
    from pyama_flow.background import model as bgmod
    d = tmp_path_factory.mktemp("fov")
    rng = np.random.default_rng(0)
    n, h, w = 5, 64, 80
    labels = np.zeros((n, h, w), np.uint32)
    for t in range(n):
        labels[t, 10:25, 10 + t:28 + t] = 1
        labels[t, 35:55, 40:60] = 2
    phase = (rng.normal(1000, 20, (n, h, w)) - 300 * (labels > 0)).astype(np.uint16)
    gfp = (rng.normal(300, 5, (n, h, w)) + 200 * (labels > 0) * np.arange(n)[:, None, None]).astype(np.uint16)
    gfp[-1, 0, 0] = 65535
    write_stack(d / "raw_ch0.tif", phase, n, (h, w), np.uint16)
    write_stack(d / "raw_ch1.tif", gfp, n, (h, w), np.uint16)
    write_stack(d / "labels.tif", labels, n, (h, w), np.uint32)
    models = [bgmod.fit_tiles(gfp[t], labels[t] > 0, tile_size=32, dilation=5) for t in range(n)]
    bgmod.save_models(str(d / "bg.npz"), models, 32, 5)
    meta = {"channel_names": ["Phase", "GFP"], "pixel_size_um": 0.65,
            "fov_times_min": {"3": [10.0 * t for t in range(n)]}}
    (d / "metadata.json").write_text(json.dumps(meta))
    stats = statistics.statistics_table(framestats.frame_statistics(gfp[t], t) for t in range(n))
    statistics.write_statistics(stats, str(d / "stats.csv"))
    (d / "trace_stats.json").write_text(json.dumps(
        {"cells_detected": 3, "cells_kept": 2, "cells_per_frame": [2] * n,
         "filters": {"min_frames": 3, "border": 5}}))
    pd.DataFrame({"cell": [1, 2, 3], "parent": [0, 0, 0], "first_frame": [0, 0, 2],
                  "last_frame": [4, 4, 2]}).to_csv(d / "tracks.csv", index=False)
    pd.DataFrame({"cell": [1] * n + [2] * n, "frame": list(range(n)) * 2}).to_csv(
        d / "traces.csv", index=False)
    return d


def test_render_frames_sheet(fov_files):
    d = fov_files
    out = d / "frames.png"
    idx = render_frames({0: str(d / "raw_ch0.tif"), 1: str(d / "raw_ch1.tif")},
                           str(d / "metadata.json"), 3, 0, str(out), "test · FOV 003")
    assert idx == [0, 2, 4]
    px = _png_pixels(out)
    assert px.shape[0] > 200 and px.std() > 20  # pictures, not a blank page
    # some pixel is clearly green (GFP row / composite)
    assert np.any((px[..., 1] > 150) & (px[..., 0] < 100) & (px[..., 2] < 100))


def test_render_outlines_draws_track_colours(fov_files):
    d = fov_files
    out = d / "outlines.png"
    render_outlines(str(d / "raw_ch0.tif"), str(d / "labels.tif"), str(d / "metadata.json"),
                       3, str(out), "test")
    px = _png_pixels(out) / 255.0
    for tid in (1, 2):
        colour = np.asarray(display.track_color(tid))
        assert (np.abs(px - colour).max(axis=-1) < 0.06).sum() > 20, tid


def test_render_background_frame_stats_and_cells(fov_files):
    d = fov_files
    render_background(str(d / "raw_ch1.tif"), str(d / "bg.npz"), str(d / "metadata.json"),
                         3, 1, str(d / "bg.png"), "test")
    assert _png_pixels(d / "bg.png").std() > 20
    stats = render_frame_statistics(str(d / "stats.csv"), str(d / "metadata.json"), 3, 1,
                                       str(d / "stats.png"), str(d / "stats.html"), "test")
    assert stats["saturated"].tolist() == [False] * 4 + [True]
    page = (d / "stats.html").read_text()
    assert page.split("<tbody>")[1].count("<tr") == 5
    assert _png_pixels(d / "stats.png").std() > 10
    res = render_cells(str(d / "trace_stats.json"), str(d / "tracks.csv"), str(d / "traces.csv"),
                          str(d / "metadata.json"), 3, str(d / "cells.png"), "test")
    assert res["kept_per_frame"] == [2] * 5 and res["n_kept"] == 2
    assert _png_pixels(d / "cells.png").std() > 10


def test_config_html_lists_every_key():
    page = config_html({"tracking": {"min_iou": 0.1, "max_gap": 2},
                           "samples": [{"name": "a", "fovs": "0-3"}]})
    assert "tracking" in page and "min_iou" in page and "0.1" in page
    assert "[0].name" in page and "&quot;0-3&quot;" in page


# -- pyama-flow thumbnail ---------------------------------------------------------


def test_thumbnail_command_plain_is_the_stretched_frame(small_experiment, tmp_path):
    from pyama_flow.cli import main
    from pyama_flow.io import open_image

    path = str(small_experiment["path"])
    out = tmp_path / "plain.png"
    assert main(["thumbnail", path, "--fov", "1", "--channel", "1", "--frame", "7",
                 "--plain", "-o", str(out)]) == 0
    with open_image(path) as reader:
        frame = reader.read_frame(1, 7, 1)
        name = reader.metadata.channel_names[1]
    from PIL import Image

    np.testing.assert_array_equal(np.asarray(Image.open(out)), display.percentile_stretch(frame))
    # by channel name, annotated figure (title, colour bar, scale bar)
    fig_out = tmp_path / "fig.png"
    assert main(["thumbnail", path, "--channel", name, "--frame", "3", "-o", str(fig_out)]) == 0
    assert _png_pixels(fig_out).std() > 20


def test_thumbnail_command_max_projection_of_a_z_stack(tmp_path, capsys):
    import tifffile
    from PIL import Image

    from pyama_flow.cli import main

    rng = np.random.default_rng(5)
    stack = rng.integers(0, 1000, (2, 4, 2, 24, 30)).astype(np.uint16)  # T Z C Y X
    stack[1, 2, 1, 5:9, 5:9] = 4000  # a bright spot on one plane only
    tifffile.imwrite(tmp_path / "z.tif", stack)
    out = tmp_path / "mip.png"
    args = ["thumbnail", str(tmp_path / "z.tif"), "--axes", "TZCYX", "--channel", "1", "--frame", "1"]
    assert main([*args, "--mip", "--plain", "-o", str(out)]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(out)),
                                  display.percentile_stretch(stack[1, :, 1].max(axis=0)))
    assert main([*args, "--z", "0", "--plain", "-o", str(out)]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(out)), display.percentile_stretch(stack[1, 0, 1]))
    assert "z 0" in capsys.readouterr().out
    assert main([*args, "--channel", "nope", "-o", str(out)]) == 2  # unknown channel: one-line error
