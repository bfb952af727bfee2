"""Adaptive foreground + seeded watershed: splits touching cells, keeps small ones.

An improvement over the reference LOG-STD (SPEC step 2, issue 4). Per frame:

1. **texture**: ``0.5 * ln(local variance)`` over a ``texture_window`` square
   at full resolution (cells are textured, the background is flat), then
   **binned** by ``bin_factor`` (block mean) so the rest runs at roughly 30 px
   per cell diameter whatever the magnification;
2. **first look** (texture and brightness binned 2x2): with the defaults the
   method adapts to the frame --
   *dark or textured cells*: if pixels darker than the background by the
   dark threshold (8 robust SDs) are at least ``dark_fraction`` of the
   textured ones, the cells are flat and dark (bacteria): the **dark**
   foreground is used; *scale*: ``cell_diameter`` left as None is estimated
   from the 95th percentile of the texture mask's distance map (median of
   the dark mask's), :func:`estimate_cell_diameter`;
3. **threshold + cleanup** sized to the cells: texture above the background
   mode by ``texture_threshold`` (or darkness), fill holes up to
   ``max_hole_area``, square opening of side ``2 * open_radius + 1``, drop
   objects below ``min_area``;
4. **learned foreground** (when it applies): a small pixel classifier
   (:mod:`.pixel_classifier`, 15 features, trained on hand-annotated T98G)
   turns the texture mask into a cell mask, deciding the outline against
   the phase halo, the gaps between cells and flat cell regions. It is used
   when the frame resembles its training data: the bright halo peaks well
   inside the texture mask's outline (:func:`halo_depth` >=
   ``min_halo_depth`` x diameter, the halo's textured outer flank widens the
   mask as on T98G) and the classifier's mask agrees with the texture mask
   (IoU >= ``min_agreement``). Otherwise the **texture** foreground: the mask
   is eroded by ``erode_radius`` and, after the split, outlines are moved
   onto the ridge of the halo within ``refine_band`` (:func:`refine_outlines`);
5. **split**: distance transform of the mask (chamfer, or Euclidean with
   ``exact_distance``), Gaussian-smoothed (``smooth_sigma``), minus
   ``halo_weight`` x the (robustly normalised) brightness, so bright phase
   halos between touching cells act as barriers; watershed from every local
   maximum, then neighbouring basins are merged (highest saddle first) while
   the shallower peak rises less than ``split_depth`` above their saddle --
   the partition that seeding from the h-maxima would give, at a fraction
   of the cost (for the learned mask on the classifier's coarser grid, labels
   then put back on the mask, :func:`split_coarse`). With the learned
   foreground the map split is by default not the mask's distance map but
   the classifier's **seed map** (``seed_map="learned"``): each cell pixel's
   predicted distance to its own cell's outline, which dips where two cells
   touch (smoothed by diameter / 30, same ``split_depth``; chosen by a
   5-fold cross-validation by set on 25 annotated T98G frames: mean F1
   0.771 against 0.733 for the mask's distance map);
6. **learned outlines**: the split needs a clean mask (the opening keeps
   spurs from seeding false objects), but the cell outline does not: the
   objects then grow into the classifier's foreground at
   ``outline_threshold`` without the opening (:func:`grow_labels`), which
   gives back thin protrusions; the threshold is below 0.5 because, for
   calibrated probabilities, the one maximising overlap (Dice / IoU) lies
   below one half (0.45, from the classifier's two-fold cross-validation);
7. upsample the labels to the frame (nearest neighbour), numbered 1..n.

Length and area parameters are in pixels of the input frame. Left as ``None``
they follow ``cell_diameter`` by the ratios in ``_RATIOS`` (tuned on T98G
phase contrast, 10x, 0.87 um/px, cells about 60 px), so one number adapts the
method to another magnification or cell type. ``foreground`` forces one of
the three foregrounds; ``return_info=True`` reports the choices made.

Note for time-lapse use: the automatic choices are made per frame. For
strictly identical parameters over a movie, pass ``cell_diameter`` (and
``foreground``) explicitly.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from pyama_flow.segmentation.logstd import _square_filter

#: defaults of the derived parameters as ratios to ``cell_diameter`` (lengths)
#: or to ``cell_diameter ** 2`` (areas)
_RATIOS: dict[str, float] = {
    "max_hole_area": 1.0 / 3.0,
    "open_radius": 1.0 / 15.0,
    "min_area": 1.0 / 6.0,
    "erode_radius": 1.0 / 15.0,
    "smooth_sigma": 1.0 / 15.0,
    "split_depth": 1.0 / 15.0,
}
_AREAS = ("max_hole_area", "min_area")
_CONN8 = np.ones((3, 3), dtype=bool)
_HALO_SIGMA = 1.0  # binned px, smoothing of the brightness used as halo barrier
#: documented default scale (T98G phase contrast, 10x, 0.87 um/px)
DEFAULT_DIAMETER = 60.0
#: estimated diameter = SCALE_PER_RADIUS x 95th percentile of the texture mask's
#: city-block distance map (binned 2x2; T98G: 55-70 px, the synthetic cells of
#: the benchmark 48-52, C2C12 at 10x 20)
SCALE_PER_RADIUS = 3.7
#: range of the estimated diameter (input px)
DIAMETER_RANGE = (8.0, 240.0)
_MIN_SCALE_PIXELS = 50  # fewer mask pixels: no estimate, DEFAULT_DIAMETER
_DARK_THRESHOLD = 8.0  # robust SDs, default of the dark foreground
_PROBE_BIN = 2  # bin factor of the first look (scale, dark cells)
_DARK_PERCENTILE = 50.0  # scale from the median depth of dark masks


def bin_image(image: np.ndarray, factor: int) -> np.ndarray:
    """Block mean over ``factor x factor`` pixels, float32.

    Trailing rows / columns that do not fill a whole block are dropped;
    ``factor <= 1`` only converts to float32.
    """
    img = np.asarray(image, dtype=np.float32)
    if factor <= 1:
        return img
    ny, nx = img.shape[0] // factor, img.shape[1] // factor
    if ny == 0 or nx == 0:
        raise ValueError(f"frame {img.shape} smaller than bin factor {factor}")
    img = img[: ny * factor, : nx * factor]
    out = np.zeros((ny, nx), dtype=np.float32)
    for dy in range(factor):
        for dx in range(factor):
            out += img[dy::factor, dx::factor]
    out *= np.float32(1.0 / (factor * factor))
    return out


def unbin_labels(labels: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upsampling of binned labels to ``shape``.

    Rows / columns dropped by :func:`bin_image` repeat the last binned
    row / column.
    """
    if factor <= 1:
        return labels
    iy = np.minimum(np.arange(shape[0]) // factor, labels.shape[0] - 1)
    ix = np.minimum(np.arange(shape[1]) // factor, labels.shape[1] - 1)
    if shape[0] == labels.shape[0] * factor and shape[1] == labels.shape[1] * factor:
        return np.repeat(np.repeat(labels, factor, axis=0), factor, axis=1)
    return labels[np.ix_(iy, ix)]


def _window_sum(a: np.ndarray, w: int) -> np.ndarray:
    """Sums over all ``w x w`` windows fully inside ``a`` (shape shrinks by w - 1)."""
    ny, nx = a.shape[0] - w + 1, a.shape[1] - w + 1
    rows = a[:ny] + a[1 : ny + 1]
    for k in range(2, w):
        rows += a[k : ny + k]
    out = rows[:, :nx] + rows[:, 1 : nx + 1]
    for k in range(2, w):
        out += rows[:, k : nx + k]
    return out


def texture_image(image: np.ndarray, window: int = 3) -> np.ndarray:
    """Log local standard deviation over an odd ``window`` square (float32).

    Returns ``0.5 * ln(w**4 * var)`` (a constant offset from ``0.5 * ln(var)``,
    which does not matter since thresholds are taken relative to the
    histogram mode). Computed on windows fully inside the frame; the
    ``window // 2`` outermost rows / columns copy their inner neighbours. The
    frame's median is subtracted first (float32 precision); variances are
    floored at a tiny fraction of the frame's so flat patches stay finite.
    """
    image = np.asarray(image)
    w = int(window)
    if w < 3 or w % 2 == 0 or min(image.shape) < w:
        raise ValueError(f"texture window {window} must be odd, >= 3 and fit the frame {image.shape}")
    img = np.subtract(image, np.float32(np.median(image[::4, ::4])), dtype=np.float32)
    s = _window_sum(img, w)
    var = _window_sum(img * img, w)
    var *= np.float32(w * w)
    var -= s * s  # = w**4 * variance
    floor = np.float32(max(float(np.var(img[::4, ::4])) * 1e-6, 1e-12) * w**4)
    np.maximum(var, floor, out=var)
    r = w // 2
    out = np.empty(img.shape, dtype=np.float32)
    inner = out[r : img.shape[0] - r, r : img.shape[1] - r]
    np.log(var, out=inner)
    inner *= np.float32(0.5)
    for k in range(r):  # borders copy their inner neighbours
        out[k, r:-r] = out[r, r:-r]
        out[-1 - k, r:-r] = out[-1 - r, r:-r]
    out[:, :r] = out[:, r : r + 1]
    out[:, -r:] = out[:, -r - 1 : -r]
    return out


def binned_texture(image: np.ndarray, window: int = 3, factor: int = 1, block: int = 64) -> np.ndarray:
    """``bin_image(texture_image(image, window), factor)``, computed in blocks
    of about ``block`` rows (same values; far fewer frame-sized temporaries)."""
    image = np.asarray(image)
    w = int(window)
    if w < 3 or w % 2 == 0 or min(image.shape) < w:
        raise ValueError(f"texture window {window} must be odd, >= 3 and fit the frame {image.shape}")
    f = max(1, int(factor))
    ny, nx = image.shape
    oy, ox = ny // f, nx // f
    if oy == 0 or ox == 0:
        raise ValueError(f"frame {image.shape} smaller than bin factor {f}")
    r = w // 2
    med = np.float32(np.median(image[::4, ::4]))
    sub = np.subtract(image[::4, ::4], med, dtype=np.float32)
    floor = np.float32(max(float(np.var(sub)) * 1e-6, 1e-12) * w**4)
    out = np.empty((oy, ox), dtype=np.float32)
    step = max(1, block // f) * f
    for y0 in range(0, oy * f, step):
        y1 = min(y0 + step, oy * f)
        rows = np.clip(np.arange(y0, y1), r, ny - 1 - r)
        c0, c1 = int(rows[0]), int(rows[-1]) + 1
        img = np.subtract(image[c0 - r : c1 + r], med, dtype=np.float32)
        s = _window_sum(img, w)
        var = _window_sum(img * img, w)
        var *= np.float32(w * w)
        var -= s * s
        np.maximum(var, floor, out=var)
        t = np.empty((c1 - c0, nx), dtype=np.float32)
        inner = t[:, r : nx - r]
        np.log(var, out=inner)
        inner *= np.float32(0.5)
        t[:, :r] = t[:, r : r + 1]
        t[:, nx - r :] = t[:, nx - r - 1 : nx - r]
        if rows[0] != y0 or rows[-1] != y1 - 1:
            t = t[rows - c0]
        out[y0 // f : y1 // f] = bin_image(t[:, : ox * f], f)
    return out


def histogram_mode(values: np.ndarray, n_bins: int = 200) -> float:
    """Centre of the fullest bin of an ``n_bins`` histogram (first on ties)."""
    counts, edges = np.histogram(np.ravel(values), bins=n_bins)
    k = int(np.argmax(counts))
    return float(0.5 * (edges[k] + edges[k + 1]))


def robust_z(image: np.ndarray) -> np.ndarray:
    """``(x - median) / (1.4826 * MAD)``, float32 (median / MAD from a 1/16 subsample)."""
    img = np.asarray(image, dtype=np.float32)
    sub = img[::4, ::4]
    med = float(np.median(sub))
    mad = 1.4826 * float(np.median(np.abs(sub - med)))
    if mad <= 0:
        mad = float(np.std(sub)) or 1.0
    return (img - np.float32(med)) * np.float32(1.0 / mad)


def fill_small_holes(mask: np.ndarray, max_area: float) -> np.ndarray:
    """Fill background regions (4-connected) of at most ``max_area`` pixels
    that do not touch the frame border."""
    mask = np.asarray(mask, dtype=bool)
    holes, n = ndi.label(~mask)
    if n == 0:
        return mask.copy()
    fill = np.bincount(holes.ravel(), minlength=n + 1) <= max_area
    for edge in (holes[0], holes[-1], holes[:, 0], holes[:, -1]):
        fill[edge] = False
    fill[0] = False
    return mask | fill[holes]


def remove_small(mask: np.ndarray, min_area: float) -> np.ndarray:
    """Drop 8-connected objects smaller than ``min_area`` pixels."""
    lab, n = ndi.label(mask, structure=_CONN8)
    if n == 0:
        return np.asarray(mask, dtype=bool).copy()
    keep = np.bincount(lab.ravel(), minlength=n + 1) >= min_area
    keep[0] = False
    return keep[lab]


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


def distance_map(mask: np.ndarray, exact: bool = False) -> np.ndarray:
    """Distance (px, float32) of every mask pixel to the nearest background pixel.

    ``exact=False`` averages the city-block and chessboard chamfer distances
    (within 12 % of Euclidean, several times faster); ``exact=True`` is the
    Euclidean distance transform. Pixels outside the frame do not count as
    background.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.all():  # no background anywhere: one flat object
        return np.full(mask.shape, float(max(mask.shape)), dtype=np.float32)
    if exact:
        return ndi.distance_transform_edt(mask).astype(np.float32)
    d = ndi.distance_transform_cdt(mask, metric="taxicab").astype(np.float32)
    d += ndi.distance_transform_cdt(mask, metric="chessboard")
    d *= np.float32(0.5)
    return d


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


def _derived(value: float | None, name: str, diameter: float) -> float:
    if value is not None:
        return float(value)
    ratio = _RATIOS[name]
    return ratio * diameter * diameter if name in _AREAS else ratio * diameter


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


def refine_outlines(labels: np.ndarray, brightness: np.ndarray, band: float) -> np.ndarray:
    """Move object outlines onto the bright phase halo, within ``band`` px.

    Each object's core (farther than ``band`` from its outline; at least its
    innermost pixel) and the background farther than ``band`` from any object
    are seeds of a watershed flooding ``brightness`` (bright = ridge) in the
    band between them, so every outline settles on the ridge of the halo
    between the object and the background (or between two touching
    objects). Objects stay one connected piece (smaller stray pieces are
    dropped). Returns int32 labels 1..n.
    """
    labels = np.asarray(labels, dtype=np.int32)
    n = int(labels.max())
    if n == 0 or band <= 0:
        return labels
    fg = labels > 0
    din = distance_map(fg)
    dout = distance_map(~fg)
    markers = np.where(din > band, labels, 0)
    present = np.bincount(labels.ravel(), minlength=n + 1) > 0
    for t in (band / 2, band / 4, -1.0):  # thin objects: seed their inner part
        missing = present & (np.bincount(markers.ravel(), minlength=n + 1) == 0)
        missing[0] = False
        if not missing.any():
            break
        add = missing[labels] & (din > t)
        markers[add] = labels[add]
    markers[dout > band] = n + 1
    # flood only the band (plus a rim of seeds on either side)
    region = ((din <= band + 1.5) & (dout <= band + 1.5)) | (markers > 0) & (markers <= n) & (din <= band)
    out = watershed(brightness, np.where(region, markers, 0), mask=region)
    out = np.where(region, out, markers)
    out[out == n + 1] = 0
    return _keep_largest_piece(out)


def grow_labels(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Grow labelled objects into the ``mask`` pixels connected to them.

    Breadth-first, one 8-connected ring per step (each new pixel takes the
    largest label among its already labelled neighbours), so a pixel goes to
    the object nearest to it along ``mask``. Pixels of ``mask`` not connected
    to any object stay 0; labelled pixels outside ``mask`` are kept. Returns
    int32 labels with the same ids.
    """
    labels = np.asarray(labels, dtype=np.int32)
    out = np.pad(labels, 1)
    nx = out.shape[1]
    flat = out.ravel()
    todo = np.flatnonzero(np.pad(np.asarray(mask, dtype=bool) & (labels == 0), 1))
    offsets = np.array([-nx - 1, -nx, -nx + 1, -1, 1, nx - 1, nx, nx + 1], dtype=np.intp)
    while todo.size:
        new = flat[todo[:, None] + offsets].max(axis=1)
        got = new > 0
        if not got.any():
            break
        flat[todo[got]] = new[got]
        todo = todo[~got]
    return out[1:-1, 1:-1]


def _keep_largest_piece(labels: np.ndarray) -> np.ndarray:
    """Keep each label's largest 4-connected piece, renumber 1..n (int32)."""
    from skimage.measure import label as cc_label

    pieces = cc_label(labels, background=0, connectivity=1)
    m = int(pieces.max())
    if m == 0:
        return np.zeros(labels.shape, dtype=np.int32)
    owner = np.zeros(m + 1, dtype=np.int64)
    owner[pieces.ravel()] = labels.ravel()
    size = np.bincount(pieces.ravel(), minlength=m + 1)
    order = np.lexsort((-size, owner))  # by owner, largest piece first
    first = np.r_[True, owner[order][1:] != owner[order][:-1]]
    keep = np.zeros(m + 1, dtype=bool)
    keep[order[first]] = True
    keep[0] = False
    lut = np.zeros(m + 1, dtype=np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut[pieces]


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


class _Maps:
    """Binned texture (minus its background mode) and brightness z-score."""

    def __init__(self, image: np.ndarray, f: int, texture_window: int | None):
        self.f = f
        self.shape = (image.shape[0] // f, image.shape[1] // f)
        self.z = robust_z(bin_image(image, f))
        self.tex = None
        if texture_window is not None:
            tex = binned_texture(image, texture_window, f)
            tex -= np.float32(histogram_mode(tex))
            self.tex = tex


def _classifier_features(maps: _Maps, raw: np.ndarray, prior: np.ndarray, d: float) -> tuple[np.ndarray, int]:
    """Pixel-classifier features on the classifier grid and its step (pipeline
    px per grid px): the grid pixel is about ``d * GRID_PER_DIAMETER`` input px,
    the scale the classifier was trained at."""
    from pyama_flow.segmentation.pixel_classifier import GRID_PER_DIAMETER, classifier_features

    k = max(1, int(d * GRID_PER_DIAMETER / maps.f + 0.5))
    k = min(k, max(1, min(maps.shape) // 8))
    tex_g = bin_image(maps.tex, k)
    z_g = bin_image(maps.z, k)
    raw_g = bin_image(raw.astype(np.float32), k)
    prior_g = bin_image(prior.astype(np.float32), k) >= 0.5
    return classifier_features(tex_g, z_g, raw_g, prior_g), k


def _learned_probability(
    maps: _Maps, raw: np.ndarray, prior: np.ndarray, d: float, seeds: bool = False
) -> tuple[np.ndarray, int, np.ndarray | None]:
    """Pixel-classifier foreground probability on the pipeline grid, the
    classifier step and (``seeds``) the learned seed map on the classifier
    grid (classifier-grid px; else None)."""
    from pyama_flow.segmentation.pixel_classifier import default_model, default_seed_model, predict_maps, predict_proba, upsample_linear

    feats, k = _classifier_features(maps, raw, prior, d)
    if seeds:
        p, dist = predict_maps(default_model(), default_seed_model(), feats)
    else:
        p, dist = predict_proba(default_model(), feats), None
    return upsample_linear(p, k, maps.shape), k, dist


def _bin_for(d: float, shape: tuple[int, ...], bin_factor: int | None) -> int:
    f = max(1, int(bin_factor) if bin_factor is not None else int(d / 30.0 + 0.5))
    return min(f, max(1, min(shape) // 8))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


class _Front:
    """Steps shared by segmentation and classifier training: scale, maps, masks."""

    def __init__(
        self,
        image: np.ndarray,
        cell_diameter: float | None,
        bin_factor: int | None,
        texture_window: int,
        texture_threshold: float | None,
        dark_threshold: float | None,
        foreground: str,
        dark_fraction: float,
        max_hole_area: float | None,
        open_radius: float | None,
        min_area: float | None,
    ):
        mode = foreground
        if texture_threshold is None:  # (validated: not "learned")
            mode = "dark"
        self.dark_thr = float(dark_threshold) if dark_threshold is not None else _DARK_THRESHOLD
        # a first look at a fixed 2x2 binning: dark or textured cells, scale
        e = _PROBE_BIN if min(image.shape) >= 32 * _PROBE_BIN else 1
        probe = _Maps(image, e, None if mode == "dark" else texture_window)
        dark_e = probe.z < np.float32(-self.dark_thr)
        raw_e = None if probe.tex is None else probe.tex > np.float32(texture_threshold)
        if mode == "auto":
            n_dark = int(np.count_nonzero(dark_e))
            if n_dark >= _MIN_SCALE_PIXELS and n_dark >= dark_fraction * max(int(np.count_nonzero(raw_e)), 1):
                mode = "dark"
        if cell_diameter is not None:
            d = float(cell_diameter)
        elif mode == "dark":
            d = estimate_cell_diameter(dark_e, e, percentile=_DARK_PERCENTILE)
        else:
            d = estimate_cell_diameter(raw_e, e)
        f = _bin_for(d, image.shape, bin_factor)
        if f == e and (probe.tex is not None or mode == "dark"):
            maps = probe
        else:
            maps = _Maps(image, f, None if mode == "dark" else texture_window)
        self.mode, self.d, self.f, self.maps = mode, d, f, maps
        area = 1.0 / (f * f)
        self.hole = _derived(max_hole_area, "max_hole_area", d) * area
        self.opening = _derived(open_radius, "open_radius", d) / f
        self.small = _derived(min_area, "min_area", d) * area
        if mode == "dark":
            self.raw = maps.z < np.float32(-self.dark_thr)
        else:
            self.raw = maps.tex > np.float32(texture_threshold)
            if dark_threshold is not None and mode == "texture":
                self.raw = self.raw | (maps.z < np.float32(-self.dark_thr))
        self.mask = clean_mask(self.raw, self.hole, self.opening, self.small)


def learned_features(
    image: np.ndarray, cell_diameter: float | None = None, texture_window: int = 3, texture_threshold: float = 0.8
) -> tuple[np.ndarray, int]:
    """Classifier-grid features of a frame, as the ``"learned"`` foreground of
    :func:`segment_watershed` computes them with these arguments (training aid).

    Returns ``(features, grid)``: features ``(Y, X, N)`` float32 and the
    classifier-grid pixel size in input pixels.
    """
    front = _Front(
        np.asarray(image), cell_diameter, None, texture_window, texture_threshold, None, "learned", 0.0, None, None, None
    )
    feats, k = _classifier_features(front.maps, front.raw, front.mask, front.d)
    return feats, front.f * k


def _bounding_box(mask: np.ndarray, pad: int, align: int = 1) -> tuple[slice, slice] | None:
    """Slices of ``mask``'s bounding box grown by ``pad`` (None if empty); the
    start rows / columns are rounded down to multiples of ``align``."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    y0 = max(int(rows[0]) - pad, 0) // align * align
    x0 = max(int(cols[0]) - pad, 0) // align * align
    return (
        slice(y0, min(int(rows[-1]) + pad + 1, mask.shape[0])),
        slice(x0, min(int(cols[-1]) + pad + 1, mask.shape[1])),
    )


FOREGROUNDS = ("auto", "texture", "dark", "learned")
SEED_MAPS = ("learned", "mask")
#: smoothing of the learned seed map, as a ratio to ``cell_diameter``
_SEED_SMOOTH = 1.0 / 30.0


def segment_watershed(
    image: np.ndarray,
    cell_diameter: float | None = None,
    bin_factor: int | None = None,
    texture_window: int = 3,
    texture_threshold: float | None = 0.8,
    dark_threshold: float | None = None,
    max_hole_area: float | None = None,
    open_radius: float | None = None,
    min_area: float | None = None,
    erode_radius: float | None = None,
    smooth_sigma: float | None = None,
    split_depth: float | None = None,
    halo_weight: float = 0.6,
    exact_distance: bool = False,
    foreground: str = "auto",
    refine_band: float | None = None,
    learned_threshold: float = 0.5,
    outline_threshold: float | None = 0.45,
    min_agreement: float = 0.5,
    min_halo_depth: float = 0.08,
    dark_fraction: float = 0.3,
    seed_map: str = "learned",
    return_info: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict]:
    """Segment one phase-contrast frame into cells, splitting touching ones.

    Parameters
    ----------
    image : (Y, X) array
        Phase-contrast frame (any real dtype).
    cell_diameter : float or None
        Typical cell diameter (input px); sets the defaults of all ``None``
        length / area parameters below. None (default) = estimated from the
        frame (:func:`estimate_cell_diameter` on the thresholded texture, or
        on the dark mask for dark cells); T98G at 10x, 0.87 um/px: about 60.
    bin_factor : int or None
        Block-mean binning after the texture step; None =
        ``max(1, round(cell_diameter / 30))``.
    texture_window : int
        Side (input px) of the local-variance window (odd, >= 3).
    texture_threshold : float or None
        Texture foreground where ln(local std) exceeds the background mode by
        this (0.8 = 2.2x the background's local std). None = texture not
        used: the dark foreground.
    dark_threshold : float or None
        Dark foreground: binned frame darker than its median by this many
        robust standard deviations; None = 8 for the dark foreground. With
        ``foreground="texture"`` a set value also adds the dark pixels to
        the texture mask (None = not).
    max_hole_area, open_radius, min_area : float or None
        Cleanup (input px): enclosed background up to ``max_hole_area`` is
        filled (None = diameter² / 3; texture and dark foregrounds), square
        opening of half side ``open_radius`` (None = diameter / 15), objects
        below ``min_area`` are dropped (None = diameter² / 6).
    erode_radius : float or None
        Erosion (input px, disk) of the mask against the phase halo; None =
        diameter / 15 for the texture foreground, 0 for the dark and learned
        ones.
    smooth_sigma : float or None
        Gaussian sigma (input px) on the map that is split; None = diameter
        / 15 (the mask's distance map) or diameter / 30 (the learned seed map).
    split_depth : float or None
        Minimum neck depth (input px) between two cells; None = diameter / 15.
    halo_weight : float
        Weight (input px per robust SD of brightness) of the bright phase
        halo as a barrier between cells; 0 = distance map only.
    exact_distance : bool
        Euclidean distance transform instead of the faster chamfer
        approximation.
    foreground : {"auto", "texture", "dark", "learned"}
        How cells are told from background. ``"texture"``: threshold on the
        local texture, erosion, then outlines refined onto the halo;
        ``"dark"``: threshold on darkness (flat dark cells, e.g. bacteria);
        ``"learned"``: the pixel classifier of :mod:`.pixel_classifier`
        (trained on T98G phase contrast) on top of the texture mask.
        ``"auto"`` (default): ``"dark"`` when the dark pixels are at least
        ``dark_fraction`` of the textured ones (or ``texture_threshold`` is
        None); else ``"learned"`` when the frame looks like the classifier's
        training data -- the halo peaks at least ``min_halo_depth`` x the
        diameter inside the texture mask's outline, and the classifier's mask
        agrees with the texture mask (IoU >= ``min_agreement``); else
        ``"texture"``.
    refine_band : float or None
        Texture foreground: outlines move onto the ridge of the bright halo
        within this distance (input px) of the eroded outline
        (:func:`refine_outlines`); None = the erosion radius, 0 = off.
    learned_threshold : float
        Probability above which the classifier calls a pixel cell (0-1), for
        the cleaned mask that is split into cells.
    outline_threshold : float or None
        Learned foreground: after the split, objects grow into the connected
        pixels whose probability exceeds this (no opening; thin protrusions
        come back), and pixels below it are dropped when it exceeds
        ``learned_threshold`` (:func:`grow_labels`); None = the outlines of
        the cleaned mask. Default 0.45: for calibrated probabilities the
        overlap-maximising threshold lies below one half (chosen by the
        classifier's two-fold cross-validation on T98G set1 / set2).
    min_agreement : float
        ``"auto"``: minimum foreground IoU of the classifier's and the
        texture mask (0-1) for the learned foreground.
    min_halo_depth : float
        ``"auto"``: minimum depth of the halo peak inside the texture mask
        (:func:`halo_depth`), as a fraction of the cell diameter, for the
        learned foreground (T98G: about 0.13, a halo centred on the outline:
        about 0.04; 0 = no condition).
    dark_fraction : float
        ``"auto"``: minimum ratio of dark to textured pixels for the dark
        foreground (>= 0).
    seed_map : {"learned", "mask"}
        Learned foreground: what the watershed splits. ``"learned"``
        (default): the seed map of :mod:`.pixel_classifier`, each cell
        pixel's predicted distance to its own cell's outline (which dips
        between touching cells); ``"mask"``: the distance map of the cleaned
        mask minus the halo barrier (the previous default). Ignored by the
        other foregrounds and when ``erode_radius`` or ``exact_distance`` is
        set.
    return_info : bool
        Also return a dict with the choices made (``foreground``,
        ``cell_diameter``, ``bin_factor``, ``halo_depth``, ``agreement``).

    Returns
    -------
    (Y, X) uint16 labels, 0 = background, 1..n within the frame (and the
    info dict when ``return_info``).
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D frame, got shape {image.shape}")
    if cell_diameter is not None and cell_diameter <= 0:
        raise ValueError("cell_diameter must be positive")
    if foreground not in FOREGROUNDS:
        raise ValueError(f"foreground must be one of {FOREGROUNDS}, got {foreground!r}")
    if texture_threshold is None and dark_threshold is None and foreground != "dark":
        raise ValueError("texture_threshold and dark_threshold cannot both be None")
    if texture_threshold is None and foreground == "learned":
        raise ValueError("the learned foreground needs texture_threshold")
    if seed_map not in SEED_MAPS:
        raise ValueError(f"seed_map must be one of {SEED_MAPS}, got {seed_map!r}")
    front = _Front(
        image,
        cell_diameter,
        bin_factor,
        texture_window,
        texture_threshold,
        dark_threshold,
        foreground,
        dark_fraction,
        max_hole_area,
        open_radius,
        min_area,
    )
    mode, d, f, maps, mask = front.mode, front.d, front.f, front.maps, front.mask
    lin = 1.0 / f
    info: dict = {"cell_diameter": d, "bin_factor": f}
    seed_dist = None
    if mode in ("auto", "learned"):
        depth = halo_depth(mask, maps.z) * f / d
        info["halo_depth"] = depth
        if mode == "learned" or depth >= min_halo_depth:
            seeds = seed_map == "learned" and erode_radius is None and not exact_distance
            p, k, seed_dist = _learned_probability(maps, front.raw, mask, d, seeds)
            learned = clean_mask(p > np.float32(learned_threshold), 0.0, front.opening, front.small)
            info["agreement"] = _iou(learned, mask)
            if mode == "learned" or info["agreement"] >= min_agreement:
                mode, mask = "learned", learned
        if mode != "learned":
            mode = "texture"
    info["foreground"] = mode
    learned_seeds = mode == "learned" and seed_dist is not None
    info["seed_map"] = "learned" if learned_seeds else "mask"
    if learned_seeds and smooth_sigma is None:
        smooth = d * _SEED_SMOOTH * lin
    else:
        smooth = _derived(smooth_sigma, "smooth_sigma", d) * lin
    depth_split = _derived(split_depth, "split_depth", d) * lin

    r_er = _derived(erode_radius, "erode_radius", d) if mode == "texture" or erode_radius is not None else 0.0
    r_er *= lin
    band = r_er if refine_band is None else float(refine_band) * lin
    # the split only needs the mask's bounding box (plus room for the filters)
    align = k if learned_seeds else 1
    box = _bounding_box(mask, int(np.ceil(3 * max(smooth, _HALO_SIGMA) + band + 2)), align)
    labels = np.zeros(mask.shape, dtype=np.int32)
    if box is not None:
        m, z = mask[box], maps.z[box]
        if learned_seeds:
            coarse = (slice(box[0].start // k, None), slice(box[1].start // k, None))
            lab = split_coarse(m, z, k, smooth, depth_split, 0.0, height=seed_dist[coarse])
        elif mode == "learned" and erode_radius is None and not exact_distance:
            lab = split_coarse(m, z, k, smooth, depth_split, halo_weight * lin)
        else:
            dist = distance_map(m, exact=exact_distance)
            if r_er > 0:
                m = dist > np.float32(r_er)
                dist -= np.float32(r_er)
            z_smooth = ndi.gaussian_filter(z, _HALO_SIGMA, truncate=3.0)
            barrier = np.maximum(z_smooth, 0) * np.float32(halo_weight * lin) if halo_weight > 0 else None
            lab = split_objects(m, smooth_sigma=smooth, split_depth=depth_split, barrier=barrier, height=dist)
            if mode == "texture" and band > 0:
                lab = refine_outlines(lab, z_smooth, band)
        labels[box] = lab
        if mode == "learned" and outline_threshold is not None:
            fg = p > np.float32(outline_threshold)
            labels = grow_labels(labels, fg)
            if outline_threshold > learned_threshold:
                labels = _keep_largest_piece(np.where(fg, labels, 0))
    labels = unbin_labels(labels, f, image.shape)
    if int(labels.max()) > np.iinfo(np.uint16).max:
        raise ValueError(f"{int(labels.max())} objects exceed the uint16 label range")
    labels = labels.astype(np.uint16)
    return (labels, info) if return_info else labels
