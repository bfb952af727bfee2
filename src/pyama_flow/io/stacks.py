"""Result stacks: (T, Y, X) TIFF, one page per frame, written and read frame by frame.

Every stack is an ImageJ hyperstack: the first page's description is ImageJ's
(``ImageJ=...``, ``images=T``, ``frames=T``, ``hyperstack=true``, ``unit=um``,
``finterval=`` seconds), the X/Y resolution tags hold the pixel size, so
ImageJ / Fiji (drag and drop), napari and a plain ``tifffile.imread`` all see
T as time with the input's pixel size and frame interval. Pages are
losslessly compressed, one per frame (BigTIFF when large), so any frame can be
read without touching the others.

The codec is deflate (``"zlib"``, level 1, no predictor) by default: the one
that every TIFF reader decodes correctly. ImageJ has no Zstandard decoder, and
ImageJ before 1.53v decodes the horizontal-differencing predictor into wrong
16-bit values (the Debian ``imagej`` is 1.53t), so the predictor is only ever
applied with ``"zstd"``, an opt-in for stacks only pyama-flow, tifffile and
napari with imagecodecs read (faster to write and read; sizes and speeds of
the candidates: ``benchmarks/bench_codecs.py``, README "Outputs").

Labels are uint16 (ImageJ's 16-bit integer images) whenever every id fits;
:func:`label_dtype` gives the rule. Everything is written to a temporary name
beside the target and renamed at the end, so a failed or killed job never
leaves a file that looks complete.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import tifffile

from pyama_flow.io.atomic import atomic_path
from pyama_flow.io.base import InputError

#: Lossless codecs by config name (``storage.compression``): (tifffile codec, level);
#: "none" stores pages uncompressed (scratch stacks that are deleted after the run).
CODECS: dict[str, tuple[str, int] | None] = {"zlib": ("zlib", 1), "zstd": ("zstd", 1), "none": None}
#: Codecs whose pages may use the horizontal predictor: ImageJ < 1.53v decodes
#: it wrongly and cannot read zstd at all, so only zstd (not for ImageJ anyway) gets it.
PREDICTOR_CODECS = frozenset({"zstd"})
#: Deflate: decoded correctly by ImageJ / Fiji, napari, tifffile, libtiff, Bio-Formats.
DEFAULT_CODEC = "zlib"
DEFAULT_COMPRESSION = CODECS[DEFAULT_CODEC]
_BIGTIFF_LIMIT = 2**32 - 2**25
#: Keys of an ImageJ description that are ImageJ's own (the rest is ours).
_IMAGEJ_KEYS = frozenset({"ImageJ", "images", "frames", "slices", "channels", "hyperstack",
                          "mode", "loop", "unit", "finterval", "spacing", "tunit"})


@dataclass(frozen=True)
class Calibration:
    """Physical scale of a stack: pixel size (µm) and frame interval (s); None = unknown."""

    pixel_size_um: float | None = None
    frame_interval_s: float | None = None

    @classmethod
    def of(cls, pixel_size_um: float | None, frame_interval_s: float | None) -> "Calibration":
        """Keep only finite positive values."""
        def ok(v: float | None) -> float | None:
            return float(v) if v is not None and math.isfinite(v) and v > 0 else None
        return cls(ok(pixel_size_um), ok(frame_interval_s))


def frame_interval_s(times_min: Iterable[float] | None) -> float | None:
    """Median interval between frames in seconds from per-frame minutes (None for < 2 frames)."""
    if times_min is None:
        return None
    t = np.asarray(list(times_min), dtype=np.float64)
    if t.size < 2 or not np.all(np.isfinite(t)):
        return None
    step = float(np.median(np.diff(t))) * 60.0
    return step if step > 0 else None


def label_dtype(max_id: int) -> np.dtype:
    """Dtype of a label stack whose largest id is ``max_id``.

    uint16 (an integer image in ImageJ / Fiji) up to 65535 ids; above that
    uint32, which ImageJ opens as a 32-bit float image (ids exact up to 2^24).
    """
    return np.dtype(np.uint16) if max_id <= np.iinfo(np.uint16).max else np.dtype(np.uint32)


def imagej_description(n_frames: int, calibration: Calibration, extra: dict[str, Any]) -> str:
    """ImageJ hyperstack description of a (T, Y, X) stack, with ``extra`` as additional keys.

    ``extra`` values become one ``key=value`` line each (ImageJ ignores the keys
    it does not know; tifffile returns them in ``imagej_metadata``).
    """
    lines = ["ImageJ=1.11a", f"images={n_frames}", f"frames={n_frames}", "hyperstack=true",
             "mode=grayscale", "loop=false"]
    if calibration.pixel_size_um is not None:
        lines.append("unit=um")
    if calibration.frame_interval_s is not None:
        lines.append(f"finterval={calibration.frame_interval_s!r}")
    for key, value in extra.items():
        if key in _IMAGEJ_KEYS or key == "axes":
            continue
        text = " ".join(str(value).split())  # one line
        lines.append(f"{key}={text}")
    return "\n".join(lines) + "\n"


def write_stack(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    n_frames: int,
    shape: tuple[int, int],
    dtype: Any,
    compression: tuple[str, int] | str | None = DEFAULT_COMPRESSION,
    predictor: bool = False,
    metadata: dict[str, Any] | None = None,
    calibration: Calibration | None = None,
) -> None:
    """Stream ``n_frames`` 2-D frames into a (T, Y, X) ImageJ hyperstack at ``path``.

    Parameters
    ----------
    frames : iterable of ndarray
        Yields exactly ``n_frames`` arrays of ``shape``; consumed lazily, so
        only one frame is held at a time.
    compression : (codec, level), a name of :data:`CODECS` or None
        Lossless codec for every page.
    predictor : bool
        Horizontal differencing before compression; applied only with a codec
        of :data:`PREDICTOR_CODECS` (ImageJ < 1.53v misreads it with deflate).
    metadata : dict, optional
        Extra keys stored as ``key=value`` lines of the ImageJ description.
    calibration : Calibration, optional
        Pixel size (resolution tags, ``unit=um``) and frame interval (``finterval``).
    """
    dtype = np.dtype(dtype)
    n_bytes = n_frames * shape[0] * shape[1] * dtype.itemsize
    count = 0

    def checked() -> Iterator[np.ndarray]:
        nonlocal count
        for frame in frames:
            frame = np.asarray(frame)
            if frame.shape != tuple(shape):
                raise ValueError(
                    f"{path}: frame {count} has shape {frame.shape}, expected {tuple(shape)}"
                )
            count += 1
            yield frame.astype(dtype, copy=False)
        if count != n_frames:  # say so here: tifffile would only see StopIteration
            raise ValueError(f"{path}: got {count} frames, expected {n_frames}")

    if isinstance(compression, str) and compression in CODECS:
        compression = CODECS[compression]
    if isinstance(compression, tuple):
        codec, level = compression
        comp_args: dict[str, Any] | None = {"level": level}
    else:
        codec, comp_args = compression, None
    predictor = bool(predictor) and codec in PREDICTOR_CODECS
    cal = calibration or Calibration()
    resolution = None
    if cal.pixel_size_um is not None:
        resolution = (1.0 / cal.pixel_size_um, 1.0 / cal.pixel_size_um)
    with atomic_path(path) as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=n_bytes > _BIGTIFF_LIMIT) as tw:
            if n_frames > 0:
                tw.write(
                    checked(),
                    shape=(n_frames, *shape),
                    dtype=dtype,
                    compression=codec,
                    compressionargs=comp_args,
                    predictor=predictor or None,
                    photometric="minisblack",
                    resolution=resolution,
                    resolutionunit=tifffile.RESUNIT.NONE if resolution else None,
                    description=imagej_description(n_frames, cal, metadata or {}),
                    metadata=None,
                )
            else:  # ImageJ has no empty stacks: a shaped (0, Y, X) TIFF
                meta = {"axes": "TYX", **(metadata or {})}
                tw.write(np.zeros((0, *shape), dtype), metadata=meta)
        if count != n_frames:
            raise ValueError(f"{path}: got {count} frames, expected {n_frames}")


class FrameStack:
    """Frames of a (T, Y, X) stack read one at a time, as the steps use them:
    ``shape``, ``dtype``, ``len``, ``[t]`` (negative ``t`` from the end),
    iteration, ``close`` and ``with``. Subclasses set ``path``, ``shape`` and
    ``dtype`` and implement :meth:`_read` and :meth:`close`."""

    path: str
    shape: tuple[int, int, int]

    #: Pixel size and frame interval where known.
    calibration: Calibration = Calibration()

    def _read(self, t: int) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, t: int) -> np.ndarray:
        if not -len(self) <= t < len(self):
            raise IndexError(f"{self.path}: frame {t} out of range (0-{len(self) - 1})")
        return self._read(t % len(self))

    def __iter__(self) -> Iterator[np.ndarray]:
        for t in range(len(self)):
            yield self[t]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_same_shape(a: FrameStack, b: FrameStack) -> None:
    """One line when two stacks of one FOV differ in shape (they come from different inputs)."""
    if a.shape != b.shape:
        raise InputError(
            f"{b.path}: shape {b.shape} does not match {a.path} {a.shape}; they come from "
            "different inputs: delete this FOV's results and rerun"
        )


class StackReader(FrameStack):
    """Read frames of a (T, Y, X) result stack one at a time."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._tif = tifffile.TiffFile(self.path)
        series = self._tif.series[0]
        shape = series.shape
        if len(shape) == 2:
            shape = (1, *shape)
        self.shape: tuple[int, int, int] = tuple(int(s) for s in shape)  # type: ignore[assignment]
        self.dtype = series.dtype
        self._pages = series.pages
        self.calibration = self._calibration()

    def _calibration(self) -> Calibration:
        """Pixel size from the resolution tags (ImageJ: pixels per ``unit``), interval from ``finterval``."""
        ij = self._tif.imagej_metadata or {}
        page = self._tif.pages.first
        pixel = None
        if ij.get("unit") in ("um", "micron", "\u00b5m") and "XResolution" in page.tags:
            num, den = page.tags["XResolution"].value
            pixel = den / num if num else None
        interval = ij.get("finterval")
        return Calibration.of(pixel, float(interval) if interval is not None else None)

    def _read(self, t: int) -> np.ndarray:
        return self._pages[t].asarray()

    @property
    def description(self) -> dict[str, Any]:
        """The extra metadata stored by :func:`write_stack` (``source``, ``fov``, ...)."""
        if self._tif.imagej_metadata:
            return {k: v for k, v in self._tif.imagej_metadata.items() if k not in _IMAGEJ_KEYS}
        return dict(self._tif.shaped_metadata[0]) if self._tif.shaped_metadata else {}

    def close(self) -> None:
        self._tif.close()


def read_stack(path: str | os.PathLike) -> np.ndarray:
    """Whole stack in memory: for tests and small data only."""
    with StackReader(path) as reader:
        return np.stack(list(reader)) if len(reader) else np.zeros(reader.shape, reader.dtype)
