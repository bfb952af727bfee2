"""Compiled per-pixel kernels (numba) behind the per-frame steps.

Each kernel reproduces, operation for operation, the numpy / scipy.ndimage
code it replaces (same float32 / float64 roundings, same summation order), so the
results are bit-identical; the tests compare every kernel with that code.
What stays in numpy is what numba would round differently (float32 ``log``,
``np.std``'s pairwise sums).

Kernels are compiled on first use and cached on disk next to this file (or
in ``NUMBA_CACHE_DIR``), so a job pays the compilation once per install.
"""

from __future__ import annotations

import numpy as np

from pyama_flow.numba_cache import announce_compile

announce_compile(__file__, "image kernels", "~30 s")

from numba import njit  # noqa: E402

_jit = njit(cache=True, nogil=True)


# -- LOG-STD ------------------------------------------------------------------


@_jit
def _column_means(img: np.ndarray, y: int, cm: np.ndarray, cq: np.ndarray) -> None:
    """Row ``y`` of the axis-0 3-tap means of ``img`` and ``img**2`` (reflect), as float32 -> float64."""
    h, w = img.shape
    a = img[max(y - 1, 0)]
    b = img[y]
    c = img[min(y + 1, h - 1)]
    if y == 0:  # reflect: row -1 is row 0 -> (b + b) + c
        a = b
    elif y == h - 1:  # row h is row h - 1 -> (a + b) + b
        c = b
    for x in range(w):
        va = np.float32(a[x])
        vb = np.float32(b[x])
        vc = np.float32(c[x])
        cm[x] = np.float64(np.float32(((np.float64(va) + np.float64(vb)) + np.float64(vc)) / 3.0))
        qa = np.float64(va * va)
        qb = np.float64(vb * vb)
        qc = np.float64(vc * vc)
        cq[x] = np.float64(np.float32(((qa + qb) + qc) / 3.0))


@_jit
def local_variance3(img: np.ndarray, nonpositive: float) -> np.ndarray:
    """``E[x^2] - E[x]^2`` over a 3x3 window (reflect border) of ``img`` as float32.

    The window means are ``scipy.ndimage.uniform_filter(img.astype(float32), 3)``
    exactly: axis 0 then axis 1, each a float64 3-term sum divided by 3 and
    stored as float32 (the same sums in the same order as the blocked numpy
    version this replaced). A variance <= 0 is replaced by ``nonpositive``
    (1.0 lets the caller take the log of the whole image: ln 1 = 0).
    """
    h, w = img.shape
    out = np.empty((h, w), np.float32)
    cm = np.empty(w, np.float64)
    cq = np.empty(w, np.float64)
    for y in range(h):
        _column_means(img, y, cm, cq)
        o = out[y]
        if w == 1:
            m = np.float32(cm[0])
            o[0] = np.float32(cq[0]) - m * m
        else:
            for x in range(1, w - 1):
                m = np.float32(((cm[x - 1] + cm[x]) + cm[x + 1]) / 3.0)
                mq = np.float32(((cq[x - 1] + cq[x]) + cq[x + 1]) / 3.0)
                o[x] = mq - m * m
            m = np.float32((cm[0] * 2.0 + cm[1]) / 3.0)
            o[0] = np.float32((cq[0] * 2.0 + cq[1]) / 3.0) - m * m
            m = np.float32((cm[w - 1] * 2.0 + cm[w - 2]) / 3.0)
            o[w - 1] = np.float32((cq[w - 1] * 2.0 + cq[w - 2]) / 3.0) - m * m
        fill = np.float32(nonpositive)
        for x in range(w):
            if not o[x] > 0:
                o[x] = fill
    return out


@_jit
def min_max(values: np.ndarray) -> tuple[float, float]:
    """Smallest and largest value of a 1-D array (one pass)."""
    lo = values[0]
    hi = values[0]
    for v in values:
        lo = min(lo, v)
        hi = max(hi, v)
    return lo, hi


@_jit
def histogram_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``np.histogram(values, edges)[0]`` for ascending, evenly spaced ``edges``.

    Bin ``i`` holds ``edges[i] <= v < edges[i + 1]``, the last bin also its
    right edge; values outside are not counted. The bin is guessed from the
    spacing; a value whose guess lies closer to a bin boundary than the edges
    themselves stray from the even spacing (``tol``) is settled by comparing
    with the edges, which is what decides it in numpy too.
    """
    n = edges.size - 1
    counts = np.zeros((4, n), np.int64)  # four interleaved copies: no store-to-load stalls
    first = edges[0]
    last = edges[n]
    origin = np.float64(first)
    scale = n / (np.float64(last) - origin)
    # positions in bins computed in float64 (a float32 difference could be off by
    # 1e-5 bins): monotone in the value, and the edges' own positions show how far
    # they stray from the even spacing
    tol = 0.0
    for j in range(n + 1):
        tol = max(tol, abs((np.float64(edges[j]) - origin) * scale - j))
    tol += 1e-6
    for k in range(values.size):
        v = values[k]
        if not (v >= first and v <= last):
            continue
        u = (np.float64(v) - origin) * scale
        i = min(int(u), n - 1)
        frac = u - i
        if frac < tol or frac > 1.0 - tol:
            while i > 0 and v < edges[i]:
                i -= 1
            while i < n - 1 and v >= edges[i + 1]:
                i += 1
        counts[k & 3, i] += 1
    return counts[0] + counts[1] + counts[2] + counts[3]


@_jit
def values_at_most(values: np.ndarray, limit: float) -> np.ndarray:
    """``values[values <= limit]`` (order kept)."""
    out = np.empty_like(values)
    k = 0
    for v in values:  # branch-free: write always, advance when kept
        out[k] = v
        k += v <= limit
    return out[:k]


@_jit
def _runs(mask: np.ndarray, value: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Runs of ``value`` in each row: (row, start, stop) in raster order, and each row's first run."""
    h, w = mask.shape
    cap = 1024
    rr = np.empty(cap, np.int64)
    rs = np.empty(cap, np.int64)
    re = np.empty(cap, np.int64)
    row_first = np.empty(h + 1, np.int64)
    k = 0
    for y in range(h):
        row_first[y] = k
        row = mask[y]
        x = 0
        while x < w:
            while x < w and row[x] != value:
                x += 1
            if x == w:
                break
            start = x
            while x < w and row[x] == value:
                x += 1
            if k == cap:
                cap *= 2
                rr2 = np.empty(cap, np.int64)
                rs2 = np.empty(cap, np.int64)
                re2 = np.empty(cap, np.int64)
                rr2[:k] = rr[:k]
                rs2[:k] = rs[:k]
                re2[:k] = re[:k]
                rr, rs, re = rr2, rs2, re2
            rr[k] = y
            rs[k] = start
            re[k] = x
            k += 1
    row_first[h] = k
    return rr[:k], rs[:k], re[:k], row_first


@_jit
def _find(parent: np.ndarray, i: int) -> int:
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:  # path compression
        nxt = parent[i]
        parent[i] = root
        i = nxt
    return root


@_jit
def _union_runs(starts: np.ndarray, stops: np.ndarray, row_first: np.ndarray, reach: int = 0) -> np.ndarray:
    """Union-find roots of runs, joining runs of adjacent rows that share a column
    (``reach`` 0: 4-connectivity) or touch diagonally too (``reach`` 1: 8-connectivity)."""
    n = starts.size
    parent = np.arange(n)
    for y in range(1, row_first.size - 1):
        i = row_first[y - 1]
        i_end = row_first[y]
        j = row_first[y]
        j_end = row_first[y + 1]
        while i < i_end and j < j_end:
            if starts[i] < stops[j] + reach and starts[j] < stops[i] + reach:
                a = _find(parent, i)
                b = _find(parent, j)
                if a < b:
                    parent[b] = a
                elif b < a:
                    parent[a] = b
            if stops[i] < stops[j]:
                i += 1
            else:
                j += 1
    for k in range(n):
        parent[k] = _find(parent, k)
    return parent


@_jit
def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_fill_holes(mask)``: background not 4-connected to the border becomes foreground."""
    h, w = mask.shape
    rows, starts, stops, row_first = _runs(mask, False)
    root = _union_runs(starts, stops, row_first)
    border = np.zeros(root.size, np.bool_)
    for k in range(root.size):
        if rows[k] == 0 or rows[k] == h - 1 or starts[k] == 0 or stops[k] == w:
            border[root[k]] = True
    out = mask.copy()
    for k in range(root.size):
        if not border[root[k]]:
            out[rows[k], starts[k]:stops[k]] = True
    return out


# Binary erosion / dilation on bit-packed rows: 64 pixels per uint64 word (bit
# b of word k is column 64 k + b; see logstd.pack_rows), so a square filter is
# a few dozen word operations per 64 pixels whatever its side.


@_jit
def _shift_bits(src: np.ndarray, d: int, out: np.ndarray) -> None:
    """``out`` bit x of each row = ``src`` bit ``x + d`` (0 from outside the row)."""
    h, nw = src.shape
    q = d // 64
    s = np.uint64(d - q * 64)
    back = np.uint64(64) - s
    zero = np.uint64(0)
    for y in range(h):
        for k in range(nw):
            j = k + q
            lo = src[y, j] if 0 <= j < nw else zero
            if s == 0:
                out[y, k] = lo
            else:
                hi = src[y, j + 1] if 0 <= j + 1 < nw else zero
                out[y, k] = (lo >> s) | (hi << back)


@_jit
def _combine(a: np.ndarray, b: np.ndarray, erode: bool) -> None:
    """``a &= b`` (erosion) or ``a |= b`` (dilation), row by row in ascending order:
    ``b`` may be ``a``'s own buffer a few rows further down."""
    h, nw = a.shape
    for y in range(h):
        if erode:
            for k in range(nw):
                a[y, k] &= b[y, k]
        else:
            for k in range(nw):
                a[y, k] |= b[y, k]


@_jit
def packed_square_filter(words: np.ndarray, width: int, side: int, erode: bool) -> np.ndarray:
    """Binary erosion / dilation of bit-packed rows by a ``side`` x ``side`` square.

    The window of a pixel spans ``x - side // 2 .. x + side - 1 - side // 2``
    along each axis (scipy's centring) and outside the frame is 0, as in
    ``scipy.ndimage.binary_erosion / binary_dilation`` with ``border_value=0``.
    Windows are built by doubling: the AND (OR) of ``[x, x + 2s)`` is that
    of ``[x, x + s)`` and ``[x + s, x + 2s)``. Bits beyond ``width`` stay 0.
    """
    h, nw = words.shape
    r = side // 2
    # along the rows, with zero words on either side (windows may start left of the frame)
    pad = (side + 63) // 64
    cur = np.zeros((h, nw + 2 * pad), np.uint64)
    cur[:, pad:pad + nw] = words
    tmp = np.empty_like(cur)
    span = 1
    while span < side:
        step = min(span, side - span)  # [x, x + span) and [x + step, x + step + span) cover [x, x + span + step)
        _shift_bits(cur, step, tmp)
        _combine(cur, tmp, erode)
        span += step
    _shift_bits(cur, -r, tmp)
    # along the columns, with `side` zero rows on either side
    buf = np.zeros((h + 2 * side, nw), np.uint64)
    buf[side:side + h] = tmp[:, pad:pad + nw]
    rows = buf.shape[0]
    span = 1
    while span < side:
        step = min(span, side - span)
        _combine(buf[:rows - step], buf[step:], erode)  # buf[y + step] is still the previous level
        if erode:
            for y in range(rows - step, rows):
                for k in range(nw):
                    buf[y, k] = 0
        span += step
    out = np.empty_like(words)
    for y in range(h):
        for k in range(nw):
            out[y, k] = buf[y + side - r, k]
    tail = width - (nw - 1) * 64
    if nw and tail < 64:
        keep = (np.uint64(1) << np.uint64(tail)) - np.uint64(1)
        for y in range(h):
            out[y, nw - 1] &= keep
    return out


@_jit
def label4(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """``scipy.ndimage.label(mask)`` (4-connectivity): ids 1..n in raster order of first pixel."""
    return _label(mask, 0)


@_jit
def label8(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """``scipy.ndimage.label(mask, structure=np.ones((3, 3)))`` (8-connectivity):
    ids 1..n in raster order of first pixel."""
    return _label(mask, 1)


@_jit
def _label(mask: np.ndarray, reach: int) -> tuple[np.ndarray, int]:
    h, w = mask.shape
    rows, starts, stops, comp, n = components(mask, True, reach)
    out = np.zeros((h, w), np.int32)
    for k in range(rows.size):
        out[rows[k], starts[k]:stops[k]] = comp[k] + 1
    return out, n


@_jit
def components(mask: np.ndarray, value: bool, reach: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """The connected components of the pixels equal to ``value`` as runs:
    ``(rows, starts, stops, comp, n)``, each run's row, first column, column
    after its end and component 0..n-1 (numbered in raster order of their
    first pixel, as ``scipy.ndimage.label`` numbers them from 1); ``reach``
    0 = 4-connectivity, 1 = 8-connectivity. Sizes, border contacts or counts
    per component are then sums over runs (:func:`paint_runs` paints a choice
    of them back)."""
    rows, starts, stops, row_first = _runs(mask, value)
    root = _union_runs(starts, stops, row_first, reach)
    comp = np.empty(root.size, np.int64)
    n = 0
    for k in range(root.size):  # a component's first run is its root
        if root[k] == k:
            comp[k] = n
            n += 1
        else:
            comp[k] = comp[root[k]]
    return rows, starts, stops, comp, n


@_jit
def paint_runs(out: np.ndarray, rows: np.ndarray, starts: np.ndarray, stops: np.ndarray, chosen: np.ndarray) -> None:
    """Set ``out[rows[k], starts[k]:stops[k]] = True`` for the runs with ``chosen[k]``."""
    for k in range(rows.size):
        if chosen[k]:
            out[rows[k], starts[k]:stops[k]] = True


@_jit
def run_counts(flags: np.ndarray, rows: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Number of True pixels of ``flags`` in each run (int64)."""
    out = np.zeros(rows.size, np.int64)
    for k in range(rows.size):
        row = flags[rows[k]]
        c = 0
        for x in range(starts[k], stops[k]):
            c += row[x]
        out[k] = c
    return out


# -- per-cell sums --------------------------------------------------------------


@_jit
def cell_geometry(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per label id (index = id): pixel count, sums of row and column, bounding box.

    Returns ``count`` (int64), ``sums`` (2, n) float64 (rows, columns, added
    in raster order as ``np.bincount`` does), ``lo`` and ``hi`` (2, n) int64
    (first / last row and column). ``n = labels.max() + 1``.
    """
    h, w = labels.shape
    top = 0
    for y in range(h):
        for x in range(w):
            top = max(top, np.int64(labels[y, x]))
    n = top + 1
    count = np.zeros(n, np.int64)
    sums = np.zeros((2, n), np.float64)
    lo = np.full((2, n), np.iinfo(np.int64).max, np.int64)
    hi = np.full((2, n), -1, np.int64)
    for y in range(h):
        for x in range(w):
            i = np.int64(labels[y, x])
            if i == 0:
                continue
            count[i] += 1
            sums[0, i] += y
            sums[1, i] += x
            lo[0, i] = min(lo[0, i], y)
            hi[0, i] = max(hi[0, i], y)
            lo[1, i] = min(lo[1, i], x)
            hi[1, i] = max(hi[1, i], x)
    return count, sums, lo, hi


@_jit
def cell_intensity(labels, n, image, top, bg_mode, bg_image):
    """Per label id (``n`` > the largest, e.g. the size of
    :func:`cell_geometry`'s arrays): sum of intensity, of background, bad and
    saturated pixels.

    ``bg_mode`` 0: no background; 1: ``bg_image`` (Y, X), read only at
    labelled pixels (elsewhere it may hold anything). Pixels whose intensity
    or background is not finite count as bad and add nothing; ``top`` > 0
    counts pixels equal to it as saturated. Sums run in raster order in
    float64, as ``np.bincount`` does.
    """
    h, w = labels.shape
    total = np.zeros(n, np.float64)
    background = np.zeros(n, np.float64)
    bad = np.zeros(n, np.int64)
    saturated = np.zeros(n, np.int64)
    for y in range(h):
        for x in range(w):
            i = np.int64(labels[y, x])
            if i == 0:
                continue
            raw = image[y, x]
            if top > 0 and raw == top:
                saturated[i] += 1
            v = np.float64(raw)
            b = 0.0
            if bg_mode == 1:
                b = np.float64(bg_image[y, x])
            if not (np.isfinite(v) and np.isfinite(b)):
                bad[i] += 1
                v = 0.0
                b = 0.0
            total[i] += v
            background[i] += b
    return total, background, bad, saturated


@_jit
def expand_labels(labels, offsets_y, offsets_x, offsets_d2):
    """Labels grown into the background by the nearest-cell partition.

    Every background pixel (0) within the largest of ``offsets_d2`` (squared
    Euclidean distance) of a labelled pixel takes the id of the nearest
    labelled pixel; labelled pixels keep theirs, so a cell never grows into
    a neighbour's mask, and a background pixel between two cells goes to the
    nearer one (CellProfiler's "expand objects", ``skimage.segmentation.
    expand_labels``). ``offsets_*`` list the disc's offsets sorted by
    distance. Ties (equidistant cells) go to the cell whose edge pixel comes
    first in raster order, so the result is deterministic.

    Only edge pixels (a 4-neighbour is background) are spread from: the
    labelled pixel nearest to a background pixel is always one of them, so
    the cost is the cells' outline length times the disc's size, not the
    frame's pixels times it.
    """
    h, w = labels.shape
    out = labels.copy()
    best = np.full((h, w), np.int32(1) << 30, np.int32)
    for y in range(h):
        for x in range(w):
            lab = labels[y, x]
            if lab == 0:
                continue
            edge = ((y > 0 and labels[y - 1, x] == 0) or (y < h - 1 and labels[y + 1, x] == 0)
                    or (x > 0 and labels[y, x - 1] == 0) or (x < w - 1 and labels[y, x + 1] == 0))
            if not edge:
                continue
            for k in range(offsets_d2.size):
                yy = y + offsets_y[k]
                xx = x + offsets_x[k]
                if yy < 0 or yy >= h or xx < 0 or xx >= w or labels[yy, xx] != 0:
                    continue
                d2 = offsets_d2[k]
                if d2 < best[yy, xx]:
                    best[yy, xx] = d2
                    out[yy, xx] = lab
    return out


# -- background tiles -----------------------------------------------------------------


@_jit
def tile_medians(image: np.ndarray, excluded: np.ndarray, ey: np.ndarray, ex: np.ndarray) -> np.ndarray:
    """Median of the non-excluded pixels of each tile of an integer image, float32.

    Tile (i, j) spans rows ``ey[i]:ey[i + 2]`` and columns ``ex[j]:ex[j + 2]``,
    i.e. 2 x 2 of the blocks between consecutive edges; its median is
    ``np.median`` of those values as float32 (the mean of the two middle ones
    for an even count), read off a count of each value. The counts are kept
    per block (every pixel counted once) where the value range allows,
    else per tile. A tile without pixels gives NaN.
    """
    h, w = image.shape
    lo = np.int64(image[0, 0])
    hi = lo
    for y in range(h):
        for x in range(w):
            v = np.int64(image[y, x])
            lo = min(lo, v)
            hi = max(hi, v)
    r = hi - lo + 1
    nby = ey.size - 1
    nbx = ex.size - 1
    out = np.empty((ey.size - 2, ex.size - 2), np.float32)
    if r * nby * nbx <= 2**25:  # per-block counts: at most 128 MB
        hist = np.zeros((nby * nbx, r), np.int32)
        total = np.zeros(nby * nbx, np.int64)
        for by in range(nby):
            for y in range(ey[by], ey[by + 1]):
                for bx in range(nbx):
                    b = by * nbx + bx
                    for x in range(ex[bx], ex[bx + 1]):
                        if not excluded[y, x]:
                            hist[b, np.int64(image[y, x]) - lo] += 1
                            total[b] += 1
        for i in range(ey.size - 2):
            for j in range(ex.size - 2):
                b = i * nbx + j
                n = total[b] + total[b + 1] + total[b + nbx] + total[b + nbx + 1]
                if n == 0:
                    out[i, j] = np.nan
                else:
                    counts = hist[b] + hist[b + 1] + hist[b + nbx] + hist[b + nbx + 1]
                    out[i, j] = _median_of_counts(counts, n, lo)
        return out
    counts = np.zeros(r, np.int64)
    for i in range(ey.size - 2):
        for j in range(ex.size - 2):
            counts[:] = 0
            n = 0
            for y in range(ey[i], ey[i + 2]):
                for x in range(ex[j], ex[j + 2]):
                    if not excluded[y, x]:
                        counts[np.int64(image[y, x]) - lo] += 1
                        n += 1
            out[i, j] = _median_of_counts(counts, n, lo) if n else np.nan
    return out


@_jit
def _median_of_counts(counts: np.ndarray, n: int, lo: int) -> np.float32:
    """``np.median`` (float32) of ``n`` > 0 integers counted per value from ``lo`` up:
    the mean of the values of ranks ``(n - 1) // 2`` and ``n // 2``."""
    ka = (n - 1) // 2
    kb = n // 2
    a = -1
    seen = 0
    for v in range(counts.size):
        seen += counts[v]
        if a < 0 and seen > ka:
            a = v
        if seen > kb:
            return (np.float32(a + lo) + np.float32(v + lo)) / np.float32(2.0)
    return np.float32(np.nan)  # fewer than n values counted: not reached


# -- watershed segmentation (distance map, smoothing, maxima) -------------------


@_jit
def chamfer_mean_distance(mask: np.ndarray) -> np.ndarray:
    """``(cdt(mask, "taxicab") + cdt(mask, "chessboard")) / 2`` as float32, with
    ``cdt`` = ``scipy.ndimage.distance_transform_cdt``: each pixel's city-block
    and chessboard distance to the nearest False pixel of the frame (0 on
    them), by the two raster passes of a 3x3 chamfer, which are exact for
    both metrics. ``mask`` must have a False pixel."""
    h, w = mask.shape
    big = h + w + 2
    t = np.empty((h, w), np.int32)
    c = np.empty((h, w), np.int32)
    for y in range(h):  # forward: neighbours above and to the left
        for x in range(w):
            if not mask[y, x]:
                t[y, x] = 0
                c[y, x] = 0
                continue
            vt = big
            vc = big
            if y > 0:
                vt = min(vt, t[y - 1, x] + 1)
                vc = min(vc, c[y - 1, x] + 1)
                if x > 0:
                    vc = min(vc, c[y - 1, x - 1] + 1)
                if x < w - 1:
                    vc = min(vc, c[y - 1, x + 1] + 1)
            if x > 0:
                vt = min(vt, t[y, x - 1] + 1)
                vc = min(vc, c[y, x - 1] + 1)
            t[y, x] = vt
            c[y, x] = vc
    out = np.empty((h, w), np.float32)
    for y in range(h - 1, -1, -1):  # backward: below and to the right
        for x in range(w - 1, -1, -1):
            vt = t[y, x]
            vc = c[y, x]
            if vt > 0:
                if y < h - 1:
                    vt = min(vt, t[y + 1, x] + 1)
                    vc = min(vc, c[y + 1, x] + 1)
                    if x < w - 1:
                        vc = min(vc, c[y + 1, x + 1] + 1)
                    if x > 0:
                        vc = min(vc, c[y + 1, x - 1] + 1)
                if x < w - 1:
                    vt = min(vt, t[y, x + 1] + 1)
                    vc = min(vc, c[y, x + 1] + 1)
                t[y, x] = vt
                c[y, x] = vc
            out[y, x] = np.float32(vt + vc) * np.float32(0.5)
    return out


@_jit
def _reflect(i: int, n: int) -> int:
    """Index ``i`` (``-n <= i < 2 n``) folded into ``0..n-1`` as scipy's ``mode="reflect"``."""
    if i < 0:
        return -i - 1
    if i >= n:
        return 2 * n - i - 1
    return i


@_jit
def symmetric_filter(img: np.ndarray, half: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.correlate1d`` along axis 0 then axis 1 (``mode="reflect"``)
    of a float32 image with the symmetric weights ``half`` (centre first,
    then the weight at offsets +-1, +-2 ...), as ``gaussian_filter`` runs it:
    each pass sums in float64, outermost pair first, and rounds to float32.
    The radius (``half.size - 1``) must not exceed either side of ``img``."""
    h, w = img.shape
    r = half.size - 1
    tmp = np.empty((h, w), np.float32)
    acc = np.empty(w, np.float64)
    for y in range(h):  # axis 0, a row at a time
        for x in range(w):
            acc[x] = np.float64(img[y, x]) * half[0]
        for j in range(r, 0, -1):
            a = _reflect(y - j, h)
            b = _reflect(y + j, h)
            wj = half[j]
            for x in range(w):
                acc[x] += (np.float64(img[a, x]) + np.float64(img[b, x])) * wj
        for x in range(w):
            tmp[y, x] = np.float32(acc[x])
    out = np.empty((h, w), np.float32)
    line = np.empty(w + 2 * r, np.float64)
    for y in range(h):  # axis 1
        for x in range(-r, w + r):
            line[x + r] = np.float64(tmp[y, _reflect(x, w)])
        for x in range(w):
            acc[x] = line[x + r] * half[0]
        for j in range(r, 0, -1):
            wj = half[j]
            for x in range(w):
                acc[x] += (line[x + r - j] + line[x + r + j]) * wj
        for x in range(w):
            out[y, x] = np.float32(acc[x])
    return out


@_jit
def masked_maxima(height: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(height == scipy.ndimage.maximum_filter(height, size=3)) & mask``: the
    pixels of ``mask`` not lower than any 8-neighbour inside the frame."""
    h, w = height.shape
    out = np.zeros((h, w), np.bool_)
    for y in range(h):
        for x in range(w):
            if not mask[y, x]:
                continue
            v = height[y, x]
            top = True
            for yy in range(max(y - 1, 0), min(y + 2, h)):
                for xx in range(max(x - 1, 0), min(x + 2, w)):
                    if height[yy, xx] > v:
                        top = False
            out[y, x] = top
    return out
