"""Cell divisions: found, second-chance, and revoked when they were over-segmentation.

:func:`find_divisions` finds mothers whose mask holds two daughters between
two consecutive frames. :class:`DivisionsMixin` gives the
:class:`~pyama_flow.tracking.tracker.Tracker` the checks around it (old
enough mothers, no daughter that is an open track coming back), the
second-chance divisions of a mother that moved before dividing, and the
revocable divisions of ``division_confirm``: daughters that join again, or
one absorbed by the other, were one cell cut in two by the segmentation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pyama_flow.tracking.assign import assign
from pyama_flow.tracking.objects import dominant_pairs

if TYPE_CHECKING:
    from pyama_flow.tracking.objects import FrameObjects


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
        their shared pixel counts, as from :func:`~pyama_flow.tracking.objects.pair_overlaps`.
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
    is_dom = dominant_pairs(pp, pc, inter)
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


class DivisionsMixin:
    """Divisions of a :class:`~pyama_flow.tracking.tracker.Tracker`.

    State (set by ``Tracker.__init__``): ``_pending`` (daughter ids ->
    (mother id, frame) of the divisions still revocable), ``_alias``,
    ``_open``, ``_last``, ``_prev``, ``_prev_track`` and the ``division_*``,
    ``merge_min_overlap`` and ``rejoin_min_area`` parameters.
    """

    def _detect_divisions(
        self,
        cur: FrameObjects,
        prev: FrameObjects,
        pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
        in_open: np.ndarray,
        taken: np.ndarray,
        new_parent: np.ndarray,
        ended_prev: np.ndarray,
    ) -> None:
        """Divisions between frames t-1 and t (:func:`find_divisions`), recorded in place.

        Parameters
        ----------
        cur, prev : objects of frames t and t-1
        pairs : overlaps (pp, pc, inter) between frames t-1 and t
        in_open : per compact index of frame t, the largest overlap with an
            open track's last mask (:meth:`~pyama_flow.tracking.gaps.GapsMixin._open_pairs`)
        taken, new_parent, ended_prev : the frame's bookkeeping (see :meth:`_divide`)
        """
        pp, pc, inter = pairs
        mo, d1, d2 = find_divisions(
            pp, pc, inter, prev.area, cur.area,
            self.division_min_overlap, self.division_min_coverage, self.division_max_area_ratio,
        )  # fmt: skip
        if mo.size:
            ok = self._not_reappearing(cur, in_open, pp, pc, inter, mo, d1, d2)
            self._divide(mo[ok], d1[ok], d2[ok], taken, new_parent, ended_prev)

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

    def _rejoin(
        self, rejoin: dict[int, tuple[int, int, int]], n: int, ended_prev: np.ndarray, t: int
    ) -> np.ndarray:
        """Revoke the pending divisions whose daughters joined again into one object.

        Parameters
        ----------
        rejoin : compact index (frame t) of each joined object -> (mother,
            daughter, daughter), from :meth:`~pyama_flow.tracking.merges.MergesMixin._split_merges`
        n : number of objects of frame t
        ended_prev : per compact index of frame t-1, tracks ending there;
            the daughters' objects are set (in place)
        t : frame index

        Returns
        -------
        (n+1,) bool, the joined objects (they continue the mother's id).
        """
        rejoined = np.zeros(n + 1, bool)
        for obj, (mother, a, b) in rejoin.items():
            rejoined[obj] = True
            ended_prev[np.isin(self._prev_track, (a, b))] = True
            self._revoke(mother, a, b, t)
        return rejoined

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
