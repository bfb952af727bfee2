"""Bad input fails loudly and precisely (one line naming the file / key / FOV
and what to do) or gives a valid result; no step leaves a partial output.

docs/reliability.md lists every case with the message a user sees; the
messages asserted here are the ones copied there.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml

from pyama_flow.background import model as bgmod
from pyama_flow.background.step import correct as correct_step
from pyama_flow.io.extract import dataset_metadata, extract as extract_step
from pyama_flow.segmentation.step import segment
from pyama_flow.fitting.fit import failure_reasons, fit_traces, write_fits
from pyama_flow.io import open_image
from pyama_flow.io.base import InputError
from pyama_flow.io.atomic import atomic_path
from pyama_flow.io.stacks import read_stack, write_stack
from pyama_flow.segmentation import segment_frame
from pyama_flow.segmentation.logstd import segment_logstd
from pyama_flow.traces.features import TraceBuilder, frame_features, read_traces, write_traces

from conftest import shared_data
from test_config import DEMO, dry_run, edited

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
TRACE_COLUMNS = ("fov,cell,frame,time,good,position_x,position_y,bbox_x0,bbox_y0,bbox_x1,bbox_y1,"
                 "area_ch_0,intensity_total_ch_1,centroid_x,centroid_y")
FIT_COLUMNS = ("fov,cell,model,success,r_squared,t0,ktl,km,delta,beta,offset,t0_se,ktl_se,km_se,"
               "delta_se,beta_se,offset_se,residual_std,aic,bic,n_points,status,at_bound")


# ----------------------------------------------------------------------------- helpers
def one_line_naming(message: str, *names: str) -> None:
    assert "\n" not in message.strip() and message.isprintable(), message
    for name in names:
        assert name in message, f"{name!r} not in {message!r}"


def nothing_left(folder: Path) -> list[str]:
    """Files in ``folder`` (recursively): outputs or temporaries a failure left."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def write_ome(path: Path, data: np.ndarray, interval_min: float = 20.0,
              names: tuple[str, ...] = ("Phase", "GFP")) -> Path:
    """(P, T, C, Y, X) array as a multi-position OME-TIFF with plane DeltaT."""
    n_t, n_c = data.shape[1:3]
    with tifffile.TiffWriter(path, ome=True) as tw:
        for p in range(data.shape[0]):
            tw.write(data[p], photometric="minisblack", metadata={
                "axes": "TCYX", "Name": f"FOV {p}", "Channel": {"Name": list(names)},
                "Plane": {"DeltaT": [t * interval_min * 60.0 for t in range(n_t) for _ in range(n_c)],
                          "DeltaTUnit": ["s"] * (n_t * n_c)}})
    return path


def simulated(folder: Path, n_fovs: int = 2, n_frames: int = 12) -> np.ndarray:
    """A small simulated experiment (one cell per 160 px FOV) as (P, T, C, Y, X) uint16."""
    from pyama_flow.devtools.simulate import SimulationConfig, simulate_experiment

    cfg = SimulationConfig(n_fovs=n_fovs, n_frames=n_frames, height=160, width=160, n_cells=1, seed=5)
    simulate_experiment(folder / "sim.ome.tif", folder / "truth", cfg)
    with tifffile.TiffFile(folder / "sim.ome.tif") as tif:
        return np.stack([s.asarray() for s in tif.series])


def textured_disc(size: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    img = rng.normal(1000, 3, (size, size))
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size // 2) ** 2 + (xx - size // 2) ** 2 <= 20**2
    img[disc] += rng.normal(0, 200, disc.sum())
    return img, disc


class Wildcards(dict):
    __getattr__ = dict.__getitem__


def run_script(name: str, tmp_path: Path, **fields) -> None:
    """Run ``scripts/{name}.py`` in-process with a stand-in ``snakemake`` object."""
    fake = SimpleNamespace(
        log=[str(tmp_path / f"{name}.log")], threads=1,
        wildcards=Wildcards(fields.pop("wildcards", {})), **fields,
    )
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        runpy.run_path(str(ROOT / "scripts" / f"{name}.py"), init_globals={"snakemake": fake})
    finally:
        sys.path.remove(str(ROOT / "scripts"))
        for handler in root.handlers[:]:  # the script's log handlers: close, restore pytest's
            if handler not in saved[0]:
                handler.close()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


# ----------------------------------------------------------------------------- frames
@pytest.mark.parametrize("value", [0, 500, 65535], ids=["all-zero", "constant", "saturated"])
@pytest.mark.parametrize("method", ["logstd", "watershed"])
def test_flat_frames_give_no_objects_and_a_flat_background(value, method):
    frame = np.full((96, 96), value, np.uint16)
    labels = segment_frame(frame, method=method)
    assert labels.dtype == np.uint16 and labels.shape == frame.shape and labels.max() == 0
    model = bgmod.fit_tiles(frame, labels, tile_size=32, dilation=21)
    assert np.array_equal(bgmod.evaluate(model), np.full(frame.shape, value, np.float32))
    feats = frame_features(labels, {1: frame}, {1: bgmod.evaluate(model)})
    assert feats["cell"].size == 0 and feats["intensity_total_ch_1"].size == 0


def test_frames_smaller_than_the_background_tile_through_the_correct_step(tmp_path):
    rng = np.random.default_rng(1)
    raw = rng.normal(300, 3, (4, 40, 56)).astype(np.uint16)
    seg = np.zeros(raw.shape, np.uint16)
    seg[:, 10:20, 10:20] = 1
    write_stack(tmp_path / "raw.tif", iter(raw), 4, (40, 56), np.uint16)
    write_stack(tmp_path / "seg.tif", iter(seg), 4, (40, 56), np.uint16)
    correct_step(str(tmp_path / "raw.tif"), str(tmp_path / "seg.tif"), str(tmp_path / "bg.npz"),
                  tile_size=256, dilation=21)
    models = bgmod.BackgroundModels(str(tmp_path / "bg.npz"))
    assert len(models) == 4 and models.support.shape[1:] == (1, 1)  # one tile: a constant
    for t in range(4):
        assert np.isfinite(models[t]).all() and abs(float(models[t].mean()) - 300) < 3


def test_nan_pixels_are_background_for_logstd():
    img, disc = textured_disc()
    reference = segment_logstd(img.astype(np.float32))
    nan = img.astype(np.float32)
    nan[:12] = np.nan  # a NaN band far from the cell
    labels = segment_logstd(nan)
    assert labels.max() == 1 and not labels[:12].any()
    assert np.array_equal(labels > 0, reference > 0)
    cut = img.astype(np.float32)
    cut[60:63] = np.nan  # a NaN band through the cell
    labels = segment_logstd(cut)
    assert labels.max() >= 1 and not labels[60:63].any()
    assert segment_logstd(np.full((64, 64), np.nan, np.float32)).max() == 0
    assert segment_logstd(np.where(disc, np.inf, img).astype(np.float32))[disc].max() == 0


def test_nan_frames_through_the_segment_step_for_every_method(tmp_path):
    img, _disc = textured_disc()
    frames = np.stack([img, img, np.full(img.shape, np.nan)]).astype(np.float32)
    frames[0, :12] = np.nan
    write_stack(tmp_path / "raw.tif", iter(frames), 3, img.shape, np.float32)
    for method in ("logstd", "watershed"):
        out = tmp_path / f"seg_{method}.tif"
        segment(str(tmp_path / "raw.tif"), str(out), method, {})
        labels = read_stack(out)
        assert labels[0].max() >= 1 and labels[1].max() >= 1, method
        assert not labels[0, :12].any() and labels[2].max() == 0, method


def test_nan_pixels_leave_background_medians_and_intensity_sums(tmp_path):
    rng = np.random.default_rng(2)
    img = rng.normal(300, 3, (64, 64)).astype(np.float32)
    mask = np.zeros((64, 64), np.uint16)
    mask[20:30, 20:30] = 1
    nan = img.copy()
    nan[40:50] = np.nan
    model = bgmod.fit_tiles(nan, mask, tile_size=256, dilation=5)
    keep = ~bgmod.background_mask(mask, 5)
    keep[40:50] = False
    assert model.support[0, 0] == np.float32(np.median(img[keep]))
    # a frame without a finite pixel has no background: NaN, not a number that looks right
    empty = bgmod.fit_tiles(np.full((64, 64), np.nan, np.float32), mask, tile_size=256)
    assert np.isnan(bgmod.evaluate(empty)).all()
    # the sums leave NaN pixels out and the builder marks those rows good = False
    bg = np.full((64, 64), 300, np.float32)
    fl = np.full((64, 64), 310, np.float32)
    fl[25, 25] = np.nan
    feats = frame_features(mask, {1: fl}, {1: bg})
    assert feats["intensity_total_ch_1"].tolist() == [99 * 10.0]
    assert feats["invalid_pixels"].tolist() == [1]
    builder = TraceBuilder(fov=0, pc_channel=0, fl_channels=[1])
    builder.add_frame(0, 0.0, mask, {1: np.full((64, 64), 310, np.float32)}, {1: bg})
    builder.add_frame(1, 10.0, mask, {1: fl}, {1: bg})
    builder.add_frame(2, 20.0, mask, {1: fl * 0 + 310}, {1: bgmod.evaluate(empty)})
    table = builder.table()
    assert table["good"].tolist() == [True, False, False]
    assert np.isfinite(table["intensity_total_ch_1"]).all()
    assert builder.invalid_rows == 2 and builder.invalid_frames == [1, 2]


def test_frames_without_cells_keep_integer_columns(tmp_path):
    builder = TraceBuilder(fov=0, pc_channel=0, fl_channels=[1])
    lab = np.zeros((20, 20), np.uint32)
    img = np.ones((20, 20), np.uint16)
    builder.add_frame(0, 0.0, lab, {1: img})
    lab[5:9, 5:9] = 3
    builder.add_frame(1, 1.0, lab, {1: img})
    write_traces(builder.table(), str(tmp_path / "traces.csv"))
    row = (tmp_path / "traces.csv").read_text().splitlines()[1].split(",")
    assert row[:3] == ["0", "3", "1"] and row[7:12] == ["5", "5", "8", "8", "16"]


# ----------------------------------------------------------------------------- files
def test_truncated_tiff_fails_at_metadata_and_extract_leaves_nothing(tmp_path):
    sim = simulated(tmp_path, n_fovs=1, n_frames=4)
    src = write_ome(tmp_path / "whole.ome.tif", sim).read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    for frac in (0.5, 0.9):
        cut = tmp_path / f"cut{frac}.ome.tif"
        cut.write_bytes(src[: int(len(src) * frac)])
        with pytest.raises(InputError) as err:
            dataset_metadata(str(cut), {}, None)
        one_line_naming(str(err.value), str(cut), "truncated", "re-copy")
        with pytest.raises(InputError):
            extract_step(str(cut), {}, 0, 0, 0, str(out / "raw_ch0.tif"), str(out / "stats.csv"))
    assert nothing_left(out) == []


def test_corrupt_plane_passes_metadata_but_fails_extract_naming_fov_and_frame(tmp_path):
    sim = simulated(tmp_path, n_fovs=1, n_frames=4)
    path = tmp_path / "sim.ome.tif"  # zlib-compressed planes
    with tifffile.TiffFile(path) as tif:
        page = tif.series[0].pages[5]  # frame 2, channel 1
        offset, count = page.dataoffsets[0], page.databytecounts[0]
    data = bytearray(path.read_bytes())
    data[offset:offset + count] = bytes(count)
    bad = tmp_path / "corrupt.ome.tif"
    bad.write_bytes(bytes(data))
    assert dataset_metadata(str(bad), {}, None)["n_frames"] == len(sim[0])
    out = tmp_path / "out"
    out.mkdir()
    extract_step(str(bad), {}, 0, 0, 0, str(out / "raw_ch0.tif"))  # channel 0 is intact
    with pytest.raises(InputError) as err:
        extract_step(str(bad), {}, 0, 1, 0, str(out / "raw_ch1.tif"), str(out / "stats.csv"))
    one_line_naming(str(err.value), str(bad), "cannot read FOV 0 frame 2 channel 1", "re-copy")
    assert nothing_left(out) == ["raw_ch0.tif"]


def test_truncated_real_tiff_and_nd2(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    ij = shared_data("tiff", "neubias", "xyc_16bit__embryo_transmission_fluorescence.tif")
    cut = tmp_path / "half.tif"
    cut.write_bytes(ij.read_bytes()[: ij.stat().st_size // 2])
    with pytest.raises(InputError) as err:
        extract_step(str(cut), {}, 0, 0, 0, str(out / "raw.tif"))
    one_line_naming(str(err.value), str(cut), "truncated", "re-copy")
    pytest.importorskip("nd2", reason="optional reader library 'nd2' is not installed")
    nd2 = shared_data("nd2", "arcadia", "example-timelapse.nd2")
    cut = tmp_path / "half.nd2"
    cut.write_bytes(nd2.read_bytes()[: nd2.stat().st_size // 2])
    for call in (lambda: dataset_metadata(str(cut), {}, None),
                 lambda: extract_step(str(cut), {}, 0, 0, 0, str(out / "raw.tif"))):
        with pytest.raises(InputError) as err:
            call()
        one_line_naming(str(err.value), str(cut), "ND2", "truncated or corrupt", "re-copy")
    assert nothing_left(out) == []


def test_folder_frame_of_another_size_names_the_file(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in range(5):
        tifffile.imwrite(folder / f"img_t{t:03d}.tif", np.full((32, 40 if t != 3 else 48), t, np.uint16))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputError) as err:
        extract_step(str(folder), {}, 0, 0, 0, str(out / "raw_ch0.tif"), str(out / "stats.csv"))
    one_line_naming(str(err.value), str(folder / "img_t003.tif"), "(32, 48)", "(32, 40)", "pattern")
    assert nothing_left(out) == []


def test_readers_and_failed_opens_release_their_file_handles(tmp_path):
    sim = simulated(tmp_path, n_fovs=1, n_frames=3)
    good = write_ome(tmp_path / "ok.ome.tif", sim)
    bad = tmp_path / "bad.ome.tif"
    bad.write_bytes(good.read_bytes()[:-200])

    def n_open() -> int:
        return len(os.listdir("/proc/self/fd"))

    if not Path("/proc/self/fd").exists():
        pytest.skip("needs /proc")
    before = n_open()
    for _ in range(200):
        with open_image(good) as reader:
            reader.read_frame(0, 2, 1)
        with pytest.raises(InputError):
            open_image(bad)
    assert n_open() <= before + 2


# ----------------------------------------------------------------------------- writers
def test_failed_writers_leave_neither_output_nor_temporary(tmp_path):
    def broken(n: int):
        for t in range(n):
            if t == 2:
                raise InputError("frame 2 is bad")
            yield np.zeros((8, 8), np.uint16)

    with pytest.raises(InputError):
        write_stack(tmp_path / "stack.tif", broken(5), 5, (8, 8), np.uint16)
    with pytest.raises(ValueError, match="got 2 frames, expected 5"):
        write_stack(tmp_path / "short.tif", iter([np.zeros((8, 8))] * 2), 5, (8, 8), np.uint16)
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "x.csv") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert nothing_left(tmp_path) == []


@pytest.mark.parametrize("named", [False, True], ids=["write-without-file-name", "temporary-named"])
def test_full_disk_ends_the_job_with_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys, named):
    """ENOSPC while the correct step writes its output: one line naming the job, the
    output and the free space on its filesystem; neither output nor temporary left."""
    import errno
    import shutil

    rng = np.random.default_rng(2)
    raw = rng.normal(300, 3, (2, 40, 56)).astype(np.uint16)
    write_stack(tmp_path / "raw.tif", iter(raw), 2, (40, 56), np.uint16)
    write_stack(tmp_path / "seg.tif", iter(np.zeros_like(raw)), 2, (40, 56), np.uint16)
    out = tmp_path / "results" / "bg.npz"
    out.parent.mkdir()

    def full_disk(path, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"half a file")  # the atomic writer's temporary
        raise OSError(errno.ENOSPC, "No space left on device", *([path] if named else []))

    monkeypatch.setattr(bgmod, "save_models", full_disk)
    with pytest.raises(SystemExit) as stop:
        run_script("correct", tmp_path, input=SimpleNamespace(raw=str(tmp_path / "raw.tif"),
                                                              seg=str(tmp_path / "seg.tif")),
                   output=[str(out)], params=SimpleNamespace(tile_size=32, dilation=21, expand_px=0.0),
                   wildcards={"dataset": "demo", "fov": "003", "c": "1"})
    assert stop.value.code == 1
    mount = Path(out).resolve().parent
    while not os.path.ismount(mount):
        mount = mount.parent
    lines = [line for line in capsys.readouterr().err.splitlines() if "no space left" in line]
    assert len(lines) == 1, lines
    pattern = (r".* ERROR \[dataset=demo, fov=003, c=1\] " + re.escape(str(out)) +
               r": no space left on device \((\d+ MB|\d+\.\d GB) free on " + re.escape(str(mount)) +
               r"\); free space and rerun")
    assert re.fullmatch(pattern, lines[0]), lines[0]
    free = shutil.disk_usage(mount).free  # the figure is the filesystem's (to within what others wrote)
    shown = re.search(r"\((\d+(?:\.\d)?) ([MG])B free", lines[0])
    value = float(shown.group(1)) * (2**30 if shown.group(2) == "G" else 2**20)
    assert abs(value - free) < max(0.1 * free, 2**30 * 0.1)
    assert nothing_left(out.parent) == []
    assert "Traceback" in (tmp_path / "correct.log").read_text()  # the details stay in the log


def test_stale_temporaries_of_a_killed_attempt_are_removed(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from _common import remove_stale_temporaries
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    for name in (".traces.csv.abc123.part", ".fits_maturation.csv.x9.tmp", ".other.csv.q.part", "keep.csv"):
        (tmp_path / name).write_text("x")
    removed = remove_stale_temporaries([tmp_path / "traces.csv", tmp_path / "fits_maturation.csv"])
    assert len(removed) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.csv.q.part", "keep.csv"]



def test_a_killed_track_jobs_scratch_is_removed_by_the_next_attempt(tmp_path):
    """The track job's scratch stack (scratch_path) is removed when the job
    ends, also on error; if SIGKILL leaves it, its name is one the next
    attempt's clean-up of labels.tif removes."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from _common import remove_stale_temporaries
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    from pyama_flow.io.atomic import scratch_path

    with pytest.raises(RuntimeError), scratch_path(tmp_path / "labels.tif") as scratch:
        scratch.write_bytes(b"frames")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with scratch_path(tmp_path / "labels.tif") as scratch:
        left = scratch.name
    assert list(tmp_path.iterdir()) == []
    (tmp_path / left).write_bytes(b"frames")  # what SIGKILL would leave behind
    assert remove_stale_temporaries([tmp_path / "labels.tif"]) == [str(tmp_path / left)]
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- fits
def short_and_long_cells() -> pd.DataFrame:
    t = np.arange(20) * 10.0
    y = 1000 * (1 - np.exp(-t / 60.0))
    rows = [dict(fov=0, cell=1, frame=i, time=t[i], good=True, intensity_total_ch_1=y[i]) for i in range(20)]
    rows += [dict(fov=0, cell=2, frame=i, time=t[i], good=True, intensity_total_ch_1=y[i]) for i in (3, 4)]
    return pd.DataFrame(rows)


def test_cell_in_fewer_frames_than_the_fit_needs_is_not_a_crash():
    fits = fit_traces(short_and_long_cells(), "maturation")
    assert fits["success"].tolist() == [True, False]
    assert fits.loc[1, "n_points"] == 2 and np.isnan(fits.loc[1, "ktl"])
    assert failure_reasons(fits).tolist() == ["", "too few points: 2 < 4 free parameters"]


def test_fit_script_logs_why_cells_are_not_fitted(tmp_path):
    traces = tmp_path / "traces.csv"
    write_traces(short_and_long_cells(), str(traces))
    out = tmp_path / "fits_maturation.csv"
    run_script("fit", tmp_path, input=SimpleNamespace(traces=str(traces), curation=[]), output=[str(out)],
               params=SimpleNamespace(overrides={}, value_col="intensity_total_ch_1"),
               wildcards={"dataset": "d", "fov": "000", "model": "maturation"})
    assert pd.read_csv(out)["success"].tolist() == [True, False]
    log = (tmp_path / "fit.log").read_text()
    assert ("maturation: 1 of 2 cells not fitted (success=False): cell 2: too few points: "
            "2 < 4 free parameters") in log


def test_fit_script_on_empty_traces_writes_columns_and_says_why(tmp_path):
    traces = tmp_path / "traces.csv"
    traces.write_text(TRACE_COLUMNS + "\n")
    out = tmp_path / "fits_maturation.csv"
    run_script("fit", tmp_path, input=SimpleNamespace(traces=str(traces), curation=[]), output=[str(out)],
               params=SimpleNamespace(overrides={}, value_col="intensity_total_ch_1"),
               wildcards={"dataset": "d", "fov": "000", "model": "maturation"})
    assert out.read_text() == FIT_COLUMNS + "\n"
    assert "fits skipped" in (tmp_path / "fit.log").read_text()
    empty = fit_traces(read_traces(str(traces)), "maturation")
    write_fits(empty, tmp_path / "again.csv")
    assert (tmp_path / "again.csv").read_text() == FIT_COLUMNS + "\n"


# ----------------------------------------------------------------------------- config, at DAG build
def _reference_tile_medians(image: np.ndarray, mask: np.ndarray, tile_size: int, dilation: int) -> np.ndarray:
    """Plain numpy: np.median (float32) of each tile's unmasked, finite pixels (a tile
    without any: the median of all of them)."""
    keep = ~bgmod.background_mask(mask, dilation)
    img = image.astype(np.float32)
    keep &= np.isfinite(img)
    ey, ex = bgmod.tile_edges(image.shape[0], tile_size), bgmod.tile_edges(image.shape[1], tile_size)
    out = np.empty((ey.size - 2, ex.size - 2), np.float32)
    for i in range(ey.size - 2):
        for j in range(ex.size - 2):
            tile = img[ey[i]:ey[i + 2], ex[j]:ex[j + 2]][keep[ey[i]:ey[i + 2], ex[j]:ex[j + 2]]]
            out[i, j] = np.median(tile) if tile.size else np.nan
    out[np.isnan(out)] = np.median(img[keep])  # an all-masked tile takes the frame's median
    return out


def wide_range_frames() -> dict[str, np.ndarray]:
    """One frame per reader dtype, values around 1000; the uint32 one with a hot pixel at 2^32 - 1."""
    rng = np.random.default_rng(4)
    base = rng.normal(1000, 40, (3, 150, 170))
    hot = base.astype(np.uint32)
    hot[1, 7, 9] = 2**32 - 1
    wide = base.astype(np.int32)
    wide[0, 3, 3], wide[2, 100, 50] = -(2**31), 2**31 - 1
    return {"uint32-hot-pixel": hot, "int32-full-range": wide, "float32": base.astype(np.float32),
            "float64": base, "uint8": (base / 8).astype(np.uint8), "int16": (base - 1000).astype(np.int16)}


@pytest.mark.parametrize("name", list(wide_range_frames()))
def test_wide_range_frames_through_the_correct_step_match_numpy_medians(tmp_path, name):
    raw = wide_range_frames()[name]
    seg = np.zeros(raw.shape, np.uint16)
    seg[:, 40:60, 60:90] = 1
    tifffile.imwrite(tmp_path / "raw.tif", raw, photometric="minisblack")
    write_stack(tmp_path / "seg.tif", iter(seg), raw.shape[0], raw.shape[1:], np.uint16)
    correct_step(str(tmp_path / "raw.tif"), str(tmp_path / "seg.tif"), str(tmp_path / "bg.npz"),
                  tile_size=32, dilation=21)
    models = bgmod.BackgroundModels(str(tmp_path / "bg.npz"))
    assert len(models) == raw.shape[0]
    for t in range(raw.shape[0]):
        expected = _reference_tile_medians(raw[t], seg[t], 32, 21)
        assert np.array_equal(models.support[t], expected), (name, t)
    assert np.isfinite(models.support).all()


def test_wide_range_frames_have_numpy_statistics_and_segment():
    from pyama_flow.io.framestats import frame_statistics

    for name, frame in wide_range_frames().items():
        stats = frame_statistics(frame[1], 1)
        f = frame[1]
        p1, p50, p99 = np.percentile(f, [1, 50, 99])
        assert (stats["min"], stats["max"]) == (float(f.min()), float(f.max())), name
        assert (stats["p1"], stats["p50"], stats["p99"]) == (p1, p50, p99), name
        assert stats["mean"] == float(f.mean(dtype=np.float64)), name
        labels = segment_logstd(f)
        assert labels.shape == f.shape and labels.dtype == np.uint16, name
    hot = wide_range_frames()["uint32-hot-pixel"][1]
    assert frame_statistics(hot)["n_saturated"] == 1 and frame_statistics(hot)["saturated"]


def test_tile_medians_of_a_hot_pixel_frame_count_nothing_per_value(monkeypatch):
    """A uint32 frame spanning 2^32 values never reaches the counting kernel (it would
    allocate a count per possible value: MemoryError)."""
    from pyama_flow import kernels
    def refuse(*args):
        raise AssertionError("counting kernel called on a wide range")

    frame = wide_range_frames()["uint32-hot-pixel"][1]
    mask = np.zeros(frame.shape, np.uint16)
    monkeypatch.setattr(kernels, "tile_medians", refuse)
    model = bgmod.fit_tiles(frame, mask, tile_size=64, dilation=21)
    assert np.array_equal(model.support, _reference_tile_medians(frame, mask, 64, 21))
    assert bgmod._median(frame.ravel()) == np.median(frame.astype(np.float32))


def _without(cfg: dict, *keys: str) -> dict:
    cfg = copy.deepcopy(cfg)
    node = cfg
    for k in keys[:-1]:
        node = node[k]
    del node[keys[-1]]
    return cfg


@pytest.mark.parametrize(
    "config,message",
    [
        (_without(DEMO, "datasets", "demo", "fluorescence"),
         "datasets.demo: 'fluorescence' is a required property (config/README.md lists every key)"),
        (edited(traces__min_frame=3),
         "traces: Additional properties are not allowed ('min_frame' was unexpected)"),
        (edited(fit__channel="Phase"), "fit.channel: channel 'Phase' is not a fluorescence channel of demo "
         "(choose one of datasets.demo.fluorescence)"),
        (edited(samples__0__dataset="nope"), "samples.control.dataset: unknown dataset 'nope' (datasets: ['demo'])"),
        (edited(samples__1__name="control"), "samples: name 'control' used twice; give each sample its own name"),
        (edited(samples__1__fovs="1-4"), "samples.treated.fovs: FOV 2 is outside the file (valid: 0-1)"),
        (edited(datasets__demo__phase=5), "datasets.demo.phase: channel 5 out of range (valid: 0-1)"),
        (edited(datasets__demo__z=2), "datasets.demo.z: Z plane 2 is outside the file (valid: 0-0, or 'max')"),
        (edited(datasets__demo__fovs="0-x"), "datasets.demo.fovs: cannot read '0-x' (use e.g. '0-9, 12')"),
        (edited(datasets__demo__input="missing.nd2"),
         "datasets.demo.input: file not found: missing.nd2 (check the path; a relative path starts "
         "from the working directory "),
        (edited(datasets__demo__fovs="0"),
         "samples.treated.fovs: FOV 1 is not processed (datasets.demo.fovs); add it there or "
         "remove it from the sample"),
        (edited(datasets__demo__fluorescence=["GFP", "GFP"]),
         "datasets.demo.fluorescence: a channel is listed twice (channel 1); list each channel once"),
        (edited(segmentation__logstd__n_sigma=float("nan")),
         "segmentation.logstd.n_sigma: nan is not a finite number; give a number"),
        (edited(simulate__frame_interval_min=float("inf")),
         "simulate.frame_interval_min: inf is not a finite number; give a number"),
        (edited(datasets__demo__frame_interval_min=float("-inf")),
         "datasets.demo.frame_interval_min: -inf is not a finite number; give a number"),
        (edited(datasets__demo__fovs=","),
         "datasets.demo.fovs: ',' selects no FOV (use e.g. '0-9, 12' or 'all')"),
        (edited(samples__1__fovs=" , "),
         "samples.treated.fovs: ' , ' selects no FOV (use e.g. '0-9, 12' or 'all')"),
    ],
    ids=["required-key", "nested-unknown-key", "fit-channel", "sample-dataset", "sample-twice",
         "sample-fovs-outside", "channel-index", "z-plane", "fovs-syntax", "missing-input",
         "sample-fov-not-processed", "channel-twice", "nan-number", "inf-number", "minus-inf-number",
         "empty-fovs", "empty-sample-fovs"],
)
def test_more_bad_configs_name_the_key(tmp_path, config, message):
    proc = dry_run(tmp_path, config)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


def test_a_key_written_twice_names_the_key_file_and_lines(tmp_path):
    text = yaml.safe_dump(DEMO, sort_keys=False)
    text = text.replace("  tile_size: 64\n", "  tile_size: 64\n  dilation: 21\n  tile_size: 128\n")
    assert text.count("tile_size") == 2
    cfg = tmp_path / "dup.yaml"
    cfg.write_text(text)
    lines = text.splitlines()
    first, second = [i + 1 for i, line in enumerate(lines) if "tile_size" in line]
    proc = subprocess.run(
        [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
         "--configfile", str(cfg), "-n", "--quiet"], capture_output=True, text=True, cwd=tmp_path)
    message = (f"background.tile_size: written twice in {cfg} (lines {first} and {second}; "
               "the last one would win silently); keep one")
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-2000:]
    line = next(line for line in (proc.stdout + proc.stderr).splitlines() if message in line)
    one_line_naming(line, "background.tile_size", str(cfg), f"lines {first} and {second}")
    # the same key in two different mappings is fine
    cfg.write_text(text.replace("  tile_size: 128\n", ""))
    ok = subprocess.run(
        [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
         "--configfile", str(cfg), "-n", "--quiet"], capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0, (ok.stdout + ok.stderr)[-2000:]


def _dataset_config(path: Path, **extra) -> dict:
    return {"datasets": {"d": {"input": str(path), "phase": 0, "fluorescence": [1], **extra}}}


def test_bad_input_files_fail_at_dag_build_naming_the_file(tmp_path):
    sim = simulated(tmp_path, n_fovs=1, n_frames=4)
    whole = write_ome(tmp_path / "whole.ome.tif", sim)
    cut = tmp_path / "cut.ome.tif"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    (tmp_path / "empty_folder").mkdir()
    cases = [
        (_dataset_config(cut), f"datasets.d.input: {cut}: truncated or corrupt TIFF"),
        (_dataset_config(whole, reader={"pattern": "*.tif"}),
         f"datasets.d.input: {whole}: option(s) pattern do not apply to TIFF input (options: axes, "
         "sizes); remove them from the dataset's reader options"),
        (_dataset_config(tmp_path / "empty_folder"),
         f"datasets.d.input: {tmp_path / 'empty_folder'}: no file matches pattern '*.tif*'; check "
         "the folder and the reader's 'pattern'"),
    ]
    try:
        nd2 = shared_data("nd2", "arcadia", "example-timelapse.nd2")
        cut_nd2 = tmp_path / "cut.nd2"
        cut_nd2.write_bytes(nd2.read_bytes()[: nd2.stat().st_size // 2])
        cases.append((_dataset_config(cut_nd2, phase=0, fluorescence=[0], same_channel=True),
                      f"datasets.d.input: {cut_nd2}: not a readable ND2 file (truncated or corrupt?"))
    except pytest.skip.Exception:
        pass
    for i, (config, message) in enumerate(cases):
        work = tmp_path / f"run{i}"
        work.mkdir()
        proc = dry_run(work, config)
        text = proc.stdout + proc.stderr
        assert proc.returncode != 0 and message in text, text[-2000:]
        line = next(line for line in text.splitlines() if message in line)
        assert "re-copy" in line or "remove them" in line or "check the folder" in line


# ----------------------------------------------------------------------------- through the workflow
def snakemake(work: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    (work / "c.yaml").write_text(yaml.safe_dump(config))
    return subprocess.run(
        [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(work),
         "--configfile", str(work / "c.yaml"), *args],
        capture_output=True, text=True, cwd=work,
    )


@pytest.mark.slow
def test_extract_job_failure_names_the_file_and_leaves_nothing(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for t in range(6):
        for ch in ("ph", "gfp"):
            shape = (64, 64) if t != 4 else (64, 72)
            tifffile.imwrite(folder / f"{ch}_t{t:02d}.tif", rng.integers(0, 999, shape).astype(np.uint16))
    config = {"datasets": {"d": {"input": str(folder), "phase": "ph", "fluorescence": ["gfp"],
                                 "reader": {"pattern": ["ph_*.tif", "gfp_*.tif"], "channel_names": ["ph", "gfp"]}}}}
    proc = snakemake(tmp_path, config, "--cores", "1", "results/d/fov_000/raw_ch0.tif")
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    message = (f"[dataset=d, fov=000, c=0] {folder / 'ph_t04.tif'}: frame is (64, 72) uint16, "
               "expected (64, 64) uint16 like the first frame; every frame of a folder must have "
               "one size and type: remove or fix it, or narrow 'pattern'")
    assert message in text, text[-3000:]
    fov_dir = tmp_path / "results" / "d" / "fov_000"
    assert not fov_dir.exists() or nothing_left(fov_dir) == []


def make_bad_data(folder: Path) -> dict:
    """Two datasets of odd frames, and the config that runs them.

    ``odd`` (uint16): FOV 0 has a constant frame (3), an all-zero frame (5), a
    saturated GFP frame (7) and a saturated phase frame (8); FOV 1 has a
    blank phase channel (no cells in any frame). ``nanf`` (float32): a NaN
    band in every phase frame, a NaN band through the cell in GFP frame 6 and
    an all-NaN GFP frame 9. Frames are 160 px, smaller than the 256 px
    background tiles.
    """
    sim = simulated(folder, n_fovs=2, n_frames=12)
    odd = sim.copy()
    odd[0, 3, 0], odd[0, 3, 1] = 1000, 300
    odd[0, 5] = 0
    odd[0, 7, 1] = 65535
    odd[0, 8, 0] = 65535
    odd[1, :, 0] = 1000
    write_ome(folder / "odd.ome.tif", odd)
    nanf = sim[:1].astype(np.float32)
    nanf[0, :, 0, :10, :] = np.nan
    nanf[0, 6, 1, 70:90, :] = np.nan
    nanf[0, 9, 1] = np.nan
    write_ome(folder / "nanf.ome.tif", nanf)
    return {
        "datasets": {
            "odd": {"input": str(folder / "odd.ome.tif"), "phase": "Phase", "fluorescence": ["GFP"]},
            "nanf": {"input": str(folder / "nanf.ome.tif"), "phase": "Phase", "fluorescence": ["GFP"]},
        },
        "samples": [
            {"name": "empty", "dataset": "odd", "fovs": "1"},
            {"name": "nan", "dataset": "nanf", "fovs": "0"},
        ],
        # the default for real experiments (LOG-STD on these frames: the unit tests above)
        "segmentation": {"method": "watershed"},
        "background": {"tile_size": 256},
        "traces": {"min_frames": 4, "border": 20},
        "fit": {"models": ["maturation"]},
    }


@pytest.fixture(scope="module")
def bad_data_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("baddata")
    proc = snakemake(work, make_bad_data(work), "--cores", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return work


@pytest.mark.slow
def test_uint32_input_with_a_hot_pixel_through_the_workflow(tmp_path):
    """uint32 frames with one pixel at 2^32 - 1 (away from the cell) run to traces:
    the tile medians are numpy's, and every other frame's traces equal those of
    the same data as uint16."""
    sim = simulated(tmp_path, n_fovs=1, n_frames=6)
    write_ome(tmp_path / "u16.ome.tif", sim)
    hot = sim.astype(np.uint32)
    hot[0, 2, 1, 5, 150] = 2**32 - 1  # GFP frame 2
    write_ome(tmp_path / "u32.ome.tif", hot)
    config = {
        "datasets": {name: {"input": str(tmp_path / f"{name}.ome.tif"), "phase": "Phase",
                            "fluorescence": ["GFP"]} for name in ("u16", "u32")},
        # PyAMA's in-mask mode: the reference medians below use the mask dilated by 21 px
        "segmentation": {"method": "watershed"}, "background": {"tile_size": 64, "dilation": 21},
        "traces": {"min_frames": 2, "border": 20, "measure": "mask"},
    }
    targets = [f"results/{name}/fov_000/traces.csv" for name in ("u16", "u32")]
    proc = snakemake(tmp_path, config, "--cores", "2", *targets)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    fov = tmp_path / "results" / "u32" / "fov_000"
    seg = read_stack(fov / "segmentation.tif")
    bg = bgmod.BackgroundModels(str(fov / "background_ch1.npz"))
    for t in range(6):
        assert np.array_equal(bg.support[t], _reference_tile_medians(hot[0, t, 1], seg[t], 64, 21)), t
    u16 = pd.read_csv(tmp_path / "results" / "u16" / "fov_000" / "traces.csv")
    u32 = pd.read_csv(fov / "traces.csv")
    assert np.isfinite(u32.select_dtypes("number")).all().all() and u32["good"].all()
    assert sorted(set(u32["frame"])) == sorted(set(u16["frame"])) and 2 in set(u32["frame"])
    pd.testing.assert_frame_equal(u32[u32["frame"] != 2].reset_index(drop=True),
                                  u16[u16["frame"] != 2].reset_index(drop=True))


@pytest.mark.slow
def test_blank_fov_gives_empty_traces_and_skipped_fits_and_qc_still_runs(bad_data_run):
    work = bad_data_run
    fov = work / "results" / "odd" / "fov_001"
    assert (fov / "traces.csv").read_text() == TRACE_COLUMNS + "\n"
    assert (fov / "fits_maturation.csv").read_text() == FIT_COLUMNS + "\n"
    stats = json.loads((fov / "trace_stats.json").read_text())
    assert stats["cells_detected"] == 0 and stats["cells_per_frame"] == [0] * 12
    log = (work / "results" / "logs" / "odd" / "fov_001" / "fit_maturation.log").read_text()
    assert "fits skipped: results/odd/fov_001/fits_maturation.csv has the columns and no rows" in log
    assert "no cells in any frame" in (work / "results/logs/odd/fov_001/traces.log").read_text()
    for name in ("frames.png", "outlines.png", "cells.png", "background_ch1.png", "frame_stats_ch0.png"):
        assert (fov / "qc" / name).stat().st_size > 0, name
    sample = work / "results" / "samples" / "empty"
    assert (sample / "empty_intensity_total_ch_1.csv").read_text() == "time,fov,cell,value\n"
    assert (sample / "qc" / "maturation_summary.csv").exists()
    assert (work / "results" / "analysis" / "maturation" / "summary.csv").exists()


@pytest.mark.slow
def test_constant_zero_and_saturated_frames_through_the_workflow(bad_data_run):
    work = bad_data_run
    fov = work / "results" / "odd" / "fov_000"
    seg = read_stack(fov / "segmentation.tif")
    assert [int(seg[t].max()) for t in (3, 5, 8)] == [0, 0, 0]  # flat phase: no objects
    assert all(seg[t].max() >= 1 for t in (0, 1, 2, 4, 6, 7, 9, 10, 11))
    bg = bgmod.BackgroundModels(str(fov / "background_ch1.npz"))
    assert bg.support.shape[1:] == (1, 1)  # 160 px frames, 256 px tiles
    assert np.isfinite(bg.support).all() and bg.support[5].item() == 0 and bg.support[7].item() == 65535
    traces = pd.read_csv(fov / "traces.csv")
    assert sorted(set(traces["frame"])) == [0, 1, 2, 4, 6, 7, 9, 10, 11]
    assert np.isfinite(traces.select_dtypes("number")).all().all()
    log = (work / "results/logs/odd/fov_000/traces.log").read_text()
    assert "fluorescence pixels at the dtype's maximum (saturated)" in log


@pytest.mark.slow
def test_nan_input_gives_finite_traces_with_bad_rows_marked(bad_data_run):
    work = bad_data_run
    traces = pd.read_csv(work / "results" / "nanf" / "fov_000" / "traces.csv")
    assert np.isfinite(traces.select_dtypes("number")).all().all()
    assert traces.loc[~traces["good"], "frame"].tolist() == [6, 9]
    # the same simulated FOV as odd FOV 0: where neither was altered, the NaN
    # band in the phase channel changes nothing
    odd = pd.read_csv(work / "results" / "odd" / "fov_000" / "traces.csv")
    cols = ["frame", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1", "area_ch_0", "intensity_total_ch_1"]

    def rows(df: pd.DataFrame) -> list:
        return sorted(map(tuple, df.loc[df["frame"].isin([0, 1, 2, 4, 10, 11]), cols].values.tolist()))

    assert len(rows(traces)) >= 6 and rows(traces) == rows(odd)
    seg = read_stack(work / "results" / "nanf" / "fov_000" / "segmentation.tif")
    assert not seg[:, :10].any()
    fits = pd.read_csv(work / "results" / "nanf" / "fov_000" / "fits_maturation.csv")
    assert fits["success"].all() and fits["n_points"].sum() == traces["good"].sum() == 10
    log = (work / "results/logs/nanf/fov_000/traces.log").read_text()
    assert re.search(r"FOV 0: \d+ cell rows in 2 frames \(first: frame 6\) cover NaN/inf pixels", log)
    merged = pd.read_csv(work / "results" / "samples" / "nan" / "nan_intensity_total_ch_1.csv")
    assert len(merged) == 10 and np.isfinite(merged["value"]).all()
    assert not list((work / "results").rglob("*.part")) and not list((work / "results").rglob(".*.tmp"))


# ----------------------------------------------------------------------------- load
def many_fovs_config() -> dict:
    """20 small FOVs (160 px, 8 frames, one cell each) in one simulated file."""
    cfg = copy.deepcopy(DEMO)
    cfg["simulate"].update(n_fovs=20, n_frames=8, height=160, width=160, n_cells=1)
    cfg["samples"] = [{"name": "control", "dataset": "demo", "fovs": "0-9"},
                      {"name": "treated", "dataset": "demo", "fovs": "10-19"}]
    cfg["traces"] = {"min_frames": 4, "border": 20}
    return cfg


def many_fovs_targets(n_fovs: int) -> list[str]:
    """Fits of every FOV, the sample tables and the tidy table (no QC pictures)."""
    targets = [f"results/demo/fov_{f:03d}/fits_maturation.csv" for f in range(n_fovs)]
    return targets + ["results/all_traces.csv",
                      "results/samples/control/control_intensity_total_ch_1.csv",
                      "results/samples/treated/treated_intensity_total_ch_1.csv"]


def _low_file_limit() -> None:  # in the child, before exec
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))


@pytest.fixture(scope="module")
def many_fovs_run(tmp_path_factory):
    """The 20 FOVs through every step that reads or writes image data, fits and
    sample tables (the per-FOV QC pictures are left out: they add 7 jobs per
    FOV of matplotlib start-up and no file access of their own kind)."""
    work = tmp_path_factory.mktemp("many")
    (work / "c.yaml").write_text(yaml.safe_dump(many_fovs_config()))
    proc = subprocess.run(
        [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(work),
         "--configfile", str(work / "c.yaml"), "--cores", "2", *many_fovs_targets(20)],
        capture_output=True, text=True, cwd=work, preexec_fn=_low_file_limit,
    )
    return work, proc


def _result_csvs(work: Path) -> dict[str, bytes]:
    return {str(p.relative_to(work)): p.read_bytes() for p in sorted((work / "results").rglob("*.csv"))}


@pytest.mark.slow
def test_twenty_fovs_on_two_cores_with_256_file_handles(many_fovs_run):
    work, proc = many_fovs_run
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-5000:]
    results = work / "results" / "demo"
    # 40 extract jobs read the one input file, two at a time, each with its own handles
    assert len(list(results.glob("fov_*/raw_ch*.tif"))) == 40
    assert len(list(results.glob("fov_*/fits_maturation.csv"))) == 20
    logs = "".join(p.read_text() for p in (work / "results" / "logs").rglob("*.log"))
    for sign in ("Too many open files", "Resource temporarily unavailable", "Traceback"):
        assert sign not in logs and sign not in text
    assert "Error in rule" not in text


@pytest.mark.slow
def test_twenty_fovs_on_local_slurm_with_eight_jobs(many_fovs_run, tmp_path):
    """The same 20 FOVs through a real local SLURM, one group job per FOV,
    eight queued at once: every job completes and gives the local run's bytes.
    (Each rule of a group costs a few seconds of job-step start-up, so the QC
    pictures are left out as in the local run; tests/test_slurm.py runs the
    whole demo, QC included, through SLURM.)"""
    from slurm_cluster import local_cluster, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    if Path("/etc/slurm/slurm.conf").exists() or subprocess.run(
            ["pgrep", "-x", "slurmctld"], capture_output=True).returncode == 0:
        # the harness shares /etc/slurm/slurm.conf: two test clusters at once break each other
        pytest.skip("another local SLURM test cluster is running on this machine")
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install snakemake-executor-plugin-slurm")
    local, local_proc = many_fovs_run
    assert local_proc.returncode == 0
    config = many_fovs_config()
    work = tmp_path / "slurm"
    work.mkdir()
    (work / "c.yaml").write_text(yaml.safe_dump(config))
    with local_cluster(tmp_path / "cluster") as env:
        proc = subprocess.run(
            # --cores 1: a FOV's group job runs its rules one after another on
            # one CPU, so that the 2-CPU test node runs two groups at once
            [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(work),
             "--configfile", str(work / "c.yaml"), "--profile", str(ROOT / "profiles" / "slurm"),
             "--slurm-no-account", "--slurm-status-command", "squeue",
             "--slurm-init-seconds-before-status-checks", "2", "--jobs", "8", "--cores", "1",
             *many_fovs_targets(20)],
            capture_output=True, text=True, cwd=work, env=env,
        )
        queue = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i %j %T"],
                               capture_output=True, text=True, env=env, check=True).stdout
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-6000:]
    states = [line.split()[-1] for line in queue.splitlines() if line.strip()]
    assert len(states) >= 20 and set(states) == {"COMPLETED"}, queue
    assert len(re.findall(r"submitted with SLURM jobid \d+ \(log: [^)]*/group_fov", text)) == 20
    assert "Error in rule" not in text
    # every per-FOV table is the local run's, byte for byte
    ours = {k: v for k, v in _result_csvs(work).items() if "/fov_" in k}
    theirs = {k: v for k, v in _result_csvs(local).items() if "/fov_" in k}
    assert len(ours) == 20 * 5 and ours == theirs
