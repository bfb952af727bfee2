"""Gap closing: tracks missing for a few frames and continued when their cell comes back.

A track unmatched in a frame becomes an :class:`OpenTrack` (its last mask and
centroid) for ``max_gap`` frames. :class:`GapsMixin` gives the
:class:`~pyama_flow.tracking.tracker.Tracker` the open tracks' IoU with the
objects of the current frame (rows of the joint assignment, discounted by
:data:`GAP_DISCOUNT` per missed frame) and links objects left unmatched to
open tracks by centroid distance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pyama_flow.tracking.assign import assign

if TYPE_CHECKING:
    from pyama_flow.tracking.objects import FrameObjects

#: an open track's IoU is multiplied by this per missed frame
GAP_DISCOUNT = 0.95


@dataclass
class OpenTrack:
    """A track that missed at least one frame, kept for gap closing."""

    last_frame: int
    idx: np.ndarray  # flat pixel indices of its last mask
    area: int
    cy: float
    cx: float


class GapsMixin:
    """Open tracks of a :class:`~pyama_flow.tracking.tracker.Tracker`.

    State (set by ``Tracker.__init__``): ``_open`` (track id ->
    :class:`OpenTrack`), ``_prev_track``, ``max_gap``, ``max_distance``.
    """

    def _open_pairs(
        self, labels: np.ndarray, cur: FrameObjects, open_ids: list[int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Overlaps of the open tracks' last masks with the objects of frame t.

        Returns
        -------
        oi : position in ``open_ids`` of each overlapping pair
        oc : compact index of the object
        iou : IoU of the pair
        in_open : per compact index, the largest pixel overlap with any open
            track's last mask
        """
        in_open = np.zeros(cur.n + 1, np.int64)
        empty = np.zeros(0, np.int64)
        if not open_ids:
            return empty, empty, np.zeros(0), in_open
        tracks = [self._open[k] for k in open_ids]
        sizes = np.array([o.idx.size for o in tracks], np.int64)
        owner = np.repeat(np.arange(len(tracks), dtype=np.int64), sizes)
        cc = cur.compact_at(labels, np.concatenate([o.idx for o in tracks]))
        hit = cc > 0
        key = owner[hit] * (cur.n + 1) + cc[hit]
        uniq, cnt = np.unique(key, return_counts=True)
        oi, oc = np.divmod(uniq, cur.n + 1)
        o_area = np.array([o.area for o in tracks], np.int64)
        iou = cnt / (o_area[oi] + cur.area[oc] - cnt)
        np.maximum.at(in_open, oc, cnt)
        return oi, oc, iou, in_open

    def _open_tracks(self, last_frame: int, prev: FrameObjects, lost: np.ndarray) -> None:
        """Store the last masks of the tracks lost at this frame."""
        flag = np.zeros(prev.n + 1, bool)
        flag[lost] = True
        sel = flag[prev.comp]
        comp = prev.comp[sel]
        idx = prev.idx[sel]
        order = np.argsort(comp, kind="stable")
        comp, idx = comp[order], idx[order]
        bounds = np.searchsorted(comp, lost)
        ends = np.append(bounds[1:], comp.size)
        for k, b, e in zip(lost.tolist(), bounds.tolist(), ends.tolist(), strict=True):
            tid = int(self._prev_track[k])
            self._open[tid] = OpenTrack(
                last_frame, idx[b:e].copy(), int(prev.area[k]), float(prev.cy[k]), float(prev.cx[k])
            )

    def _close_by_distance(self, t: int, cur: FrameObjects, track: np.ndarray, taken: np.ndarray) -> None:
        """Link still-unmatched objects to open tracks by centroid distance (in place)."""
        free = np.flatnonzero((track == 0) & ~taken)
        free = free[free > 0]
        if free.size == 0 or self.max_distance <= 0:
            return
        tids = sorted(self._open)
        oy = np.array([self._open[k].cy for k in tids])
        ox = np.array([self._open[k].cx for k in tids])
        gaps = self._missed(t, tids).astype(np.float64)
        d = np.hypot(oy[:, None] - cur.cy[free][None, :], ox[:, None] - cur.cx[free][None, :])
        i, j = np.nonzero(d <= self.max_distance)
        if i.size == 0:
            return
        cost = d[i, j] / self.max_distance + 1e-3 * gaps[i]
        r, c = assign(i, j, cost, no_match=2.0)
        for row, col in zip(r.tolist(), c.tolist(), strict=True):
            track[free[col]] = tids[row]
            del self._open[tids[row]]

    def _missed(self, t: int, open_ids: list[int]) -> np.ndarray:
        """Number of frames (int64) each open track has missed before frame t."""
        return np.array([t - 1 - self._open[k].last_frame for k in open_ids], np.int64)

    def _drop_expired(self, t: int) -> None:
        """Forget the open tracks that have missed more than ``max_gap`` frames at frame t."""
        if self._open:
            self._open = {k: o for k, o in self._open.items() if t - o.last_frame <= self.max_gap}
