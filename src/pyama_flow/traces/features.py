"""Per-cell, per-frame features from tracked labels (SPEC step 5).

Features are label-indexed sums (one compiled pass over the label image,
adding in the order ``np.bincount`` does), so a frame costs one pass over its
pixels whatever the number of cells; the reference looped over cells and
scanned the frame for each. The background spline is evaluated only on the
cells' bounding boxes.

Columns, PyAMA-compatible and in this order: ``fov, cell, frame, time, good,
position_x, position_y, bbox_x0, bbox_y0, bbox_x1, bbox_y1``, then
``{feature}_ch_{c}`` per feature and channel, then ``centroid_x, centroid_y``
(and ``parent`` when asked for). Position is the bounding-box centre as in the
reference; bounding boxes are inclusive pixel indices.

``intensity_total`` sums the mask (PyAMA, ``expand_px=0``) or, with
``expand_px`` > 0 (the workflow's ``traces.measure: expanded``), the mask grown
by that margin into the cell's own territory (:func:`expand_labels`), which
collects the light that optical blur and a tight outline leave outside the
mask; geometry is always the mask's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pyama_flow import kernels

if TYPE_CHECKING:
    from pyama_flow.background.model import BackgroundSpline

BASE_COLUMNS = [
    "fov",
    "cell",
    "frame",
    "time",
    "good",
    "position_x",
    "position_y",
    "bbox_x0",
    "bbox_y0",
    "bbox_x1",
    "bbox_y1",
]
#: features measured on the phase-contrast (segmentation) channel
PC_FEATURES = ("area",)
#: features measured on each fluorescence channel
FL_FEATURES = ("intensity_total",)
#: ``traces.measure``: where ``intensity_total`` sums a cell's light
MEASURES = ("expanded", "mask")


def disc_offsets(radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offsets (dy, dx) and squared distances of a disc of ``radius`` px, nearest first.

    The centre (0, 0) is left out. Returns three int32 / int64 arrays sorted by
    distance (ties in raster order).
    """
    r = int(np.floor(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    d2 = (dy * dy + dx * dx).ravel()
    keep = (d2 > 0) & (d2 <= radius * radius)
    order = np.argsort(d2[keep], kind="stable")
    return (dy.ravel()[keep][order].astype(np.int64), dx.ravel()[keep][order].astype(np.int64),
            d2[keep][order].astype(np.int32))


def expand_labels(labels: np.ndarray, distance: float) -> np.ndarray:
    """``labels`` grown by up to ``distance`` px into the background, each cell
    into its own territory only (the nearest-cell partition).

    Background pixels (0) within ``distance`` (Euclidean) of a cell take the id
    of the nearest cell; cells keep their own pixels and never take a
    neighbour's, as CellProfiler's "expand objects" and
    :func:`skimage.segmentation.expand_labels` do (ties between equidistant
    cells are broken by raster order instead of by scipy's distance transform).
    ``distance`` <= 0 returns ``labels`` unchanged. Compiled
    (:func:`pyama_flow.kernels.expand_labels`): the cost grows with the
    cells' outline length, not with the frame.
    """
    if distance <= 0:
        return labels
    labels = np.ascontiguousarray(labels)
    oy, ox, d2 = disc_offsets(float(distance))
    return kernels.expand_labels(labels, oy, ox, d2)


def feature_column(feature: str, channel: int) -> str:
    """PyAMA's column name of a feature on a channel: ``{feature}_ch_{c}``."""
    return f"{feature}_ch_{channel}"


def frame_features(
    labels: np.ndarray,
    fluorescence: Mapping[int, np.ndarray] | None = None,
    backgrounds: Mapping[int, np.ndarray | BackgroundSpline] | None = None,
    background_weight: float = 1.0,
    expand_px: float = 0.0,
) -> dict[str, np.ndarray]:
    """Geometry and intensity features of every labelled cell in one frame.

    Parameters
    ----------
    labels : (Y, X) integer array
        Track ids, 0 = background.
    fluorescence : dict channel -> (Y, X) array
        Raw fluorescence frames.
    backgrounds : dict channel -> (Y, X) array or BackgroundSpline, optional
        Background of each channel (a :class:`~pyama_flow.background.model.BackgroundSpline`
        is evaluated on the measured cells' bounding boxes only); ``intensity_total``
        is the sum over the cell of ``I - background_weight * B`` (no correction where missing).
    background_weight : float
        ``w`` above (PyAMA's default 1.0).
    expand_px : float
        0 (``traces.measure: mask``, PyAMA's definition): ``intensity_total``
        sums the cell's mask. > 0 (``traces.measure: expanded``): it sums the
        mask grown by up to this many pixels into the cell's own territory
        (:func:`expand_labels`), which collects the light that optical blur
        and a mask drawn inside the cell's edge put outside the mask.
        Geometry (``area``, bounding box, centroid) stays the mask's.

    Returns
    -------
    dict of 1-D arrays, one entry per cell (sorted by id): ``cell``, ``area``,
    ``bbox_x0, bbox_y0, bbox_x1, bbox_y1`` (inclusive), ``position_x,
    position_y`` (bbox centre), ``centroid_x, centroid_y`` and
    ``intensity_total_ch_{c}`` per fluorescence channel, then
    ``invalid_pixels``: cell pixels (over all channels) whose intensity or
    background is not finite (NaN / inf in float input), which are left out
    of ``intensity_total`` (:class:`TraceBuilder` marks such rows ``good =
    False``), and ``saturated_pixels``: cell pixels of integer input at the
    dtype's maximum (clipped, so the total is a lower bound; counted only).
    """
    labels = np.ascontiguousarray(labels)
    if labels.dtype.kind not in "ui":
        labels = labels.astype(np.int64)
    if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
        raise ValueError("labels must be non-negative")
    count, sums, lo, hi = kernels.cell_geometry(labels)
    ids = np.flatnonzero(count)
    fluorescence = fluorescence or {}
    backgrounds = backgrounds or {}
    if ids.size == 0:
        return _no_cells(fluorescence)
    out = _geometry(ids, count, sums, lo, hi)
    invalid = np.zeros(ids.size, dtype=np.int64)
    saturated = np.zeros(ids.size, dtype=np.int64)
    measured = expand_labels(labels, expand_px)
    # the measured (grown) cells lie within their masks' boxes grown by the margin
    grow = int(np.floor(expand_px)) if expand_px > 0 else 0
    boxes = _grown_boxes(lo[:, ids], hi[:, ids], grow, labels.shape)
    for c, image in fluorescence.items():
        image = np.ascontiguousarray(image)
        if image.shape != labels.shape:
            raise ValueError(f"channel {c}: frame shape {image.shape} differs from the labels' {labels.shape}")
        background = backgrounds.get(c) if background_weight != 0 else None
        total, bad, sat = _intensity_total(measured, ids, count.size, image, background, background_weight, boxes)
        saturated += sat
        invalid += bad
        out[feature_column("intensity_total", c)] = total
    out["invalid_pixels"] = invalid
    out["saturated_pixels"] = saturated
    return out


def _intensity_total(measured: np.ndarray, ids: np.ndarray, n: int, image: np.ndarray,
                     background: np.ndarray | BackgroundSpline | None, weight: float,
                     boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``intensity_total`` of the cells ``ids`` on one channel, with its bad and saturated pixels.

    Parameters
    ----------
    measured : (Y, X) integer array
        The labels summed over (the mask, or grown by :func:`expand_labels`).
    ids : 1-D int array
        The cells' ids, ascending.
    n : int
        One more than the largest id.
    image : (Y, X) array, C-contiguous
        The channel's raw frame.
    background : (Y, X) array, BackgroundSpline or None
        The channel's background (None: no correction).
    weight : float
        ``w`` of ``I - w * B``.
    boxes : (n_cells, 4) int array
        Rectangles holding every measured pixel (:func:`_grown_boxes`).

    Returns
    -------
    total : float64 array, one per id
    bad, saturated : int64 arrays, one per id: pixels with non-finite intensity
        or background, pixels at the integer dtype's maximum.
    """
    top = int(np.iinfo(image.dtype).max) if image.dtype.kind in "ui" else 0  # clipped at the top
    mode, bg_image = 0, np.zeros((1, 1), np.float32)
    if background is not None:
        mode, bg_image = 1, _background_image(background, boxes, measured.shape)
    total, bg_sum, bad, saturated = kernels.cell_intensity(measured, n, image, top, mode, bg_image)
    total = total[ids]
    if mode:
        total = total - float(weight) * bg_sum[ids]
    return total, bad[ids], saturated[ids]


def _no_cells(fluorescence: Mapping[int, np.ndarray]) -> dict[str, np.ndarray]:
    """:func:`frame_features` of a frame without cells.

    Parameters
    ----------
    fluorescence : dict channel -> (Y, X) array
        The frame's fluorescence channels (only their numbers are used).

    Returns
    -------
    dict of empty 1-D arrays with the dtypes of a frame with cells, so that
    concatenated frames keep integer columns integer.
    """
    empty = np.zeros(0, dtype=np.float64)
    out: dict[str, np.ndarray] = {"cell": np.zeros(0, dtype=np.int64)}
    for key in ("area", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"):
        out[key] = np.zeros(0, dtype=np.int64)
    for key in ("position_x", "position_y", "centroid_x", "centroid_y"):
        out[key] = empty
    for c in fluorescence:
        out[feature_column("intensity_total", c)] = empty
    out["invalid_pixels"] = np.zeros(0, dtype=np.int64)
    out["saturated_pixels"] = np.zeros(0, dtype=np.int64)
    return out


def _geometry(ids: np.ndarray, count: np.ndarray, sums: np.ndarray, lo: np.ndarray,
              hi: np.ndarray) -> dict[str, np.ndarray]:
    """Geometry columns of the cells ``ids`` from :func:`pyama_flow.kernels.cell_geometry`.

    Parameters
    ----------
    ids : 1-D int array
        Label ids present in the frame, ascending.
    count, sums, lo, hi : arrays
        ``cell_geometry``'s per-id pixel counts, sums of rows and columns, and
        first / last row and column.

    Returns
    -------
    dict with ``cell, area, bbox_x0, bbox_y0, bbox_x1, bbox_y1, position_x,
    position_y, centroid_y, centroid_x`` (one entry per id).
    """
    area = count[ids]
    y0, x0 = lo[0, ids], lo[1, ids]
    y1, x1 = hi[0, ids], hi[1, ids]
    out: dict[str, np.ndarray] = {"cell": ids.astype(np.int64), "area": area}
    out.update(bbox_x0=x0, bbox_y0=y0, bbox_x1=x1, bbox_y1=y1)
    out["position_x"] = (x0 + x1) / 2.0
    out["position_y"] = (y0 + y1) / 2.0
    out["centroid_y"] = sums[0, ids] / area
    out["centroid_x"] = sums[1, ids] / area
    return out


def _grown_boxes(lo: np.ndarray, hi: np.ndarray, grow: int, shape: tuple[int, ...]) -> np.ndarray:
    """Cells' bounding boxes grown by ``grow`` px and cut to the frame, as slice bounds.

    Parameters
    ----------
    lo, hi : (2, n) int arrays
        First and last row (``[0]``) and column (``[1]``) of each cell, inclusive.
    grow : int
        Margin in pixels (the largest offset of :func:`expand_labels`).
    shape : (height, width)
        The frame's shape.

    Returns
    -------
    (n, 4) int64 array of ``y0, y1, x0, x1`` (``y1``, ``x1`` exclusive).
    """
    height, width = shape
    return np.stack([np.maximum(lo[0] - grow, 0), np.minimum(hi[0] + grow + 1, height),
                     np.maximum(lo[1] - grow, 0), np.minimum(hi[1] + grow + 1, width)], axis=1)


def _background_image(background: np.ndarray | BackgroundSpline, boxes: np.ndarray,
                      shape: tuple[int, ...]) -> np.ndarray:
    """A channel's background as the float32 (Y, X) image :func:`pyama_flow.kernels.cell_intensity` reads.

    Parameters
    ----------
    background : (Y, X) array or BackgroundSpline
        An image is used as it is; a spline is evaluated on ``boxes`` only
        (neighbours merged by :func:`_merged_boxes`).
    boxes : (n, 4) int array
        ``y0, y1, x0, x1`` of every rectangle holding measured pixels (:func:`_grown_boxes`).
    shape : (height, width)
        The frame's shape.

    Returns
    -------
    (Y, X) array, C-contiguous. From a spline: float32, the spline's values
    (the bits of the whole-frame evaluation) inside ``boxes`` and undefined
    elsewhere, where the kernel reads nothing.
    """
    from pyama_flow.background.model import BackgroundSpline

    if not isinstance(background, BackgroundSpline):
        return np.ascontiguousarray(background)
    image = np.empty(shape, np.float32)
    for y0, y1, x0, x1 in _merged_boxes(boxes):
        image[y0:y1, x0:x1] = background.region(y0, y1, x0, x1)
    return image


#: pixels a merged rectangle may add over the two it replaces: one call of
#: scipy's spline evaluation costs about as much as evaluating ~500 more pixels
MERGE_SLACK_PX = 512


def _merged_boxes(boxes: np.ndarray, slack: int = MERGE_SLACK_PX, window: int = 4) -> list[list[int]]:
    """Rectangles covering ``boxes``, neighbours merged where one rectangle costs no more than two.

    In raster order of the boxes' corners, each box joins the newest of the
    last ``window`` rectangles whose union with it is no larger than the two
    areas together plus ``slack`` pixels (so touching cells of a colony share
    one evaluation, a row of them one rectangle), else it starts a rectangle.

    Parameters
    ----------
    boxes : (n, 4) int array
        ``y0, y1, x0, x1`` (exclusive ends), as :func:`_grown_boxes` gives them.
    slack : int
        Pixels a union may add (the cost of one more evaluation call).
    window : int
        How many of the latest rectangles a box is tried against.

    Returns
    -------
    list of ``[y0, y1, x0, x1]``, together covering every box.
    """
    merged: list[list[int]] = []
    for y0, y1, x0, x1 in boxes[np.lexsort((boxes[:, 2], boxes[:, 0]))].tolist():
        area = (y1 - y0) * (x1 - x0) + slack
        for k in range(len(merged) - 1, max(len(merged) - window, 0) - 1, -1):
            top, bottom, left, right = m = merged[k]
            if y0 < top:
                top = y0
            if y1 > bottom:
                bottom = y1
            if x0 < left:
                left = x0
            if x1 > right:
                right = x1
            if (bottom - top) * (right - left) <= area + (m[1] - m[0]) * (m[3] - m[2]):
                m[:] = top, bottom, left, right
                break
        else:
            merged.append([y0, y1, x0, x1])
    return merged


@dataclass
class TraceFilter:
    """Reference filters (configurable, PyAMA defaults).

    ``min_frames``: keep cells present in at least this many frames (30).
    ``border``: drop a cell whose bounding box comes within this many pixels of
    the frame border in any frame (50); 0 disables.
    """

    min_frames: int = 30
    border: int = 50


class TraceBuilder:
    """Accumulate per-frame features into the traces table, frame by frame."""

    def __init__(
        self,
        fov: int,
        pc_channel: int,
        fl_channels: Iterable[int],
        background_weight: float = 1.0,
        expand_px: float = 0.0,
    ) -> None:
        self.fov = int(fov)
        #: margin of ``intensity_total`` (see :func:`frame_features`); 0 = in-mask (PyAMA)
        self.expand_px = float(expand_px)
        self.pc_channel = int(pc_channel)
        self.fl_channels = [int(c) for c in fl_channels]
        self.background_weight = float(background_weight)
        self._parts: list[dict[str, np.ndarray]] = []
        self.shape: tuple[int, int] | None = None
        #: rows (cell, frame) with non-finite fluorescence pixels (these rows get
        #: ``good = False``) or saturated ones (kept), and the frames they occur in
        self.invalid_rows = 0
        self.invalid_frames: list[int] = []
        self.saturated_rows = 0
        self.saturated_frames: list[int] = []

    def add_frame(
        self,
        frame: int,
        time_min: float,
        labels: np.ndarray,
        fluorescence: Mapping[int, np.ndarray],
        backgrounds: Mapping[int, np.ndarray] | None = None,
    ) -> None:
        """Measure one frame and keep its rows."""
        self.shape = tuple(labels.shape)  # type: ignore[assignment]
        feats = frame_features(labels, fluorescence, backgrounds, self.background_weight, self.expand_px)
        n = feats["cell"].size
        n_bad = int(np.count_nonzero(feats["invalid_pixels"]))
        if n_bad:
            self.invalid_rows += n_bad
            self.invalid_frames.append(int(frame))
        n_sat = int(np.count_nonzero(feats["saturated_pixels"]))
        if n_sat:
            self.saturated_rows += n_sat
            self.saturated_frames.append(int(frame))
        feats["frame"] = np.full(n, int(frame), dtype=np.int64)
        feats["time"] = np.full(n, float(time_min))
        self._parts.append(feats)

    def table(self, filters: TraceFilter | None = None) -> pd.DataFrame:
        """The traces table, filtered, sorted by cell then frame."""
        fl_cols = [feature_column("intensity_total", c) for c in self.fl_channels]
        cols = BASE_COLUMNS + [feature_column("area", self.pc_channel)] + fl_cols
        cols += ["centroid_x", "centroid_y"]
        if not self._parts:
            return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in cols})
        merged = {
            key: np.concatenate([p[key] for p in self._parts])
            for key in self._parts[0]
        }
        df = pd.DataFrame(
            {
                "fov": np.full(merged["cell"].size, self.fov, dtype=np.int64),
                "cell": merged["cell"],
                "frame": merged["frame"],
                "time": merged["time"],
                # a total that had to skip NaN / inf pixels is not good (saturated
                # pixels are only counted and logged: see saturated_rows)
                "good": merged["invalid_pixels"] == 0,
                "position_x": merged["position_x"],
                "position_y": merged["position_y"],
                "bbox_x0": merged["bbox_x0"],
                "bbox_y0": merged["bbox_y0"],
                "bbox_x1": merged["bbox_x1"],
                "bbox_y1": merged["bbox_y1"],
                feature_column("area", self.pc_channel): merged["area"],
                **{c: merged[c] for c in fl_cols},
                "centroid_x": merged["centroid_x"],
                "centroid_y": merged["centroid_y"],
            }
        )
        if filters is not None and self.shape is not None:
            df = apply_filters(df, self.shape, filters)
        return df.sort_values(["cell", "frame"], kind="stable").reset_index(drop=True)


def _dtype(col: str) -> str:
    if col in ("fov", "cell", "frame", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"):
        return "int64"
    return "bool" if col == "good" else "float64"


def apply_filters(
    df: pd.DataFrame, shape: tuple[int, int], filters: TraceFilter
) -> pd.DataFrame:
    """Drop short-lived cells and cells that touch the border zone (reference rules)."""
    height, width = shape
    if filters.min_frames > 0 and len(df):
        counts = df.groupby("cell")["frame"].transform("size")
        df = df[counts >= filters.min_frames]
    if filters.border > 0 and len(df):
        b = filters.border
        near = (
            (df["bbox_x0"] < b)
            | (df["bbox_x1"] > width - b)
            | (df["bbox_y0"] < b)
            | (df["bbox_y1"] > height - b)
        )
        df = df[~df["cell"].isin(df.loc[near, "cell"].unique())]
    return df


def write_traces(df: pd.DataFrame, path: str) -> None:
    """CSV with floats at 6 decimals (PyAMA's format), written atomically."""
    from pyama_flow.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6f")


def read_traces(path: str) -> pd.DataFrame:
    """Read a traces CSV (ours or PyAMA's)."""
    df = pd.read_csv(path)
    if "good" in df.columns:
        df["good"] = df["good"].astype(str).str.lower().isin(["true", "1"])
    return df
