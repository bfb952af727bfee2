"""storage.raw: source: the steps read their frames from the input through a
reference file instead of a raw copy, with the same results."""

import json
import os

import numpy as np
import pytest

from pyama_flow.background.step import correct

from pyama_flow.io.extract import dataset_metadata, extract as extract_step

from pyama_flow.segmentation.step import segment

from pyama_flow.traces.step import traces as traces_step

from pyama_flow.tracking.step import track

from pyama_flow.io.atomic import write_json
from pyama_flow.io import open_image, read_metadata
from pyama_flow.io.base import InputError
from pyama_flow.io.fingerprint import fingerprint, plane_bytes_of
from pyama_flow.io.source import SourceFrames, open_frames, write_source
from pyama_flow.io.stacks import StackReader


def test_reference_gives_the_input_frames(small_experiment, tmp_path):
    path = str(small_experiment["path"])
    ref = tmp_path / "raw_ch1.json"
    extract_step(path, {}, 1, "GFP", 0, str(ref), str(tmp_path / "stats.csv"))
    data = json.loads(ref.read_text())
    assert data == {"source": path, "reader": {}, "fov": 1, "channel": 1, "z": 0,
                    "shape": [12, 320, 320], "dtype": "<u2",
                    "fingerprint": fingerprint(path, plane_bytes_of(read_metadata(path)))}
    assert data["fingerprint"].startswith(f"fp1:{os.path.getsize(path)}:")
    assert [p.name for p in tmp_path.iterdir()] and not list(tmp_path.glob("*.tif"))
    with open_frames(ref) as frames, open_image(path) as src:
        assert isinstance(frames, SourceFrames)
        assert frames.shape == (12, 320, 320) and frames.dtype == np.uint16 and len(frames) == 12
        for t in (0, 5, 11, -1):
            assert np.array_equal(frames[t], src.read_frame(1, t % 12, 1))
        with pytest.raises(IndexError, match="frame 12 out of range"):
            frames[12]
    # the statistics are those of the copying extract
    extract_step(path, {}, 1, "GFP", 0, str(tmp_path / "raw_ch1.tif"), str(tmp_path / "stats_copy.csv"))
    assert (tmp_path / "stats.csv").read_bytes() == (tmp_path / "stats_copy.csv").read_bytes()
    assert isinstance(open_frames(tmp_path / "raw_ch1.tif"), StackReader)


def test_steps_from_the_reference_equal_steps_from_the_copy(small_experiment, tmp_path):
    path = str(small_experiment["path"])
    write_json(str(tmp_path / "metadata.json"), dataset_metadata(path, {}, 10))
    outputs = {}
    for kind, ext in (("copy", "tif"), ("source", "json")):
        d = tmp_path / kind
        raw = {c: str(d / f"raw_ch{c}.{ext}") for c in (0, 1)}
        for c in (0, 1):
            extract_step(path, {}, 0, c, 0, raw[c], str(d / f"stats_ch{c}.csv"), "zstd")
        segment(raw[0], str(d / "seg.tif"), "logstd", {})
        correct(raw[1], str(d / "seg.tif"), str(d / "bg.npz"), 128, 21)
        track(str(d / "seg.tif"), str(d / "labels.tif"), str(d / "tracks.csv"), {})
        traces_step(str(d / "labels.tif"), {1: raw[1]}, {1: str(d / "bg.npz")}, str(tmp_path / "metadata.json"),
                     str(d / "traces.csv"), 0, 0, 1.0, 3, 10, str(d / "tracks.csv"))
        with StackReader(d / "labels.tif") as lab:
            outputs[kind] = ((d / "traces.csv").read_bytes(), (d / "tracks.csv").read_bytes(),
                             np.stack(list(lab)), dict(np.load(d / "bg.npz")))
    copy, source = outputs["copy"], outputs["source"]
    assert copy[0] == source[0] and copy[1] == source[1] and len(copy[0].splitlines()) > 12
    assert np.array_equal(copy[2], source[2]) and copy[2].max() > 0
    assert all(np.array_equal(copy[3][k], source[3][k]) for k in copy[3])


def test_changed_or_broken_reference_is_a_one_line_error(small_experiment, tmp_path):
    path = str(small_experiment["path"])
    ref = tmp_path / "raw_ch0.json"
    write_source(ref, path, {}, 0, 0, 0, (13, 320, 320), np.uint16)  # the input has 12 frames
    with pytest.raises(InputError, match=r"raw_ch0.json: .*exp.ome.tif changed since extraction.*rerun"):
        SourceFrames(ref)
    ref.write_text("{not json")
    with pytest.raises(InputError, match=r"raw_ch0.json: not a raw source reference.*rerun its extract"):
        SourceFrames(ref)
    write_source(ref, str(tmp_path / "gone.ome.tif"), {}, 0, 0, 0, (12, 320, 320), np.uint16)
    with pytest.raises(InputError, match=r"gone.ome.tif: file not found"):
        SourceFrames(ref)
