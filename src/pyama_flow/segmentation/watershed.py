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
   the dark mask's, its small holes filled: :func:`.foreground._dark_diameters`),
   :func:`.masks.estimate_cell_diameter`;
3. **threshold + cleanup** sized to the cells: texture above the background
   mode by ``texture_threshold`` (or darkness, with the bright specks of a
   dark cell enclosed by its halo: :func:`.masks.dark_cells`), fill holes up to
   ``max_hole_area``, square opening of side ``2 * open_radius + 1``, drop
   objects below ``min_area``;
4. **learned foreground** (when it applies): a small convolutional network
   (:mod:`.pixel_cnn`, on the 15 classifier features of
   :mod:`.pixel_classifier`, trained on hand-annotated T98G; or the
   per-pixel perceptrons of :mod:`.pixel_classifier`, ``classifier``)
   turns the texture mask into a cell mask, deciding the outline against
   the phase halo, the gaps between cells and flat cell regions. It is used
   when the frame resembles its training data: the bright halo peaks well
   inside the texture mask's outline (:func:`.masks.halo_depth` >=
   ``min_halo_depth`` x diameter, the halo's textured outer flank widens the
   mask as on T98G) and either the cells are at the classifier's training
   scale (estimated diameter >= ``learned_min_diameter``) or the
   classifier's mask agrees with the texture mask (IoU >= ``min_agreement``).
   Otherwise the **texture** foreground: the mask
   is eroded by ``erode_radius`` and, after the split, outlines are moved
   onto the ridge of the halo within ``refine_band``
   (:func:`.outlines.refine_outlines`);
5. **split**: distance transform of the mask (chamfer, or Euclidean with
   ``exact_distance``), Gaussian-smoothed (``smooth_sigma``), minus
   ``halo_weight`` x the (robustly normalised) brightness, so bright phase
   halos between touching cells act as barriers; watershed from every local
   maximum, then neighbouring basins are merged (highest saddle first) while
   the shallower peak rises less than ``split_depth`` above their saddle --
   the partition that seeding from the h-maxima would give, at a fraction
   of the cost (for the learned mask on the classifier's coarser grid,
   labels then put back on the mask, :func:`.split.split_coarse`). On the
   dark path two basins with a shallow neck stay apart when the outline
   dips into a notch at both ends of their contact (``split_notch``: round
   cells pressed together). With the learned
   foreground the map split is by default not the mask's distance map but
   the classifier's **seed map** (``seed_map="learned"``): each cell pixel's
   predicted distance to its own cell's outline, which dips where two cells
   touch (smoothed by diameter / 30, same ``split_depth``; chosen by a
   5-fold cross-validation by set on 25 annotated T98G frames: mean F1
   0.771 against 0.733 for the mask's distance map). With the network's
   seed map the split's two lengths follow the cell size measured on that
   map (:func:`seed_diameter`, ``info["seed_diameter"]``) instead of the
   texture estimate, which misses small crowded cells (41 px cells
   estimated at 57-72 px: too deep a neck kept them merged);
6. **learned outlines**: the split needs a clean mask (the opening keeps
   spurs from seeding false objects), but the cell outline does not: the
   objects then grow into the classifier's foreground at
   ``outline_threshold`` without the opening
   (:func:`.outlines.grow_labels`), which gives back thin protrusions; the
   threshold is below 0.5 because, for calibrated probabilities, the one
   maximising overlap (Dice / IoU) lies below one half (0.45, from the
   classifier's two-fold cross-validation);
7. upsample the labels to the frame (nearest neighbour), numbered 1..n.

This module runs the steps (:func:`segment_watershed`); they live in
:mod:`.maps` (1: binning, texture, brightness), :mod:`.foreground` (2-4: the
first look, the cleaned mask, the learned foreground; with :mod:`.masks`),
:mod:`.split` (5) and :mod:`.outlines` (6).

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

from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi

from pyama_flow.segmentation.foreground import _RATIOS, _classifier_features, _Choice, _derived, _Front, choose_foreground
from pyama_flow.segmentation.maps import gaussian_filter, unbin_labels
from pyama_flow.segmentation.masks import distance_map
from pyama_flow.segmentation.outlines import _keep_largest_piece, grow_labels, refine_outlines
from pyama_flow.segmentation.pixel_cnn import check_views
from pyama_flow.segmentation.split import _HALO_SIGMA, split_coarse, split_objects

FOREGROUNDS = ("auto", "texture", "dark", "learned")
SEED_MAPS = ("learned", "mask")
CLASSIFIERS = ("cnn", "perceptron")
#: smoothing of the learned seed map, as a ratio to ``cell_diameter``
_SEED_SMOOTH = 1.0 / 30.0
#: a cell's diameter per seed-map peak height (upper quartile of the peaks,
#: input px): the median of true diameter / peak over the 25 hand-annotated
#: T98G sets, out-of-fold networks (6000-step training: 3.41, 3.0-4.6 per
#: set; 3.53 and 3.50 for the 1500- and 3000-step networks)
SEED_PEAK_TO_DIAMETER = 3.4
_SEED_PEAK_WINDOW = 5  # grid px: the neighbourhood a seed-map peak is the maximum of
_SEED_PEAK_MIN = 1.0  # grid px: lower peaks are not counted


# long only by its 25 documented parameters (the config's keys); the body is ~35 lines
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
    split_notch: float | None = None,
    halo_weight: float = 0.6,
    exact_distance: bool = False,
    foreground: str = "auto",
    refine_band: float | None = None,
    learned_threshold: float = 0.5,
    outline_threshold: float | None = 0.45,
    min_agreement: float = 0.5,
    learned_min_diameter: float | None = 30.0,
    min_halo_depth: float = 0.08,
    dark_fraction: float = 0.3,
    seed_map: str = "learned",
    classifier: str = "cnn",
    cnn_views: int = 1,
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
        frame (:func:`.masks.estimate_cell_diameter` on the thresholded
        texture, or on the dark mask with its small holes filled for dark
        cells); T98G at 10x, 0.87 um/px: about 60.
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
        robust standard deviations, plus the not-bright regions that are at
        least half dark (:func:`.masks.dark_cells`); None = 8 for the dark
        foreground. With
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
        / 15 (the mask's distance map) or diameter / 30 (the learned seed map;
        the network's: its measured diameter / 30, see ``split_depth``).
    split_depth : float or None
        Minimum neck depth (input px) between two cells; None = diameter / 15
        (dark foreground with an estimated diameter: the diameter of the
        unfilled dark mask / 15, see :func:`.foreground._dark_diameters`;
        the network's seed map, ``classifier="cnn"``: the diameter measured
        on the seed map / 15, :func:`seed_diameter`, reported as
        ``info["seed_diameter"]``).
    split_notch : float or None
        Two parts with a shallower neck stay apart when the outline of the
        pair dips at least this far (input px) below its convex hull at both
        ends of the line where they touch (round cells pressed together;
        :func:`.split.notch_depths`), each part at least diameter² x 0.3.
        None = 0.14 x diameter for the dark foreground (chosen on the tuning
        movies and the E. coli frames, see the README), 0 (off) for the
        texture one; not used by the learned foreground (its seed map dips
        between touching cells).
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
        ``"learned"``: the learned classifier (``classifier``; trained on
        T98G phase contrast) on top of the texture mask.
        ``"auto"`` (default): ``"dark"`` when the dark pixels are at least
        ``dark_fraction`` of the textured ones (or ``texture_threshold`` is
        None); else ``"learned"`` when the frame looks like the classifier's
        training data -- the halo peaks at least ``min_halo_depth`` x the
        diameter inside the texture mask's outline, and the cells are at the
        classifier's scale (``learned_min_diameter``) or the classifier's
        mask agrees with the texture mask (IoU >= ``min_agreement``); else
        ``"texture"``.
    refine_band : float or None
        Texture foreground: outlines move onto the ridge of the bright halo
        within this distance (input px) of the eroded outline
        (:func:`.outlines.refine_outlines`); None = the erosion radius, 0 = off.
    learned_threshold : float
        Probability above which the classifier calls a pixel cell (0-1), for
        the cleaned mask that is split into cells.
    outline_threshold : float or None
        Learned foreground: after the split, objects grow into the connected
        pixels whose probability exceeds this (no opening; thin protrusions
        come back), and pixels below it are dropped when it exceeds
        ``learned_threshold`` (:func:`.outlines.grow_labels`); None = the
        outlines of the cleaned mask. Default 0.45: for calibrated probabilities the
        overlap-maximising threshold lies below one half (chosen by the
        classifier's two-fold cross-validation on T98G set1 / set2).
    min_agreement : float
        ``"auto"``: minimum foreground IoU of the classifier's and the
        texture mask (0-1) for the learned foreground, for frames whose
        estimated cell diameter is below ``learned_min_diameter``.
    learned_min_diameter : float or None
        ``"auto"``: at an estimated cell diameter of at least this (input
        px) the cells are at the scale the classifier was trained on (T98G,
        40-72 px), and the learned foreground is used wherever the halo test
        (``min_halo_depth``) passes, whatever ``min_agreement`` says; on
        T98G the classifier beats the texture mask on every cross-validated
        set where they disagree. None = ``min_agreement`` everywhere.
    min_halo_depth : float
        ``"auto"``: minimum depth of the halo peak inside the texture mask
        (:func:`.masks.halo_depth`), as a fraction of the cell diameter, for the
        learned foreground (T98G: about 0.13, a halo centred on the outline:
        about 0.04; 0 = no condition).
    dark_fraction : float
        ``"auto"``: minimum ratio of dark to textured pixels for the dark
        foreground (>= 0).
    seed_map : {"learned", "mask"}
        Learned foreground: what the watershed splits. ``"learned"``
        (default): the learned classifier's seed map, each cell
        pixel's predicted distance to its own cell's outline (which dips
        between touching cells); ``"mask"``: the distance map of the cleaned
        mask minus the halo barrier (the previous default). Ignored by the
        other foregrounds and when ``erode_radius`` or ``exact_distance`` is
        set.
    classifier : {"cnn", "perceptron"}
        Learned foreground: ``"cnn"`` (default), the small U-Net of
        :mod:`.pixel_cnn` on the classifier features, which sees each pixel's
        surroundings (cross-validated on T98G: see config/README);
        ``"perceptron"``, the per-pixel perceptrons of
        :mod:`.pixel_classifier` (the previous default, cheaper). Both give
        the probability and the seed map. The network is used on frames at
        its training scale (estimated diameter >= ``learned_min_diameter``);
        smaller cells keep the perceptrons and their agreement test (as
        before the network; C2C12 at 20 px segmented worse with it).
    cnn_views : int
        The network's maps averaged over this many turned and mirrored
        views of the frame (test-time augmentation, 1-8; 1 = off, the
        default; :func:`.pixel_cnn.predict_maps_cnn`). Costs that many
        forward passes of the network (~50 ms each per 1024² T98G frame);
        cross-validated on T98G, 4 views raised the mean F1 and the worst
        set's (config/README).
    return_info : bool
        Also return a dict with the choices made (``foreground``,
        ``cell_diameter``, ``bin_factor``, ``halo_depth``, ``agreement``,
        ``classifier``).

    Returns
    -------
    (Y, X) uint16 labels, 0 = background, 1..n within the frame (and the
    info dict when ``return_info``).
    """
    image = np.asarray(image)
    _check_arguments(
        image, cell_diameter, foreground, texture_threshold, dark_threshold, seed_map, classifier, cnn_views
    )
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
    info: dict = {"cell_diameter": front.d, "bin_factor": front.f}
    seeds = seed_map == "learned" and erode_radius is None and not exact_distance
    choice = choose_foreground(
        front, seeds, learned_threshold, min_agreement, min_halo_depth, learned_min_diameter, info, classifier, cnn_views
    )
    info["foreground"] = choice.mode
    learned_seeds = choice.mode == "learned" and choice.seed_dist is not None
    info["seed_map"] = "learned" if learned_seeds else "mask"
    if learned_seeds and info.get("classifier") == "cnn":
        split_depth, smooth_sigma = _lengths_from_seeds(choice, front.f, split_depth, smooth_sigma, info)
    scales = _scales(front, choice.mode, learned_seeds, smooth_sigma, split_depth, split_notch, erode_radius, refine_band)
    # the split only needs the mask's bounding box (plus room for the filters)
    align = choice.step if learned_seeds else 1
    pad = int(np.ceil(3 * max(scales.smooth, _HALO_SIGMA) + scales.band + 2))
    box = _bounding_box(choice.mask, pad, align)
    labels = np.zeros(choice.mask.shape, dtype=np.int32)
    if box is not None:
        coarse = choice.mode == "learned" and erode_radius is None and not exact_distance
        labels[box] = _split_box(
            choice, front.maps.z, box, learned_seeds, coarse, scales, halo_weight, exact_distance
        )
        if choice.mode == "learned" and outline_threshold is not None:
            labels = _learned_outlines(labels, choice.prob, outline_threshold, learned_threshold)
    labels = _to_frame(labels, front.f, image.shape)
    return (labels, info) if return_info else labels


def seed_diameter(seed_dist: np.ndarray) -> float:
    """Typical cell diameter (in the seed map's pixels) from a learned seed
    map (each cell pixel's distance to its cell's outline): the upper
    quartile of its peaks (local maxima over ``_SEED_PEAK_WINDOW`` px, at
    least ``_SEED_PEAK_MIN``) times ``SEED_PEAK_TO_DIAMETER``; 0.0 without
    peaks."""
    dist = np.asarray(seed_dist, dtype=np.float32)
    peaks = (dist == ndi.maximum_filter(dist, size=_SEED_PEAK_WINDOW)) & (dist > np.float32(_SEED_PEAK_MIN))
    if not peaks.any():
        return 0.0
    return float(np.percentile(dist[peaks], 75)) * SEED_PEAK_TO_DIAMETER


def _lengths_from_seeds(
    choice: _Choice, f: int, split_depth: float | None, smooth_sigma: float | None, info: dict
) -> tuple[float | None, float | None]:
    """``split_depth`` and ``smooth_sigma`` (input px) where None: the
    diameter measured on the network's seed map (:func:`seed_diameter`;
    ``f``: the bin factor) times their ratios; ``info`` gets it as
    ``seed_diameter``. Unchanged when the map has no peaks."""
    d_seed = seed_diameter(choice.seed_dist) * f * choice.step
    if d_seed <= 0:
        return split_depth, smooth_sigma
    info["seed_diameter"] = d_seed
    if split_depth is None:
        split_depth = d_seed * _RATIOS["split_depth"]
    if smooth_sigma is None:
        smooth_sigma = d_seed * _SEED_SMOOTH
    return split_depth, smooth_sigma


def _check_arguments(
    image: np.ndarray,
    cell_diameter: float | None,
    foreground: str,
    texture_threshold: float | None,
    dark_threshold: float | None,
    seed_map: str,
    classifier: str = "cnn",
    cnn_views: int = 1,
) -> None:
    """Raise ``ValueError`` for arguments :func:`segment_watershed` cannot use."""
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
    if classifier not in CLASSIFIERS:
        raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {classifier!r}")
    check_views(cnn_views, "cnn_views")


class _Scales(NamedTuple):
    """Lengths of the split, in binned pixels."""

    lin: float  # binned px per input px
    smooth: float  # Gaussian sigma on the map that is split
    depth: float  # minimum neck depth between two cells
    erode: float  # erosion of the mask against the halo (0 = none)
    band: float  # outline refinement band (texture foreground)
    notch: float  # notch that keeps two parts with a shallow neck apart (0 = off)
    notch_area: float  # smallest part the notch test keeps apart (binned px²)


def _scales(
    front: _Front,
    mode: str,
    learned_seeds: bool,
    smooth_sigma: float | None,
    split_depth: float | None,
    split_notch: float | None,
    erode_radius: float | None,
    refine_band: float | None,
) -> _Scales:
    """The split's lengths: given ones converted to binned px, ``None`` ones
    derived from the cell diameter (see :func:`segment_watershed`)."""
    d, lin = front.d, 1.0 / front.f
    if learned_seeds and smooth_sigma is None:
        smooth = d * _SEED_SMOOTH * lin
    else:
        smooth = _derived(smooth_sigma, "smooth_sigma", d) * lin
    depth_split = _derived(split_depth, "split_depth", front.split_d) * lin
    r_er = _derived(erode_radius, "erode_radius", d) if mode == "texture" or erode_radius is not None else 0.0
    r_er *= lin
    band = r_er if refine_band is None else float(refine_band) * lin
    if split_notch is None:
        notch = _derived(None, "split_notch", d) * lin if mode == "dark" else 0.0
    else:
        notch = float(split_notch) * lin
    notch_area = _derived(None, "notch_min_area", d) * lin * lin
    return _Scales(lin, smooth, depth_split, r_er, band, notch, notch_area)


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


def _split_box(
    choice: _Choice,
    brightness: np.ndarray,
    box: tuple[slice, slice],
    learned_seeds: bool,
    coarse: bool,
    s: _Scales,
    halo_weight: float,
    exact_distance: bool,
) -> np.ndarray:
    """Split the mask inside ``box`` into cells (int32 labels of the box).

    The learned seed map (``learned_seeds``) or the mask's distance map minus
    the halo barrier, on the classifier's coarser grid (``coarse``, learned
    foreground) or on the binned grid: there the mask may first be eroded
    and, for the texture foreground, the outlines are refined onto the halo.
    """
    m, z = choice.mask[box], brightness[box]
    k = choice.step
    if learned_seeds:
        grid = (slice(box[0].start // k, None), slice(box[1].start // k, None))
        return split_coarse(m, z, k, s.smooth, s.depth, 0.0, height=choice.seed_dist[grid])
    if coarse:
        return split_coarse(m, z, k, s.smooth, s.depth, halo_weight * s.lin)
    dist = distance_map(m, exact=exact_distance)
    if s.erode > 0:
        m = dist > np.float32(s.erode)
        dist -= np.float32(s.erode)
    z_smooth = gaussian_filter(z, _HALO_SIGMA)
    barrier = np.maximum(z_smooth, 0) * np.float32(halo_weight * s.lin) if halo_weight > 0 else None
    lab = split_objects(
        m, s.smooth, s.depth, barrier=barrier, height=dist, split_notch=s.notch, notch_min_area=s.notch_area
    )
    if choice.mode == "texture" and s.band > 0:
        lab = refine_outlines(lab, z_smooth, s.band)
    return lab


def _learned_outlines(
    labels: np.ndarray, prob: np.ndarray, outline_threshold: float, learned_threshold: float
) -> np.ndarray:
    """Grow the split objects into the classifier's foreground at
    ``outline_threshold`` (:func:`.outlines.grow_labels`); above
    ``learned_threshold`` it also trims them (largest piece kept)."""
    fg = prob > np.float32(outline_threshold)
    labels = grow_labels(labels, fg)
    if outline_threshold > learned_threshold:
        labels = _keep_largest_piece(np.where(fg, labels, 0))
    return labels


def _to_frame(labels: np.ndarray, f: int, shape: tuple[int, ...]) -> np.ndarray:
    """Binned labels back on the frame's grid as uint16 (raises past 65535 objects)."""
    labels = unbin_labels(labels, f, shape)
    if int(labels.max()) > np.iinfo(np.uint16).max:
        raise ValueError(f"{int(labels.max())} objects exceed the uint16 label range")
    return labels.astype(np.uint16)


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
