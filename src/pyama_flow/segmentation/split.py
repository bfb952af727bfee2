"""Splitting a mask into cells: watershed from every maximum, shallow basins merged.

:func:`split_objects` floods the (smoothed) distance map, or another height
map, from every local maximum and merges neighbouring basins whose saddle is
shallower than ``split_depth`` (:func:`merge_shallow_basins`, the partition
seeding from the h-maxima would give). :func:`split_coarse` does the same on a
coarser grid and puts the labels back on the mask.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from pyama_flow.segmentation.maps import bin_image, unbin_labels
from pyama_flow.segmentation.masks import _CONN8, distance_map
from pyama_flow.segmentation.outlines import _keep_largest_piece

_HALO_SIGMA = 1.0  # binned px, smoothing of the brightness used as halo barrier


def adjacent_saddles(labels: np.ndarray, height: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of 4-adjacent labels and the highest saddle between them.

    The saddle of two touching pixels is the lower of their ``height``; the
    saddle of two regions is the highest over their shared boundary.
    Returns ``(a, b, saddle)`` with ``0 < a < b``.
    """
    n = int(labels.max()) + 1
    keys, vals = [], []
    for la, lb, ha, hb in (
        (labels[:, :-1], labels[:, 1:], height[:, :-1], height[:, 1:]),
        (labels[:-1, :], labels[1:, :], height[:-1, :], height[1:, :]),
    ):
        sel = (la != lb) & (la > 0) & (lb > 0)
        a = la[sel].astype(np.int64)
        b = lb[sel].astype(np.int64)
        keys.append(np.minimum(a, b) * n + np.maximum(a, b))
        vals.append(np.minimum(ha[sel], hb[sel]))
    key = np.concatenate(keys)
    val = np.concatenate(vals)
    if key.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    order = np.lexsort((val, key))
    key, val = key[order], val[order]
    last = np.r_[key[1:] != key[:-1], True]
    key, val = key[last], val[last]
    return key // n, key % n, val


def merge_shallow_basins(
    labels: np.ndarray, height: np.ndarray, depth: float, markers: np.ndarray | None = None
) -> np.ndarray:
    """Merge basins whose separating saddle is shallower than ``depth``.

    ``labels`` are catchment basins of the maxima of ``height``. Pairs are
    visited by decreasing saddle height (the h-maxima merge tree): two
    basins merge when the lower of their peaks is less than ``depth`` above
    the saddle. ``markers`` (the watershed's seeds, one per basin at its
    maximum) make finding the peaks cheap. Returns int32 labels 1..n.
    """
    n = int(labels.max())
    if n == 0:
        return labels.astype(np.int32)
    peak = np.full(n + 1, -np.inf)
    src = labels if markers is None else np.where(markers > 0, labels, 0)
    sel = src > 0
    np.maximum.at(peak, src[sel], height[sel])
    parent = np.arange(n + 1)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    a, b, saddle = adjacent_saddles(labels, height)
    for k in np.argsort(-saddle, kind="stable"):
        ra, rb = root(int(a[k])), root(int(b[k]))
        if ra != rb and min(peak[ra], peak[rb]) - saddle[k] < depth:
            if peak[ra] < peak[rb]:
                ra, rb = rb, ra
            parent[rb] = ra
    roots = np.array([root(i) for i in range(n + 1)])
    # root 0 is the background and the smallest id, so it maps to 0
    _, lut = np.unique(roots, return_inverse=True)
    return lut.astype(np.int32)[labels]


def split_objects(
    mask: np.ndarray,
    smooth_sigma: float = 2.0,
    split_depth: float = 2.0,
    barrier: np.ndarray | None = None,
    height: np.ndarray | None = None,
) -> np.ndarray:
    """Split a binary mask into objects by a watershed on its distance map.

    Parameters
    ----------
    mask : (Y, X) bool
    smooth_sigma : float
        Gaussian sigma (px) on the distance map (removes spurious maxima on
        ragged outlines); 0 = none.
    split_depth : float
        Minimum depth (px of distance) of the neck between two maxima for
        them to stay separate objects.
    barrier : (Y, X) float or None
        Subtracted from the distance map (e.g. weighted brightness of the
        phase halo between touching cells); None = nothing.
    height : (Y, X) float or None
        Precomputed distance map of ``mask``; None = :func:`distance_map`.

    Returns
    -------
    (Y, X) int32 labels 1..n, 0 = background.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.int32)
    height = distance_map(mask) if height is None else np.asarray(height, dtype=np.float32)
    if smooth_sigma > 0:
        height = ndi.gaussian_filter(height, smooth_sigma, truncate=3.0)
    if barrier is not None:
        height = height - barrier.astype(np.float32)
    peaks = (height == ndi.maximum_filter(height, size=3)) & mask
    markers, _ = ndi.label(peaks, structure=_CONN8)
    labels = watershed(-height, markers, mask=mask)
    return merge_shallow_basins(labels, height, split_depth, markers)


def split_coarse(
    mask: np.ndarray,
    brightness: np.ndarray,
    step: int,
    smooth_sigma: float,
    split_depth: float,
    halo_weight: float,
    height: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`split_objects` on a ``step`` x coarser grid, labels put back on ``mask``.

    Lengths are in pixels of ``mask``; ``halo_weight`` per robust SD of
    ``brightness`` (z-score on ``mask``'s grid). ``height`` (optional) is the
    map to split on, given on the coarse grid (``mask.shape // step``) in
    coarse pixels, instead of the coarse mask's distance map (the learned
    seed map). The coarse labels are grown by one coarse pixel, upsampled
    and cut to ``mask``; each object keeps its largest connected piece.
    Several times cheaper than splitting at full grid, with split lines
    within a coarse pixel.
    """
    mask = np.asarray(mask, dtype=bool)
    if step <= 1 or min(mask.shape) < 4 * step:
        barrier = None
        if halo_weight > 0:
            z = ndi.gaussian_filter(brightness, _HALO_SIGMA, truncate=3.0)
            barrier = np.maximum(z, 0) * np.float32(halo_weight)
        if height is not None:
            height = np.asarray(height, dtype=np.float32)
            if step > 1:
                height = unbin_labels(height * np.float32(step), step, mask.shape)
            height = height[: mask.shape[0], : mask.shape[1]]
        return split_objects(mask, smooth_sigma, split_depth, barrier=barrier, height=height)
    coarse = bin_image(mask.astype(np.float32), step) >= 0.5
    barrier = None
    if halo_weight > 0:
        z = ndi.gaussian_filter(bin_image(brightness, step), _HALO_SIGMA / step, truncate=3.0)
        barrier = np.maximum(z, 0) * np.float32(halo_weight / step)
    if height is not None:
        height = np.asarray(height, dtype=np.float32)[: coarse.shape[0], : coarse.shape[1]]
    lab = split_objects(coarse, smooth_sigma / step, split_depth / step, barrier=barrier, height=height)
    lab = np.where(lab > 0, lab, ndi.grey_dilation(lab, size=3))
    lab = unbin_labels(lab, step, mask.shape)
    return _keep_largest_piece(np.where(mask, lab, 0))
