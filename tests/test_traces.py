"""Trace extraction: label-indexed sums against hand-computed values."""

import numpy as np
import pandas as pd
import pytest

from pyama_flow.traces import BASE_COLUMNS, TraceBuilder, TraceFilter, apply_filters, frame_features


def test_hand_computed_frame():
    labels = np.zeros((6, 8), np.uint32)
    labels[1:3, 1:4] = 7  # 6 px, bbox x 1..3, y 1..2
    labels[4, 5:8] = 3  # 3 px, bbox x 5..7, y 4..4
    image = np.arange(48, dtype=np.uint16).reshape(6, 8)
    bg = np.full((6, 8), 2.0, np.float32)
    f = frame_features(labels, {1: image}, {1: bg}, background_weight=0.5)
    assert f["cell"].tolist() == [3, 7]
    assert f["area"].tolist() == [3, 6]
    # cell 3: pixels 37, 38, 39; cell 7: 9, 10, 11, 17, 18, 19
    assert f["intensity_total_ch_1"].tolist() == pytest.approx([37 + 38 + 39 - 3 * 1.0, 84 - 6 * 1.0])
    assert f["bbox_x0"].tolist() == [5, 1] and f["bbox_x1"].tolist() == [7, 3]
    assert f["bbox_y0"].tolist() == [4, 1] and f["bbox_y1"].tolist() == [4, 2]
    assert f["position_x"].tolist() == [6.0, 2.0] and f["position_y"].tolist() == [4.0, 1.5]
    assert f["centroid_x"].tolist() == pytest.approx([6.0, 2.0])
    assert f["centroid_y"].tolist() == pytest.approx([4.0, 1.5])


def test_matches_per_cell_loop_on_random_labels():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 40, (64, 64)).astype(np.uint32) * 3
    image = rng.integers(0, 5000, (64, 64)).astype(np.uint16)
    bg = rng.normal(100, 5, (64, 64)).astype(np.float32)
    f = frame_features(labels, {2: image}, {2: bg})
    for i, cid in enumerate(f["cell"]):
        m = labels == cid
        assert f["intensity_total_ch_2"][i] == pytest.approx((image[m] - bg[m].astype(float)).sum())


def test_empty_frame_gives_empty_columns():
    f = frame_features(np.zeros((5, 5), np.uint32), {1: np.ones((5, 5))})
    assert f["cell"].size == 0 and f["intensity_total_ch_1"].size == 0


def test_builder_columns_order_sort_and_filters():
    b = TraceBuilder(fov=4, pc_channel=0, fl_channels=[1])
    img = np.ones((200, 200), np.uint16)
    for t in range(5):
        lab = np.zeros((200, 200), np.uint32)
        lab[100:110, 100:110] = 2  # interior cell, all frames
        lab[5:15, 100:110] = 1  # near the top border
        if t < 3:
            lab[150:160, 60:70] = 9  # short-lived
        b.add_frame(t, t * 10.0, lab, {1: img})
    raw = b.table()
    assert list(raw.columns) == BASE_COLUMNS + ["area_ch_0", "intensity_total_ch_1", "centroid_x", "centroid_y"]
    assert raw[["cell", "frame"]].values.tolist() == sorted(raw[["cell", "frame"]].values.tolist())
    kept = b.table(TraceFilter(min_frames=4, border=50))
    assert kept["cell"].unique().tolist() == [2]
    assert kept["time"].tolist() == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert (kept["fov"] == 4).all() and kept["good"].all()


def test_border_rule_is_the_references():
    df = pd.DataFrame({"cell": [1, 2, 3, 4], "frame": 0, "bbox_x0": [50, 49, 60, 60],
                       "bbox_x1": [60, 60, 150, 151], "bbox_y0": 60, "bbox_y1": 70})
    kept = apply_filters(df, (200, 200), TraceFilter(min_frames=0, border=50))
    # x0 < 50 or x1 > width - 50 drops the cell
    assert kept["cell"].tolist() == [1, 3]
