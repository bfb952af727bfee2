"""Quality control: per-frame statistics and the pictures of the report.

Everything here is cheap by construction: the statistics are computed by the
extract step on the frames it already reads (:func:`frame_statistics`), and
the pictures read only the frames they show (first, middle and last, see
:func:`select_frames`) with :class:`~pyama_flow.io.stacks.StackReader`.

Pure functions (numpy in, numpy out) come first and are unit-tested:
percentiles equal to ``np.percentile``, percentile contrast stretch, cell
outlines, composites. Figures are drawn with matplotlib's object API (no
pyplot state) and imported lazily, so the statistics can be computed in an
environment without matplotlib. ``render_*`` functions go from files to
files and are what the workflow's ``qc_*`` rules call.
"""

from __future__ import annotations

import colorsys
import html
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pyama_flow.io.framestats import (  # noqa: F401  (re-exported: qc's statistics API)
    PERCENTILES,
    STAT_COLUMNS,
    frame_statistics,
    percentiles,
    saturation_value,
)
from pyama_flow.io.source import open_frames
from pyama_flow.io.stacks import StackReader, atomic_path, write_text

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

log = logging.getLogger("pyama_flow")

#: Largest side of one thumbnail panel in pixels (frames are block-averaged down to it).
THUMB_SIDE = 360
#: Matplotlib's "tab10": one colour per sample, in the order of ``samples`` in the config.
SAMPLE_PALETTE: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)
NO_SAMPLE_COLOR = "#404040"
#: Display colour of a fluorescence channel by a word in its name (first match wins).
_NAMED_COLORS: tuple[tuple[tuple[str, ...], tuple[float, float, float]], ...] = (
    (("gfp", "fitc", "488", "venus", "green", "alexa488"), (0.15, 1.0, 0.15)),
    (("yfp", "citrine", "yellow", "514"), (1.0, 0.9, 0.1)),
    (("mcherry", "rfp", "tdtomato", "cy3", "568", "561", "594", "red", "tritc", "dsred"), (1.0, 0.2, 0.85)),
    (("cy5", "640", "647", "far"), (0.9, 0.1, 0.1)),
    (("dapi", "hoechst", "bfp", "405", "blue"), (0.25, 0.45, 1.0)),
    (("cfp", "cyan", "445", "458"), (0.1, 0.9, 1.0)),
)
_FALLBACK_COLORS: tuple[tuple[float, float, float], ...] = (
    (0.15, 1.0, 0.15), (1.0, 0.2, 0.85), (0.1, 0.9, 1.0), (1.0, 0.9, 0.1),
)
PHASE_COLOR: tuple[float, float, float] = (1.0, 1.0, 1.0)


# -- statistics ------------------------------------------------------------


def statistics_table(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows of :func:`frame_statistics` as a table with :data:`STAT_COLUMNS`."""
    df = pd.DataFrame(list(rows), columns=STAT_COLUMNS)
    return df.astype({"frame": np.int64, "n_saturated": np.int64, "saturated": bool})


def write_statistics(df: pd.DataFrame, path: str) -> None:
    """The per-frame statistics table as CSV (6 decimals), written atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6f")


def read_statistics(path: str) -> pd.DataFrame:
    """Read a table written by :func:`write_statistics`."""
    return pd.read_csv(path)


# -- frames: selection, stretch, outlines, colours ---------------------------


def select_frames(n_frames: int) -> list[int]:
    """First, middle and last frame index (fewer for stacks of 1 or 2 frames)."""
    if n_frames <= 0:
        return []
    return sorted({0, n_frames // 2, n_frames - 1})


def stretch_limits(frames: np.ndarray | Sequence[np.ndarray], low: float = 1.0,
                   high: float = 99.0) -> tuple[float, float]:
    """The ``low``-th and ``high``-th percentile of one frame or of several pooled."""
    if isinstance(frames, np.ndarray):
        pooled = frames
    else:
        pooled = np.concatenate([np.asarray(f).ravel() for f in frames])
    lo, hi = percentiles(pooled, (low, high))
    return float(lo), float(hi)


def percentile_stretch(frame: np.ndarray, low: float = 1.0, high: float = 99.0,
                       limits: tuple[float, float] | None = None) -> np.ndarray:
    """Linear contrast stretch to uint8: the ``low`` percentile -> 0, ``high`` -> 255.

    Parameters
    ----------
    limits : (lo, hi), optional
        Display range to use instead of the frame's own percentiles (to show
        several frames on one scale).

    Returns
    -------
    (Y, X) uint8, clipped. A flat frame (hi <= lo) maps to 0 below / 255 above lo.
    """
    lo, hi = limits if limits is not None else stretch_limits(frame, low, high)
    f = np.asarray(frame, dtype=np.float64)
    if hi <= lo:
        return np.where(f > lo, 255, 0).astype(np.uint8)
    scaled = (f - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def thumbnail_factor(shape: Sequence[int], max_side: int = THUMB_SIDE) -> int:
    """Integer down-sampling factor that brings the larger side to at most ``max_side``."""
    return max(1, math.ceil(max(shape[-2:]) / max_side))


def downsample(frame: np.ndarray, factor: int) -> np.ndarray:
    """Block mean over ``factor`` x ``factor`` pixels (float32; the ragged edge is dropped)."""
    f = np.asarray(frame)
    if factor <= 1:
        return f.astype(np.float32, copy=False)
    h, w = (f.shape[0] // factor) * factor, (f.shape[1] // factor) * factor
    blocks = f[:h, :w].astype(np.float32).reshape(h // factor, factor, w // factor, factor)
    return blocks.mean(axis=(1, 3), dtype=np.float32)


def downsample_labels(labels: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour down-sampling of a label image, same grid as :func:`downsample`."""
    lab = np.asarray(labels)
    if factor <= 1:
        return lab
    h, w = (lab.shape[0] // factor) * factor, (lab.shape[1] // factor) * factor
    return lab[:h:factor, :w:factor]


def label_outlines(labels: np.ndarray) -> np.ndarray:
    """Inner border of every object: its pixels with a 4-neighbour of another value.

    Pixels outside the frame count as background, so an object cut by the
    frame edge is closed there. Background (0) is never an outline.
    """
    lab = np.asarray(labels)
    p = np.pad(lab, 1, mode="constant", constant_values=0)
    c = p[1:-1, 1:-1]
    edge = (c != p[:-2, 1:-1]) | (c != p[2:, 1:-1]) | (c != p[1:-1, :-2]) | (c != p[1:-1, 2:])
    return edge & (c != 0)


def track_color(track_id: int) -> tuple[float, float, float]:
    """A bright colour per track id, the same in every frame (golden-ratio hues)."""
    hue = (int(track_id) * 0.6180339887) % 1.0
    return colorsys.hsv_to_rgb(hue, 0.85, 1.0)


def label_centroids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ids present in a label image and the (y, x) centroid of each, in pixels."""
    lab = np.asarray(labels)
    flat = lab.ravel()
    fg = np.flatnonzero(flat)
    if fg.size == 0:
        empty = np.zeros(0)
        return empty.astype(np.int64), empty, empty
    ids_fg = flat[fg].astype(np.int64)
    counts = np.bincount(ids_fg)
    y, x = np.divmod(fg, lab.shape[1])
    sy = np.bincount(ids_fg, weights=y)
    sx = np.bincount(ids_fg, weights=x)
    ids = np.flatnonzero(counts)
    return ids, sy[ids] / counts[ids], sx[ids] / counts[ids]


def gray_to_rgb(frame8: np.ndarray, color: Sequence[float] = PHASE_COLOR) -> np.ndarray:
    """A uint8 frame shown in one colour (black -> ``color``) as float32 RGB in [0, 1]."""
    return (np.asarray(frame8, np.float32)[..., None] / 255.0) * np.asarray(color, np.float32)


def composite(frames8: Sequence[np.ndarray], colors: Sequence[Sequence[float]],
              weights: Sequence[float] | None = None) -> np.ndarray:
    """Additive colour composite of uint8 frames, float32 RGB clipped to [0, 1]."""
    if weights is None:
        weights = [1.0] * len(frames8)
    out = np.zeros((*np.asarray(frames8[0]).shape, 3), np.float32)
    for f, c, w in zip(frames8, colors, weights):
        out += float(w) * gray_to_rgb(f, c)
    return np.clip(out, 0.0, 1.0)


def draw_outlines(rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Copy of float RGB ``rgb`` with each object's outline in its :func:`track_color`."""
    out = np.array(rgb, dtype=np.float32, copy=True)
    edge = label_outlines(labels)
    if edge.any():
        ids = np.asarray(labels)[edge].astype(np.int64)
        lut = np.array([track_color(i) for i in range(int(ids.max()) + 1)], np.float32)
        out[edge] = lut[ids]
    return out


def channel_color(name: str, index: int = 0, phase: bool = False) -> tuple[float, float, float]:
    """Display colour of a channel: white for phase contrast, else by fluorophore name.

    Names are matched by the words in :data:`_NAMED_COLORS` (``GFP`` -> green,
    ``mCherry`` -> magenta, ...); unknown names take a colour by ``index``.
    """
    if phase:
        return PHASE_COLOR
    lowered = name.lower()
    for words, color in _NAMED_COLORS:
        if any(w in lowered for w in words):
            return color
    return _FALLBACK_COLORS[index % len(_FALLBACK_COLORS)]


def looks_like_phase(name: str) -> bool:
    """Whether a channel name reads as a transmitted-light channel (phase contrast, DIC, BF)."""
    lowered = name.strip().lower()
    return lowered in ("pc", "ph", "tl") or lowered.startswith(("phase", "bf", "bright", "dic", "trans"))


def display_color(name: str) -> tuple[float, float, float]:
    """Colour of a channel known only by name: by fluorophore word, else white (grey scale)."""
    lowered = name.lower()
    if looks_like_phase(name):
        return PHASE_COLOR
    for words, color in _NAMED_COLORS:
        if any(w in lowered for w in words):
            return color
    return PHASE_COLOR


def sample_color(name: str | None, names: Sequence[str]) -> str:
    """Hex colour of a sample (its position in ``names``); dark grey for ``None``."""
    if name is None or name not in names:
        return NO_SAMPLE_COLOR
    return SAMPLE_PALETTE[list(names).index(name) % len(SAMPLE_PALETTE)]


def time_unit(times_min: Sequence[float]) -> tuple[float, str]:
    """Divisor and unit for a time axis: hours beyond 3 h of imaging, else minutes."""
    span = float(np.nanmax(times_min)) if len(times_min) else 0.0
    return (60.0, "h") if span > 180.0 else (1.0, "min")


def format_time(t_min: float, unit: tuple[float, str]) -> str:
    """``t`` in the unit of :func:`time_unit` (``"3.5 h"``, ``"40 min"``)."""
    div, name = unit
    return f"{t_min / div:.1f} {name}" if name == "h" else f"{t_min:.0f} {name}"


def scale_bar_um(width_px: int, pixel_size_um: float) -> float:
    """A round scale-bar length (µm) close to a fifth of the frame width."""
    target = width_px * pixel_size_um / 5.0
    nice = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000]
    return float(min(nice, key=lambda v: abs(math.log(v / target))))


# -- figures ---------------------------------------------------------------


def _figure(width_in: float, body_height_in: float, header_in: float = 0.5) -> tuple["Figure", Any, Any]:
    """A figure, its header strip (for :func:`_title`) and its body (sub)figure for the panels."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, body_height_in + header_in), dpi=100, layout="constrained")
    fig.get_layout_engine().set(w_pad=0.02, h_pad=0.02, wspace=0.01, hspace=0.01)
    head, body = fig.subfigures(2, 1, height_ratios=[header_in, body_height_in])
    return fig, head, body


def save_figure(fig: "Figure", path: str, palette: bool = False) -> None:
    """Write a figure as PNG at 100 dpi on white, atomically.

    Parameters
    ----------
    palette : bool
        Quantise to an 8-bit palette (256 colours): 3-6x smaller, for sheets
        of noisy images where the exact grey level does not matter.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    fig.set_facecolor("white")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    image = Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3])
    if palette:
        image = image.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    with atomic_path(path) as tmp:
        # palette images are small: the best compression costs little there
        image.save(tmp, format="PNG", compress_level=9 if palette else 6)


def _image_axes_style(ax: "Axes") -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _add_scale_bar(ax: "Axes", width_px: int, height_px: int, factor: int,
                   pixel_size_um: float | None) -> None:
    """White bar with its length in µm in the lower right corner of an image panel."""
    if not pixel_size_um:
        return
    import matplotlib.patheffects as pe
    from matplotlib.patches import Rectangle

    um = scale_bar_um(width_px * factor, pixel_size_um)
    length = um / pixel_size_um / factor
    x1 = width_px * 0.96
    y = height_px * 0.94
    bar_h = max(height_px * 0.012, 1.5)
    ax.add_patch(Rectangle((x1 - length, y - bar_h), length, bar_h, color="white", ec="black", lw=0.5))
    ax.text(x1 - length / 2, y - bar_h * 1.8, f"{um:g} µm", color="white", ha="center",
            va="bottom", fontsize=8, path_effects=[pe.withStroke(linewidth=2, foreground="black")])


def _title(head: Any, title: str, subtitle: str = "", color: str = NO_SAMPLE_COLOR) -> None:
    """Bold title in the sample's colour and a smaller grey subtitle in the header strip."""
    head.text(0.008, 0.92, title, ha="left", va="top", fontsize=11, fontweight="bold", color=color)
    if subtitle:
        head.text(0.008, 0.40, subtitle, ha="left", va="top", fontsize=8.5, color="#444444")


def plot_frame_sheet(
    rows: Sequence[Mapping[str, Any]],
    times_min: Sequence[float] | None,
    frame_indices: Sequence[int],
    title: str,
    pixel_size_um: float | None = None,
    factor: int = 1,
    color: str = NO_SAMPLE_COLOR,
    subtitle: str = "contrast: 1st-99th percentile of the frames shown, per channel",
) -> "Figure":
    """Thumbnails: one row per channel (and the composite), one column per frame.

    Parameters
    ----------
    rows : sequence of dict
        ``name`` (row label), ``images`` (one float RGB or uint8 image per
        frame), and optionally ``limits`` (display range in a.u.) and
        ``rgb`` (colour of the black -> colour bar drawn beside the row).
    times_min : sequence of float or None
        Time of every frame of the stack (minutes); ``None`` when unknown.
    """
    from matplotlib.colors import LinearSegmentedColormap, Normalize
    from matplotlib.cm import ScalarMappable

    n_rows, n_cols = len(rows), len(frame_indices)
    h, w = np.asarray(rows[0]["images"][0]).shape[:2]
    panel_in = max(w, h) / 100.0
    fig, head, body = _figure(max(n_cols * panel_in * w / max(w, h) + 1.4, 5.5),
                              n_rows * panel_in * h / max(w, h) + 0.35 + 0.05 * n_rows)
    axes = body.subplots(n_rows, n_cols, squeeze=False)
    unit = time_unit(times_min) if times_min is not None else (1.0, "min")
    for r, row in enumerate(rows):
        for k, t in enumerate(frame_indices):
            ax = axes[r, k]
            img = np.asarray(row["images"][k])
            if img.ndim == 2:
                ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            else:
                ax.imshow(img, interpolation="nearest")
            _image_axes_style(ax)
            if r == 0:
                when = f" · t = {format_time(times_min[t], unit)}" if times_min is not None else ""
                ax.set_title(f"frame {t}{when}", fontsize=9)
            if k == 0:
                ax.set_ylabel(row["name"], fontsize=9)
            if r == 0 and k == 0:
                _add_scale_bar(ax, w, h, factor, pixel_size_um)
        if row.get("limits") is not None:
            lo, hi = row["limits"]
            cmap = LinearSegmentedColormap.from_list("ch", [(0, 0, 0), tuple(row.get("rgb", PHASE_COLOR))])
            cb = body.colorbar(ScalarMappable(Normalize(lo, hi), cmap), ax=axes[r, :].tolist(),
                              fraction=0.04, pad=0.01, aspect=12)
            cb.set_label("a.u.", fontsize=8)
            cb.ax.tick_params(labelsize=7)
    _title(head, title, subtitle, color)
    return fig


def plot_outlines(
    phase8: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    centroids: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    times_min: Sequence[float],
    frame_indices: Sequence[int],
    title: str,
    factor: int = 1,
    pixel_size_um: float | None = None,
    color: str = NO_SAMPLE_COLOR,
    max_ids: int = 250,
) -> "Figure":
    """Phase contrast with every cell's outline and track id, one panel per frame.

    ``labels`` are the (down-sampled) tracked labels drawn as outlines;
    ``centroids`` are ``(ids, y, x)`` in the down-sampled pixel grid. Outline
    and id share the track's colour (:func:`track_color`), the same in every
    panel, so an id switch shows as a colour change.
    """
    import matplotlib.patheffects as pe

    n = len(frame_indices)
    h, w = np.asarray(phase8[0]).shape
    panel_in = max(w, h) / 100.0
    fig, head, body = _figure(n * panel_in * w / max(w, h) + 0.2, panel_in * h / max(w, h) + 0.35)
    axes = body.subplots(1, n, squeeze=False)[0]
    unit = time_unit(times_min)
    font = 8 if w >= 250 else 6
    for k, t in enumerate(frame_indices):
        ax = axes[k]
        rgb = draw_outlines(gray_to_rgb(phase8[k]) * 0.85, labels[k])
        ax.imshow(rgb, interpolation="nearest")
        _image_axes_style(ax)
        ids, cy, cx = centroids[k]
        ax.set_title(f"frame {t} · t = {format_time(times_min[t], unit)} · {len(ids)} cells", fontsize=9)
        if len(ids) <= max_ids:
            for i, y, x in zip(ids, cy, cx):
                light = tuple(0.45 * v + 0.55 for v in track_color(int(i)))
                ax.text(x, y, str(int(i)), color=light, fontsize=font, ha="center",
                        va="center", fontweight="bold",
                        path_effects=[pe.withStroke(linewidth=2.2, foreground="black")])
        if k == 0:
            _add_scale_bar(ax, w, h, factor, pixel_size_um)
    sub = "outline and id coloured per track (same colour = same cell in every frame)"
    if any(len(c[0]) > max_ids for c in centroids):
        sub += f"; ids omitted in frames with more than {max_ids} cells"
    _title(head, title, sub, color)
    return fig


def plot_background(
    raw: Sequence[np.ndarray],
    background: Sequence[np.ndarray],
    times_min: Sequence[float],
    frame_indices: Sequence[int],
    title: str,
    limits: tuple[float, float],
    factor: int = 1,
    pixel_size_um: float | None = None,
    color: str = NO_SAMPLE_COLOR,
) -> "Figure":
    """Raw frame, its background and raw - background, one row per frame.

    Raw and background share one display range (``limits``, a.u.) so the
    background can be compared with the raw frame by eye; the difference is
    shown on a symmetric range around 0 (blue below, red above).
    """
    n = len(frame_indices)
    h, w = np.asarray(raw[0]).shape
    side = min(max(w, h), 260) / 100.0
    fig, head, body = _figure(3 * side * w / max(w, h) + 1.9, n * side * h / max(w, h) + 0.4)
    gs = body.add_gridspec(n, 5, width_ratios=[1, 1, 0.07, 1, 0.07])
    axes = np.array([[body.add_subplot(gs[k, j]) for j in (0, 1, 3)] for k in range(n)])
    cax_raw, cax_diff = body.add_subplot(gs[:, 2]), body.add_subplot(gs[:, 4])
    unit = time_unit(times_min)
    diffs = [np.asarray(r, np.float32) - np.asarray(b, np.float32) for r, b in zip(raw, background)]
    dlim = max(float(np.percentile(np.abs(np.concatenate([d.ravel() for d in diffs])), 99)), 1e-6)
    lo, hi = limits
    im_raw = im_diff = None
    for k, t in enumerate(frame_indices):
        im_raw = axes[k, 0].imshow(raw[k], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        axes[k, 1].imshow(background[k], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        im_diff = axes[k, 2].imshow(diffs[k], cmap="RdBu_r", vmin=-dlim, vmax=dlim, interpolation="nearest")
        for ax in axes[k]:
            _image_axes_style(ax)
        axes[k, 0].set_ylabel(f"frame {t}\nt = {format_time(times_min[t], unit)}", fontsize=9)
        if k == 0:
            for ax, name in zip(axes[0], ("raw", "background", "raw − background")):
                ax.set_title(name, fontsize=9)
            _add_scale_bar(axes[0, 0], w, h, factor, pixel_size_um)
    cb = body.colorbar(im_raw, cax=cax_raw)
    cb.set_label("intensity (a.u.)", fontsize=8)
    cb.ax.tick_params(labelsize=7)
    cb2 = body.colorbar(im_diff, cax=cax_diff)
    cb2.set_label("difference (a.u.)", fontsize=8)
    cb2.ax.tick_params(labelsize=7)
    _title(head, title, f"raw and background on one scale ({lo:.0f}-{hi:.0f} a.u., 1st-99th "
           "percentile of the raw frames)", color)
    return fig


def plot_frame_statistics(
    stats: pd.DataFrame,
    times_min: Sequence[float],
    title: str,
    line_color: Sequence[float] | str = "#1f77b4",
    color: str = NO_SAMPLE_COLOR,
) -> "Figure":
    """Per-frame statistics over time: level, spread and saturation.

    Top: mean ± std and median (bleaching, focus drift of phase contrast);
    middle: min, 1st, 99th percentile and max, with the dtype maximum when the
    data come near it; bottom: saturated pixels per frame. Frames with
    saturated pixels are marked red in every panel.
    """
    fig, head, body = _figure(7.2, 6.2)
    axes = body.subplots(3, 1, sharex=True, height_ratios=[3, 3, 1.6])
    unit = time_unit(times_min)
    t = np.asarray(times_min, np.float64)[stats["frame"].to_numpy()] / unit[0]
    sat = stats["saturated"].to_numpy(bool)
    mean, std = stats["mean"].to_numpy(), stats["std"].to_numpy()
    ax = axes[0]
    ax.fill_between(t, mean - std, mean + std, color=line_color, alpha=0.18, lw=0, label="mean ± std")
    ax.plot(t, mean, color=line_color, lw=1.8, label="mean")
    ax.plot(t, stats["p50"], color="black", lw=1.0, ls="--", label="median")
    ax.set_ylabel("intensity (a.u.)")
    ax.legend(fontsize=7.5, loc="best", frameon=False, ncol=3)
    ax = axes[1]
    ax.plot(t, stats["max"], color="#d62728", lw=1.0, label="max")
    ax.plot(t, stats["p99"], color=line_color, lw=1.5, label="99th pct")
    ax.plot(t, stats["p1"], color=line_color, lw=1.5, ls=":", label="1st pct")
    ax.plot(t, stats["min"], color="#7f7f7f", lw=1.0, label="min")
    dmax = float(stats["dtype_max"].iloc[0]) if len(stats) else float("nan")
    if np.isfinite(dmax) and float(stats["max"].max()) >= 0.5 * dmax:
        ax.axhline(dmax, color="#d62728", ls="--", lw=0.8, label=f"dtype max {dmax:.0f}")
    ax.set_ylabel("intensity (a.u.)")
    ax.legend(fontsize=7.5, loc="best", frameon=False, ncol=5)
    ax = axes[2]
    ax.bar(t, stats["n_saturated"], width=(t[1] - t[0]) * 0.8 if len(t) > 1 else 1.0,
           color=np.where(sat, "#d62728", "#7f7f7f"))
    ax.set_ylabel("saturated\npixels")
    ax.set_ylim(0, max(1.0, float(stats["n_saturated"].max()) * 1.15) if len(stats) else 1.0)
    ax.yaxis.get_major_locator().set_params(integer=True)
    if not sat.any():
        ax.text(0.5, 0.5, "none", transform=ax.transAxes, ha="center", va="center", color="#7f7f7f")
    ax.set_xlabel(f"time ({unit[1]})")
    for a in axes:
        a.grid(alpha=0.25, lw=0.5)
        for ts in t[sat]:
            a.axvline(ts, color="#d62728", alpha=0.25, lw=2)
    n_sat = int(sat.sum())
    if np.isfinite(dmax):
        sub = (f"{n_sat} of {len(stats)} frames with saturated pixels (= {dmax:.0f})"
               if n_sat else f"no saturated pixels (dtype max {dmax:.0f}) in {len(stats)} frames")
    else:
        sub = f"{len(stats)} frames (float data: no saturation value)"
    _title(head, title, sub, color)
    return fig


def statistics_html(stats: pd.DataFrame, times_min: Sequence[float], title: str) -> str:
    """The per-frame statistics as a self-contained HTML page, one table row per frame.

    Saturated frames are highlighted and counted in the heading.
    """
    cols = ["mean", "std", "min", "max", "p1", "p50", "p99"]
    head = ("<tr><th>frame</th><th>time (min)</th>"
            + "".join(f"<th>{c}</th>" for c in cols)
            + "<th>saturated pixels</th></tr>")
    # integer-valued columns (min, max, percentiles of integer data) without decimals
    integral = {c: bool(np.all(np.mod(stats[c].to_numpy(np.float64), 1.0) == 0)) for c in cols}
    body = []
    for row in stats.itertuples(index=False):
        cls = ' class="sat"' if row.saturated else ""
        t = times_min[int(row.frame)] if int(row.frame) < len(times_min) else float("nan")
        cells = "".join(
            f"<td>{getattr(row, c):.0f}</td>" if integral[c] else f"<td>{getattr(row, c):.2f}</td>"
            for c in cols
        )
        body.append(f"<tr{cls}><td>{int(row.frame)}</td><td>{t:.1f}</td>{cells}"
                    f"<td>{int(row.n_saturated)}</td></tr>")
    n_sat = int(stats["saturated"].sum())
    dmax = float(stats["dtype_max"].iloc[0]) if len(stats) else float("nan")
    note = (f"{n_sat} of {len(stats)} frames have saturated pixels (value {dmax:.0f})"
            if np.isfinite(dmax) else "float data: no saturation value")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; font-size: 13px; margin: 12px; color: #222; background: #fff; }}
h1 {{ font-size: 16px; margin: 0 0 4px 0; }}
p {{ margin: 0 0 8px 0; color: #555; }}
table {{ border-collapse: collapse; font-variant-numeric: tabular-nums; }}
th, td {{ padding: 2px 8px; text-align: right; border-bottom: 1px solid #e4e4e4; }}
th {{ position: sticky; top: 0; background: #f0f0f0; }}
tr.sat td {{ background: #fde0e0; color: #a00; font-weight: bold; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(note)}; intensities in a.u. (raw camera values), percentiles p1/p50/p99.</p>
<table id="frame-statistics">
<thead>{head}</thead>
<tbody>
{chr(10).join(body)}
</tbody>
</table>
</body></html>
"""


def plot_cells(
    cells_per_frame: Sequence[int],
    kept_per_frame: Sequence[int],
    track_lengths: Sequence[int],
    n_detected: int,
    n_kept: int,
    min_frames: int,
    border: int,
    times_min: Sequence[float],
    title: str,
    color: str = NO_SAMPLE_COLOR,
    curation: str = "",
) -> "Figure":
    """Cells per frame, track lengths and the fraction of cells the filters keep.

    ``curation`` is a line on the FOV's curation decisions (:func:`pyama_flow.traces.curation.curation_note`),
    shown under the subtitle (in red when some decisions are stale) when not empty.
    """
    fig, head, body = _figure(11.0, 3.4, 0.75 if curation else 0.5)
    axes = body.subplots(1, 3, width_ratios=[3, 2.2, 1.5])
    unit = time_unit(times_min)
    t = np.asarray(times_min, np.float64) / unit[0]
    ax = axes[0]
    ax.plot(t[: len(cells_per_frame)], cells_per_frame, color="#b0b0b0", lw=4.0, label="tracked")
    ax.plot(t[: len(kept_per_frame)], kept_per_frame, color=color, lw=1.8, label="kept by filters")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel(f"time ({unit[1]})")
    ax.set_ylabel("cells per frame")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(alpha=0.25, lw=0.5)
    ax = axes[1]
    lengths = np.asarray(track_lengths, np.int64)
    n_frames = len(times_min)
    bins = np.arange(0, max(n_frames, int(lengths.max()) if lengths.size else 1) + 2) - 0.5
    if n_frames > 60:
        bins = np.linspace(0.5, n_frames + 0.5, 41)
    ax.hist(lengths, bins=bins, color=color, alpha=0.85)
    ax.axvline(min_frames - 0.5, color="#d62728", ls="--", lw=1.0, label=f"min_frames = {min_frames}")
    ax.set_xlabel("track length (frames)")
    ax.set_ylabel("tracks")
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    ax.grid(alpha=0.25, lw=0.5)
    ax = axes[2]
    frac = n_kept / n_detected if n_detected else 0.0
    ax.bar([0, 1], [n_detected, n_kept], color=["#7f7f7f", color], width=0.6)
    ax.set_xticks([0, 1], ["tracked", "kept"])
    ax.set_ylabel("cells")
    ax.set_title(f"{frac:.0%} kept", fontsize=10)
    for x, v in ((0, n_detected), (1, n_kept)):
        ax.text(x, v, str(v), ha="center", va="bottom", fontsize=9)
    ax.set_ylim(0, max(n_detected, 1) * 1.18)
    ax.grid(alpha=0.25, lw=0.5, axis="y")
    _title(head, title, f"{n_kept} of {n_detected} cells kept by the filters "
           f"(present in >= {min_frames} frames, bounding box > {border} px from the border)"
, color)
    if curation:
        head.text(0.008, 0.16, curation, ha="left", va="top", fontsize=8.5,
                  color="#d62728" if "STALE" in curation else "#444444")
    return fig


def config_html(config: Mapping[str, Any], title: str = "Parameters used") -> str:
    """The effective config (after the schema's defaults) as an HTML table per section."""

    def flatten(value: Any, prefix: str) -> list[tuple[str, str]]:
        if isinstance(value, Mapping) and value:
            out: list[tuple[str, str]] = []
            for k in value:
                out += flatten(value[k], f"{prefix}.{k}" if prefix else str(k))
            return out
        if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            out = []
            for i, v in enumerate(value):
                out += flatten(v, f"{prefix}[{i}]")
            return out
        return [(prefix, json.dumps(value, ensure_ascii=False, default=str))]

    sections = []
    for section in config:
        rows = "".join(
            f"<tr><td class='k'>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
            for k, v in flatten(config[section], "")
        ) or "<tr><td class='k'></td><td>{}</td></tr>"
        sections.append(f"<h2>{html.escape(str(section))}</h2><table>{rows}</table>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; font-size: 13px; margin: 12px; color: #222; background: #fff; }}
h1 {{ font-size: 16px; margin: 0 0 6px 0; }}
h2 {{ font-size: 14px; margin: 14px 0 4px 0; }}
table {{ border-collapse: collapse; }}
td {{ padding: 2px 10px; border-bottom: 1px solid #e4e4e4; font-family: ui-monospace, monospace; }}
td.k {{ color: #555; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>The configuration this run used, with the schema's defaults filled in
(see config/README.md for every key).</p>
{chr(10).join(sections)}
</body></html>
"""


# -- from files to files (called by the workflow's qc_* rules) --------------


def _fov_times(metadata: Mapping[str, Any], fov: int, n_frames: int) -> list[float]:
    times = metadata.get("fov_times_min", {}).get(str(int(fov)))
    if times is None or len(times) != n_frames:
        return [float(t) for t in range(n_frames)]
    return [float(t) for t in times]


def read_json(path: str) -> Any:
    with open(path) as fh:
        return json.load(fh)


def fov_title(dataset: str, fov: int | str, what: str, sample: str | None = None) -> str:
    """``"demo · FOV 000 · raw frames · sample control"``: the title of a FOV's QC figure."""
    title = f"{dataset} · FOV {int(fov):03d} · {what}"
    return f"{title} · sample {sample}" if sample else title


def channel_label(names: Sequence[str], c: int) -> str:
    """``"GFP (ch 1)"``: a channel's name and index."""
    name = names[c] if 0 <= c < len(names) else f"channel {c}"
    return f"{name} (ch {c})"


def render_frames(
    raw_paths: Mapping[int, str],
    metadata_path: str,
    fov: int,
    phase_channel: int,
    out_path: str,
    title: str,
    color: str = NO_SAMPLE_COLOR,
    max_side: int = THUMB_SIDE,
) -> list[int]:
    """Thumbnail sheet of one FOV: each channel's first, middle and last frame, and the composite.

    Reads only the frames shown. Each channel is stretched to the 1st-99th
    percentile of its shown frames; the composite adds phase contrast (grey,
    half weight) and each fluorescence channel in its colour.

    Returns
    -------
    The frame indices shown.
    """
    meta = read_json(metadata_path)
    names = meta.get("channel_names", [])
    channels = sorted(raw_paths)
    readers = {c: open_frames(raw_paths[c]) for c in channels}
    try:
        n = len(readers[channels[0]])
        idx = select_frames(n)
        factor = thumbnail_factor(readers[channels[0]].shape, max_side)
        rows, comp_frames, comp_colors, comp_weights = [], [], [], []
        fl_rank = 0
        for c in channels:
            frames = [readers[c][t] for t in idx]
            limits = stretch_limits(frames)
            small = [percentile_stretch(downsample(f, factor), limits=limits) for f in frames]
            is_phase = c == phase_channel
            rgb = channel_color(names[c] if c < len(names) else "", fl_rank, phase=is_phase)
            if not is_phase:
                fl_rank += 1
            rows.append({"name": channel_label(names, c), "images": [gray_to_rgb(s, rgb) for s in small],
                         "limits": limits, "rgb": rgb})
            comp_frames.append(small)
            comp_colors.append(rgb)
            comp_weights.append(0.5 if is_phase else 1.0)
    finally:
        for r in readers.values():
            r.close()
    if len(channels) > 1:
        comps = [composite([f[k] for f in comp_frames], comp_colors, comp_weights) for k in range(len(idx))]
        legend = " + ".join(
            f"{names[c] if c < len(names) else c}" + (" (grey)" if c == phase_channel else "")
            for c in channels
        )
        rows.append({"name": f"composite\n{legend}", "images": comps})
    times = _fov_times(meta, fov, n)
    fig = plot_frame_sheet(rows, times, idx, title, meta.get("pixel_size_um"), factor, color)
    save_figure(fig, out_path, palette=True)
    return idx


def render_outlines(
    phase_path: str,
    labels_path: str,
    metadata_path: str,
    fov: int,
    out_path: str,
    title: str,
    color: str = NO_SAMPLE_COLOR,
    max_side: int = THUMB_SIDE,
) -> list[int]:
    """Tracked cell outlines and ids over phase contrast at the first, middle and last frame."""
    meta = read_json(metadata_path)
    with open_frames(phase_path) as ph, StackReader(labels_path) as lab:
        n = len(lab)
        idx = select_frames(n)
        factor = thumbnail_factor(lab.shape, max_side)
        frames = [ph[t] for t in idx]
        limits = stretch_limits(frames)
        phase8 = [percentile_stretch(downsample(f, factor), limits=limits) for f in frames]
        labels_small, cents = [], []
        for t in idx:
            full = lab[t]
            labels_small.append(downsample_labels(full, factor))
            ids, cy, cx = label_centroids(full)
            cents.append((ids, (cy + 0.5) / factor - 0.5, (cx + 0.5) / factor - 0.5))
    times = _fov_times(meta, fov, n)
    fig = plot_outlines(phase8, labels_small, cents, times, idx, title, factor,
                        meta.get("pixel_size_um"), color)
    save_figure(fig, out_path, palette=True)
    return idx


def render_background(
    raw_path: str,
    background_path: str,
    metadata_path: str,
    fov: int,
    channel: int,
    out_path: str,
    title: str,
    color: str = NO_SAMPLE_COLOR,
    max_side: int = 260,
) -> list[int]:
    """Raw frame beside its background model (and the difference), three frames."""
    from pyama_flow.background.model import BackgroundModels

    meta = read_json(metadata_path)
    bgs = BackgroundModels(background_path)
    with open_frames(raw_path) as raw:
        n = len(raw)
        idx = select_frames(n)
        factor = thumbnail_factor(raw.shape, max_side)
        frames = [raw[t] for t in idx]
        limits = stretch_limits(frames)
        raw_small = [downsample(f, factor) for f in frames]
        bg_small = [downsample(bgs[t], factor) for t in idx]
    times = _fov_times(meta, fov, n)
    fig = plot_background(raw_small, bg_small, times, idx, title, limits, factor,
                          meta.get("pixel_size_um"), color)
    save_figure(fig, out_path, palette=True)
    return idx


def render_frame_statistics(
    stats_path: str,
    metadata_path: str,
    fov: int,
    channel: int,
    png_path: str,
    html_path: str,
    title: str,
    phase: bool = False,
    color: str = NO_SAMPLE_COLOR,
) -> pd.DataFrame:
    """Plot and HTML table of a channel's per-frame statistics (from the extract step)."""
    meta = read_json(metadata_path)
    stats = read_statistics(stats_path)
    names = meta.get("channel_names", [])
    times = _fov_times(meta, fov, len(stats))
    name = names[channel] if channel < len(names) else ""
    line = (0.2, 0.2, 0.2) if phase else tuple(0.7 * v for v in channel_color(name, channel))
    fig = plot_frame_statistics(stats, times, title, line, color)
    save_figure(fig, png_path)
    write_text(html_path, statistics_html(stats, times, title))
    return stats


def render_cells(
    trace_stats_path: str,
    tracks_path: str,
    traces_path: str,
    metadata_path: str,
    fov: int,
    out_path: str,
    title: str,
    color: str = NO_SAMPLE_COLOR,
) -> dict[str, Any]:
    """Cells per frame, track lengths and fraction kept of one FOV.

    Returns
    -------
    dict with ``cells_per_frame``, ``kept_per_frame``, ``n_detected``, ``n_kept``
    and ``curation`` (the line on the FOV's curation decisions shown in the figure).
    """
    from pyama_flow.traces.curation import curation_note

    meta = read_json(metadata_path)
    st = read_json(trace_stats_path)
    tracks = pd.read_csv(tracks_path)
    kept = pd.read_csv(traces_path, usecols=["cell", "frame"])
    per_frame = list(st["cells_per_frame"])
    n = len(per_frame)
    counts = kept.groupby("frame")["cell"].nunique()
    kept_per_frame = [int(counts.get(t, 0)) for t in range(n)]
    lengths = (tracks["last_frame"] - tracks["first_frame"] + 1).to_numpy(np.int64)
    times = _fov_times(meta, fov, n)
    filters = st.get("filters", {})
    note = curation_note(traces_path)
    fig = plot_cells(per_frame, kept_per_frame, lengths, int(st["cells_detected"]),
                     int(st["cells_kept"]), int(filters.get("min_frames", 0)),
                     int(filters.get("border", 0)), times, title, color, note)
    save_figure(fig, out_path)
    return {"cells_per_frame": per_frame, "kept_per_frame": kept_per_frame,
            "n_detected": int(st["cells_detected"]), "n_kept": int(st["cells_kept"]),
            "curation": note}


#: Plots of :func:`render_sample_analysis`, by output name.
SAMPLE_PLOTS: dict[str, str] = {
    "parameters": "parameter distributions",
    "r_squared": "R² histogram",
    "examples": "example cells",
    "median_trace": "median trace",
    "pca": "PCA",
}


def render_sample_analysis(
    fits_paths: Sequence[str],
    traces_path: str,
    sample: str,
    model: str,
    out_paths: Mapping[str, str],
    summary_path: str,
    color: str = NO_SAMPLE_COLOR,
    n_examples: int = 12,
    include: Sequence[str] | None = ("ok",),
) -> pd.DataFrame:
    """A sample's fit and trace plots, drawn by :mod:`pyama_flow.report.analysis` in the sample's colour.

    Parameters
    ----------
    fits_paths : the ``fits_{model}.csv`` of the sample's FOVs.
    traces_path : the sample's merged table (``time, fov, cell, value``) of the fitted column.
    out_paths : one PNG path per key of :data:`SAMPLE_PLOTS`.
    summary_path : CSV of the parameter summary (median, quartiles, fraction R² > 0.9, cells per status).
    include : the fit statuses whose cells the plots and the summary use
        (config ``fit.status.include``; default the reliable fits, ``ok``).

    Returns
    -------
    The parameter summary.
    """
    from pyama_flow.report import analysis as an
    fits = pd.concat([pd.read_csv(p) for p in fits_paths], ignore_index=True)
    if "model" in fits.columns:
        fits = fits[fits["model"] == model]
    fits.insert(0, "sample", sample)
    traces = an.stack_samples({sample: pd.read_csv(traces_path)})
    colors = {sample: color}
    used = an.traces_of(traces, an.select_fits(fits, include))
    an.plot_parameter_distributions(an.parameter_table(fits, model, include=include), out_paths["parameters"],
                                    colors=colors)
    an.plot_r2_histogram(fits, out_paths["r_squared"], colors=colors, include=include)
    an.plot_example_cells(traces, fits, out_paths["examples"], n=n_examples, colors=colors, include=include)
    an.plot_median_trace(an.median_trace(used), out_paths["median_trace"], colors=colors)
    an.plot_pca(an.trace_pca(used), out_paths["pca"], colors=colors)
    summary = an.summarize_parameters(fits, model, include=include)
    with atomic_path(summary_path) as tmp:
        summary.to_csv(tmp, index=False, float_format="%.9g")
    counts = an.status_counts(fits).iloc[0].drop("sample") if len(fits) else pd.Series(dtype=int)
    log.info("sample %s, model %s: %d fits (%s), %d cells with traces, %d used (status in %s)", sample, model,
             len(fits), ", ".join(f"{k[2:]} {v}" for k, v in counts.items()),
             traces.groupby(["fov", "cell"]).ngroups, used.groupby(["fov", "cell"]).ngroups,
             "any but failed" if include is None else "/".join(include))
    return summary


def render_config(config: Mapping[str, Any], out_path: str) -> None:
    """The effective config as an HTML page (see :func:`config_html`)."""
    write_text(out_path, config_html(config))


# -- report deep links ----------------------------------------------------------

#: Script appended by :func:`add_report_deep_links`: maps the URL fragment to a page.
_DEEP_LINK_SCRIPT = """
<script id="pyama-flow-deep-links">
// pyama-flow: open a page of this Snakemake report from the URL fragment, e.g.
//   report.html#result=results/demo/fov_000/qc/outlines.png
//   report.html#category=3 Segmentation and tracking&subcategory=control
(function () {
  function route() {
    if (typeof app === "undefined" || !app || typeof results === "undefined") {
      setTimeout(route, 50);
      return;
    }
    var p = new URLSearchParams(window.location.hash.slice(1));
    var cat = p.get("category"), sub = p.get("subcategory"), res = p.get("result");
    if (res && !cat) {
      Object.keys(categories).forEach(function (c) {
        Object.keys(categories[c]).forEach(function (s) {
          if (categories[c][s].indexOf(res) >= 0) { cat = c; sub = s; }
        });
      });
    }
    // one setView call: React batches state updates, separate calls would
    // each start from the old state and undo each other
    var view = {};
    if (cat && categories[cat]) {
      view.category = cat;
      if (sub && categories[cat][sub]) {
        view.navbarMode = "subcategory";
        view.subcategory = sub;
      } else if (Object.keys(categories[cat]).length === 1) {
        view.navbarMode = "subcategory";
        view.subcategory = Object.keys(categories[cat])[0];
      } else {
        view.navbarMode = "category";
      }
    }
    if (res && results[res]) {
      var mime = results[res].mime_type || "";
      var content = mime.indexOf("image/") === 0 ? "img"
        : mime === "text/html" ? "html" : mime === "application/pdf" ? "pdf" : null;
      view.resultPath = res;
      if (content) {
        view.content = content;
        view.contentPath = results[res].data_uri;
      } else {
        view.navbarMode = "resultinfo";
      }
    }
    app.setView(view);
    document.body.setAttribute("data-deep-link", window.location.hash ? "done" : "none");
  }
  window.addEventListener("hashchange", route);
  route();
})();
</script>
"""


def add_report_deep_links(report_html: str) -> str:
    """A Snakemake HTML report with a URL-fragment router added.

    Snakemake's report (9.x) is a single-page app without URLs: every page is
    internal state. The returned page opens the page named in its fragment:
    ``#result=<path of a result>`` (the result in its category and
    subcategory), or ``#category=<name>&subcategory=<name>``. Nothing else
    changes. Use as ``add_report_deep_links(Path("report.html").read_text())``
    and write the result beside the report (or in place).
    """
    marker = "</body>"
    i = report_html.rfind(marker)
    if i < 0:
        raise ValueError("not a Snakemake HTML report (no </body>)")
    return report_html[:i] + _DEEP_LINK_SCRIPT + report_html[i:]
