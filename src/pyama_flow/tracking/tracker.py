"""Streaming cell tracking on instance masks (SPEC step 4).

The workflow feeds one frame of instance labels at a time (ids unique within
the frame, not linked over time) to :class:`Tracker`, which returns the frame
relabelled with track ids. The tracker keeps only the previous frame and the
masks of tracks in an open gap, so memory does not grow with the number of
frames (the lineage table grows with the number of tracks only).

Per frame t (``update``):

1. **Objects**: one linear pass over the pixels (horizontal runs) gives each
   object's area, centroid and first pixel in raster order. Objects are
   ordered by that first pixel, so the result does not depend on the input
   label values.
2. **Overlaps**: label-pair pixel counts between frame t-1 and t, counted
   sparsely over the foreground pixels of frame t (linear in pixels, no
   cells x cells pixel loop; the same pairs as
   ``pyama_flow.devtools.metrics.overlap_counts`` without its second full-image
   pass); mask IoU = inter / (area_a + area_b - inter). Likewise between
   the last masks of open tracks (see 5) and frame t.
3. **Divisions** (``divisions=True``): a cell ``m`` at t-1 divides when at
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
4. **Assignment**: cost 1 - IoU, pairs with IoU < ``min_iou`` are no match,
   Hungarian assignment (``scipy.optimize.linear_sum_assignment``) on the
   sparse candidate pairs (pairs without competitors are matched directly). Rows
   are the objects of frame t-1 and, with gap closing, the open tracks (IoU
   with their last mask, discounted by 5 % per missed frame), so a cell that
   comes back competes fairly with a neighbour that grew over its place.
   Second-chance divisions: if m was matched to a small object c1 and a
   small unmatched object c2 lies near m (``division_search_radius``), m
   divided into c1 and c2 (the mother moved before dividing, so c2 lies
   outside her old mask).
5. **Gap closing** (``max_gap`` > 0): a track unmatched in a frame stays
   open for ``max_gap`` frames; besides the IoU rows of step 4, objects
   still unmatched are linked to open tracks by centroid distance <=
   ``max_distance`` px (Hungarian on distance). A track's gap frames have no
   pixels with its id. Only tracks that have already missed at least one
   frame are open, so ``max_gap=0`` is plain frame-to-frame linking.
6. **New tracks**: every object still unmatched (births, cells entering the
   field, cells first seen after frame 0) and every daughter gets a new id;
   ids start at 1 and are given in raster order of the objects' first pixels.

7. **Merges** (``split_merges``, before steps 2-6): an object holding
   ``merge_min_overlap`` of each of two or more tracked cells of frame t-1
   is the segmentation merging touching cells; its pixels are split along
   the previous frame's masks (nearest mask for the rest), so each cell
   keeps its id through the merge and their separation is not a division.
8. **Revocable divisions** (``division_confirm``): for that many frames
   after a division, daughters that join again into one object, or one
   daughter vanishing while the other goes on, revoke it (one frame's
   over-segmentation): the daughters' ids become the mother's. ``update``
   returns provisional ids; :meth:`Tracker.relabel_lut` maps them to the
   final ones (the track job tracks a second time when needed, streaming).

Reference (PyAMA) compatibility: ``Tracker(max_gap=0, divisions=False,
split_merges=False)`` is the reference's IoU + Hungarian frame-to-frame
linking with ``min_iou=0.1``.
Two reference defects are fixed unconditionally, not options: IoU is computed
on the masks (the reference used bounding boxes) and unmatched objects start
new tracks (the reference only ever tracked the cells of frame 0).
:class:`ReferenceTracker` reimplements the old behaviour for comparison only.

Lineage semantics (``Tracker.lineage``), as the Cell Tracking Challenge's
``man_track.txt``: one row per track id, ``cell, parent, first_frame,
last_frame`` with ``parent`` 0 for no parent. A division ends the mother's
track at its last frame; both daughters start at the next frame with
``parent`` = mother. Frames inside a closed gap lie between first_frame and
last_frame but contain no pixels of that id.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import linear_sum_assignment

from pyama_flow.io.stacks import write_text

if TYPE_CHECKING:  # pandas is imported where a table is built: the track job writes its CSV without it
    import pandas as pd

LINEAGE_COLUMNS = ("cell", "parent", "first_frame", "last_frame")

# label values above this are compacted with np.unique instead of a lookup table
_MAX_LUT_LABEL = 1 << 22
# gap closing: an open track's IoU is multiplied by this per missed frame
_GAP_DISCOUNT = 0.95


@dataclass
class FrameObjects:
    """Objects of one label frame, in compact form.

    Compact index k = 1..n numbers the objects in raster order of their first
    pixel; index 0 is background. Arrays indexed by compact index have length
    n + 1.

    Attributes
    ----------
    n : number of objects
    idx : (P,) int64 flat indices of the foreground pixels (ascending)
    comp : (P,) int32 compact index of each foreground pixel
    area : (n+1,) int64 pixel counts
    cy, cx : (n+1,) float64 centroids (row, column)
    first : (n+1,) int64 flat index of each object's first pixel
    lut : int32 lookup from label key to compact index; the key is the label
        value itself, or (when ``uniq`` is set, for huge label values) the
        position of the value in ``uniq`` plus one
    uniq : sorted label values, or None
    """

    n: int
    idx: np.ndarray
    comp: np.ndarray
    area: np.ndarray
    cy: np.ndarray
    cx: np.ndarray
    first: np.ndarray
    lut: np.ndarray
    uniq: np.ndarray | None = None

    def compact_at(self, labels: np.ndarray, flat_idx: np.ndarray) -> np.ndarray:
        """Compact indices (0 = background) of ``labels`` at ``flat_idx``.

        ``labels`` must be the frame these objects were computed from.
        """
        values = labels.ravel()[flat_idx]
        if self.uniq is None:
            return self.lut[values]
        pos = np.minimum(np.searchsorted(self.uniq, values), self.uniq.size - 1)
        hit = self.uniq[pos] == values
        return np.where(hit, self.lut[pos + 1], 0).astype(np.int32)


def frame_objects(labels: np.ndarray) -> FrameObjects:
    """Area, centroid and raster order of every object of a label image.

    Parameters
    ----------
    labels : (Y, X) integer or bool array
        Instance labels, 0 = background. An id may cover several disjoint
        pieces; it is one object.

    Returns
    -------
    FrameObjects
        Linear in the number of pixels (bincount-based) for label values up
        to 2**22; larger values are compacted with ``np.unique`` first.
    """
    labels = _check_labels(labels)
    width = labels.shape[1]
    flat = labels.ravel()
    idx = np.flatnonzero(flat != 0)
    values = flat[idx]
    if values.size == 0:
        z = np.zeros(1, np.int64)
        return FrameObjects(0, idx, np.zeros(0, np.int32), z, z * 0.0, z * 0.0, z, np.zeros(1, np.int32))
    uniq = None
    if int(values.max()) <= _MAX_LUT_LABEL:
        key = values.astype(np.intp, copy=False)
        n_key = int(values.max()) + 1
    else:
        uniq, key = np.unique(values, return_inverse=True)
        key = key.astype(np.intp) + 1
        n_key = uniq.size + 1
    # horizontal runs of one label: the per-object sums need only the runs
    starts, lengths, run_row, run_col = _runs(idx, key, width)
    run_key = key[starts]
    first_run = np.full(n_key, starts.size, dtype=np.int64)
    np.minimum.at(first_run, run_key, np.arange(starts.size, dtype=np.int64))
    present = np.flatnonzero(first_run < starts.size)
    present = present[present > 0]
    order = present[np.argsort(first_run[present], kind="stable")]
    n = int(order.size)
    lut = np.zeros(n_key, dtype=np.int32)
    lut[order] = np.arange(1, n + 1, dtype=np.int32)
    comp = lut[key]
    run_comp = lut[run_key]
    len_f = lengths.astype(np.float64)
    area = np.bincount(run_comp, weights=len_f, minlength=n + 1).astype(np.int64)
    safe = np.maximum(area, 1)
    cy = np.bincount(run_comp, weights=len_f * run_row, minlength=n + 1) / safe
    col_sum = len_f * run_col + len_f * (len_f - 1.0) * 0.5
    cx = np.bincount(run_comp, weights=col_sum, minlength=n + 1) / safe
    first = np.zeros(n + 1, np.int64)
    first[1:] = idx[starts[first_run[order]]]
    return FrameObjects(n, idx, comp, area, cy, cx, first, lut, uniq)


def _runs(idx: np.ndarray, key: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal runs of equal label in the foreground pixels.

    Parameters
    ----------
    idx : ascending flat indices of the foreground pixels
    key : label key of each of those pixels
    width : image width

    Returns
    -------
    starts : position in ``idx`` of each run's first pixel
    lengths : run lengths
    row, col : image row and column of each run's first pixel (float64)
    """
    brk = np.empty(idx.size, bool)
    brk[0] = True
    np.not_equal(key[1:], key[:-1], out=brk[1:])
    brk[1:] |= np.diff(idx) != 1
    starts = np.flatnonzero(brk)
    ends = np.append(starts[1:], idx.size)
    row = idx[starts] // width
    if np.any(row != idx[ends - 1] // width):  # a run wraps from one row to the next
        brk |= idx % width == 0
        starts = np.flatnonzero(brk)
        ends = np.append(starts[1:], idx.size)
        row = idx[starts] // width
    col = idx[starts] - row * width
    return starts, ends - starts, row.astype(np.float64), col.astype(np.float64)


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"expected a 2-D label image, got shape {labels.shape}")
    if labels.dtype == bool:
        return labels.astype(np.uint8)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be integers, got {labels.dtype}")
    if labels.dtype.kind == "i" and labels.size and int(labels.min()) < 0:
        raise ValueError("labels must be non-negative")
    return labels


def pair_overlaps(
    prev: FrameObjects, prev_labels: np.ndarray, cur: FrameObjects
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse overlap counts between the objects of two consecutive frames.

    Counted over the foreground pixels of the current frame only (linear in
    pixels): the same pairs and counts as ``pyama_flow.devtools.metrics.overlap_counts``
    but in compact indices and without a second full-image pass.

    Returns
    -------
    pp, pc : int64 compact indices (previous, current) of every overlapping pair
    inter : int64 shared pixel counts
    """
    if prev.n == 0 or cur.n == 0:
        e = np.zeros(0, np.int64)
        return e, e, e
    pcomp = prev.compact_at(prev_labels, cur.idx)
    both = pcomp > 0
    key = pcomp[both].astype(np.int64) * (cur.n + 1) + cur.comp[both]
    size = (prev.n + 1) * (cur.n + 1)
    if size <= 8 * max(key.size, 1 << 16):
        counts = np.bincount(key, minlength=size)
        uniq = np.flatnonzero(counts)
        inter = counts[uniq]
    else:
        uniq, inter = np.unique(key, return_counts=True)
    pp, pc = np.divmod(uniq, cur.n + 1)
    return pp.astype(np.int64), pc.astype(np.int64), inter.astype(np.int64)


def assign(rows: np.ndarray, cols: np.ndarray, cost: np.ndarray, no_match: float) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost one-to-one assignment on a sparse set of candidate pairs.

    Parameters
    ----------
    rows, cols : int arrays
        Candidate pairs (each pair at most once).
    cost : float array
        Cost of each pair; pairs must cost less than ``no_match``.
    no_match : float
        Cost of leaving a row or column unmatched (the fill value of the dense
        matrix handed to the Hungarian solver).

    Returns
    -------
    rows, cols of the chosen pairs. Pairs whose row and column have no other
    candidate are matched directly; the rest go to
    ``scipy.optimize.linear_sum_assignment`` (one dense matrix when small,
    else one per connected block of the candidate graph).
    """
    rows = np.asarray(rows, np.int64)
    cols = np.asarray(cols, np.int64)
    cost = np.asarray(cost, np.float64)
    if rows.size == 0:
        return rows, cols
    # fast path: a pair whose row and column have no other candidate
    deg_r = np.bincount(rows)
    deg_c = np.bincount(cols)
    single = (deg_r[rows] == 1) & (deg_c[cols] == 1)
    out_r = [rows[single]]
    out_c = [cols[single]]
    rest = np.flatnonzero(~single)
    if rest.size:
        rows, cols, cost = rows[rest], cols[rest], cost[rest]
        ur, ri = np.unique(rows, return_inverse=True)
        uc, ci = np.unique(cols, return_inverse=True)
        nr, nc = ur.size, uc.size
        if nr * nc <= 4096:
            blocks = [np.arange(rows.size)]
        else:  # solve each connected block of the candidate graph separately
            from scipy.sparse import coo_matrix
            from scipy.sparse.csgraph import connected_components

            graph = coo_matrix((np.ones(rows.size), (ri, ci + nr)), shape=(nr + nc, nr + nc))
            _, comp = connected_components(graph, directed=False)
            edge_comp = comp[ri]
            order = np.argsort(edge_comp, kind="stable")
            bounds = np.flatnonzero(np.diff(edge_comp[order])) + 1
            blocks = np.split(order, bounds)
        for block in blocks:
            br, bri = np.unique(ri[block], return_inverse=True)
            bc, bci = np.unique(ci[block], return_inverse=True)
            mat = np.full((br.size, bc.size), float(no_match))
            mat[bri, bci] = cost[block]
            r, c = linear_sum_assignment(mat)
            ok = mat[r, c] < no_match
            out_r.append(ur[br[r[ok]]])
            out_c.append(uc[bc[c[ok]]])
    return np.concatenate(out_r), np.concatenate(out_c)


def find_divisions(
    pp: np.ndarray,
    pc: np.ndarray,
    inter: np.ndarray,
    area_prev: np.ndarray,
    area_cur: np.ndarray,
    min_overlap: float = 0.35,
    min_coverage: float = 0.4,
    max_area_ratio: float = 0.8,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mother -> two daughters events between two consecutive frames.

    Parameters
    ----------
    pp, pc, inter : overlapping pairs (previous, current compact index) and
        their shared pixel counts, as from :func:`pair_overlaps`.
    area_prev, area_cur : object areas indexed by compact index.
    min_overlap : a daughter must have at least this fraction of its own area
        inside the mother's previous mask.
    min_coverage : the two daughters together must cover at least this
        fraction of the mother's area.
    max_area_ratio : each daughter's area is at most this fraction of the
        mother's (a cell that merely moved keeps about its area).

    Returns
    -------
    mother, daughter_1, daughter_2 : int64 compact indices (daughters in
        raster order of their compact index). A daughter candidate must also
        overlap the mother more than any other previous object, so a touching
        neighbour (which overlaps its own previous mask most) is never taken.
    """
    empty = np.zeros(0, np.int64)
    if pp.size == 0:
        return empty, empty, empty
    # the previous object each current object overlaps most (ties: lower index)
    order = np.lexsort((pp, -inter, pc))
    is_dom = np.zeros(pp.size, bool)
    head = np.ones(order.size, bool)
    head[1:] = pc[order][1:] != pc[order][:-1]
    is_dom[order[head]] = True
    cand = is_dom & (inter >= min_overlap * area_cur[pc]) & (area_cur[pc] <= max_area_ratio * area_prev[pp])
    ci = np.flatnonzero(cand)
    if ci.size < 2:
        return empty, empty, empty
    ci = ci[np.lexsort((pc[ci], -inter[ci], pp[ci]))]
    m = pp[ci]
    start = np.ones(ci.size, bool)
    start[1:] = m[1:] != m[:-1]
    starts = np.flatnonzero(start)
    counts = np.diff(np.append(starts, ci.size))
    s = starts[counts >= 2]
    if s.size == 0:
        return empty, empty, empty
    mothers = m[s]
    d1, d2 = pc[ci[s]], pc[ci[s + 1]]
    cover = inter[ci[s]] + inter[ci[s + 1]]
    ok = cover >= min_coverage * area_prev[mothers]
    mothers, d1, d2 = mothers[ok], d1[ok], d2[ok]
    lo, hi = np.minimum(d1, d2), np.maximum(d1, d2)
    return mothers.astype(np.int64), lo.astype(np.int64), hi.astype(np.int64)


def _paint(shape: tuple[int, int], cur: FrameObjects, track: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """The frame's objects drawn with their track ids (uint32), into ``out`` if given."""
    if out is None:
        out = np.zeros(shape, np.uint32)
    else:
        if out.shape != shape or out.dtype != np.uint32 or not out.flags.c_contiguous:
            raise ValueError("out must be a C-contiguous uint32 array of the frame's shape")
        out.fill(0)
    if cur.n:
        if track.max() > np.iinfo(np.uint32).max:
            raise OverflowError("more than 2**32 - 1 tracks")
        out.ravel()[cur.idx] = track.astype(np.uint32)[cur.comp]
    return out


def _merge_groups(
    pp: np.ndarray,
    pc: np.ndarray,
    inter: np.ndarray,
    area_prev: np.ndarray,
    area_cur: np.ndarray,
    min_overlap: float,
) -> list[tuple[int, np.ndarray]]:
    """Objects of frame t that hold two or more whole cells of frame t-1.

    Returns ``(c, members)`` pairs: compact index c of the merged object and
    the compact indices (frame t-1, ascending) of the cells merged in it.
    A member has at least ``min_overlap`` of its area inside c and overlaps c
    more than any other object; c covers at least half the members' area.
    """
    if pp.size == 0:
        return []
    order = np.lexsort((pc, -inter, pp))  # per previous object, its largest overlap first
    head = np.ones(order.size, bool)
    head[1:] = pp[order][1:] != pp[order][:-1]
    dom = order[head]
    dom = dom[inter[dom] >= min_overlap * area_prev[pp[dom]]]
    counts = np.bincount(pc[dom], minlength=area_cur.size)
    out = []
    for c in np.flatnonzero(counts >= 2).tolist():
        members = np.sort(pp[dom[pc[dom] == c]])
        if area_cur[c] >= 0.5 * area_prev[members].sum():
            out.append((c, members))
    return out


def _nearest_owner(pix: np.ndarray, under: np.ndarray, members: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Which member each pixel of a merged object goes to (index into ``members``).

    Parameters
    ----------
    pix : flat indices of the merged object's pixels
    under : compact index (frame t-1) of the object under each pixel
    members : compact indices of the merged cells
    shape : frame shape

    Returns
    -------
    int64 index into ``members`` per pixel: the member whose previous mask
    holds the pixel, else the member with the nearest such pixel.
    """
    from scipy import ndimage as ndi

    pos = np.searchsorted(members, under)
    pos = np.minimum(pos, members.size - 1)
    own = np.where(members[pos] == under, pos, -1)
    if (own >= 0).all():
        return own.astype(np.int64)
    y, x = np.divmod(pix, shape[1])
    y0, x0 = int(y.min()), int(x.min())
    box = np.full((int(y.max()) - y0 + 1, int(x.max()) - x0 + 1), -1, np.int64)
    box[y - y0, x - x0] = own
    _, (iy, ix) = ndi.distance_transform_edt(box < 0, return_indices=True)
    return box[iy[y - y0, x - x0], ix[y - y0, x - x0]].astype(np.int64)


@dataclass
class _OpenTrack:
    """A track that missed at least one frame, kept for gap closing."""

    last_frame: int
    idx: np.ndarray  # flat pixel indices of its last mask
    area: int
    cy: float
    cx: float


class Tracker:
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
        cells (``split_merges``). Keeps a fragment or a merged pair seen for
        the first time from making a division.
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
        and no division is recorded when they separate again.
    rejoin_min_area : float
        ``division_confirm``: a daughter unmatched in the next frame was
        absorbed by her sister when the sister's object now has at least
        this fraction of the two daughters' summed area (or covers
        ``merge_min_overlap`` of the lost daughter's mask).
    merge_max_frames : int
        ``split_merges``: a merge that lasts this many frames is accepted as
        one cell (one id goes on, the others end), so a cell that the
        segmentation cut in two for a while and then gives whole again is
        not kept cut for ever.

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
        self._merge_start: dict[int, int] = {}  # track id -> first frame of its current merge
        self._frame = 0
        # divisions still revocable: (daughter id, daughter id) -> (mother id, frame)
        self._pending: dict[tuple[int, int], tuple[int, int]] = {}
        self._alias: dict[int, int] = {}  # revoked daughter id -> mother id
        self._shape: tuple[int, int] | None = None
        self._prev: FrameObjects | None = None
        self._prev_labels: np.ndarray | None = None
        self._prev_track = np.zeros(1, np.int64)
        self._open: dict[int, _OpenTrack] = {}
        self._parent: list[int] = []
        self._first: list[int] = []
        self._last: list[int] = []

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
        labels = _check_labels(labels)
        if self._shape is None:
            self._shape = labels.shape
        elif labels.shape != self._shape:
            raise ValueError(f"frame shape {labels.shape} differs from {self._shape}")
        t = self._frame
        cur = frame_objects(labels)
        prev = self._prev
        n_prev = prev.n if prev is not None else 0
        rejoin: dict[int, tuple[int, int, int]] = {}
        pairs = None
        pp = pc = inter = np.zeros(0, np.int64)
        if cur.n and n_prev and self.split_merges:
            labels, cur, rejoin, pairs = self._split_merges(labels, cur, prev)
        self._pending = {k: v for k, v in self._pending.items() if t - v[1] <= self.division_confirm}
        track = np.zeros(cur.n + 1, np.int64)
        new_parent = np.full(cur.n + 1, -1, np.int64)  # parent track id of daughters
        matched_prev = np.zeros(n_prev + 1, bool)
        ended_prev = np.zeros(n_prev + 1, bool)  # mothers of a division
        taken = np.zeros(cur.n + 1, bool)  # daughters

        if cur.n:
            if n_prev:
                pp, pc, inter = pairs if pairs is not None else pair_overlaps(prev, self._prev_labels, cur)
                iou = inter / (prev.area[pp] + cur.area[pc] - inter)
            else:
                pp = pc = inter = np.zeros(0, np.int64)
                iou = np.zeros(0)
            rejoined = np.zeros(cur.n + 1, bool)
            for obj, (mother, a, b) in rejoin.items():
                rejoined[obj] = True
                ended_prev[np.isin(self._prev_track, (a, b))] = True
                self._revoke(mother, a, b, t)
            open_ids = sorted(self._open)
            oi, oc, o_iou, in_open = self._open_pairs(labels, cur, open_ids)

            if self.divisions and pp.size:
                mo, d1, d2 = find_divisions(
                    pp, pc, inter, prev.area, cur.area,
                    self.division_min_overlap, self.division_min_coverage, self.division_max_area_ratio,
                )  # fmt: skip
                if mo.size:
                    ok = self._not_reappearing(cur, in_open, pp, pc, inter, mo, d1, d2)
                    self._divide(mo[ok], d1[ok], d2[ok], taken, new_parent, ended_prev)

            # joint assignment: previous objects and open tracks (rows) to objects (columns)
            keep_p = (iou >= self.min_iou) & ~ended_prev[pp] & ~taken[pc] & ~rejoined[pc]
            keep_o = (o_iou >= self.min_iou) & ~taken[oc] & ~rejoined[oc]
            gaps = np.array([t - 1 - self._open[k].last_frame for k in open_ids], np.int64)
            rows = np.concatenate([pp[keep_p], n_prev + 1 + oi[keep_o]])
            cols = np.concatenate([pc[keep_p], oc[keep_o]])
            # an open track's IoU is discounted by 5 % per missed frame
            cost = np.concatenate(
                [1.0 - iou[keep_p], 1.0 - o_iou[keep_o] * _GAP_DISCOUNT ** gaps[oi[keep_o]].astype(np.float64)]
            )
            r, c = assign(rows, cols, cost, no_match=1.0)
            from_prev = r <= n_prev
            mr, mc = r[from_prev], c[from_prev]
            if self.divisions and mr.size:
                mr, mc = self._rescue_divisions(cur, prev, mr, mc, c, in_open, taken, new_parent, ended_prev)
            track[mc] = self._prev_track[mr]
            for obj, (mother, _a, _b) in rejoin.items():
                track[obj] = mother
            matched_prev[mr] = True
            for row, k in zip((r[~from_prev] - n_prev - 1).tolist(), c[~from_prev].tolist(), strict=True):
                tid = open_ids[row]
                track[k] = tid
                del self._open[tid]
            if self._open:
                self._close_by_distance(t, cur, track, taken)

        # tracks unmatched in this frame become open (or end)
        if n_prev:
            lost = np.flatnonzero(~matched_prev & ~ended_prev)
            lost = lost[lost > 0]
            if self._pending and lost.size:
                lost = self._revoke_lost(lost, track, t, (pp, pc, inter), cur.area)
            if self.max_gap > 0 and lost.size:
                self._open_tracks(t - 1, prev, lost)
        if self._open:
            self._open = {k: o for k, o in self._open.items() if t - o.last_frame <= self.max_gap}

        self._new_ids(cur, track, new_parent, t)
        out = _paint(labels.shape, cur, track, out)
        self._prev = cur
        if self._prev_labels is not None and self._prev_labels.dtype == labels.dtype:
            np.copyto(self._prev_labels, labels)  # reuse the buffer
        else:
            self._prev_labels = labels.copy()
        self._prev_track = track
        self._frame = t + 1
        return out

    def _new_ids(self, cur: FrameObjects, track: np.ndarray, new_parent: np.ndarray, t: int) -> None:
        """Give new ids to births and daughters (raster order of their first
        pixel), record them in the lineage and update every track's last frame."""
        new = np.flatnonzero(track == 0)
        new = new[new > 0]
        if new.size:
            new = new[np.argsort(cur.first[new], kind="stable")]
            start = len(self._parent) + 1
            track[new] = np.arange(start, start + new.size, dtype=np.int64)
            self._parent.extend(np.maximum(new_parent[new], 0).tolist())
            self._first.extend([t] * new.size)
            self._last.extend([t] * new.size)
            self._record_pending(new_parent, track, t)
        for tid in track[1:].tolist():
            self._last[tid - 1] = t

    def _split_merges(
        self, labels: np.ndarray, cur: FrameObjects, prev: FrameObjects
    ) -> tuple[np.ndarray, FrameObjects, dict[int, tuple[int, int, int]], tuple | None]:
        """Split objects that are two or more cells of frame t-1 merged by the segmentation.

        An object c of frame t is a merge when at least two objects of frame
        t-1 each have ``merge_min_overlap`` of their area inside c, c is the
        object each of them overlaps most, and c covers at least half their
        summed area. Its pixels are given to those cells: a pixel inside one
        of their previous masks goes to that cell, any other pixel to the
        nearest such mask, so every cell keeps its id through the merge.

        Exception: when the merged cells are exactly the two daughters of a
        division still pending (:attr:`division_confirm`), the division was
        one frame's over-segmentation and is revoked instead (returned in
        ``rejoin``: compact index -> (mother, daughter, daughter)).

        Returns the (possibly relabelled copy of the) label frame, its
        objects, ``rejoin`` (compact indices of the returned objects) and
        the overlaps with frame t-1 (:func:`pair_overlaps`) when the frame
        was not changed, else None.
        """
        pp, pc, inter = pair_overlaps(prev, self._prev_labels, cur)
        groups = _merge_groups(pp, pc, inter, prev.area, cur.area, self.merge_min_overlap)
        if not groups:
            return labels, cur, {}, (pp, pc, inter)
        sisters = {frozenset(k): (k, v[0]) for k, v in self._pending.items()}
        t = self._frame
        rejoin_at: dict[int, tuple[int, int, int]] = {}  # flat first pixel -> (mother, a, b)
        splits: list[tuple[int, np.ndarray]] = []
        merge_start: dict[int, int] = {}
        for c, members in groups:
            tids = frozenset(self._prev_track[members].tolist())
            if tids in sisters:
                (a, b), mother = sisters[tids]
                rejoin_at[int(cur.first[c])] = (mother, a, b)
                continue
            members = members[self._old_enough(self._prev_track[members])]
            if members.size < 2:
                continue
            start = min(self._merge_start.get(k, t) for k in self._prev_track[members].tolist())
            if t - start >= self.merge_max_frames:  # merged for too long: one cell after all
                continue
            splits.append((c, members))
            merge_start.update({k: start for k in self._prev_track[members].tolist()})
        self._merge_start = merge_start
        if not splits and not rejoin_at:
            return labels, cur, {}, (pp, pc, inter)
        out = labels.astype(np.int64)
        next_label = int(out.max()) + 1
        if splits:
            flag = np.zeros(cur.n + 1, bool)
            flag[[c for c, _ in splits]] = True
            sel = np.flatnonzero(flag[cur.comp])
            sel = sel[np.argsort(cur.comp[sel], kind="stable")]
            comp_sel = cur.comp[sel]
            for c, members in splits:
                lo, hi = np.searchsorted(comp_sel, [c, c + 1])
                pix = cur.idx[sel[lo:hi]]
                owner = _nearest_owner(pix, prev.compact_at(self._prev_labels, pix), members, labels.shape)
                out.ravel()[pix] = next_label + owner
                next_label += members.size
        new = frame_objects(out)
        by_first = {int(f): k for k, f in enumerate(new.first.tolist()) if k > 0}
        rejoin = {by_first[f]: v for f, v in rejoin_at.items()}
        return out, new, rejoin, None

    def _old_enough(self, tids: np.ndarray) -> np.ndarray:
        """True for tracks seen for at least ``division_min_age`` frames up to
        the previous frame, or present since the first frame (age unknown)."""
        first = np.array([self._first[k - 1] for k in tids.tolist()], np.int64)
        return (self._frame - first >= self.division_min_age) | (first == 0)

    def _record_pending(self, new_parent: np.ndarray, track: np.ndarray, t: int) -> None:
        """Remember this frame's divisions as pending (revocable) for ``division_confirm`` frames."""
        if self.division_confirm <= 0:
            return
        daughters = np.flatnonzero(new_parent > 0)
        by_mother: dict[int, list[int]] = {}
        for k in daughters.tolist():
            by_mother.setdefault(int(new_parent[k]), []).append(int(track[k]))
        for mother, ids in by_mother.items():
            if len(ids) == 2:
                self._pending[(min(ids), max(ids))] = (mother, t)

    def _revoke(self, mother: int, a: int, b: int, t: int) -> None:
        """Undo a pending division: daughters a and b were pieces of the mother."""
        self._pending.pop((min(a, b), max(a, b)), None)
        for d in (a, b):
            self._alias[d] = mother
            self._open.pop(d, None)
        self._last[mother - 1] = t

    def _revoke_lost(
        self,
        lost: np.ndarray,
        track: np.ndarray,
        t: int,
        pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
        cur_area: np.ndarray,
    ) -> np.ndarray:
        """Revoke pending divisions whose one daughter was absorbed by the other.

        A cell split in two by one frame's over-segmentation looks like a
        division; in the next frame the segmentation gives the whole cell
        again, matched to one piece, and the other piece is unmatched. When
        the object carrying the surviving piece covers at least
        ``merge_min_overlap`` of the lost piece's last mask, the pieces
        joined again: the survivor continues the mother's id. (A daughter
        missed by the segmentation is not covered by her sister, so a true
        division is kept and the daughter can come back by gap closing.)

        Parameters
        ----------
        lost : compact indices (frame t-1) of tracks unmatched in frame t
        track : track id per compact index of frame t (updated in place)
        t : frame index
        pairs : overlaps (pp, pc, inter) between frames t-1 and t

        Returns the lost tracks still to be handled (opened or ended).
        """
        pp, pc, inter = pairs
        prev_of = {int(v): k for k, v in enumerate(self._prev_track.tolist()) if k > 0}
        lost_ids = {int(self._prev_track[k]): int(k) for k in lost.tolist()}
        alive = {int(v): k for k, v in enumerate(track.tolist()) if k > 0 and v > 0}
        lost_k = set(lost_ids.values())
        covered = {(int(a), int(b)): int(n) for a, b, n in zip(pp.tolist(), pc.tolist(), inter.tolist())
                   if a in lost_k}
        gone: set[int] = set()
        for (a, b), (mother, _t0) in list(self._pending.items()):
            for dead, other in ((a, b), (b, a)):
                if dead not in lost_ids or other not in alive:
                    continue
                k = lost_ids[dead]
                k_other = prev_of.get(other, 0)
                whole = self._prev.area[k] + self._prev.area[k_other]
                if (
                    covered.get((k, alive[other]), 0) >= self.merge_min_overlap * self._prev.area[k]
                    or cur_area[alive[other]] >= self.rejoin_min_area * whole
                ):
                    track[alive[other]] = mother
                    self._revoke(mother, a, b, t)
                    gone.add(dead)
                    break
        if not gone:
            return lost
        return lost[~np.isin(self._prev_track[lost], list(gone))]

    def final_id(self, tid: int) -> int:
        """The id a provisional track id ends up as (after revoked divisions)."""
        while tid in self._alias:
            tid = self._alias[tid]
        return tid

    def relabel_lut(self) -> np.ndarray | None:
        """Lookup table provisional id -> final id (uint32), or None if every id is final.

        :meth:`update` returns frames labelled with provisional ids: a
        division revoked later (the "daughters" joined again within
        ``division_confirm`` frames) renames its daughters' pixels to the
        mother's id. Apply ``lut[frame]`` to every returned frame (e.g. by
        tracking twice, as the track job does) to get the final labels that
        match :meth:`lineage`. The tracker is deterministic, so a second
        ``Tracker`` with the same parameters fed the same frames gives the
        same provisional frames again: streaming twice needs no frame store.
        """
        if not self._alias:
            return None
        lut = np.arange(len(self._parent) + 1, dtype=np.uint32)
        for tid in self._alias:
            lut[tid] = self.final_id(tid)
        return lut

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

    def _divide(
        self,
        mothers: np.ndarray,
        d1: np.ndarray,
        d2: np.ndarray,
        taken: np.ndarray,
        new_parent: np.ndarray,
        ended_prev: np.ndarray,
    ) -> np.ndarray:
        """Record divisions (compact indices) in the per-frame bookkeeping arrays.

        Only mothers whose track is at least ``division_min_age`` frames old
        divide (a division is never inferred for a cell just seen for the
        first time, e.g. a merged pair that separates); a track present since
        the first frame has an unknown age and counts as old. Returns the
        mothers that divided.
        """
        old = self._old_enough(self._prev_track[mothers])
        mothers, d1, d2 = mothers[old], d1[old], d2[old]
        ended_prev[mothers] = True
        taken[d1] = taken[d2] = True
        new_parent[d1] = self._prev_track[mothers]
        new_parent[d2] = self._prev_track[mothers]
        return mothers

    def _not_reappearing(
        self,
        cur: FrameObjects,
        in_open: np.ndarray,
        pp: np.ndarray,
        pc: np.ndarray,
        inter: np.ndarray,
        mo: np.ndarray,
        d1: np.ndarray,
        d2: np.ndarray,
    ) -> np.ndarray:
        """False for divisions where a 'daughter' is a cell coming back after a gap.

        A cell reappearing after a dropout next to (or merged, in the previous
        frame, into) a cell m can look like m's daughter. If at least
        ``division_min_overlap`` of a daughter's area, or more of it than lies
        inside m's mask, lies inside the last mask of an open track, it is not
        a division.
        """
        key = pp * (cur.n + 1) + pc
        order = np.argsort(key)

        def keep(d: np.ndarray) -> np.ndarray:
            pos = order[np.searchsorted(key, mo * (cur.n + 1) + d, sorter=order)]
            return (in_open[d] < inter[pos]) & (in_open[d] < self.division_min_overlap * cur.area[d])

        return keep(d1) & keep(d2)

    def _rescue_divisions(
        self,
        cur: FrameObjects,
        prev: FrameObjects,
        r: np.ndarray,
        c: np.ndarray,
        all_matched: np.ndarray,
        in_open: np.ndarray,
        taken: np.ndarray,
        new_parent: np.ndarray,
        ended_prev: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Divisions whose second daughter left the mother's mask.

        When the mother moved before dividing, one daughter can lie mostly
        outside her previous mask: the mother is then matched (IoU) to the
        other daughter and the moved one is left unmatched. A matched pair
        (m, c1) becomes a division m -> (c1, c2) when c1 and an unmatched c2
        are each at most ``division_max_area_ratio`` of m's area, together
        0.5 .. 1.5 of it, c2's centroid lies within
        ``division_search_radius`` equivalent radii of m's, and neither lies
        mostly (``division_min_overlap``) inside an open track's last mask (a
        cell coming back). Each mother and each c2 is used once (nearest
        first, Hungarian).

        Returns the remaining (not dividing) matched pairs; updates ``taken``,
        ``new_parent`` and ``ended_prev`` in place.
        """
        free = np.ones(cur.n + 1, bool)
        free[0] = False
        free[all_matched] = False
        free[taken] = False
        ratio = self.division_max_area_ratio
        back = in_open >= self.division_min_overlap * cur.area
        free &= ~back
        u = np.flatnonzero(free)
        small = (cur.area[c] <= ratio * prev.area[r]) & ~back[c]
        if u.size == 0 or not small.any():
            return r, c
        mr, mc = r[small], c[small]
        radius = np.sqrt(prev.area[mr] / np.pi)
        dy = cur.cy[u][None, :] - prev.cy[mr][:, None]
        dx = cur.cx[u][None, :] - prev.cx[mr][:, None]
        dist = np.hypot(dy, dx) / (self.division_search_radius * radius[:, None])
        total = (cur.area[mc][:, None] + cur.area[u][None, :]) / prev.area[mr][:, None]
        ok = (dist <= 1.0) & (cur.area[u][None, :] <= ratio * prev.area[mr][:, None]) & (total >= 0.5) & (total <= 1.5)
        i, j = np.nonzero(ok)
        if i.size == 0:
            return r, c
        ri, cj = assign(i, j, dist[i, j], no_match=2.0)
        mothers = self._divide(mr[ri], mc[ri], u[cj], taken, new_parent, ended_prev)
        keep = ~np.isin(r, mothers)
        return r[keep], c[keep]

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
            self._open[tid] = _OpenTrack(
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
        gaps = np.array([t - 1 - self._open[k].last_frame for k in tids], np.float64)
        d = np.hypot(oy[:, None] - cur.cy[free][None, :], ox[:, None] - cur.cx[free][None, :])
        i, j = np.nonzero(d <= self.max_distance)
        if i.size == 0:
            return
        cost = d[i, j] / self.max_distance + 1e-3 * gaps[i]
        r, c = assign(i, j, cost, no_match=2.0)
        for row, col in zip(r.tolist(), c.tolist(), strict=True):
            track[free[col]] = tids[row]
            del self._open[tids[row]]

    def lineage(self) -> pd.DataFrame:
        """Lineage table of all tracks so far.

        Returns
        -------
        DataFrame with int64 columns ``cell, parent, first_frame, last_frame``
        (CTC man_track semantics: ``parent`` 0 = none), sorted by cell.
        """
        import pandas as pd

        return pd.DataFrame(self.lineage_columns())

    def lineage_columns(self) -> dict[str, np.ndarray]:
        """The columns of :meth:`lineage` (int64 arrays), without pandas."""
        n = len(self._parent)
        cell = np.arange(1, n + 1, dtype=np.int64)
        parent = np.asarray(self._parent, np.int64)
        first = np.asarray(self._first, np.int64)
        last = np.asarray(self._last, np.int64)
        if self._alias:
            for tid in self._alias:  # a revoked daughter's frames belong to the mother
                root = self.final_id(tid)
                first[root - 1] = min(first[root - 1], first[tid - 1])
                last[root - 1] = max(last[root - 1], last[tid - 1])
            parent = np.array([self.final_id(p) if p else 0 for p in parent.tolist()], np.int64)
            keep = np.ones(n, bool)
            keep[np.array(sorted(self._alias), np.int64) - 1] = False
            cell, parent, first, last = cell[keep], parent[keep], first[keep], last[keep]
        return {"cell": cell, "parent": parent, "first_frame": first, "last_frame": last}


def write_lineage(columns: dict[str, np.ndarray], path: str) -> None:
    """Integer lineage columns (:meth:`Tracker.lineage_columns`) as CSV, written
    atomically: the same bytes as ``lineage.to_csv(path, index=False)``."""
    lines = [",".join(columns)]
    lines += [",".join(map(str, row)) for row in zip(*(c.tolist() for c in columns.values()))]
    write_text(path, "\n".join(lines) + "\n")


def track_frames(frames: Iterable[np.ndarray], **params) -> Iterator[np.ndarray]:
    """Track a stream of label frames; yields each tracked frame (uint32).

    Parameters
    ----------
    frames : iterable of (Y, X) integer label images
    **params : keyword arguments of :class:`Tracker`

    Yields
    ------
    (Y, X) uint32 track-id images, one per input frame, as soon as each is
    tracked. The generator's return value (``StopIteration.value``, or the
    result of ``yield from``) is the lineage table; use :class:`Tracker`
    directly to get it more conveniently. The ids are provisional: a
    division revoked later leaves its daughters' ids in the frames already
    yielded (see :meth:`Tracker.relabel_lut`).
    """
    tracker = Tracker(**params)
    for labels in frames:
        yield tracker.update(labels)
    return tracker.lineage()


def parent_of(lineage: pd.DataFrame) -> dict[int, int]:
    """Map every cell id of a lineage table to its parent id (0 = none)."""
    return {int(c): int(p) for c, p in zip(lineage["cell"], lineage["parent"], strict=True)}


def lineage_roots(lineage: pd.DataFrame) -> dict[int, int]:
    """Map every cell id to the id of its oldest ancestor (itself if no parent)."""
    parent = parent_of(lineage)
    root: dict[int, int] = {}
    for cell in parent:
        chain = []
        c = cell
        while c not in root and parent.get(c, 0) != 0 and len(chain) <= len(parent):
            chain.append(c)
            c = parent[c]
        r = root.get(c, c)
        for x in chain:
            root[x] = r
        root[cell] = r
    return root


def join_lineage(df: pd.DataFrame, lineage: pd.DataFrame, cell_column: str = "cell") -> pd.DataFrame:
    """Add whole-lineage columns to a per-cell table (e.g. traces).

    Parameters
    ----------
    df : DataFrame with a ``cell_column`` of track ids
    lineage : lineage table (``cell, parent, ...``) from :meth:`Tracker.lineage`
    cell_column : name of the track-id column in ``df``

    Returns
    -------
    A copy of ``df`` with ``parent`` (0 = none), ``lineage_root`` (id of the
    oldest ancestor; a mother's and all her descendants' rows share it, so
    grouping by it gives whole-lineage curves) and ``generation`` (0 for a
    root, 1 for its daughters, ...). Cells missing from the lineage are
    their own root, generation 0.
    """
    parent = parent_of(lineage)
    root = lineage_roots(lineage)
    gen: dict[int, int] = {}
    for cell in parent:
        g, c = 0, cell
        while parent.get(c, 0) != 0 and g <= len(parent):
            g += 1
            c = parent[c]
        gen[cell] = g
    out = df.copy()
    cells = out[cell_column].astype(np.int64)
    out["parent"] = cells.map(parent).fillna(0).astype(np.int64)
    out["lineage_root"] = cells.map(root).fillna(cells).astype(np.int64)
    out["generation"] = cells.map(gen).fillna(0).astype(np.int64)
    return out


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
        labels = _check_labels(labels)
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
        out = np.zeros(labels.shape, np.uint32)
        out.ravel()[cur.idx] = track.astype(np.uint32)[cur.comp]
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
