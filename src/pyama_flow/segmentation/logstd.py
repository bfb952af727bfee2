"""PyAMA's reference "LOG-STD" segmentation, reproduced exactly but fast.

Per frame (SPEC step 2): local mean and mean of squares over a 3x3 window
(uniform filter, reflect border) in float32; logstd = 0.5*ln(var) where
var > 0, else 0; threshold = mode + 3*sigma of a 200-bin histogram (sigma of
all values <= mode); fill holes; binary opening then closing with a 7x7
square iterated 3 times; connected components.

Every pass over the pixels is a compiled kernel (:mod:`pyama_flow.kernels`)
that repeats the reference's arithmetic, so masks and labels are identical
to scipy.ndimage's: the window means round as ``uniform_filter`` does, the
histogram bins are numpy's own edges, and a 7x7 square iterated 3 times with
scipy's zero border equals one 19x19 square with a zero border (on
bit-packed rows, 64 pixels a word: :func:`pack_rows`). The float32 ``log``
and the ``std`` stay numpy's.
"""

from __future__ import annotations

import numpy as np

from pyama_flow import kernels
#: pixel types the variance kernel converts to float32 itself (exactly, as astype does)
_KERNEL_DTYPES = {np.dtype(t) for t in (np.uint8, np.uint16, np.int8, np.int16, np.float32)}


def logstd_image(image: np.ndarray, size: int = 3) -> np.ndarray:
    """Log of the local standard deviation, float32, as the reference computes it.

    Parameters
    ----------
    image : (Y, X) array
        Phase-contrast frame (any real dtype; converted to float32).
    size : int
        Side of the square window.

    Returns
    -------
    (Y, X) float32 array: ``0.5 * ln(var)`` where ``var > 0``, else 0, with
    ``var = E[x^2] - E[x]^2`` over the window in float32 (reference).
    """
    img = np.ascontiguousarray(image)
    if img.dtype not in _KERNEL_DTYPES:
        img = img.astype(np.float32)
    if size == 3:
        # var <= 0 comes back as 1, so one log over the contiguous image gives 0 there
        out = kernels.local_variance3(img, 1.0)
    else:
        from scipy import ndimage as ndi

        img = img.astype(np.float32, copy=False)
        mean = ndi.uniform_filter(img, size=size)
        out = ndi.uniform_filter(img * img, size=size) - mean * mean
        out[~(out > 0)] = 1
    np.log(out, out=out)
    out *= np.float32(0.5)
    return out


def histogram_threshold(values: np.ndarray, n_bins: int = 200, n_sigma: float = 3.0) -> float:
    """Mode of a ``n_bins`` histogram plus ``n_sigma`` std of the values <= mode.

    The mode is the centre of the fullest bin (first one on ties). Bins are
    ``np.histogram``'s (its edges, from the values' range and dtype), counted
    in one pass.
    """
    flat = np.ravel(values)
    if flat.size == 0:
        raise ValueError("histogram_threshold of no values")
    lo, hi = kernels.min_max(flat)
    edges = np.histogram_bin_edges(np.array([lo, hi], dtype=flat.dtype), bins=n_bins)
    counts = kernels.histogram_counts(flat, edges)
    centres = (edges[:-1] + edges[1:]) * 0.5
    mode = centres[int(np.argmax(counts))]
    below = kernels.values_at_most(flat, mode)
    sigma = float(np.std(below)) if below.size else 0.0
    return float(mode + n_sigma * sigma)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions not 4-connected to the frame border.

    Same result as ``scipy.ndimage.binary_fill_holes`` with its default
    structure (one flood fill from the border).
    """
    return kernels.fill_holes(np.ascontiguousarray(mask, dtype=bool))


def pack_rows(mask: np.ndarray) -> np.ndarray:
    """A (Y, X) bool mask as (Y, ceil(X / 64)) uint64 words: bit b of word k is
    column 64 k + b; bits beyond X are 0."""
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    packed = np.zeros((h, -(-w // 64) * 8), np.uint8)
    packed[:, : -(-w // 8)] = np.packbits(mask, axis=1, bitorder="little")
    return packed.view("<u8").astype(np.uint64, copy=False)  # a copy only on big-endian hosts


def unpack_rows(words: np.ndarray, width: int) -> np.ndarray:
    """The bool mask of :func:`pack_rows`' words."""
    le = np.ascontiguousarray(words).astype("<u8", copy=False)
    return np.unpackbits(le.view(np.uint8), axis=1, count=width, bitorder="little").view(bool)


def _square_filter(mask: np.ndarray, side: int, erode: bool) -> np.ndarray:
    """Binary erosion / dilation by a ``side`` square with a zero border."""
    width = np.shape(mask)[1]
    return unpack_rows(kernels.packed_square_filter(pack_rows(mask), width, int(side), bool(erode)), width)


def open_close(mask: np.ndarray, size: int = 7, iterations: int = 3) -> np.ndarray:
    """Binary opening then closing with a ``size`` square iterated ``iterations`` times.

    Equivalent to ``binary_closing(binary_opening(m, s, it), s, it)`` with
    ``s = ones((size, size))`` and scipy's default zero border.
    """
    if iterations <= 0 or size <= 1:
        return np.asarray(mask, dtype=bool).copy()
    mask = np.asarray(mask, dtype=bool)
    if size % 2 == 0:  # scipy centres an even square differently for erosion and dilation
        from scipy import ndimage as ndi

        se = np.ones((size, size), dtype=bool)
        opened = ndi.binary_opening(mask, se, iterations=iterations)
        return ndi.binary_closing(opened, se, iterations=iterations)
    side = iterations * (size - 1) + 1
    width = mask.shape[1]
    words = kernels.packed_square_filter(pack_rows(mask), width, side, True)
    words = kernels.packed_square_filter(words, width, 2 * side - 1, False)  # two centred dilations
    return unpack_rows(kernels.packed_square_filter(words, width, side, True), width)


def segment_logstd(
    image: np.ndarray,
    window: int = 3,
    n_bins: int = 200,
    n_sigma: float = 3.0,
    morph_size: int = 7,
    morph_iterations: int = 3,
) -> np.ndarray:
    """Segment one phase-contrast frame with the reference LOG-STD method.

    Parameters
    ----------
    image : (Y, X) array
        Phase-contrast frame.
    window, n_bins, n_sigma, morph_size, morph_iterations
        The reference's constants (3, 200, 3, 7, 3).

    Returns
    -------
    (Y, X) uint16 array of connected components (4-connectivity), 0 = background.

    Notes
    -----
    Non-finite pixels (NaN / inf in float input) are background: windows that
    touch one are left out of the threshold histogram, and the pixels
    themselves are never part of an object. A frame without any finite
    window gives no objects. Finite input is unaffected (bit-identical to
    the reference).
    """
    invalid = None
    img = np.asarray(image)
    if img.dtype.kind == "f":
        bad = ~np.isfinite(img)
        if bad.any():
            invalid = bad
            img = np.where(bad, np.float32(0), img.astype(np.float32, copy=False))
    logstd = logstd_image(img, size=window)
    if invalid is None:
        values = logstd
    else:
        touched = _square_filter(invalid, int(window), erode=False) if window > 1 else invalid
        values = logstd[~touched]
        if values.size == 0:
            return np.zeros(img.shape, dtype=np.uint16)
    mask = logstd > histogram_threshold(values, n_bins=n_bins, n_sigma=n_sigma)
    if invalid is not None:
        mask &= ~touched
    mask = fill_holes(mask)
    mask = open_close(mask, size=morph_size, iterations=morph_iterations)
    if invalid is not None:
        mask &= ~invalid
    labels, n = kernels.label4(mask)
    if n > np.iinfo(np.uint16).max:
        raise ValueError(f"{n} objects in one frame exceed the uint16 label range")
    return labels.astype(np.uint16)
