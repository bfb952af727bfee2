"""Splitting a mask into cells: watershed from every maximum, shallow basins merged.

:func:`split_objects` floods the (smoothed) distance map, or another height
map, from every local maximum and merges neighbouring basins whose saddle is
shallower than ``split_depth`` (:func:`merge_shallow_basins`, the partition
seeding from the h-maxima would give), unless the outline shows two cells
(``split_notch``: the line between the basins ends in a notch of the pair's
outline at both ends, :func:`notch_depths`). :func:`split_coarse` does the
same on a coarser grid and puts the labels back on the mask.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError
from skimage.segmentation import watershed

from pyama_flow import kernels
from pyama_flow.contact import contact_line, main_axis
from pyama_flow.segmentation.maps import bin_image, gaussian_filter, unbin_labels
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


def notch_depths(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """How deep the outline of two touching regions dips at the ends of their contact.

    Two round cells pressed together leave a notch in the outline of the
    pair where their contact line meets it; one convex cell cut in two by a
    spurious saddle does not. The depth of a point is its distance (px)
    inside the convex hull of the pair's outline pixels.

    Parameters
    ----------
    a, b : (Y, X) bool
        Disjoint regions on the same crop, with a background margin of at
        least one pixel (pixels of neither count as outside the pair).

    Returns
    -------
    (depth_1, depth_2) : the largest depth among the contact's end pixels
        (pixels of ``a`` 4-adjacent to ``b`` and 8-adjacent to the outside) on
        either side of the contact's middle, along its main direction; 0.0
        for a side without end pixels, or when the hull is degenerate.
    """
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    pair = a | b
    contact = contact_line(a, b)
    outside = ~ndi.binary_erosion(pair, structure=_CONN8, border_value=0)  # pixels with an outside 8-neighbour
    ends = np.argwhere(contact & outside).astype(np.float64)
    if len(ends) < 2:
        return 0.0, 0.0
    try:
        hull = ConvexHull(np.argwhere(pair & outside).astype(np.float64))
    except (QhullError, ValueError):  # too few or collinear outline pixels
        return 0.0, 0.0
    depth = -(ends @ hull.equations[:, :2].T + hull.equations[:, 2]).max(axis=1)
    line = np.argwhere(contact).astype(np.float64)
    centre = line.mean(axis=0)
    side = (ends - centre) @ main_axis(line - centre) >= 0
    d1 = float(depth[~side].max()) if (~side).any() else 0.0
    d2 = float(depth[side].max()) if side.any() else 0.0
    return d1, d2


def merge_shallow_basins(
    labels: np.ndarray,
    height: np.ndarray,
    depth: float,
    markers: np.ndarray | None = None,
    notch: float = 0.0,
    notch_min_area: float = 0.0,
) -> np.ndarray:
    """Merge basins whose separating saddle is shallower than ``depth``.

    ``labels`` are catchment basins of the maxima of ``height``. Pairs are
    visited by decreasing saddle height (the h-maxima merge tree): two
    basins merge when the lower of their peaks is less than ``depth`` above
    the saddle -- unless ``notch`` > 0, both (as merged so far) have at
    least ``notch_min_area`` pixels and the outline of the pair dips at
    least ``notch`` px below its convex hull at both ends of their contact
    (:func:`notch_depths`): round cells pressed together, whose neck in the
    distance map is shallow. ``markers`` (the watershed's seeds, one per
    basin at its maximum) make finding the peaks cheap. Returns int32
    labels 1..n.
    """
    n = int(labels.max())
    if n == 0:
        return labels.astype(np.int32)
    peak = np.full(n + 1, -np.inf)
    src = labels if markers is None else np.where(markers > 0, labels, 0)
    sel = src > 0
    np.maximum.at(peak, src[sel], height[sel])
    parent = np.arange(n + 1)
    notched = _Notches(labels, notch_min_area) if notch > 0 else None

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    a, b, saddle = adjacent_saddles(labels, height)
    for k in np.argsort(-saddle, kind="stable"):
        ra, rb = root(int(a[k])), root(int(b[k]))
        if ra == rb or min(peak[ra], peak[rb]) - saddle[k] >= depth:
            continue
        if notched is not None and notched.apart(ra, rb, notch):
            continue
        if peak[ra] < peak[rb]:
            ra, rb = rb, ra
        parent[rb] = ra
        if notched is not None:
            notched.join(ra, rb)
    roots = np.array([root(i) for i in range(n + 1)])
    # root 0 is the background and the smallest id, so it maps to 0
    _, lut = np.unique(roots, return_inverse=True)
    return lut.astype(np.int32)[labels]


class _Notches:
    """Regions of :func:`merge_shallow_basins` as merged so far, for the notch test."""

    def __init__(self, labels: np.ndarray, min_area: float):
        self.labels = labels
        self.min_area = min_area
        self.area = np.bincount(labels.ravel()).astype(np.float64)
        self.box = {i + 1: (s[0].start, s[0].stop, s[1].start, s[1].stop)
                    for i, s in enumerate(ndi.find_objects(labels)) if s is not None}
        self.members = {i: [i] for i in self.box}

    def apart(self, ra: int, rb: int, notch: float) -> bool:
        """Whether regions ``ra`` and ``rb`` are two cells by their outline."""
        if min(self.area[ra], self.area[rb]) < self.min_area:
            return False
        (ay0, ay1, ax0, ax1), (by0, by1, bx0, bx1) = self.box[ra], self.box[rb]
        y0, y1, x0, x1 = min(ay0, by0), max(ay1, by1), min(ax0, bx0), max(ax1, bx1)
        crop = np.pad(self.labels[y0:y1, x0:x1], 1)
        d1, d2 = notch_depths(np.isin(crop, self.members[ra]), np.isin(crop, self.members[rb]))
        return min(d1, d2) >= notch

    def join(self, ra: int, rb: int) -> None:
        """Region ``rb`` merged into ``ra``."""
        self.area[ra] += self.area[rb]
        self.members[ra] += self.members.pop(rb)
        (ay0, ay1, ax0, ax1), (by0, by1, bx0, bx1) = self.box[ra], self.box.pop(rb)
        self.box[ra] = (min(ay0, by0), max(ay1, by1), min(ax0, bx0), max(ax1, bx1))


def split_objects(
    mask: np.ndarray,
    smooth_sigma: float = 2.0,
    split_depth: float = 2.0,
    barrier: np.ndarray | None = None,
    height: np.ndarray | None = None,
    split_notch: float = 0.0,
    notch_min_area: float = 0.0,
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
    split_notch : float
        Two basins with a shallower neck stay apart when the outline of the
        pair dips at least this far (px) below its convex hull at both ends
        of their contact, and each has ``notch_min_area`` px
        (:func:`merge_shallow_basins`); 0 = off.
    notch_min_area : float
        Smallest basin (px) the notch test keeps apart.

    Returns
    -------
    (Y, X) int32 labels 1..n, 0 = background.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.int32)
    height = distance_map(mask) if height is None else np.asarray(height, dtype=np.float32)
    if smooth_sigma > 0:
        height = gaussian_filter(height, smooth_sigma)
    if barrier is not None:
        height = height - barrier.astype(np.float32)
    markers, _ = kernels.label8(kernels.masked_maxima(height, mask))
    labels = watershed(-height, markers, mask=mask)
    return merge_shallow_basins(labels, height, split_depth, markers, split_notch, notch_min_area)


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
            z = gaussian_filter(brightness, _HALO_SIGMA)
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
        z = gaussian_filter(bin_image(brightness, step), _HALO_SIGMA / step)
        barrier = np.maximum(z, 0) * np.float32(halo_weight / step)
    if height is not None:
        height = np.asarray(height, dtype=np.float32)[: coarse.shape[0], : coarse.shape[1]]
    lab = split_objects(coarse, smooth_sigma / step, split_depth / step, barrier=barrier, height=height)
    lab = np.where(lab > 0, lab, ndi.grey_dilation(lab, size=3))
    lab = unbin_labels(lab, step, mask.shape)
    return _keep_largest_piece(np.where(mask, lab, 0))
