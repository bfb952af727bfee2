"""Step functions from files to files (what each Snakemake rule runs)."""

from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import pandas as pd
import pytest
import tifffile

from pyama_flow.background.step import correct

from pyama_flow.io.extract import dataset_metadata, extract

from pyama_flow.segmentation.step import external_labels_path, segment_external

from pyama_flow.traces.step import traces as traces_step

from pyama_flow.tracking.step import track

from pyama_flow.io.atomic import write_json
from pyama_flow.io.base import InputError
from pyama_flow.io.stacks import StackReader, read_stack, write_stack


def test_metadata_uses_file_time_stamps(small_experiment):
    meta = dataset_metadata(str(small_experiment["path"]), {}, 10.0)
    interval = small_experiment["cfg"].frame_interval_min
    assert meta["fov_times_min"]["1"] == pytest.approx([i * interval for i in range(12)])
    assert meta["time_source"] == {"0": "file", "1": "file"}
    assert meta["channel_names"] == ["Phase", "GFP"]


def test_metadata_falls_back_to_config_interval_and_says_so(tmp_path, caplog):
    data = np.zeros((5, 2, 16, 16), np.uint16)
    tifffile.imwrite(tmp_path / "plain.tif", data)  # no time stamps
    with caplog.at_level(logging.WARNING, logger="pyama_flow"):
        meta = dataset_metadata(str(tmp_path / "plain.tif"), {"axes": "TCYX"}, 7.5)
    assert meta["fov_times_min"]["0"] == [0.0, 7.5, 15.0, 22.5, 30.0]
    assert meta["time_source"]["0"] == "config"
    assert "no time stamps" in caplog.text and "frame_interval_min" in caplog.text


@pytest.mark.parametrize("codec,stored", [("zstd", "ZSTD"), ("zlib", "ADOBE_DEFLATE"), ("none", "NONE")])
def test_extract_keeps_dtype_and_values(small_experiment, tmp_path, codec, stored):
    import tifffile

    from pyama_flow.io import open_image

    out = tmp_path / "raw.tif"
    extract(str(small_experiment["path"]), {}, 1, "GFP", 0, str(out), compression=codec)
    with StackReader(out) as r, open_image(small_experiment["path"]) as src:
        assert r.dtype == np.uint16 and r.shape == (12, 320, 320)
        for t in (0, 7, 11):
            assert np.array_equal(r[t], src.read_frame(1, t, 1))
    with tifffile.TiffFile(out) as tif:
        assert {p.compression.name for p in tif.pages} == {stored}
        # the predictor only with zstd: ImageJ < 1.53v decodes it wrongly with deflate
        assert tif.pages[0].predictor == (2 if codec == "zstd" else 1)
        # an ImageJ hyperstack with T as time and the input's calibration
        assert tif.is_imagej and tif.series[0].axes == "TYX"
        assert tif.imagej_metadata["frames"] == 12
        assert tif.imagej_metadata["unit"] == "um"
        cfg = small_experiment["cfg"]
        assert tif.imagej_metadata["finterval"] == pytest.approx(cfg.frame_interval_min * 60)
        num, den = tif.pages[0].tags["XResolution"].value
        assert den / num == pytest.approx(cfg.pixel_size_um, rel=1e-6)


def test_extract_bad_fov_names_file_and_range(small_experiment, tmp_path):
    with pytest.raises(InputError, match=r"FOV 5 is out of range \(valid: 0-1\)"):
        extract(str(small_experiment["path"]), {}, 5, 0, 0, str(tmp_path / "x.tif"))
    assert not list(tmp_path.iterdir())


def test_track_and_traces_with_lineage(tmp_path):
    # a mother (frames 0-3) divides into two daughters (frames 4-6: seen for division_min_life frames)
    h = w = 200
    frames = []
    for t in range(7):
        lab = np.zeros((h, w), np.uint16)
        if t < 4:
            lab[80:120, 80:120] = 5
        else:
            lab[80:120, 80:99] = 1
            lab[80:120, 101:120] = 2
        frames.append(lab)
    write_stack(tmp_path / "seg.tif", iter(frames), 7, (h, w), np.uint16)
    track(str(tmp_path / "seg.tif"), str(tmp_path / "labels.tif"), str(tmp_path / "tracks.csv"), {})
    lineage = pd.read_csv(tmp_path / "tracks.csv")
    assert lineage.values.tolist() == [[1, 0, 0, 3], [2, 1, 4, 6], [3, 1, 4, 6]]
    fl = np.full((h, w), 10, np.uint16)
    write_stack(tmp_path / "raw.tif", iter([fl] * 7), 7, (h, w), np.uint16)
    correct(str(tmp_path / "raw.tif"), str(tmp_path / "seg.tif"), str(tmp_path / "bg.npz"), 256, 21)
    write_json(str(tmp_path / "meta.json"), {"fov_times_min": {"0": [0, 10, 20, 30, 40, 50, 60]}})
    df = traces_step(str(tmp_path / "labels.tif"), {1: str(tmp_path / "raw.tif")}, {1: str(tmp_path / "bg.npz")},
                      str(tmp_path / "meta.json"), str(tmp_path / "traces.csv"), fov=0, pc_channel=0,
                      background_weight=1.0, min_frames=0, border=0,
                      lineage_path=str(tmp_path / "tracks.csv"), stats_path=str(tmp_path / "stats.json"))
    assert set(df["lineage_root"]) == {1}
    assert df.groupby("cell")["parent"].first().to_dict() == {1: 0, 2: 1, 3: 1}
    assert df.groupby("cell")["generation"].first().to_dict() == {1: 0, 2: 1, 3: 1}
    # flat fluorescence equal to its background: corrected totals are ~0
    assert np.allclose(df["intensity_total_ch_1"], 0, atol=1e-3)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["cells_per_frame"] == [1, 1, 1, 1, 2, 2, 2] and stats["cells_kept"] == 3


def test_track_writes_final_ids_once_and_leaves_no_scratch(tmp_path):
    # a cell cut in two for one frame (frame 3) and whole again: the division is
    # revoked, so labels.tif carries the cell's one id in every frame
    h = w = 120
    frames = []
    for t in range(7):
        lab = np.zeros((h, w), np.uint16)
        lab[40:80, 40:80] = 3
        if t == 3:
            lab[40:80, 59:61] = 0
            lab[40:80, 61:80] = 4
        frames.append(lab)
    write_stack(tmp_path / "seg.tif", iter(frames), 7, (h, w), np.uint16)
    track(str(tmp_path / "seg.tif"), str(tmp_path / "labels.tif"), str(tmp_path / "tracks.csv"), {})
    labels = read_stack(tmp_path / "labels.tif")
    assert labels.dtype == np.uint16
    assert [sorted(set(np.unique(f).tolist()) - {0}) for f in labels] == [[1]] * 7
    assert pd.read_csv(tmp_path / "tracks.csv").values.tolist() == [[1, 0, 0, 6]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.tif", "seg.tif", "tracks.csv"]


def test_track_more_than_65535_tracks_writes_uint32(tmp_path):
    # 22,500 one-pixel cells per frame, each frame on other pixels than the one
    # before (no links without gap closing): 67,500 tracks
    h = w = 300
    frames = []
    for t in range(3):
        lab = np.zeros((h, w), np.uint32)
        off = t % 2
        lab[off::2, off::2] = np.arange(1, 22_501, dtype=np.uint32).reshape(150, 150)
        frames.append(lab)
    write_stack(tmp_path / "seg.tif", iter(frames), 3, (h, w), np.uint32)
    track(str(tmp_path / "seg.tif"), str(tmp_path / "labels.tif"), str(tmp_path / "tracks.csv"),
          {"max_gap": 0, "divisions": False, "split_merges": False})
    labels = read_stack(tmp_path / "labels.tif")
    assert labels.dtype == np.uint32 and int(labels.max()) == 67_500
    assert len(pd.read_csv(tmp_path / "tracks.csv")) == 67_500
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.tif", "seg.tif", "tracks.csv"]


def test_traces_reject_mismatched_time_points(tmp_path):
    lab = np.zeros((3, 20, 20), np.uint32)
    write_stack(tmp_path / "labels.tif", iter(lab), 3, (20, 20), np.uint32)
    write_stack(tmp_path / "raw.tif", iter(lab.astype(np.uint16)), 3, (20, 20), np.uint16)
    correct(str(tmp_path / "raw.tif"), str(tmp_path / "labels.tif"), str(tmp_path / "bg.npz"), 256, 21)
    write_json(str(tmp_path / "meta.json"), {"fov_times_min": {"0": [0, 10]}})
    with pytest.raises(InputError, match="2 time points but .*labels.tif has 3 frames"):
        traces_step(str(tmp_path / "labels.tif"), {1: str(tmp_path / "raw.tif")}, {1: str(tmp_path / "bg.npz")},
                     str(tmp_path / "meta.json"), str(tmp_path / "traces.csv"), 0, 0, 1.0, 0, 0)
    assert not (tmp_path / "traces.csv").exists()


# -- segmentation.method: external ----------------------------------------------


def _phase_stack(tmp_path, n=3, shape=(16, 20)):
    path = tmp_path / "raw_ch0.tif"
    write_stack(path, (np.full(shape, 100 + t, np.uint16) for t in range(n)), n, shape, np.uint16)
    return str(path)


@pytest.mark.parametrize("n", [3, 6])
@pytest.mark.parametrize("layout", ["pages", "imagej", "default"])
def test_external_segmentation_is_taken_as_it_is(tmp_path, n, layout):
    raw = _phase_stack(tmp_path, n)
    labels = np.zeros((n, 16, 20), np.uint16 if layout == "imagej" else np.uint32)
    labels[:, 2:6, 3:9] = 7
    labels[1, 10:14, 10:18] = 65535  # any ids up to 65535
    labels[2, 0, 0] = 3
    # a page per frame; an ImageJ hyperstack; tifffile's default, which stores 3
    # frames as one page of colour planes
    options = {"pages": {"photometric": "minisblack"}, "imagej": {"imagej": True}, "default": {}}[layout]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        tifffile.imwrite(tmp_path / "cellpose.tif", labels, **options)
    out = tmp_path / "segmentation.tif"
    segment_external(raw, str(tmp_path / "cellpose.tif"), str(out), fov=4)
    with StackReader(out) as r:
        assert r.dtype == np.uint16
    assert np.array_equal(read_stack(out), labels)


@pytest.mark.parametrize(
    "stack,message",
    [
        (np.zeros((2, 16, 20), np.uint16), r"external segmentation of FOV 4: 2 frames, the phase channel has 3"),
        (np.zeros((3, 16, 21), np.uint16), r"FOV 4: frame shape \(16, 21\) differs from the phase channel's \(16, 20\)"),
        (np.zeros((3, 16, 20), np.float32), r"FOV 4: dtype float32 is not an integer label type"),
        (np.full((3, 16, 20), 70000, np.uint32), r"FOV 4: frame 0 has ids outside 0-65535"),
        (np.full((3, 16, 20), -1, np.int16), r"FOV 4: frame 0 has ids outside 0-65535"),
        (None, r"external segmentation of FOV 4 not found"),
    ],
    ids=["frames", "shape", "float", "too-many-ids", "negative", "missing"],
)
def test_external_segmentation_refuses_what_does_not_fit(tmp_path, stack, message):
    raw = _phase_stack(tmp_path)
    ext = tmp_path / "labels" / "fov_004.tif"
    if stack is not None:
        ext.parent.mkdir()
        tifffile.imwrite(ext, stack, photometric="minisblack")
    out = tmp_path / "out" / "segmentation.tif"
    out.parent.mkdir()
    with pytest.raises(InputError, match=message) as err:
        segment_external(raw, str(ext), str(out), fov=4)
    line = str(err.value)
    assert "\n" not in line and line.startswith(str(ext))
    assert not list(out.parent.iterdir())  # nothing left behind


def test_external_labels_path_pattern():
    assert external_labels_path("m/{dataset}/fov_{fov:03d}.tif", "exp1", 7) == "m/exp1/fov_007.tif"
    with pytest.raises(InputError, match=r"placeholders are \{dataset\} and \{fov\}"):
        external_labels_path("m/{well}_{fov}.tif", "exp1", 7)


def test_correct_fits_the_background_outside_the_grown_cells(tmp_path):
    """A cell's blurred rim is bright: counted as background where the mask alone is
    excluded (the median is the rim's 400), excluded once the cells are grown by the
    margin (the true 100)."""
    from pyama_flow.background import model as bgmod
    n, shape = 1, (16, 16)
    seg = np.zeros(shape, np.uint16)
    seg[5:11, 5:11] = 1
    image = np.full(shape, 100, np.uint16)
    image[1:15, 1:15] = 400  # the light reaches 4 px past the mask: most of the frame
    image[5:11, 5:11] = 1000
    write_stack(tmp_path / "raw.tif", [image], n, shape, np.uint16)
    write_stack(tmp_path / "seg.tif", [seg], n, shape, np.uint16)
    for margin, expected in ((0.0, 400.0), (6.0, 100.0)):
        out = tmp_path / f"bg{margin}.npz"
        correct(str(tmp_path / "raw.tif"), str(tmp_path / "seg.tif"), str(out), 32, 1, expand_px=margin)
        assert float(bgmod.BackgroundModels(str(out))[0][0, 0]) == expected
