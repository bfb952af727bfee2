"""napari layer data of a FOV (what ``pyama-flow napari`` hands to napari), without napari."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pyama_flow.background.step import correct

from pyama_flow.io.extract import dataset_metadata, extract

from pyama_flow.segmentation.step import segment

from pyama_flow.traces.step import traces as traces_step

from pyama_flow.tracking.step import track as track_step
from pyama_flow.io.stacks import Calibration, read_stack, write_stack
from pyama_flow.viewer.napari_layers import LazyStack, fov_layers, track_data


@pytest.fixture(scope="module")
def fov_dir(small_experiment, tmp_path_factory):
    """raw (two channels), labels, tracks and traces of simulated FOV 0, written by the steps."""
    out = tmp_path_factory.mktemp("fov_000")
    path = str(small_experiment["path"])
    extract(path, {}, 0, 0, 0, str(out / "raw_ch0.tif"))
    extract(path, {}, 0, 1, 0, str(out / "raw_ch1.tif"))
    segment(str(out / "raw_ch0.tif"), str(out / "segmentation.tif"), "logstd", {})
    track_step(str(out / "segmentation.tif"), str(out / "labels.tif"), str(out / "tracks.csv"), {})
    correct(str(out / "raw_ch1.tif"), str(out / "segmentation.tif"), str(out / "background_ch1.npz"), 32, 5)
    (out / "metadata.json").write_text(json.dumps(dataset_metadata(path, {}, 10.0)))
    traces_step(str(out / "labels.tif"), {1: str(out / "raw_ch1.tif")}, {1: str(out / "background_ch1.npz")},
                 str(out / "metadata.json"), str(out / "traces.csv"), 0, 0, 1.0, 1, 0,
                 lineage_path=str(out / "tracks.csv"))
    return out


def test_layers_are_raw_channels_labels_and_tracks(fov_dir, small_experiment):
    layers = fov_layers(fov_dir)
    assert [(kw["name"], kind) for _, kw, kind in layers] == [
        ("raw ch0", "image"), ("raw ch1", "image"), ("labels", "labels"), ("tracks", "tracks")]
    px = small_experiment["cfg"].pixel_size_um
    for data, kw, kind in layers:
        assert kw["scale"] == pytest.approx((1.0, px, px))  # all overlay, in µm
    raw1, labels = layers[1][0], layers[2][0]
    assert np.array_equal(np.asarray(raw1), read_stack(fov_dir / "raw_ch1.tif"))
    assert labels.shape == (12, 320, 320) and labels.dtype == np.uint16
    assert np.array_equal(labels[7], read_stack(fov_dir / "labels.tif")[7])
    lo, hi = layers[0][1]["contrast_limits"]
    first = read_stack(fov_dir / "raw_ch0.tif")[0]
    assert first.min() <= lo < hi <= first.max()


def test_tracks_are_the_traces_centroids_in_the_labels(fov_dir):
    """Each track point lies inside its cell's pixels in labels.tif at that frame."""
    data, graph, props = track_data(fov_dir)
    traces = pd.read_csv(fov_dir / "traces.csv")
    assert data.shape == (len(traces), 4) and len(props["good"]) == len(traces)
    order = np.lexsort((data[:, 1], data[:, 0]))
    assert np.array_equal(order, np.arange(len(data)))  # napari wants cell, then frame order
    labels = read_stack(fov_dir / "labels.tif")
    for cell, frame, y, x in data[:: max(1, len(data) // 40)]:
        mask = labels[int(frame)] == int(cell)
        ys, xs = np.nonzero(mask)
        assert y == pytest.approx(ys.mean()) and x == pytest.approx(xs.mean())
    assert graph == {}  # no divisions in the simulation


def test_track_graph_from_a_division(tmp_path):
    pd.DataFrame({"fov": 0, "cell": [1, 1, 2, 3], "frame": [0, 1, 2, 2], "time": 0.0,
                  "good": [True, True, False, True], "centroid_x": [5.0, 5.5, 4.0, 7.0],
                  "centroid_y": [3.0, 3.0, 2.0, 4.0]}).to_csv(tmp_path / "traces.csv", index=False)
    pd.DataFrame({"cell": [1, 2, 3], "parent": [0, 1, 1], "first_frame": [0, 2, 2],
                  "last_frame": [1, 2, 2]}).to_csv(tmp_path / "tracks.csv", index=False)
    data, graph, props = track_data(tmp_path)
    assert graph == {2: [1], 3: [1]}
    assert data.tolist() == [[1, 0, 3.0, 5.0], [1, 1, 3.0, 5.5], [2, 2, 2.0, 4.0], [3, 2, 4.0, 7.0]]
    assert props["good"].tolist() == [1.0, 1.0, 0.0, 1.0]
    (layer,) = fov_layers(tmp_path)
    assert layer[2] == "tracks" and "scale" not in layer[1]


def test_lazy_stack_indexes_like_numpy(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 5000, (6, 9, 7), dtype=np.uint16)
    write_stack(tmp_path / "s.tif", iter(arr), 6, (9, 7), np.uint16, calibration=Calibration(0.5, 60.0))
    from pyama_flow.io.stacks import StackReader

    lazy = LazyStack(StackReader(tmp_path / "s.tif"))
    assert (lazy.shape, lazy.dtype, lazy.ndim, len(lazy)) == (arr.shape, arr.dtype, 3, 6)
    for key in [3, -1, (2, 4), (1, slice(2, 5), 3), slice(1, 5, 2), (slice(None), 0),
                (Ellipsis, 2), (4, Ellipsis), slice(5, 2), np.int64(2)]:
        assert np.array_equal(lazy[key], arr[key]), key
    assert np.array_equal(np.asarray(lazy), arr)
    with pytest.raises(TypeError, match="T axis"):
        lazy[[0, 1]]
    lazy.close()
