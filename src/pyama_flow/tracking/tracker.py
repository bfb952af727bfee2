"""Streaming cell tracking on instance masks (SPEC step 4).

The workflow feeds one frame of instance labels at a time (ids unique within
the frame, not linked over time) to :class:`Tracker`, which returns the frame
relabelled with track ids. The tracker keeps only the previous frame and the
masks of tracks in an open gap, so memory does not grow with the number of
frames (the lineage table grows with the number of tracks only).

Per frame t (``update``):

1. **Objects** (:mod:`.objects`): one linear pass over the pixels (horizontal runs) gives each
   object's area, centroid and first pixel in raster order. Objects are
   ordered by that first pixel, so the result does not depend on the input
   label values.
2. **Overlaps** (:mod:`.objects`): label-pair pixel counts between frame t-1 and t, counted
   sparsely over the foreground pixels of frame t (linear in pixels, no
   cells x cells pixel loop; the same pairs as
   ``pyama_flow.devtools.metrics.overlap_counts`` without its second full-image
   pass); mask IoU = inter / (area_a + area_b - inter). Likewise between
   the last masks of open tracks (see 5) and frame t.
3. **Divisions** (``divisions=True``, :mod:`.divisions`): a cell ``m`` at t-1 divides when at
   least two objects at t each lie mostly inside m's mask
   (``division_min_overlap`` of their own area), have m as the frame-(t-1)
   object they overlap most, are each at most ``division_max_area_ratio`` of
   m's area, and the two largest together cover ``division_min_coverage`` of
   m. m's track ends at t-1; the two daughters get new ids with parent m.
   The area and "overlap most" conditions keep a cell plus a touching
   neighbour from looking like a division: the cell itself is about as large
   as before, and a neighbour overlaps its own previous mask more than m's.
   A "daughter" lying mostly inside an open track's last mask is that cell
   coming back, not a daughter.
4. **Assignment** (:mod:`.assign`): cost 1 - IoU, pairs with IoU < ``min_iou`` are no match,
   Hungarian assignment (``scipy.optimize.linear_sum_assignment``) on the
   sparse candidate pairs (pairs without competitors are matched directly). Rows
   are the objects of frame t-1 and, with gap closing, the open tracks (IoU
   with their last mask, discounted by 5 % per missed frame), so a cell that
   comes back competes fairly with a neighbour that grew over its place.
   Second-chance divisions: if m was matched to a small object c1 and a
   small unmatched object c2 lies near m (``division_search_radius``), m
   divided into c1 and c2 (the mother moved before dividing, so c2 lies
   outside her old mask).
5. **Gap closing** (``max_gap`` > 0, :mod:`.gaps`): a track unmatched in a frame stays
   open for ``max_gap`` frames; besides the IoU rows of step 4, objects
   still unmatched are linked to open tracks by centroid distance <=
   ``max_distance`` px (Hungarian on distance). A track's gap frames have no
   pixels with its id. Only tracks that have already missed at least one
   frame are open, so ``max_gap=0`` is plain frame-to-frame linking.
6. **New tracks** (:mod:`.lineage`): every object still unmatched (births, cells entering the
   field, cells first seen after frame 0) and every daughter gets a new id;
   ids start at 1 and are given in raster order of the objects' first pixels.

7. **Merges** (``split_merges``, before steps 2-6, :mod:`.merges`): an object holding
   ``merge_min_overlap`` of each of two or more tracked cells of frame t-1
   is the segmentation merging touching cells; its pixels are split along
   the previous frame's masks (nearest mask for the rest), so each cell
   keeps its id through the merge and their separation is not a division
   (cells tracked for ``division_min_age`` frames; a younger daughter of a
   division too when the merge is her and one cell not her sister: a
   just-born daughter merged with a neighbour keeps her id, and the
   division stands).
   Likewise an object holding one cell and a quarter or more of a
   neighbour that shrank into a smaller object of her own, having grown by
   0.4 of that part (:func:`.merges.partial_merges`): a daughter born into
   the neighbour's object gets her mother's pixels back, so the division
   is seen (step 3).
8. **Revocable divisions** (``division_confirm``, :mod:`.divisions`): for that many frames
   after a division, daughters that join again into one object, or one
   daughter vanishing while the other goes on, revoke it (one frame's
   over-segmentation): the daughters' ids become the mother's. ``update``
   returns provisional ids; :meth:`Tracker.relabel_lut` maps them to the
   final ones (the track job renames the frames it tracked into a scratch
   stack when it writes them, streaming).
9. **Division review** (``division_min_life``, ``division_area_sum``, :mod:`.lineage`): once
   the tracks are known (:meth:`Tracker.lineage`, :meth:`Tracker.relabel_lut`), a
   division is kept only if both daughters are seen for ``division_min_life``
   frames and their summed area accounts for the mother; otherwise the
   longer-lived daughter continues the mother's id, and the other carries
   it too if she lasted fewer frames and vanished while her sister went on
   (a piece cut off for a frame or two) or has no parent (two touching cells that the segmentation merged and
   separates again): neither is a division.

10. **Divisions dated back** (``division_backdate``, :meth:`Tracker.stream`,
   :mod:`.backdate`): daughters born touching are often merged by the
   segmentation for a frame or more, so a division is first seen when they
   separate. Once it cannot be revoked, it is moved back frame by frame
   while the mother's object there is the two daughters touching (split
   between them, each pixel to the nearer daughter of the next frame; the
   line where the pieces touch is short against the smaller one,
   ``division_max_neck``): the daughters' ids replace the mother's pixels
   there and their tracks start earlier. :meth:`Tracker.stream` holds the
   last ``division_backdate + division_confirm + 1`` frames for this; the
   track step uses it.

Reference (PyAMA) compatibility: ``Tracker(max_gap=0, divisions=False,
split_merges=False)`` is the reference's IoU + Hungarian frame-to-frame
linking with ``min_iou=0.1``.
Two reference defects are fixed unconditionally, not options: IoU is computed
on the masks (the reference used bounding boxes) and unmatched objects start
new tracks (the reference only ever tracked the cells of frame 0).
:class:`~pyama_flow.tracking.reference.ReferenceTracker` reimplements the old behaviour for comparison only.

Lineage semantics (``Tracker.lineage``, :mod:`.lineage`), as the Cell Tracking Challenge's
``man_track.txt``: one row per track id, ``cell, parent, first_frame,
last_frame`` with ``parent`` 0 for no parent. A division ends the mother's
track at its last frame; both daughters start at the next frame with
``parent`` = mother. Frames inside a closed gap lie between first_frame and
last_frame but contain no pixels of that id.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pyama_flow.tracking.assign import assign
from pyama_flow.tracking.divisions import DivisionsMixin
from pyama_flow.tracking.gaps import GAP_DISCOUNT, GapsMixin, OpenTrack
from pyama_flow.tracking.lineage import LineageMixin
from pyama_flow.tracking.merges import MergesMixin
from pyama_flow.tracking.objects import FrameObjects, check_labels, frame_objects, pair_overlaps, paint

if TYPE_CHECKING:
    import pandas as pd

#: division backdating: each daughter's piece must hold at least this fraction of the merged object
_MIN_PIECE = 0.1


@dataclass
class _Links:
    """Per-frame bookkeeping of :meth:`Tracker.update`, indexed by compact index.

    Attributes
    ----------
    track : (n+1,) int64 track id of each object of frame t (0 = none yet)
    new_parent : (n+1,) int64 parent track id of each daughter, -1 otherwise
    taken : (n+1,) bool, the daughters
    matched_prev : (n_prev+1,) bool, objects of frame t-1 continued in frame t
    ended_prev : (n_prev+1,) bool, objects of frame t-1 whose track ends at
        t-1 (mothers of a division, daughters of a revoked one)
    """

    track: np.ndarray
    new_parent: np.ndarray
    taken: np.ndarray
    matched_prev: np.ndarray
    ended_prev: np.ndarray

    @classmethod
    def empty(cls, n: int, n_prev: int) -> _Links:
        """Nothing linked yet between ``n_prev`` objects of frame t-1 and ``n`` of frame t."""
        return cls(
            np.zeros(n + 1, np.int64),
            np.full(n + 1, -1, np.int64),
            np.zeros(n + 1, bool),
            np.zeros(n_prev + 1, bool),
            np.zeros(n_prev + 1, bool),
        )

    @property
    def n_prev(self) -> int:
        """Number of objects of frame t-1."""
        return self.matched_prev.size - 1


class Tracker(MergesMixin, DivisionsMixin, GapsMixin, LineageMixin):
    """Streaming IoU + Hungarian tracker with births, gap closing and divisions.

    Parameters
    ----------
    min_iou : float
        Pairs with mask IoU below this are never linked (reference: 0.1).
    max_gap : int
        Number of consecutive frames a track may be missing and still be
        continued (0 disables gap closing; reference: 0).
    max_distance : float
        Gap closing: largest centroid distance (px) for linking an object to
        an open track it does not overlap by ``min_iou``.
    divisions : bool
        Detect divisions (reference: False, i.e. one daughter continues the
        mother's track by IoU and the other starts a new track).
    division_min_overlap : float
        Fraction of a daughter's area that must lie inside the mother's mask.
    division_min_coverage : float
        Fraction of the mother's area the two daughters must cover together.
    division_max_area_ratio : float
        Largest daughter area as a fraction of the mother's.
    division_search_radius : float
        Second-chance divisions (mother matched to one small daughter, the
        other daughter moved out of her mask and is unmatched): largest
        distance of that daughter's centroid from the mother's, in units of
        the mother's equivalent radius sqrt(area / pi).
    division_min_age : int
        A cell divides only if its track has been seen for at least this
        many frames; also, only cells tracked this long count as merged
        cells (``split_merges``), except a daughter of a division merged
        with one cell that is not her sister. Keeps a fragment or a merged
        pair seen for the first time from making a division.
    division_confirm : int
        A division stays revocable for this many frames: if within them the
        two daughters join into one object again, or one of them vanishes
        while the other goes on, it was one frame's over-segmentation; the
        daughters' ids are renamed to the mother's (:meth:`relabel_lut`)
        and the division is dropped from the lineage. 0 = never revoked.
    merge_min_overlap : float
        ``split_merges``: fraction of a cell's previous area that must lie
        inside an object of frame t for the cell to count as merged into it.
    split_merges : bool
        Split an object that holds two or more tracked cells of the
        previous frame (touching cells the segmentation merged) along the
        previous frame's masks, so each cell keeps its id through the merge
        and no division is recorded when they separate again; with
        ``divisions`` also an object holding one cell and part of a
        neighbour that shrank (a daughter merged with the neighbour at her
        birth: the division is then seen at its frame).
    rejoin_min_area : float
        ``division_confirm``: a daughter unmatched in the next frame was
        absorbed by her sister when the sister's object now has at least
        this fraction of the two daughters' summed area (or covers
        ``merge_min_overlap`` of the lost daughter's mask).
    merge_max_frames : int
        ``split_merges``: a merge that lasts this many frames, and as many
        frames as its cells had been seen apart before it, is accepted as
        one cell (one id goes on, the others end), so a cell that the
        segmentation cut in two for a while and then gives whole again is
        not kept cut for ever, while two cells tracked apart for long keep
        their ids through a long merge (its end is then no division).
    division_min_life : int
        Division review (:meth:`lineage`, :meth:`relabel_lut`): a division
        is kept only if both daughters last this many frames and
        ``division_area_sum`` holds; otherwise one daughter continues the
        mother's id and the other, if shorter-lived than this and gone
        while her sister goes on (a piece cut off), carries it too, else
        gets no parent. A division in the last
        ``division_min_life - 1`` frames is therefore not recorded. 0 = no
        review.
    division_area_sum : (float, float)
        Division review: bounds of the daughters' summed area (medians over
        their first 3 frames) as a fraction of the mother's (median over her
        last 3 frames).
    division_backdate : int
        :meth:`stream` (the track step): a division is moved back by up to
        this many frames while the mother's object there is the two
        daughters merged by the segmentation (:mod:`.backdate`). 0 = off;
        :meth:`update` alone never moves a division.
    division_max_neck : float
        ``division_backdate``: largest length of the line where the two
        daughters' pieces touch, over the smaller piece's equivalent
        diameter, for the object to count as two touching cells.

    Notes
    -----
    ``Tracker(max_gap=0, divisions=False, split_merges=False)`` is the
    reference-compatible setting: plain frame-to-frame IoU + Hungarian linking (with mask IoU and
    new ids for unmatched objects, which are defect fixes, not options).

    Examples
    --------
    >>> tracker = Tracker()
    >>> for labels in frames:                       # doctest: +SKIP
    ...     write(tracker.update(labels))
    >>> tracker.lineage()                           # doctest: +SKIP
    """

    def __init__(
        self,
        min_iou: float = 0.1,
        max_gap: int = 2,
        max_distance: float = 20.0,
        divisions: bool = True,
        division_min_overlap: float = 0.35,
        division_min_coverage: float = 0.4,
        division_max_area_ratio: float = 0.8,
        division_search_radius: float = 2.0,
        division_min_age: int = 3,
        division_confirm: int = 1,
        merge_min_overlap: float = 0.5,
        split_merges: bool = True,
        rejoin_min_area: float = 0.8,
        merge_max_frames: int = 5,
        division_min_life: int = 3,
        division_area_sum: tuple[float, float] = (0.7, 1.4),
        division_backdate: int = 3,
        division_max_neck: float = 1.1,
    ):
        if not 0.0 < min_iou <= 1.0:
            raise ValueError("min_iou must be in (0, 1]")
        if max_gap < 0:
            raise ValueError("max_gap must be >= 0")
        self.min_iou = float(min_iou)
        self.max_gap = int(max_gap)
        self.max_distance = float(max_distance)
        self.divisions = bool(divisions)
        self.division_min_overlap = float(division_min_overlap)
        self.division_min_coverage = float(division_min_coverage)
        self.division_max_area_ratio = float(division_max_area_ratio)
        self.division_search_radius = float(division_search_radius)
        if division_min_age < 1 or division_confirm < 0:
            raise ValueError("division_min_age must be >= 1 and division_confirm >= 0")
        if not 0.0 < merge_min_overlap <= 1.0:
            raise ValueError("merge_min_overlap must be in (0, 1]")
        self.division_min_age = int(division_min_age)
        self.division_confirm = int(division_confirm)
        self.merge_min_overlap = float(merge_min_overlap)
        self.split_merges = bool(split_merges)
        self.rejoin_min_area = float(rejoin_min_area)
        if merge_max_frames < 0:
            raise ValueError("merge_max_frames must be >= 0")
        self.merge_max_frames = int(merge_max_frames)
        if division_min_life < 0:
            raise ValueError("division_min_life must be >= 0")
        bounds = tuple(float(v) for v in division_area_sum)
        if len(bounds) != 2 or not 0.0 <= bounds[0] <= bounds[1]:
            raise ValueError("division_area_sum must be (lo, hi) with 0 <= lo <= hi")
        self.division_min_life = int(division_min_life)
        self.division_area_sum = bounds
        if division_backdate < 0 or division_max_neck <= 0:
            raise ValueError("division_backdate must be >= 0 and division_max_neck > 0")
        self.division_backdate = int(division_backdate)
        self.division_max_neck = float(division_max_neck)
        self._merge_start: dict[int, int] = {}  # track id -> first frame of its current merge
        self._frame = 0
        # divisions still revocable: (daughter id, daughter id) -> (mother id, frame)
        self._pending: dict[tuple[int, int], tuple[int, int]] = {}
        self._alias: dict[int, int] = {}  # revoked daughter id -> mother id
        self._shape: tuple[int, int] | None = None
        self._prev: FrameObjects | None = None
        self._prev_labels: np.ndarray | None = None
        self._prev_track = np.zeros(1, np.int64)
        self._open: dict[int, OpenTrack] = {}
        self._parent: list[int] = []
        self._first: list[int] = []
        self._last: list[int] = []
        self._head: list[list[int]] = []  # per track: areas of its first REVIEW_FRAMES frames
        self._tail: list[list[int]] = []  # per track: areas of its last REVIEW_FRAMES frames

    @property
    def n_frames(self) -> int:
        """Number of frames seen so far."""
        return self._frame

    def update(self, labels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Take frame t's instance labels, return frame t relabelled with track ids.

        Parameters
        ----------
        labels : (Y, X) integer array
            Instance labels of frame t (ids unique within the frame, 0 =
            background); ids need not be linked to earlier frames.
        out : (Y, X) uint32 array, optional
            Buffer to write the result into (saves one frame allocation per
            call when streaming).

        Returns
        -------
        (Y, X) uint32 array of track ids, 0 = background (``out`` if given).
        """
        labels = self._check_frame(labels)
        t = self._frame
        cur = frame_objects(labels)
        prev = self._prev
        n_prev = prev.n if prev is not None else 0
        rejoin: dict[int, tuple[int, int, int]] = {}
        if not (cur.n and n_prev):
            pairs = (np.zeros(0, np.int64),) * 3
        elif self.split_merges:  # 7: merges split along the previous masks
            labels, cur, rejoin, pairs = self._split_merges(labels, cur, prev)
        else:
            pairs = pair_overlaps(prev, self._prev_labels, cur)
        self._pending = {k: v for k, v in self._pending.items() if t - v[1] <= self.division_confirm}
        links = _Links.empty(cur.n, n_prev)
        if cur.n:  # 3-5: divisions, assignment, gap closing
            self._link(t, labels, cur, prev, pairs, rejoin, links)
        if n_prev:  # tracks lost at t: revoked divisions (8), open tracks (5)
            self._end_lost(t, prev, cur, pairs, links)
        self._drop_expired(t)
        self._new_ids(cur, links.track, links.new_parent, t)  # 6: new tracks
        out = paint(labels.shape, cur, links.track, out)
        self._remember(labels, cur, links.track)
        self._frame = t + 1
        return out

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Track ``frames``; yield each tracked frame (provisional ids) with its divisions dated back.

        :meth:`update` per frame, then divisions moved back by up to
        ``division_backdate`` frames (:class:`.backdate.Backdater`): frames
        come out that many frames (plus ``division_confirm + 1``) late, all of
        them by the end. Apply :meth:`relabel_lut` afterwards, as for
        :meth:`update`. With ``division_backdate=0`` the frames are those of
        :meth:`update`.
        """
        from pyama_flow.tracking.backdate import Backdater

        backdater = Backdater(self, self.division_backdate, self.division_max_neck, _MIN_PIECE)
        for labels in frames:
            yield from backdater.push(self.update(labels))
        yield from backdater.flush()

    def _check_frame(self, labels: np.ndarray) -> np.ndarray:
        """``labels`` checked (:func:`~pyama_flow.tracking.objects.check_labels`) and of the first frame's shape."""
        labels = check_labels(labels)
        if self._shape is None:
            self._shape = labels.shape
        elif labels.shape != self._shape:
            raise ValueError(f"frame shape {labels.shape} differs from {self._shape}")
        return labels

    def _link(
        self,
        t: int,
        labels: np.ndarray,
        cur: FrameObjects,
        prev: FrameObjects | None,
        pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
        rejoin: dict[int, tuple[int, int, int]],
        links: _Links,
    ) -> None:
        """Link the objects of frame t (steps 3-5 of the module docstring), in ``links``.

        Parameters
        ----------
        t : frame index
        labels : frame t's labels (after merge splitting)
        cur, prev : objects of frames t and t-1 (``prev`` None at frame 0)
        pairs : overlaps (pp, pc, inter) between frames t-1 and t
        rejoin : objects that are the daughters of a pending division joined
            again -> (mother, daughter, daughter), from :meth:`_split_merges`
        links : the frame's bookkeeping, updated in place; open tracks that
            are continued are closed
        """
        pp, pc, inter = pairs
        iou = inter / (prev.area[pp] + cur.area[pc] - inter) if pp.size else np.zeros(0)
        rejoined = self._rejoin(rejoin, cur.n, links.ended_prev, t)
        open_ids = sorted(self._open)
        oi, oc, o_iou, in_open = self._open_pairs(labels, cur, open_ids)
        if self.divisions and pp.size:
            self._detect_divisions(cur, prev, pairs, in_open, links.taken, links.new_parent, links.ended_prev)
        r, c = self._assign_rows(t, pairs, iou, open_ids, (oi, oc, o_iou), rejoined, links)
        from_prev = r <= links.n_prev
        mr, mc = r[from_prev], c[from_prev]
        if self.divisions and mr.size:
            mr, mc = self._rescue_divisions(
                cur, prev, mr, mc, c, in_open, links.taken, links.new_parent, links.ended_prev
            )
        links.track[mc] = self._prev_track[mr]
        for obj, (mother, _a, _b) in rejoin.items():
            links.track[obj] = mother
        links.matched_prev[mr] = True
        for row, k in zip((r[~from_prev] - links.n_prev - 1).tolist(), c[~from_prev].tolist(), strict=True):
            tid = open_ids[row]
            links.track[k] = tid
            del self._open[tid]
        if self._open:
            self._close_by_distance(t, cur, links.track, links.taken)

    def _assign_rows(
        self,
        t: int,
        pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
        iou: np.ndarray,
        open_ids: list[int],
        open_pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
        rejoined: np.ndarray,
        links: _Links,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Joint assignment of the previous objects and the open tracks (rows) to the objects (columns).

        Parameters
        ----------
        t : frame index
        pairs, iou : overlaps between frames t-1 and t and their IoU
        open_ids : ids of the open tracks
        open_pairs : (oi, oc, iou) overlaps of the open tracks with frame t,
            from :meth:`_open_pairs`
        rejoined : per compact index of frame t, objects already given to a
            revoked division's mother
        links : the frame's bookkeeping (daughters and ended mothers take no part)

        Returns
        -------
        rows, cols of the matched pairs: row k <= ``n_prev`` is compact index
        k of frame t-1, row ``n_prev + 1 + i`` is open track ``open_ids[i]``.
        """
        pp, pc, _ = pairs
        oi, oc, o_iou = open_pairs
        keep_p = (iou >= self.min_iou) & ~links.ended_prev[pp] & ~links.taken[pc] & ~rejoined[pc]
        keep_o = (o_iou >= self.min_iou) & ~links.taken[oc] & ~rejoined[oc]
        gaps = self._missed(t, open_ids)
        rows = np.concatenate([pp[keep_p], links.n_prev + 1 + oi[keep_o]])
        cols = np.concatenate([pc[keep_p], oc[keep_o]])
        # an open track's IoU is discounted by 5 % per missed frame
        cost = np.concatenate(
            [1.0 - iou[keep_p], 1.0 - o_iou[keep_o] * GAP_DISCOUNT ** gaps[oi[keep_o]].astype(np.float64)]
        )
        return assign(rows, cols, cost, no_match=1.0)

    def _end_lost(
        self,
        t: int,
        prev: FrameObjects,
        cur: FrameObjects,
        pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
        links: _Links,
    ) -> None:
        """Tracks of frame t-1 unmatched in frame t become open (or end).

        A lost daughter of a pending division absorbed by her sister revokes
        the division instead (:meth:`_revoke_lost`).
        """
        lost = np.flatnonzero(~links.matched_prev & ~links.ended_prev)
        lost = lost[lost > 0]
        if self._pending and lost.size:
            lost = self._revoke_lost(lost, links.track, t, pairs, cur.area)
        if self.max_gap > 0 and lost.size:
            self._open_tracks(t - 1, prev, lost)

    def _remember(self, labels: np.ndarray, cur: FrameObjects, track: np.ndarray) -> None:
        """Keep frame t (labels, objects, track ids) as the previous frame of the next update."""
        self._prev = cur
        if self._prev_labels is not None and self._prev_labels.dtype == labels.dtype:
            np.copyto(self._prev_labels, labels)  # reuse the buffer
        else:
            self._prev_labels = labels.copy()
        self._prev_track = track


def track_frames(frames: Iterable[np.ndarray], **params) -> Iterator[np.ndarray]:
    """Track a stream of label frames; yields each tracked frame (uint32).

    Parameters
    ----------
    frames : iterable of (Y, X) integer label images
    **params : keyword arguments of :class:`Tracker`

    Yields
    ------
    (Y, X) uint32 track-id images, one per input frame, in order, from
    :meth:`Tracker.stream` (a few frames late: divisions are dated back into
    them first). The generator's return value (``StopIteration.value``, or the
    result of ``yield from``) is the lineage table; use :class:`Tracker`
    directly to get it more conveniently. The ids are provisional: a
    division revoked later leaves its daughters' ids in the frames already
    yielded (see :meth:`Tracker.relabel_lut`).
    """
    tracker = Tracker(**params)
    yield from tracker.stream(frames)
    return tracker.lineage()


def track_movie(frames: Sequence[np.ndarray], **params) -> tuple[list[np.ndarray], pd.DataFrame]:
    """Track a movie held in memory: its final-id frames and lineage table.

    What the track step writes (``labels.tif``, ``tracks.csv``), for frames
    that are already in memory (tests, benchmarks, notebooks): the frames
    :meth:`Tracker.stream` yields with :meth:`Tracker.relabel_lut` applied,
    so the ids match :meth:`Tracker.lineage`. The step itself does not hold
    the frames: it streams them into a scratch stack on disk and renames
    them when it writes ``labels.tif`` (:func:`pyama_flow.tracking.step.track`).

    Parameters
    ----------
    frames : sequence of (Y, X) integer label images
    **params : keyword arguments of :class:`Tracker`

    Returns
    -------
    (list of (Y, X) uint32 track-id images, DataFrame of :meth:`Tracker.lineage`)
    """
    tracker = Tracker(**params)
    out = list(tracker.stream(frames))
    lut = tracker.relabel_lut()
    if lut is not None:
        out = [lut[o] for o in out]
    return out, tracker.lineage()
