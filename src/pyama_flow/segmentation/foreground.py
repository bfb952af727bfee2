"""Which foreground a frame is segmented with, and at which scale.

:class:`_Front` is the first look at a frame (dark or textured cells, the
cell diameter, the bin factor, the binned maps) and the cleaned mask;
:func:`choose_foreground` then decides, for ``foreground="auto"`` or
``"learned"``, whether the learned classifier (:mod:`.pixel_cnn` or
:mod:`.pixel_classifier`) on top
of the texture mask replaces it. Shared by segmentation and by the
classifier's training (:func:`.watershed.learned_features`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pyama_flow.segmentation.maps import _Maps, bin_image
from pyama_flow.segmentation.masks import (
    _MIN_SCALE_PIXELS,
    clean_mask,
    dark_cells,
    estimate_cell_diameter,
    fill_small_holes,
    halo_depth,
)

#: defaults of the derived parameters as ratios to ``cell_diameter`` (lengths)
#: or to ``cell_diameter ** 2`` (areas)
_RATIOS: dict[str, float] = {
    "max_hole_area": 1.0 / 3.0,
    "open_radius": 1.0 / 15.0,
    "min_area": 1.0 / 6.0,
    "erode_radius": 1.0 / 15.0,
    "smooth_sigma": 1.0 / 15.0,
    "split_depth": 1.0 / 15.0,
    "split_notch": 0.14,  # dark foreground (see watershed.segment_watershed)
    "notch_min_area": 0.3,  # the smallest basin the notch test keeps apart
}
_AREAS = ("max_hole_area", "min_area", "notch_min_area")
_DARK_THRESHOLD = 8.0  # robust SDs, default of the dark foreground
_PROBE_BIN = 2  # bin factor of the first look (scale, dark cells)
_DARK_PERCENTILE = 50.0  # scale from the median depth of dark masks


def _derived(value: float | None, name: str, diameter: float) -> float:
    """``value``, or when None the default of parameter ``name`` for cells of
    ``diameter`` (input px; ``_RATIOS``, areas by ``diameter ** 2``)."""
    if value is not None:
        return float(value)
    ratio = _RATIOS[name]
    return ratio * diameter * diameter if name in _AREAS else ratio * diameter


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
    maps: _Maps,
    raw: np.ndarray,
    prior: np.ndarray,
    d: float,
    seeds: bool = False,
    classifier: str = "cnn",
    views: int = 1,
) -> tuple[np.ndarray, int, np.ndarray | None]:
    """Pixel-classifier foreground probability on the pipeline grid, the
    classifier step and (``seeds``) the learned seed map on the classifier
    grid (classifier-grid px; else None), from the network
    (``classifier="cnn"``, :mod:`.pixel_cnn`) or the per-pixel perceptrons
    (``"perceptron"``, :mod:`.pixel_classifier`); ``views``: the network's
    views averaged (:func:`.pixel_cnn.predict_maps_cnn`)."""
    from pyama_flow.segmentation import pixel_cnn
    from pyama_flow.segmentation.pixel_classifier import default_model, default_seed_model, predict_maps, predict_proba, upsample_linear

    feats, k = _classifier_features(maps, raw, prior, d)
    if classifier == "cnn":
        p, dist = pixel_cnn.predict_maps_cnn(pixel_cnn.default_cnn(), feats, views)
        dist = dist if seeds else None
    elif seeds:
        p, dist = predict_maps(default_model(), default_seed_model(), feats)
    else:
        p, dist = predict_proba(default_model(), feats), None
    return upsample_linear(p, k, maps.shape), k, dist


def _dark_diameters(dark: np.ndarray, e: int) -> tuple[float, float]:
    """Cell diameters (input px) from a dark mask binned by ``e``: the median
    rule of :func:`.masks.estimate_cell_diameter` on the mask with its small
    enclosed holes filled as the cleanup fills them (``max_hole_area`` at a
    first estimate), and on the mask as it is.

    Cells with bright specks inside (granular cytoplasm) leave the raw mask
    speckled; its distance map then measures the specks' spacing, not the
    cells (simulated phase contrast: 11 px for cells of ~29 px; 16-17 px
    filled, as a solid disk gives). The filled value is the cell scale; the
    raw one stays the scale of the split depth (:func:`.watershed._scales`):
    cells that have just divided touch along a wide contact whose neck is
    1-2 px deep even on true masks, and a depth from the filled scale keeps
    them merged (chosen on the tuning simulations, see the README). For
    solid dark cells (bacteria) both values agree.
    """
    raw = estimate_cell_diameter(dark, e, percentile=_DARK_PERCENTILE)
    filled = fill_small_holes(dark, _derived(None, "max_hole_area", raw) / (e * e))
    return estimate_cell_diameter(filled, e, percentile=_DARK_PERCENTILE), raw


def _bin_for(d: float, shape: tuple[int, ...], bin_factor: int | None) -> int:
    """Bin factor: ``bin_factor``, else about 30 px per cell diameter ``d``;
    at most an eighth of the frame's short side."""
    f = max(1, int(bin_factor) if bin_factor is not None else int(d / 30.0 + 0.5))
    return min(f, max(1, min(shape) // 8))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two masks (1 when both are empty)."""
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
            d = split_d = float(cell_diameter)
        elif mode == "dark":
            d, split_d = _dark_diameters(dark_e, e)
        else:
            d = split_d = estimate_cell_diameter(raw_e, e)
        self.split_d = split_d  # the scale of the default split depth
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
            self.raw = dark_cells(maps.z, self.dark_thr)
        else:
            self.raw = maps.tex > np.float32(texture_threshold)
            if dark_threshold is not None and mode == "texture":
                self.raw = self.raw | (maps.z < np.float32(-self.dark_thr))
        self.mask = clean_mask(self.raw, self.hole, self.opening, self.small)


class _Choice(NamedTuple):
    """The foreground a frame is split with (lengths in binned pixels)."""

    mode: str  # "texture", "dark" or "learned"
    mask: np.ndarray  # the cleaned mask the watershed splits
    prob: np.ndarray | None  # learned: the classifier's probability on the binned grid
    step: int  # learned: classifier grid step (binned px); 1 otherwise
    seed_dist: np.ndarray | None  # learned seed map on the classifier grid, or None


def choose_foreground(
    front: _Front,
    seeds: bool,
    learned_threshold: float,
    min_agreement: float,
    min_halo_depth: float,
    learned_min_diameter: float | None,
    info: dict,
    classifier: str = "cnn",
    views: int = 1,
) -> _Choice:
    """Settle ``"auto"`` / ``"learned"`` into the learned or the texture foreground.

    Parameters
    ----------
    front : _Front
        The frame's first look and cleaned mask.
    seeds : bool
        Also predict the learned seed map.
    learned_threshold, min_agreement, min_halo_depth, learned_min_diameter : float
        As in :func:`.watershed.segment_watershed` (``learned_min_diameter``
        may be None).
    info : dict
        Gets ``halo_depth`` and ``agreement`` where they are measured.
    classifier : {"cnn", "perceptron"}
        Which learned model gives the probability and seed map. The network
        (``"cnn"``) is used on frames at its training scale (estimated
        diameter >= ``learned_min_diameter``); smaller cells keep the
        per-pixel perceptrons and their agreement test, as before the network
        (C2C12, 20 px cells: the network's mask agrees less with the texture
        mask, and F1 fell from 0.569 to 0.515 with it). ``info`` gets
        ``classifier``, the model used.
    views : int
        The network's views averaged (test-time augmentation, 1-8).

    Returns
    -------
    _Choice
        ``front``'s own mode and mask for the dark and texture foregrounds;
        the learned mask when the frame resembles the classifier's training
        data (or ``foreground="learned"``); else the texture mask.
    """
    mode, mask = front.mode, front.mask
    if mode not in ("auto", "learned"):
        return _Choice(mode, mask, None, 1, None)
    depth = halo_depth(mask, front.maps.z) * front.f / front.d
    info["halo_depth"] = depth
    if mode == "learned" or depth >= min_halo_depth:
        at_scale = learned_min_diameter is not None and front.d >= learned_min_diameter
        model = classifier if at_scale else "perceptron"
        info["classifier"] = model
        p, k, seed_dist = _learned_probability(front.maps, front.raw, mask, front.d, seeds, model, views)
        learned = clean_mask(p > np.float32(learned_threshold), 0.0, front.opening, front.small)
        info["agreement"] = _iou(learned, mask)
        if mode == "learned" or at_scale or info["agreement"] >= min_agreement:
            return _Choice("learned", learned, p, k, seed_dist)
    return _Choice("texture", mask, None, 1, None)
