"""Per-cell, per-frame features from tracked labels (SPEC step 5).

Features are label-indexed sums (one compiled pass over the label image,
adding in the order ``np.bincount`` does), so a frame costs one pass over its
pixels whatever the number of cells; the reference looped over cells and
scanned the frame for each. The background spline is evaluated only at cell
pixels.

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

import numpy as np
import pandas as pd

from pyama_flow import kernels
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
    backgrounds: Mapping[int, np.ndarray] | None = None,
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
    backgrounds : dict channel -> (Y, X) array or TileSpline, optional
        Background of each channel (a :class:`~pyama_flow.background.model.TileSpline`
        is evaluated at cell pixels only); ``intensity_total`` is the sum over the
        cell of ``I - background_weight * B`` (no correction where missing).
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
    from pyama_flow.background.model import TileSpline

    labels = np.ascontiguousarray(labels)
    if labels.dtype.kind not in "ui":
        labels = labels.astype(np.int64)
    if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
        raise ValueError("labels must be non-negative")
    count, sums, lo, hi = kernels.cell_geometry(labels)
    ids = np.flatnonzero(count)
    out: dict[str, np.ndarray] = {"cell": ids.astype(np.int64)}
    n = ids.size
    fluorescence = fluorescence or {}
    backgrounds = backgrounds or {}
    if n == 0:
        # the dtypes of a frame with cells, so that concatenated frames keep
        # integer columns integer
        empty = np.zeros(0, dtype=np.float64)
        for key in ("area", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"):
            out[key] = np.zeros(0, dtype=np.int64)
        for key in ("position_x", "position_y", "centroid_x", "centroid_y"):
            out[key] = empty
        for c in fluorescence:
            out[feature_column("intensity_total", c)] = empty
        out["invalid_pixels"] = np.zeros(0, dtype=np.int64)
        out["saturated_pixels"] = np.zeros(0, dtype=np.int64)
        return out
    area = count[ids]
    out["area"] = area
    y0, x0 = lo[0, ids], lo[1, ids]
    y1, x1 = hi[0, ids], hi[1, ids]
    out.update(bbox_x0=x0, bbox_y0=y0, bbox_x1=x1, bbox_y1=y1)
    out["position_x"] = (x0 + x1) / 2.0
    out["position_y"] = (y0 + y1) / 2.0
    out["centroid_y"] = sums[0, ids] / area
    out["centroid_x"] = sums[1, ids] / area
    invalid = np.zeros(n, dtype=np.int64)
    saturated = np.zeros(n, dtype=np.int64)
    measured = expand_labels(labels, expand_px)
    no_spline = (np.zeros(1), 0, np.zeros(1, np.int64), np.zeros((1, 1)), np.zeros(1, np.int64), np.zeros((1, 1)))
    for c, image in fluorescence.items():
        image = np.ascontiguousarray(image)
        if image.shape != labels.shape:
            raise ValueError(f"channel {c}: frame shape {image.shape} differs from the labels' {labels.shape}")
        top = int(np.iinfo(image.dtype).max) if image.dtype.kind in "ui" else 0  # clipped at the top
        bg = backgrounds.get(c)
        mode, bg_image, spline = 0, np.zeros((1, 1), np.float32), no_spline
        if bg is not None and background_weight != 0:
            if isinstance(bg, TileSpline):
                mode, spline = 2, (bg.c, bg.nky1, bg.lx, bg.wx, bg.ly, bg.wy)
            else:
                mode, bg_image = 1, np.ascontiguousarray(bg)
        total, bg_sum, bad, sat = kernels.cell_intensity(measured, count.size, image, top, mode, bg_image, *spline)
        saturated += sat[ids]
        invalid += bad[ids]
        total = total[ids]
        if mode:
            total = total - float(background_weight) * bg_sum[ids]
        out[feature_column("intensity_total", c)] = total
    out["invalid_pixels"] = invalid
    out["saturated_pixels"] = saturated
    return out


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
    from pyama_flow.io.stacks import atomic_path

    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6f")


def read_traces(path: str) -> pd.DataFrame:
    """Read a traces CSV (ours or PyAMA's)."""
    df = pd.read_csv(path)
    if "good" in df.columns:
        df["good"] = df["good"].astype(str).str.lower().isin(["true", "1"])
    return df
