"""Per-frame objects of a label image and their overlaps with the previous frame.

:func:`frame_objects` numbers a frame's objects in raster order of their
first pixel (so nothing depends on the input label values) and gives their
areas and centroids in one linear pass over the horizontal pixel runs;
:func:`pair_overlaps` counts the shared pixels of the objects of two
consecutive frames; :func:`split_objects` and :func:`split_overlaps` give
both again after some objects were cut (merged cells split by the tracker)
from the cut pixels alone; :func:`paint` draws a frame's objects with their
track ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# label values above this are compacted with np.unique instead of a lookup table
_MAX_LUT_LABEL = 1 << 22


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
    labels = check_labels(labels)
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


def split_objects(
    objs: FrameObjects, width: int, pieces: list[tuple[int, np.ndarray, np.ndarray, int]]
) -> tuple[FrameObjects, np.ndarray]:
    """The objects of a frame after some of its objects were cut into parts.

    What :func:`frame_objects` would return for the relabelled frame, from
    the cut pixels alone (no pass over the whole frame).

    Parameters
    ----------
    objs : objects of the frame before the cut, from :func:`frame_objects`
        with a lookup table (``uniq`` None)
    width : frame width
    pieces : per cut object ``(c, at, part, first_label)``: its compact
        index, its pixels (positions in ``objs.idx``, ascending), the part
        (0, 1, ...) of each pixel, and the label value of part 0 (part j has
        ``first_label + j``, above every label of the frame)

    Returns
    -------
    new : the objects of the relabelled frame (raster order of first
        pixels, as from :func:`frame_objects`; a part without pixels is no object)
    old_to_new : (objs.n + 1,) int64 new compact index of each object not
        cut (0 for the cut ones and background)
    """
    if objs.uniq is not None:
        raise ValueError("split_objects needs a frame with a label lookup table")
    cut = np.zeros(objs.n + 1, bool)
    cut[0] = True
    area, cy, cx, first = [objs.area], [objs.cy], [objs.cx], [objs.first]
    n_parts = []
    for c, at, part, _ in pieces:
        cut[c] = True
        k = int(part.max()) + 1
        pix = objs.idx[at]
        row, col = np.divmod(pix, width)
        a = np.bincount(part, minlength=k)
        safe = np.maximum(a, 1)
        area.append(a.astype(np.int64))
        cy.append(np.bincount(part, weights=row.astype(np.float64), minlength=k) / safe)
        cx.append(np.bincount(part, weights=col.astype(np.float64), minlength=k) / safe)
        f = np.full(k, np.iinfo(np.int64).max, np.int64)
        np.minimum.at(f, part, pix)
        first.append(f)
        n_parts.append(k)
    area_all = np.concatenate(area)
    keep = np.concatenate([~cut] + [a > 0 for a in area[1:]])
    first_all = np.concatenate(first)
    rows = np.flatnonzero(keep)
    rows = rows[np.argsort(first_all[rows], kind="stable")]
    n = int(rows.size)
    new_of_row = np.zeros(area_all.size, np.int64)
    new_of_row[rows] = np.arange(1, n + 1)
    old_to_new = new_of_row[: objs.n + 1]
    comp = old_to_new.astype(np.int32)[objs.comp]
    lut_ext, start = [], objs.n + 1
    for (_, at, part, label), k in zip(pieces, n_parts, strict=True):
        pc = new_of_row[start : start + k]
        comp[at] = pc[part]
        lut_ext.append((label, pc))
        start += k
    top = max(label + pc.size for label, pc in lut_ext)
    lut = np.zeros(max(top, objs.lut.size), np.int32)
    lut[: objs.lut.size] = old_to_new[objs.lut]
    for label, pc in lut_ext:
        lut[label : label + pc.size] = pc
    sel = np.concatenate([[0], rows])
    new = FrameObjects(n, objs.idx, comp, area_all[sel], np.concatenate(cy)[sel], np.concatenate(cx)[sel],
                       first_all[sel], lut)
    return new, old_to_new


def split_overlaps(
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
    old_to_new: np.ndarray,
    parts: list[tuple[np.ndarray, np.ndarray]],
    n: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overlaps with the previous frame after some objects of the current frame were cut (:func:`split_objects`).

    What :func:`pair_overlaps` gives for the relabelled frame, from the
    overlaps before the cut and the cut pixels alone.

    Parameters
    ----------
    pairs : (pp, pc, inter) before the cut, from :func:`pair_overlaps`
    old_to_new : new compact index of each current object not cut (0 for the cut ones)
    parts : per cut object, for each of its pixels the previous frame's
        compact index under it (0 = background) and its new compact index
    n : number of objects after the cut

    Returns
    -------
    pp, pc, inter : int64, ordered by (pp, pc) as :func:`pair_overlaps` orders them
    """
    pp, pc, inter = pairs
    kept = old_to_new[pc] > 0
    pp_all, pc_all, n_all = [pp[kept]], [old_to_new[pc[kept]]], [inter[kept]]
    for under, comp in parts:
        inside = under > 0
        uniq, counts = np.unique(under[inside].astype(np.int64) * (n + 1) + comp[inside], return_counts=True)
        pp_all.append(uniq // (n + 1))
        pc_all.append(uniq % (n + 1))
        n_all.append(counts)
    pp, pc, inter = (np.concatenate(a).astype(np.int64) for a in (pp_all, pc_all, n_all))
    order = np.lexsort((pc, pp))
    return pp[order], pc[order], inter[order]


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


def check_labels(labels: np.ndarray) -> np.ndarray:
    """``labels`` as a 2-D non-negative integer array (bool becomes uint8); raises on anything else."""
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


def dominant_pairs(pp: np.ndarray, pc: np.ndarray, inter: np.ndarray) -> np.ndarray:
    """For each overlapping pair, whether it is its current object's largest overlap.

    Parameters
    ----------
    pp, pc, inter : overlapping pairs (previous, current compact index) and
        their shared pixel counts, as from :func:`pair_overlaps`.

    Returns
    -------
    bool array over the pairs: True where ``pp`` is the previous object that
    ``pc`` overlaps most (ties: the lower previous index), one per current object.
    """
    order = np.lexsort((pp, -inter, pc))
    head = np.ones(order.size, bool)
    head[1:] = pc[order][1:] != pc[order][:-1]
    dom = np.zeros(pp.size, bool)
    dom[order[head]] = True
    return dom


def paint(shape: tuple[int, int], cur: FrameObjects, track: np.ndarray, out: np.ndarray | None) -> np.ndarray:
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
