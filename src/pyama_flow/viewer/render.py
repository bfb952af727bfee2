"""Frames as PNG: one stored TIFF page, percentile contrast, outlines and track ids.

A frame is rendered from the single page it needs (``raw_ch{c}.tif`` and, for
outlines, ``labels.tif`` through :class:`~pyama_flow.io.stacks.StackReader`),
contrast-stretched on the full-resolution frame (1st-99th percentile by
default, :func:`pyama_flow.report.display.percentile_stretch`), block-averaged down to at
most ``max_side`` pixels per side for display (or, with ``upscale``, a small
frame magnified by an integer so that ids are written at display resolution) and PNG-encoded with fast compression. Rendered PNGs are kept in a byte-bounded LRU cache keyed by the
file's modification time, so a re-rendered result is never stale.

Z is already resolved in the results (``extract`` stored one plane or the
maximum projection per the config's ``z``), so there is nothing to project
here; a max projection only matters for raw input (``pyama-flow thumbnail --mip``).
"""

from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pyama_flow.io import framestats
from pyama_flow.report import display
from pyama_flow.io import source as _source
from pyama_flow.io.stacks import StackReader as StackReader  # re-exported: viewer.app opens labels.tif through it

#: Layers that can be shown of a fluorescence channel.
LAYERS = ("raw", "background", "corrected")
#: Most track ids written onto one frame (beyond that only outlines are drawn).
MAX_IDS = 400
#: Largest integer magnification of a frame smaller than the display (``upscale``).
MAX_UPSCALE = 4


class ByteLRU:
    """Thread-safe LRU cache bounded by the total size of its values.

    Parameters
    ----------
    max_bytes : int
        Least recently used entries are dropped while the total exceeds this.
    """

    def __init__(self, max_bytes: int = 64 * 2**20) -> None:
        self.max_bytes = int(max_bytes)
        self._data: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Any:
        """The cached value (now most recently used), or ``None``."""
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return entry[0]

    def put(self, key: Hashable, value: Any, size: int | None = None) -> None:
        """Store ``value`` of ``size`` bytes (default ``len(value)``); larger than the budget: not kept."""
        size = len(value) if size is None else int(size)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._size -= old[1]
            self._data[key] = (value, size)
            self._size += size
            while self._size > self.max_bytes:
                _, (_, dropped) = self._data.popitem(last=False)
                self._size -= dropped

    @property
    def size(self) -> int:
        """Total bytes held."""
        return self._size

    def __len__(self) -> int:
        return len(self._data)


@dataclass(frozen=True)
class FrameRequest:
    """What to render: the stack, the page, and how to show it."""

    raw_path: Path
    frame: int
    labels_path: Path | None = None
    background_path: Path | None = None
    layer: str = "raw"
    low: float = 1.0
    high: float = 99.0
    max_side: int = 1024
    outlines: bool = False
    ids: bool = False
    upscale: bool = False
    color: tuple[float, float, float] = display.PHASE_COLOR

    def cache_key(self) -> tuple:
        """Everything the PNG depends on, including the files' modification times."""
        def stamp(p: Path | None) -> tuple:
            return (str(p), p.stat().st_mtime_ns) if p is not None else ()
        return (stamp(self.raw_path), self.frame, stamp(self.labels_path if self.outlines or self.ids else None),
                stamp(self.background_path if self.layer != "raw" else None), self.layer,
                self.low, self.high, self.max_side, self.outlines, self.ids, self.upscale, self.color)


def display_scale(shape: tuple[int, ...], max_side: int, upscale: bool = False) -> tuple[int, int]:
    """Down-sampling factor and integer magnification of a frame shown in ``max_side`` px.

    A frame larger than ``max_side`` is block-averaged by
    :func:`pyama_flow.report.display.thumbnail_factor`; with ``upscale`` a smaller one is
    magnified by the largest integer (at most :data:`MAX_UPSCALE`) that keeps
    it within ``max_side``, so that ids are written at display resolution.

    Returns
    -------
    (factor, magnification); one of them is 1. A PNG pixel spans
    ``factor / magnification`` frame pixels.
    """
    factor = display.thumbnail_factor(shape, max_side)
    if factor > 1 or not upscale:
        return factor, 1
    return 1, int(min(max(max_side // max(shape[-2:]), 1), MAX_UPSCALE))


def magnify(image: np.ndarray, m: int) -> np.ndarray:
    """Nearest-neighbour magnification by an integer ``m`` along both image axes."""
    if m <= 1:
        return image
    return np.repeat(np.repeat(image, m, axis=0), m, axis=1)


def open_frames(path: Path):
    """A raw stack or ``raw_ch{c}.json`` reference, whose relative input is
    resolved from the results' own experiment, never the viewer's working directory."""
    return _source.open_frames(path, search_cwd=False)


def read_page(path: Path, frame: int) -> np.ndarray:
    """Frame ``frame`` of a (T, Y, X) stack, reading only that page (or, for a
    ``raw_ch{c}.json`` reference, that frame of the input file).

    Raises
    ------
    IndexError
        ``frame`` outside the stack.
    """
    with open_frames(path) as reader:
        if not 0 <= frame < len(reader):
            raise IndexError(f"frame {frame} out of range (0-{len(reader) - 1})")
        return reader[frame]


def layer_image(raw: np.ndarray, request: FrameRequest) -> np.ndarray:
    """The raw frame, its background or raw - background (float32 for the latter two)."""
    if request.layer == "raw":
        return raw
    if request.background_path is None:
        raise FileNotFoundError("no background model for this channel")
    from pyama_flow.background.model import BackgroundModels

    models = BackgroundModels(str(request.background_path))
    if not 0 <= request.frame < len(models):
        raise IndexError(f"frame {request.frame} has no background model")
    bg = models[request.frame]
    if request.layer == "background":
        return bg
    return np.asarray(raw, np.float32) - bg


def render_rgb(request: FrameRequest) -> tuple[np.ndarray, dict[str, Any]]:
    """The display image (uint8, down-sampled) of a request and facts about it.

    Returns
    -------
    image : (h, w) uint8 grey, or (h, w, 3) uint8 RGB with outlines / ids / a colour
    info : dict with ``factor`` (down-sampling), ``limits`` (display range in
        a.u.), ``shape`` (full-resolution height, width) and ``n_cells``
        (labelled cells in the frame, when labels were read).
    """
    raw = read_page(request.raw_path, request.frame)
    image = layer_image(raw, request)
    limits = display.stretch_limits(image, request.low, request.high)
    factor, mag = display_scale(image.shape, request.max_side, request.upscale)
    small8 = display.percentile_stretch(display.downsample(image, factor), limits=limits)
    info: dict[str, Any] = {"factor": factor, "magnification": mag, "scale": factor / mag,
                            "limits": limits, "shape": tuple(int(v) for v in image.shape)}
    overlay = (request.outlines or request.ids) and request.labels_path is not None
    if not overlay:
        if tuple(request.color) == display.PHASE_COLOR:
            return magnify(small8, mag), info
        return magnify(_to_uint8(display.gray_to_rgb(small8, request.color)), mag), info
    small_labels = display.downsample_labels(read_page(request.labels_path, request.frame), factor)
    rgb = display.gray_to_rgb(small8, request.color)
    if request.outlines:
        rgb = display.draw_outlines(rgb * 0.85, small_labels)
    out = magnify(_to_uint8(rgb), mag)  # outlines as thick as one frame pixel
    ids, cy, cx = display.label_centroids(small_labels)
    info["n_cells"] = int(ids.size)
    if request.ids and 0 < ids.size <= MAX_IDS:
        # label pixel i covers [i, i + 1) before magnification; text at display resolution
        out = draw_ids(out, ids, (cy + 0.5) * mag, (cx + 0.5) * mag)
    return out, info


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(rgb) * 255.0), 0, 255).astype(np.uint8)


def draw_ids(rgb8: np.ndarray, ids: np.ndarray, cy: np.ndarray, cx: np.ndarray) -> np.ndarray:
    """Track ids written at their centroids, each in a light tint of its :func:`~pyama_flow.report.display.track_color`.

    Parameters
    ----------
    rgb8 : (h, w, 3) uint8
    ids, cy, cx : 1-D arrays
        Ids and centroids in the pixel grid of ``rgb8``.
    """
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(rgb8)
    draw = ImageDraw.Draw(image)
    size = max(10, min(15, max(rgb8.shape[:2]) // 40))
    try:
        font = ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    for i, y, x in zip(ids, cy, cx):
        light = tuple(int(255 * (0.45 * v + 0.55)) for v in display.track_color(int(i)))
        draw.text((float(x), float(y)), str(int(i)), fill=light, font=font, anchor="mm",
                  stroke_width=1, stroke_fill=(0, 0, 0))
    return np.asarray(image)


def encode_png(rgb8: np.ndarray, compress_level: int = 1) -> bytes:
    """PNG bytes of a uint8 grey (2-D) or RGB (3-D) image; level 1 favours speed over size."""
    from PIL import Image

    arr = np.asarray(rgb8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


class FrameRenderer:
    """Render frames to PNG with a bounded cache of the results.

    Parameters
    ----------
    cache_bytes : int
        Budget of the PNG cache (LRU).
    """

    def __init__(self, cache_bytes: int = 64 * 2**20) -> None:
        self.cache = ByteLRU(cache_bytes)

    def png(self, request: FrameRequest) -> tuple[bytes, dict[str, Any]]:
        """PNG bytes of a frame and its facts (:func:`render_rgb`'s, plus ``cached``)."""
        key = request.cache_key()
        hit = self.cache.get(key)
        if hit is not None:
            return hit[0], {**hit[1], "cached": True}
        rgb, info = render_rgb(request)
        data = encode_png(rgb)
        self.cache.put(key, (data, info), size=len(data) + 512)
        return data, {**info, "cached": False}


# -- cells and statistics ---------------------------------------------------------


def cell_at(labels: np.ndarray, x: float, y: float, radius: float = 0.0) -> int | None:
    """Track id under pixel (x, y) of a label frame, or the nearest within ``radius`` px.

    Parameters
    ----------
    labels : (Y, X) integer array
    x, y : float
        Full-resolution pixel coordinates (column, row); pixel ``i`` covers ``[i, i + 1)``.
    radius : float
        If (x, y) is background, the id of the nearest labelled pixel at most
        this far away (Euclidean distance between pixel centres); 0 = exact.

    Returns
    -------
    The id, or ``None`` outside the frame or on background with nothing near.
    """
    lab = np.asarray(labels)
    col, row = int(math.floor(x)), int(math.floor(y))
    h, w = lab.shape
    if not (0 <= row < h and 0 <= col < w):
        return None
    value = int(lab[row, col])
    if value or radius <= 0:
        return value or None
    r = int(math.ceil(radius))
    y0, y1, x0, x1 = max(row - r, 0), min(row + r + 1, h), max(col - r, 0), min(col + r + 1, w)
    window = lab[y0:y1, x0:x1]
    yy, xx = np.nonzero(window)
    if yy.size == 0:
        return None
    d2 = (yy + y0 - row) ** 2 + (xx + x0 - col) ** 2
    best = int(np.argmin(d2))
    if d2[best] > radius * radius:
        return None
    return int(window[yy[best], xx[best]])


def frame_stats(path: Path, frame: int) -> dict[str, Any]:
    """:func:`pyama_flow.io.framestats.frame_statistics` of one page of a stack (NaN as ``None``)."""
    stats = framestats.frame_statistics(read_page(path, frame), frame)
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in stats.items()}
