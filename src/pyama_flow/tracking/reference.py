"""The old PyAMA tracker, reimplemented for comparison only (benchmarks and tests)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import linear_sum_assignment

from pyama_flow.tracking.objects import check_labels, frame_objects, paint

if TYPE_CHECKING:
    import pandas as pd


class ReferenceTracker:
    """The old PyAMA tracker, reimplemented for comparison only (not for use).

    Frame-0 objects get ids 1..n (raster order); each later frame's objects
    are matched to the tracks alive in the previous frame by **bounding-box**
    IoU (cost 1 - IoU, IoU < ``min_iou`` no match, Hungarian). Unmatched
    objects are dropped (background in the output), a track unmatched once
    ends for good, and at a division one daughter continues the mother. The
    reference labelled a binary mask with 4-connectivity; this version takes
    the instance labels as given so that only the linking is compared.
    """

    def __init__(self, min_iou: float = 0.1):
        self.min_iou = float(min_iou)
        self._frame = 0
        self._boxes: dict[int, tuple[int, int, int, int]] = {}
        self._first: dict[int, int] = {}
        self._last: dict[int, int] = {}

    def update(self, labels: np.ndarray) -> np.ndarray:
        """Relabel one frame with the reference's track ids (uint32)."""
        labels = check_labels(labels)
        cur = frame_objects(labels)
        w = labels.shape[1]
        ry, rx = np.divmod(cur.idx, w)
        n1 = cur.n + 1
        y0 = np.full(n1, np.iinfo(np.int64).max)
        x0 = y0.copy()
        y1 = np.full(n1, -1, np.int64)
        x1 = y1.copy()
        np.minimum.at(y0, cur.comp, ry)
        np.minimum.at(x0, cur.comp, rx)
        np.maximum.at(y1, cur.comp, ry + 1)
        np.maximum.at(x1, cur.comp, rx + 1)
        track = np.zeros(n1, np.int64)
        if self._frame == 0:
            track[1:] = np.arange(1, n1)
            for k in range(1, n1):
                self._first[k] = 0
        elif self._boxes and cur.n:
            tids = np.array(sorted(self._boxes), np.int64)
            b = np.array([self._boxes[i] for i in tids], np.int64)
            iy = np.clip(np.minimum(b[:, None, 2], y1[None, 1:]) - np.maximum(b[:, None, 0], y0[None, 1:]), 0, None)
            ix = np.clip(np.minimum(b[:, None, 3], x1[None, 1:]) - np.maximum(b[:, None, 1], x0[None, 1:]), 0, None)
            inter = iy * ix
            area_t = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
            area_c = (y1[1:] - y0[1:]) * (x1[1:] - x0[1:])
            iou = inter / (area_t[:, None] + area_c[None, :] - inter)
            cost = np.where(iou >= self.min_iou, 1.0 - iou, 1.0)
            r, c = linear_sum_assignment(cost)
            ok = iou[r, c] >= self.min_iou
            track[c[ok] + 1] = tids[r[ok]]
        boxes = {}
        for k in np.flatnonzero(track).tolist():
            tid = int(track[k])
            boxes[tid] = (int(y0[k]), int(x0[k]), int(y1[k]), int(x1[k]))
            self._last[tid] = self._frame
        self._boxes = boxes
        out = paint(labels.shape, cur, track, None)
        self._frame += 1
        return out

    def lineage(self) -> pd.DataFrame:
        """Lineage table (no parents: the reference records none)."""
        import pandas as pd

        cells = np.array(sorted(self._first), np.int64)
        return pd.DataFrame(
            {
                "cell": cells,
                "parent": np.zeros(cells.size, np.int64),
                "first_frame": np.array([self._first[c] for c in cells], np.int64),
                "last_frame": np.array([self._last.get(c, 0) for c in cells], np.int64),
            }
        )
