"""Frames for display, with numpy alone: which frames, contrast, size, outlines, colours.

The pictures of the report and the viewer (:mod:`pyama_flow.viewer.render`)
show frames the same way through these functions: the first, middle and last
frame (:func:`select_frames`), a percentile contrast stretch to uint8
(:func:`percentile_stretch`), block-averaged down to a thumbnail
(:func:`downsample`), each channel in its colour (:func:`channel_color`,
:func:`composite`) and each tracked cell's outline in its track's colour
(:func:`draw_outlines`). Nothing here imports matplotlib.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence

import numpy as np

from pyama_flow.io.framestats import percentiles

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


# -- frames: selection, contrast, size ------------------------------------------


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


# -- labels: outlines and centroids ---------------------------------------------


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


def track_color(track_id: int) -> tuple[float, float, float]:
    """A bright colour per track id, the same in every frame (golden-ratio hues)."""
    hue = (int(track_id) * 0.6180339887) % 1.0
    return colorsys.hsv_to_rgb(hue, 0.85, 1.0)


def draw_outlines(rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Copy of float RGB ``rgb`` with each object's outline in its :func:`track_color`."""
    out = np.array(rgb, dtype=np.float32, copy=True)
    edge = label_outlines(labels)
    if edge.any():
        ids = np.asarray(labels)[edge].astype(np.int64)
        lut = np.array([track_color(i) for i in range(int(ids.max()) + 1)], np.float32)
        out[edge] = lut[ids]
    return out


# -- colours: channels, composites, samples --------------------------------------


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


def _named_color(name: str) -> tuple[float, float, float] | None:
    """The colour of the first fluorophore word of :data:`_NAMED_COLORS` in ``name``, if any."""
    lowered = name.lower()
    for words, color in _NAMED_COLORS:
        if any(w in lowered for w in words):
            return color
    return None


def channel_color(name: str, index: int = 0, phase: bool = False) -> tuple[float, float, float]:
    """Display colour of a channel: white for phase contrast, else by fluorophore name.

    Names are matched by the words in :data:`_NAMED_COLORS` (``GFP`` -> green,
    ``mCherry`` -> magenta, ...); unknown names take a colour by ``index``.
    """
    if phase:
        return PHASE_COLOR
    return _named_color(name) or _FALLBACK_COLORS[index % len(_FALLBACK_COLORS)]


def looks_like_phase(name: str) -> bool:
    """Whether a channel name reads as a transmitted-light channel (phase contrast, DIC, BF)."""
    lowered = name.strip().lower()
    return lowered in ("pc", "ph", "tl") or lowered.startswith(("phase", "bf", "bright", "dic", "trans"))


def display_color(name: str) -> tuple[float, float, float]:
    """Colour of a channel known only by name: by fluorophore word, else white (grey scale)."""
    if looks_like_phase(name):
        return PHASE_COLOR
    return _named_color(name) or PHASE_COLOR


def sample_color(name: str | None, names: Sequence[str]) -> str:
    """Hex colour of a sample (its position in ``names``); dark grey for ``None``."""
    if name is None or name not in names:
        return NO_SAMPLE_COLOR
    return SAMPLE_PALETTE[list(names).index(name) % len(SAMPLE_PALETTE)]
