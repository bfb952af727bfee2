"""Result stacks: (T, Y, X) TIFF, one page per frame, written and read frame by frame.

Files are plain tifffile "shaped" TIFFs (BigTIFF when large), one
losslessly compressed page per frame, so any frame can be read without
touching the others. The codec is Zstandard by default (TIFF compression
50000: several times faster than deflate to write and to read, for the same
size; read by tifffile, napari and libtiff >= 4.0.10 built with zstd) or
deflate (``"zlib"``: readable by every TIFF reader, Fiji / Bio-Formats
included). Everything is written
to a temporary name beside the target and renamed at the end, so a failed or
killed job never leaves a file that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Self

import numpy as np
import tifffile

#: Lossless codecs by config name (``storage.compression``): (tifffile codec, level);
#: "none" stores pages uncompressed (scratch stacks that are deleted after the run).
CODECS: dict[str, tuple[str, int] | None] = {"zstd": ("zstd", 1), "zlib": ("zlib", 1), "none": None}
#: Labels and masks compress > 20x with either; raw frames ~2x.
DEFAULT_CODEC = "zstd"
DEFAULT_COMPRESSION = CODECS[DEFAULT_CODEC]
_BIGTIFF_LIMIT = 2**32 - 2**25


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give normal permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file (UTF-8) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, data: Any) -> None:
    """JSON with sorted keys, one space indent, written atomically."""
    write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def write_stack(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    n_frames: int,
    shape: tuple[int, int],
    dtype: Any,
    compression: tuple[str, int] | str | None = DEFAULT_COMPRESSION,
    predictor: bool = False,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Stream ``n_frames`` 2-D frames into a (T, Y, X) TIFF at ``path``.

    Parameters
    ----------
    frames : iterable of ndarray
        Yields exactly ``n_frames`` arrays of ``shape``; consumed lazily, so
        only one frame is held at a time.
    compression : (codec, level), a name of :data:`CODECS` or None
        Lossless codec for every page.
    predictor : bool
        Horizontal differencing before compression (pays off on smooth images).
    metadata : dict, optional
        Extra JSON-serialisable metadata stored in the first page description.
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
    if compression is None:
        predictor = False  # differencing only serves a codec
    if isinstance(compression, tuple):
        codec, level = compression
        comp_args: dict[str, Any] | None = {"level": level}
    else:
        codec, comp_args = compression, None
    meta = {"axes": "TYX"}
    meta.update(metadata or {})
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
                    metadata=meta,
                )
            else:
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

    def _read(self, t: int) -> np.ndarray:
        return self._pages[t].asarray()

    @property
    def description(self) -> dict[str, Any]:
        """The shaped-TIFF metadata stored by :func:`write_stack`."""
        return dict(self._tif.shaped_metadata[0]) if self._tif.shaped_metadata else {}

    def close(self) -> None:
        self._tif.close()


def read_stack(path: str | os.PathLike) -> np.ndarray:
    """Whole stack in memory: for tests and small data only."""
    with StackReader(path) as reader:
        return np.stack(list(reader)) if len(reader) else np.zeros(reader.shape, reader.dtype)
