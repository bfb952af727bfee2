"""Cells merged by the segmentation: objects split along the previous frame's masks.

:func:`merge_groups` finds the objects of frame t that hold two or more
whole cells of frame t-1, :func:`partial_merges` those that hold one cell and
part of a neighbour that shrank (a daughter born into the neighbour's
object); :class:`MergesMixin` splits them (each pixel to the cell whose
previous mask holds it, else to the nearest such mask, :func:`nearest_owner`),
so touching cells keep their ids through a merge and a mother's two pieces
show as her daughters, or rejoins the two daughters of a division still
pending.
"""

from __future__ import annotations

import numpy as np

from pyama_flow.tracking.objects import (
    FrameObjects,
    dominant_pairs,
    frame_objects,
    pair_overlaps,
    split_objects,
    split_overlaps,
)


def merge_groups(
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


#: a partial merge: the part of a shrunk cell's previous mask inside a neighbour's object (fraction of its area)
PARTIAL_MIN_PART = 0.25
#: ... the growth of that object over the neighbour's previous area, as a fraction of that part
PARTIAL_MIN_GROWTH = 0.4
#: ... and how much of the shrunk cell her own object and that part cover together
PARTIAL_MIN_COVER = 0.5


def partial_merges(
    pp: np.ndarray,
    pc: np.ndarray,
    inter: np.ndarray,
    area_prev: np.ndarray,
    area_cur: np.ndarray,
    min_overlap: float,
    max_area_ratio: float,
    min_part: float = PARTIAL_MIN_PART,
    min_growth: float = PARTIAL_MIN_GROWTH,
    min_cover: float = PARTIAL_MIN_COVER,
    exclude: np.ndarray | None = None,
) -> list[tuple[int, np.ndarray]]:
    """Objects of frame t that hold one cell of frame t-1 and a part of a neighbour that shrank.

    A daughter is often born into her mother's neighbour: the segmentation
    merges her with the neighbour's cell while her sister is an object of
    her own, so the mother seems to shrink, and the division is never seen.
    An object c is such a partial merge when the cell a of frame t-1 that
    c overlaps most has ``min_overlap`` of her area in c (a goes on in c),
    and c also holds at least ``min_part`` of the area of another
    cell b that shrank: of the objects that overlap b more than any other
    cell, the one b overlaps most (her own object: the sister) is at most
    ``max_area_ratio`` of b's area (a cell without one vanished: no
    partial merge), and b's overlaps with it and with c cover
    ``min_cover`` of her. Also, c is larger than a was by at least
    ``min_growth`` of b's part (c took it in; a neighbour that merely
    moved into b's old place keeps its area). Splitting c along the
    previous masks gives b's part back to b, so the division detector sees
    b's two pieces.

    Parameters
    ----------
    pp, pc, inter : overlapping pairs (previous, current compact index) and
        their shared pixel counts (:func:`~pyama_flow.tracking.objects.pair_overlaps`).
    area_prev, area_cur : object areas by compact index.
    min_overlap : as ``merge_min_overlap`` of :class:`~pyama_flow.tracking.tracker.Tracker`.
    max_area_ratio : as ``division_max_area_ratio``.
    min_part : fraction of b's area inside c.
    min_growth : growth of c over a's area, as a fraction of b's part in c.
    min_cover : fraction of b's area in her own object and c together.
    exclude : (n+1,) bool, objects of frame t not to consider (merges already split).

    Returns
    -------
    ``(c, members)`` pairs as :func:`merge_groups`: a and the shrunk cells,
    compact indices of frame t-1, ascending.
    """
    if pp.size == 0:
        return []
    # the previous object each current object overlaps most (ties: lower index)
    dom = dominant_pairs(pp, pc, inter)
    owner = np.zeros(area_cur.size, np.int64)
    owner_inter = np.zeros(area_cur.size, np.int64)
    owner[pc[dom]] = pp[dom]
    owner_inter[pc[dom]] = inter[dom]
    # cells that shrank: the own object they overlap most (ties: the higher
    # index) is at most max_area_ratio of them (a cell without one vanished)
    own = np.flatnonzero(dom)
    own = own[np.lexsort((-pc[own], -inter[own], pp[own]))]
    first = np.ones(own.size, bool)
    first[1:] = pp[own][1:] != pp[own][:-1]
    own = own[first]
    shrunk = np.zeros(area_prev.size, bool)
    shrunk[pp[own]] = area_cur[pc[own]] <= max_area_ratio * area_prev[pp[own]]
    a = owner[pc]
    part = (
        ~dom
        & shrunk[pp]
        & (inter >= min_part * area_prev[pp])
        & (owner_inter[pc] >= min_overlap * area_prev[a])
    )
    if exclude is not None:
        part &= ~exclude[pc]
    # c grew by what it took from b (a neighbour that merely moved into b's place keeps its area)
    part &= area_cur[pc] >= area_prev[a] + min_growth * inter
    # b's two pieces: her own object and her part in c together cover her
    own_inter = np.zeros(area_prev.size, np.int64)
    own_inter[pp[own]] = inter[own]
    part &= own_inter[pp] + inter >= min_cover * area_prev[pp]
    out = []
    for c in np.unique(pc[part]).tolist():
        cells = np.append(pp[part & (pc == c)], owner[c])
        out.append((c, np.unique(cells)))
    return out


def nearest_owner(pix: np.ndarray, under: np.ndarray, members: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Which member each pixel of a merged object goes to (index into ``members``).

    Parameters
    ----------
    pix : flat indices of the merged object's pixels (ascending)
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
    x0 = int(x.min())
    y -= y[0]  # pix ascending: the first pixel is on the top row
    x -= x0
    box = np.full((int(y[-1]) + 1, int(x.max()) + 1), -1, np.int32)
    box[y, x] = own
    iy, ix = ndi.distance_transform_edt(box < 0, return_distances=False, return_indices=True)
    miss = np.flatnonzero(own < 0)
    own = own.astype(np.int64)
    own[miss] = box[iy[y[miss], x[miss]], ix[y[miss], x[miss]]]
    return own


class MergesMixin:
    """Merge splitting of a :class:`~pyama_flow.tracking.tracker.Tracker`.

    State (set by ``Tracker.__init__``): ``_merge_start`` (track id -> first
    frame of its current merge), ``_pending``, ``_parent``, ``_prev_labels``,
    ``_prev_track``, ``_frame``, ``merge_min_overlap``, ``merge_max_frames``.
    """

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
        division still pending (``division_confirm``), the division was
        one frame's over-segmentation and is revoked instead (returned in
        ``rejoin``: compact index -> (mother, daughter, daughter)).

        With ``divisions``, the objects of :func:`partial_merges` (one cell
        and part of a neighbour that shrank, all of them ``division_min_age``
        frames old) are split in the same way; they do not count as merges
        for ``merge_max_frames``.

        Returns the (possibly relabelled copy of the) label frame, its
        objects, ``rejoin`` (compact indices of the returned objects) and
        their overlaps with frame t-1 (as :func:`~pyama_flow.tracking.objects.pair_overlaps`
        counts them).
        """
        pp, pc, inter = pair_overlaps(prev, self._prev_labels, cur)
        groups = merge_groups(pp, pc, inter, prev.area, cur.area, self.merge_min_overlap)
        partial = self._partial_merges(cur, prev, (pp, pc, inter), groups) if self.divisions else []
        if not groups and not partial:
            return labels, cur, {}, (pp, pc, inter)
        splits, rejoin_at = self._plan_merges(cur, groups) if groups else ([], {})
        splits += partial
        pairs = (pp, pc, inter)
        if splits:
            labels, cur, pairs = self._split_along_previous(labels, cur, prev, splits, pairs)
        by_first = {int(f): k for k, f in enumerate(cur.first.tolist()) if k > 0}
        rejoin = {by_first[f]: v for f, v in rejoin_at.items()}
        return labels, cur, rejoin, pairs

    def _partial_merges(
        self,
        cur: FrameObjects,
        prev: FrameObjects,
        pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
        groups: list[tuple[int, np.ndarray]],
    ) -> list[tuple[int, np.ndarray]]:
        """The objects of :func:`partial_merges` (not already in ``groups``) whose cells are all
        ``division_min_age`` frames old, as ``(c, members)`` to split."""
        exclude = np.zeros(cur.n + 1, bool)
        exclude[[c for c, _ in groups]] = True
        found = partial_merges(
            *pairs, prev.area, cur.area, self.merge_min_overlap, self.division_max_area_ratio, exclude=exclude
        )
        return [(c, m) for c, m in found if self._old_enough(self._prev_track[m]).all()]

    def _plan_merges(
        self, cur: FrameObjects, groups: list[tuple[int, np.ndarray]]
    ) -> tuple[list[tuple[int, np.ndarray]], dict[int, tuple[int, int, int]]]:
        """Which merged objects to split and which rejoin the daughters of a pending division.

        Parameters
        ----------
        cur : objects of frame t
        groups : merged objects and their cells of frame t-1, from :func:`merge_groups`

        Returns
        -------
        splits : ``(c, members)`` for every object c to split among the cells
            ``members`` (compact indices of frame t-1), leaving out cells too
            young (``division_min_age``, except as :meth:`_splittable`
            allows) and merges that have lasted
            ``merge_max_frames`` frames and as long as the cells had been
            seen apart before (accepted as one cell)
        rejoin_at : flat index of the first pixel of each object that is the
            two daughters of a pending division joined again -> (mother,
            daughter, daughter)

        Updates ``_merge_start`` to the merges still being split.
        """
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
            members = members[self._splittable(self._prev_track[members])]
            if members.size < 2:
                continue
            cells = self._prev_track[members].tolist()
            start = min(self._merge_start.get(k, t) for k in cells)
            # frames the cells were seen apart before the merge: as much evidence
            # that they are two cells as the merge is that they are one
            apart = min(start - self._first[k - 1] for k in cells)
            if t - start >= max(self.merge_max_frames, apart):  # merged for too long: one cell after all
                continue
            splits.append((c, members))
            merge_start.update({k: start for k in cells})
        self._merge_start = merge_start
        return splits, rejoin_at

    def _splittable(self, tids: np.ndarray) -> np.ndarray:
        """Which cells (track ids) of one merged object keep their own id through the merge.

        Those at least ``division_min_age`` frames old; in a merge of exactly
        two cells that are not sisters, also a daughter of a division of the
        last ``division_min_age`` frames: a just-born daughter that the
        segmentation merges with a neighbour, while her sister is seen apart,
        is a cell of her own (were she a piece of her mother cut off for a
        frame, she would join her sister, not a neighbour: the revoked
        divisions). Not when one of the two was split out of another merge
        in the previous frame (``_merge_start`` differs): pieces of a split
        are no evidence of a division. Young cells in larger merged clumps,
        and cells new without a parent (births), are not split out.
        """
        ok = self._old_enough(tids)
        if tids.size != 2 or ok.all():
            return ok
        cells = tids.tolist()
        parents = [self._parent[k - 1] for k in cells]
        if parents[0] == parents[1]:  # sisters (or two births): not split
            return ok
        if self._merge_start.get(cells[0]) != self._merge_start.get(cells[1]):
            return ok
        return ok | (np.array(parents) > 0)

    def _split_along_previous(
        self,
        labels: np.ndarray,
        cur: FrameObjects,
        prev: FrameObjects,
        splits: list[tuple[int, np.ndarray]],
        pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
    ) -> tuple[np.ndarray, FrameObjects, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Relabel the pixels of each merged object by the cell they belong to.

        Parameters
        ----------
        labels : frame t's labels (not changed)
        cur, prev : objects of frames t and t-1
        splits : ``(c, members)`` pairs from :meth:`_plan_merges`
        pairs : overlaps (pp, pc, inter) between frames t-1 and t

        Returns
        -------
        A relabelled copy of ``labels`` (each cell of a split object gets a
        new label above every label of the frame), its objects and its
        overlaps with frame t-1: what :func:`~pyama_flow.tracking.objects.frame_objects`
        and :func:`~pyama_flow.tracking.objects.pair_overlaps` give for it,
        updated from the split objects' pixels only.
        """
        # the largest label: the lookup table's last entry (else count)
        next_label = (cur.lut.size if cur.uniq is None else int(labels.max()) + 1)
        top = next_label + sum(int(m.size) for _, m in splits)
        dtype = labels.dtype if top <= np.iinfo(labels.dtype).max else np.int64
        out = np.array(labels, dtype=dtype, order="C")  # a copy, flat indices as in cur.idx
        flag = np.zeros(cur.n + 1, bool)
        flag[[c for c, _ in splits]] = True
        sel = np.flatnonzero(flag[cur.comp])
        sel = sel[np.argsort(cur.comp[sel], kind="stable")]
        comp_sel = cur.comp[sel]
        pieces, unders = [], []
        for c, members in splits:
            lo, hi = np.searchsorted(comp_sel, [c, c + 1])
            at = sel[lo:hi]
            pix = cur.idx[at]
            under = prev.compact_at(self._prev_labels, pix)
            owner = nearest_owner(pix, under, members, out.shape)
            out.ravel()[pix] = next_label + owner
            pieces.append((c, at, owner, next_label))
            unders.append(under)
            next_label += members.size
        if cur.uniq is not None:  # huge label values: count again
            new = frame_objects(out)
            return out, new, pair_overlaps(prev, self._prev_labels, new)
        new, old_to_new = split_objects(cur, out.shape[1], pieces)
        parts = [(under, new.lut[label + owner]) for (_, _, owner, label), under in zip(pieces, unders, strict=True)]
        return out, new, split_overlaps(pairs, old_to_new, parts, new.n)
