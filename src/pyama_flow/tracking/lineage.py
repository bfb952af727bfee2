"""Lineage of the tracks: parents, first and last frames, final ids; lineage tables.

:class:`LineageMixin` is the :class:`~pyama_flow.tracking.tracker.Tracker`'s
bookkeeping of its tracks (new ids, ages, the lineage table, the final ids
after revoked divisions). The functions work on a lineage table
(``cell, parent, first_frame, last_frame``, CTC ``man_track`` semantics):
:func:`write_lineage` writes it without pandas, :func:`parent_of`,
:func:`lineage_roots` and :func:`join_lineage` give each cell its parent,
lineage root and generation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pyama_flow.io.atomic import write_text

if TYPE_CHECKING:  # pandas is imported where a table is built: the track job writes its CSV without it
    import pandas as pd

    from pyama_flow.tracking.objects import FrameObjects

LINEAGE_COLUMNS = ("cell", "parent", "first_frame", "last_frame")

#: areas remembered per track for the division review: its first and its last frames
REVIEW_FRAMES = 3


class LineageMixin:
    """Track ids and lineage of a :class:`~pyama_flow.tracking.tracker.Tracker`.

    State (set by ``Tracker.__init__``): ``_parent``, ``_first``, ``_last``
    (per track id - 1: parent id, first and last frame), ``_head``, ``_tail``
    (per track id - 1: its areas in its first and last ``REVIEW_FRAMES``
    frames), ``_alias`` (revoked daughter id -> mother id), ``_frame``,
    ``division_min_age`` and the division review's ``division_min_life``,
    ``division_area_sum``.
    """

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
            self._head.extend([] for _ in range(new.size))
            self._tail.extend([] for _ in range(new.size))
            self._record_pending(new_parent, track, t)
        for tid, area in zip(track[1:].tolist(), cur.area[1:].tolist(), strict=True):
            self._last[tid - 1] = t
            head, tail = self._head[tid - 1], self._tail[tid - 1]
            if len(head) < REVIEW_FRAMES:
                head.append(area)
            tail.append(area)
            if len(tail) > REVIEW_FRAMES:
                del tail[0]

    def _old_enough(self, tids: np.ndarray) -> np.ndarray:
        """True for tracks seen for at least ``division_min_age`` frames up to
        the previous frame, or present since the first frame (age unknown)."""
        first = np.array([self._first[k - 1] for k in tids.tolist()], np.int64)
        return (self._frame - first >= self.division_min_age) | (first == 0)

    def final_id(self, tid: int) -> int:
        """The id a provisional track id ends up as (after revoked divisions and the review)."""
        return _resolve(self._final()[0], tid)

    def _final(self) -> tuple[dict[int, int], set[int]]:
        """Aliases (provisional id -> id it continues) and orphaned daughters after the review."""
        kept, orphans = self._review_divisions()
        return {**self._alias, **kept}, orphans

    def _review_divisions(self) -> tuple[dict[int, int], set[int]]:
        """Divisions the whole tracks do not support, undone.

        Seen frame by frame, two touching cells that the segmentation merged
        and then separates again, or a cell cut in two for a frame, look like
        a division. Once the tracks are known, a division m -> (a, b) is
        kept only if both daughters (with their descendants) last
        ``division_min_life`` frames and together they account for the
        mother: the sum of their median areas over their first
        ``REVIEW_FRAMES`` frames is ``division_area_sum`` (lo, hi) times the
        mother's median area over her last ones. Otherwise the longer-lived
        daughter (then the larger, then the lower id) continues the mother's
        id; the other, if she lasted fewer than ``division_min_life`` frames
        and vanished while her sister went on (a piece of the mother that
        the segmentation cut off, mostly inside her mask), carries the
        mother's id too, so the cell's pixels are one id again; otherwise (a
        cell of her own that the segmentation had merged with the mother, or
        a division too close to the last frame seen to be confirmed) she
        starts a lineage of her own.
        A division in the last ``division_min_life - 1`` frames seen cannot
        be confirmed and is not recorded: a division is reported only where
        the movie shows it.

        Returns
        -------
        kept : daughter id -> mother id, for the daughters that are (part of) the mother
        orphans : ids of the daughters that lose their parent
        """
        kept: dict[int, int] = {}
        orphans: set[int] = set()
        if self.division_min_life <= 0 or not self._parent:
            return kept, orphans
        children, sub_last = self._family()
        lo, hi = self.division_area_sum
        for mother, kids in children.items():
            if len(kids) != 2:
                continue
            life = [sub_last[k] - self._first[k - 1] + 1 for k in kids]
            head = [float(np.median(self._head[k - 1])) for k in kids]
            tail = float(np.median(self._tail[mother - 1])) if self._tail[mother - 1] else 0.0
            if min(life) >= self.division_min_life and lo * tail <= sum(head) <= hi * tail:
                continue
            a, b = sorted(kids, key=lambda k: (-sub_last[k], -head[kids.index(k)], k))
            kept[a] = mother
            if min(life) < self.division_min_life and sub_last[b] < sub_last[a]:
                kept[b] = mother  # b vanished while a went on: a piece of the mother, cut off for a while
            else:  # b: a cell of her own that the segmentation had merged with the mother
                orphans.add(b)
        return kept, orphans

    def division_counts(self) -> dict[str, int]:
        """How the divisions seen frame by frame ended (for the track step's log).

        Returns
        -------
        dict with ``recorded`` (divisions in :meth:`lineage`), ``reviewed``
        (undone by the review: not supported by the whole tracks) and
        ``revoked`` (daughters that joined again within ``division_confirm``
        frames, undone by the tracker). On true masks few are undone (simulated
        movies: 1-3 reviewed, none revoked, for 14-63 recorded); where the
        segmentation often cuts or merges cells, more are undone than recorded.
        """
        children, _ = self._family()
        kept, _ = self._review_divisions()
        pairs = [m for m, kids in children.items() if len(kids) == 2]
        reviewed = len(set(kept.values()))
        revoked = len(self._alias) // 2  # a revoked division aliases both daughters
        return {"recorded": len(pairs) - reviewed, "reviewed": reviewed, "revoked": revoked}

    def _family(self) -> tuple[dict[int, list[int]], list[int]]:
        """Children of every track (after the tracker's revocations) and the last frame of each subtree.

        ``sub_last`` is indexed by track id (0 unused); a revoked daughter's
        frames count for the mother.
        """
        n = len(self._parent)
        sub_last = [0] + list(self._last)
        for tid in self._alias:
            root = _resolve(self._alias, tid)
            sub_last[root] = max(sub_last[root], sub_last[tid])
        children: dict[int, list[int]] = {}
        for tid in range(n, 0, -1):  # a daughter's id is larger than her mother's
            if tid in self._alias:
                continue
            parent = self._parent[tid - 1]
            if parent:
                parent = _resolve(self._alias, parent)
                children.setdefault(parent, []).append(tid)
                sub_last[parent] = max(sub_last[parent], sub_last[tid])
        for kids in children.values():
            kids.sort()
        return dict(sorted(children.items())), sub_last

    def relabel_lut(self) -> np.ndarray | None:
        """Lookup table provisional id -> final id (uint32), or None if every id is final.

        :meth:`~pyama_flow.tracking.tracker.Tracker.update` returns frames labelled with provisional ids: a
        division revoked later (the "daughters" joined again within
        ``division_confirm`` frames) renames its daughters' pixels to the
        mother's id. Apply ``lut[frame]`` to every returned frame to get
        the final labels that match :meth:`lineage` (the track job keeps the
        provisional frames in a scratch stack on disk and renames them when
        it writes them, :func:`pyama_flow.tracking.step.track`).
        """
        aliases = self._final()[0]
        if not aliases:
            return None
        lut = np.arange(len(self._parent) + 1, dtype=np.uint32)
        for tid in aliases:
            lut[tid] = _resolve(aliases, tid)
        return lut

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
        aliases, orphans = self._final()
        if orphans:
            parent[np.array(sorted(orphans), np.int64) - 1] = 0
        if aliases:
            for tid in aliases:  # a revoked daughter's frames belong to the mother
                root = _resolve(aliases, tid)
                first[root - 1] = min(first[root - 1], first[tid - 1])
                last[root - 1] = max(last[root - 1], last[tid - 1])
            parent = np.array([_resolve(aliases, p) if p else 0 for p in parent.tolist()], np.int64)
            keep = np.ones(n, bool)
            keep[np.array(sorted(aliases), np.int64) - 1] = False
            cell, parent, first, last = cell[keep], parent[keep], first[keep], last[keep]
        return {"cell": cell, "parent": parent, "first_frame": first, "last_frame": last}


def _resolve(aliases: dict[int, int], tid: int) -> int:
    """Follow ``aliases`` (id -> the id it continues) from ``tid`` to its final id."""
    while tid in aliases:
        tid = aliases[tid]
    return tid


def write_lineage(columns: dict[str, np.ndarray], path: str) -> None:
    """Integer lineage columns (:meth:`~pyama_flow.tracking.tracker.Tracker.lineage_columns`) as CSV, written
    atomically: the same bytes as ``lineage.to_csv(path, index=False)``."""
    lines = [",".join(columns)]
    lines += [",".join(map(str, row)) for row in zip(*(c.tolist() for c in columns.values()))]
    write_text(path, "\n".join(lines) + "\n")


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
    lineage : lineage table (``cell, parent, ...``) from :meth:`~pyama_flow.tracking.tracker.Tracker.lineage`
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
