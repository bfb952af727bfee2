"""Foreground masks and what is measured on them.

Cleanup of a thresholded mask (holes, opening, small objects), the texture /
dark foreground, the distance map, and two measurements that steer the
watershed: the typical cell diameter (:func:`estimate_cell_diameter`) and
how far inside the mask's outline the phase halo peaks (:func:`halo_depth`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from pyama_flow import kernels
from pyama_flow.segmentation.logstd import _square_filter
from pyama_flow.segmentation.maps import bin_image, histogram_mode, robust_z, texture_image

_CONN8 = np.ones((3, 3), dtype=bool)
#: documented default scale (T98G phase contrast, 10x, 0.87 um/px)
DEFAULT_DIAMETER = 60.0
#: estimated diameter = SCALE_PER_RADIUS x 95th percentile of the texture mask's
#: city-block distance map (binned 2x2; T98G: 55-70 px, the synthetic cells of
#: the benchmark 48-52, C2C12 at 10x 20)
SCALE_PER_RADIUS = 3.7
#: range of the estimated diameter (input px)
DIAMETER_RANGE = (8.0, 240.0)
_MIN_SCALE_PIXELS = 50  # fewer mask pixels: no estimate, DEFAULT_DIAMETER


def fill_small_holes(mask: np.ndarray, max_area: float) -> np.ndarray:
    """Fill background regions (4-connected) of at most ``max_area`` pixels
    that do not touch the frame border."""
    mask = np.asarray(mask, dtype=bool)
    out = mask.copy()
    rows, starts, stops, comp, n = kernels.components(mask, False, 0)
    if n == 0:
        return out
    fill = np.bincount(comp, weights=stops - starts, minlength=n) <= max_area
    h, w = mask.shape
    fill[comp[(rows == 0) | (rows == h - 1) | (starts == 0) | (stops == w)]] = False
    kernels.paint_runs(out, rows, starts, stops, fill[comp])
    return out


#: brightness (robust SDs above the background) from which a pixel is phase halo, never cell
HALO_Z = 15.0


def dark_cells(z: np.ndarray, dark_threshold: float, halo_z: float = HALO_Z) -> np.ndarray:
    """Dark cells with their bright specks: a bool mask of the pixels of ``z``
    darker than ``-dark_threshold``, plus every 4-connected region of pixels
    not brighter than ``halo_z`` that is at least half dark.

    ``z`` is the robust z-score of the brightness. Cells whose cytoplasm has
    bright specks are bitten by the plain threshold (notches and holes that
    hole filling does not reach; simulated phase contrast: foreground IoU
    0.93). Such a cell is enclosed by its bright halo, so the region of
    not-bright pixels it forms is mostly dark and is taken whole (0.997);
    the background, even where the halo is open, is mostly not dark and is
    left out, as is the halo.
    """
    z = np.asarray(z)
    dark = z < np.float32(-dark_threshold)
    rows, starts, stops, comp, n = kernels.components(z < np.float32(halo_z), True, 0)
    if n == 0:
        return dark
    size = np.bincount(comp, weights=stops - starts, minlength=n)
    n_dark = np.bincount(comp, weights=kernels.run_counts(dark, rows, starts, stops), minlength=n)
    out = dark.copy()
    kernels.paint_runs(out, rows, starts, stops, (2 * n_dark >= size)[comp])
    return out


def remove_small(mask: np.ndarray, min_area: float) -> np.ndarray:
    """Drop 8-connected objects smaller than ``min_area`` pixels."""
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(mask.shape, dtype=bool)
    rows, starts, stops, comp, n = kernels.components(mask, True, 1)
    if n:
        keep = np.bincount(comp, weights=stops - starts, minlength=n) >= min_area
        kernels.paint_runs(out, rows, starts, stops, keep[comp])
    return out


def distance_map(mask: np.ndarray, exact: bool = False) -> np.ndarray:
    """Distance (px, float32) of every mask pixel to the nearest background pixel.

    ``exact=False`` averages the city-block and chessboard chamfer distances
    (within 12 % of Euclidean, several times faster; those of
    ``scipy.ndimage.distance_transform_cdt``, computed in one compiled pass,
    :func:`pyama_flow.kernels.chamfer_mean_distance`); ``exact=True`` is the
    Euclidean distance transform. Pixels outside the frame do not count as
    background.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.all():  # no background anywhere: one flat object
        return np.full(mask.shape, float(max(mask.shape)), dtype=np.float32)
    if exact:
        return ndi.distance_transform_edt(mask).astype(np.float32)
    return kernels.chamfer_mean_distance(mask)


def clean_mask(
    mask: np.ndarray, max_hole_area: float = 0.0, open_radius: float = 0.0, min_area: float = 0.0
) -> np.ndarray:
    """Fill holes up to ``max_hole_area``, square opening of half side
    ``open_radius``, drop objects below ``min_area`` (all in pixels of ``mask``)."""
    mask = np.asarray(mask, dtype=bool)
    if max_hole_area > 0:
        mask = fill_small_holes(mask, max_hole_area)
    r = int(round(open_radius))
    if r > 0:
        side = 2 * r + 1
        mask = _square_filter(_square_filter(mask, side, erode=True), side, erode=False)
    if min_area > 0:
        mask = remove_small(mask, min_area)
    return mask


def foreground_mask(
    image: np.ndarray,
    bin_factor: int = 1,
    texture_window: int = 3,
    texture_threshold: float | None = 0.8,
    dark_threshold: float | None = None,
    max_hole_area: float = 0.0,
    open_radius: float = 0.0,
    min_area: float = 0.0,
) -> np.ndarray:
    """Binned texture / dark foreground mask before the final erosion.

    Lengths / areas are in binned pixels here. Returns a bool array of the
    binned shape.
    """
    if texture_threshold is None and dark_threshold is None:
        raise ValueError("texture_threshold and dark_threshold cannot both be None")
    mask = None
    if texture_threshold is not None:
        tex = bin_image(texture_image(image, texture_window), bin_factor)
        mask = tex > np.float32(histogram_mode(tex) + float(texture_threshold))
    if dark_threshold is not None:
        dark = robust_z(bin_image(image, bin_factor)) < -float(dark_threshold)
        mask = dark if mask is None else mask | dark
    return clean_mask(mask, max_hole_area, open_radius, min_area)


def estimate_cell_diameter(
    mask: np.ndarray, pixel_size: float = 1.0, percentile: float = 95.0, default: float = DEFAULT_DIAMETER
) -> float:
    """Typical cell diameter (input px) from a rough foreground mask.

    ``SCALE_PER_RADIUS`` x the ``percentile`` (interpolated), over the mask's
    pixels, of their city-block distance to the background: for the texture
    mask (speckled, with thin protrusions) the 95th percentile is the
    half-width of the thickest cells; for solid masks (dark cells merged
    into colonies) the median is the robust choice. ``pixel_size`` is the
    mask's pixel size in input pixels (its bin factor). Fewer than
    ``_MIN_SCALE_PIXELS`` mask pixels: ``default``. The result is clipped to
    ``DIAMETER_RANGE``.
    """
    m = np.asarray(mask, dtype=bool)
    n = int(np.count_nonzero(m))
    if n < _MIN_SCALE_PIXELS:
        return float(default)
    dist = ndi.distance_transform_cdt(m, metric="taxicab")[m]
    cum = np.cumsum(np.bincount(dist))  # cum[k] = pixels at distance <= k
    q = percentile / 100.0 * n
    k = int(np.searchsorted(cum, q))  # first distance reaching the quantile
    below = cum[k - 1] if k > 0 else 0
    r = (k - 1) + (q - below) / max(cum[k] - below, 1)  # linear within the bin
    return float(np.clip(SCALE_PER_RADIUS * r * pixel_size, *DIAMETER_RANGE))


def halo_depth(mask: np.ndarray, brightness: np.ndarray, max_depth: int = 8) -> float:
    """How far inside a texture mask's outline the bright phase halo peaks (px).

    Mean ``brightness`` of the mask pixels at each city-block depth 1 ..
    ``max_depth`` from the outline; returns the depth of the maximum
    (parabolic interpolation), 0 when the mask has no interior. Phase
    contrast whose texture mask spills well past the cells (the outer flank
    of a wide halo is textured) gives a deep peak; a halo centred on a tight
    mask outline gives a shallow one.
    """
    m = np.asarray(mask, dtype=bool)
    depth = ndi.distance_transform_cdt(m, metric="taxicab")
    sel = m & (depth <= max_depth)
    if not sel.any():
        return 0.0
    k = depth[sel]
    counts = np.bincount(k, minlength=max_depth + 1)
    sums = np.bincount(k, weights=brightness[sel].astype(np.float64), minlength=max_depth + 1)
    valid = counts >= 10
    valid[0] = False
    if not valid.any():
        return 0.0
    prof = np.where(valid, sums / np.maximum(counts, 1), -np.inf)
    j = int(np.argmax(prof))
    if 1 <= j - 1 and j + 1 <= max_depth and valid[j - 1] and valid[j + 1]:
        a, b, c = prof[j - 1], prof[j], prof[j + 1]
        den = a - 2 * b + c
        if den < 0:
            return float(j + 0.5 * (a - c) / den)
    return float(j)
