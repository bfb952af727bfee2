"""Divisions dated back to where the daughters first show as a two-lobed object.

Daughters are born touching, and the segmentation often keeps them merged
for a frame or more: the tracker then sees the division only when they
separate, and until then the merged pair continues the mother's track (the
division is recorded late, and the daughters' first frames are lost).

Once a division can no longer be revoked (``division_confirm`` frames after
it), :class:`Backdater` walks back through the last few tracked frames it
holds: the mother's object in the frame before the daughters is split
between them (each pixel to the nearer daughter of the next frame,
:func:`split_between`), and the split is accepted while the object is two
cells touching, not one cell cut in two: each daughter lies at least half
inside it, both pieces hold at least ``min_piece`` of it, and the line
where the pieces touch is short against the smaller piece
(:func:`neck_ratio` <= ``max_neck``: a round cell cut through its middle
gives sqrt(2), cut off-centre more; two daughters born overlapping, as the
simulator places them, 0.66). Each accepted frame moves the division one
frame back: the daughters' ids replace the mother's pixels there, the
mother's track ends a frame earlier and the daughters' tracks start a frame
earlier. The mother keeps at least her first frame; the areas of her last
frames, which the division review compares the daughters with, stay those
of the merged object (the daughters' first areas are its two pieces).
Pixels of the daughters of a division the tracker revoked (they joined
again a frame later, :meth:`.divisions.DivisionsMixin._revoke`) count as
the mother's: daughters apart at birth, merged for a frame, then apart for
good are dated back to their birth.

The frames leave the buffer ``max_frames + division_confirm + 1`` frames
late, so memory does not grow with the movie.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage as ndi

from pyama_flow.contact import contact_line, main_axis
from pyama_flow.tracking.lineage import REVIEW_FRAMES

if TYPE_CHECKING:
    from pyama_flow.tracking.tracker import Tracker

#: each daughter must lie this much (fraction of her area) inside the mother's object one frame earlier
_OVERLAP = 0.5


def split_between(blob: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Give every pixel of ``blob`` (bool) the label of the nearest ``seeds`` pixel (labels 1, 2; 0 elsewhere)."""
    iy, ix = ndi.distance_transform_edt(seeds == 0, return_distances=False, return_indices=True)
    return np.where(blob, seeds[iy, ix], 0).astype(np.uint8)


def neck_ratio(split: np.ndarray) -> float:
    """Length of the line where pieces 1 and 2 of ``split`` touch, over the smaller piece's equivalent diameter.

    The line is the pixels of piece 1 with a 4-neighbour in piece 2; its
    length is their extent along their principal axis (plus one pixel), the
    same whatever the line's direction. A disk cut through its centre gives
    sqrt(2); two overlapping disks, less (two disks of radius r whose
    centres are 1.56 r apart, as daughters are born in the simulator: 0.66).
    inf when a piece is empty, 0 when the pieces do not touch.
    """
    a, b = split == 1, split == 2
    small = min(int(np.count_nonzero(a)), int(np.count_nonzero(b)))
    if small == 0:
        return float("inf")
    pts = np.argwhere(contact_line(a, b)).astype(np.float64)
    if pts.shape[0] == 0:
        return 0.0
    pts -= pts.mean(axis=0)
    proj = pts @ main_axis(pts)
    return float(proj.max() - proj.min() + 1.0) / (2.0 * np.sqrt(small / np.pi))


class Backdater:
    """Hold the last tracked frames of ``tracker`` and date its divisions back (see the module docstring).

    Feed every frame :meth:`Tracker.update` returns to :meth:`push`, then
    call :meth:`flush`; both yield the frames (provisional ids, backdated)
    in order once no division can move into them any more.
    """

    def __init__(self, tracker: Tracker, max_frames: int, max_neck: float, min_piece: float):
        self.tracker = tracker
        self.max_frames = int(max_frames)
        self.max_neck = float(max_neck)
        self.min_piece = float(min_piece)
        self._buf: deque[np.ndarray] = deque()
        self._t0 = 0  # frame index of _buf[0]
        self._born: dict[int, tuple[int, int]] = {}  # frame -> range of track ids created in it
        self._where: dict[int, tuple[float, float, int]] = {}  # daughter id -> centroid, area at birth
        self._n_ids = 0

    def push(self, frame: np.ndarray) -> Iterator[np.ndarray]:
        """Take the frame just returned by ``tracker.update``; yield the frames that are final."""
        tr = self.tracker
        t = tr.n_frames - 1
        n = len(tr._parent)
        self._born[t] = (self._n_ids + 1, n + 1)
        if n > self._n_ids:  # where the new daughters are (the tracker's objects of frame t)
            cur, track = tr._prev, tr._prev_track
            for k in np.flatnonzero(track > self._n_ids).tolist():
                tid = int(track[k])
                if tr._parent[tid - 1]:
                    self._where[tid] = (float(cur.cy[k]), float(cur.cx[k]), int(cur.area[k]))
        self._n_ids = n
        self._buf.append(frame)
        if self.max_frames > 0:
            self._backdate(t - tr.division_confirm)
        while len(self._buf) > self.max_frames + tr.division_confirm + 1:
            yield self._buf.popleft()
            lo, hi = self._born.pop(self._t0, (0, 0))
            for tid in range(lo, hi):
                self._where.pop(tid, None)
            self._t0 += 1

    def flush(self) -> Iterator[np.ndarray]:
        """After the last frame: the divisions still revocable are dated back too; yield the rest."""
        if self.max_frames > 0:
            last = self.tracker.n_frames - 1
            for t in range(max(last - self.tracker.division_confirm + 1, 0), last + 1):
                self._backdate(t)
        while self._buf:
            yield self._buf.popleft()
            self._t0 += 1

    def _frame(self, t: int) -> np.ndarray | None:
        k = t - self._t0
        return self._buf[k] if 0 <= k < len(self._buf) else None

    def _backdate(self, t: int) -> None:
        """Date back the divisions whose daughters were born in frame ``t``."""
        if t < 1 or t not in self._born:
            return
        tr = self.tracker
        lo, hi = self._born[t]
        kids: dict[int, list[int]] = {}
        for tid in range(lo, hi):
            parent = tr._parent[tid - 1]
            if parent and tid not in tr._alias and tr._first[tid - 1] == t:
                kids.setdefault(parent, []).append(tid)
        for mother, pair in kids.items():
            if len(pair) == 2 and mother not in tr._alias:
                self._move(mother, pair[0], pair[1], t)

    def _box(self, a: int, b: int, shape: tuple[int, ...]) -> tuple[slice, slice] | None:
        """A window around daughters ``a`` and ``b`` wide enough for their mother a few frames earlier."""
        if a not in self._where or b not in self._where:
            return None
        (ya, xa, na), (yb, xb, nb) = self._where[a], self._where[b]
        reach = 2.0 * np.sqrt((na + nb) / np.pi) + 4.0
        return (
            slice(max(int(min(ya, yb) - reach), 0), min(int(max(ya, yb) + reach) + 1, shape[0])),
            slice(max(int(min(xa, xb) - reach), 0), min(int(max(xa, xb) + reach) + 1, shape[1])),
        )

    def _move(self, mother: int, a: int, b: int, t: int) -> None:
        """Move division ``mother`` -> (``a``, ``b``), seen first in frame ``t``, back while supported.

        Works in a window around the daughters; an object that reaches the
        window's edge (inside the frame) is not dated back into.
        """
        tr = self.tracker
        nxt = self._frame(t)
        box = self._box(a, b, nxt.shape)
        if box is None:
            return
        edge = np.zeros((box[0].stop - box[0].start, box[1].stop - box[1].start), bool)
        edge[0, :] |= box[0].start > 0  # the window's sides that are not the frame's
        edge[-1, :] |= box[0].stop < nxt.shape[0]
        edge[:, 0] |= box[1].start > 0
        edge[:, -1] |= box[1].stop < nxt.shape[1]
        pa, pb = nxt[box] == a, nxt[box] == b
        # the mother's pixels, and those of her daughters of a revoked division
        # (two pieces that joined again a frame later, then separated for good)
        hers = np.array([mother] + [d for d, m in tr._alias.items() if m == mother])
        heads: list[tuple[int, int]] = []
        j = t - 1
        while j >= max(t - self.max_frames, tr._first[mother - 1] + 1):
            frame = self._frame(j)
            if frame is None:
                break
            sub = frame[box]
            blob = np.isin(sub, hers)
            area = int(np.count_nonzero(blob))
            if area == 0 or (blob & edge).any():
                break
            if np.count_nonzero(blob & pa) < _OVERLAP * np.count_nonzero(pa):
                break
            if np.count_nonzero(blob & pb) < _OVERLAP * np.count_nonzero(pb):
                break
            seeds = np.where(pa, 1, 0).astype(np.uint8)
            seeds[pb] = 2
            split = split_between(blob, seeds)
            n1, n2 = int(np.count_nonzero(split == 1)), int(np.count_nonzero(split == 2))
            if min(n1, n2) < self.min_piece * area or neck_ratio(split) > self.max_neck:
                break
            sub[split == 1] = a
            sub[split == 2] = b
            pa, pb = split == 1, split == 2
            heads.append((n1, n2))
            j -= 1
        k = len(heads)
        if k == 0:
            return
        tr._last[mother - 1] = t - 1 - k
        for d in hers[1:].tolist():  # revoked pieces whose frames the daughters took over
            if tr._first[d - 1] >= t - k:
                tr._last[d - 1] = min(tr._last[d - 1], t - 1 - k)
        for tid, areas in ((a, [h[0] for h in heads[::-1]]), (b, [h[1] for h in heads[::-1]])):
            tr._first[tid - 1] = t - k
            tr._head[tid - 1] = (areas + tr._head[tid - 1])[:REVIEW_FRAMES]
