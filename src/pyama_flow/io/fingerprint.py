"""A fast content fingerprint of an input file or frame folder.

Size and modification time do not say whether an input is still the movie that
was extracted: ``cp -p``, ``rsync -a`` and ``tar x`` keep the mtime of a
different movie of the same size. :func:`fingerprint` hashes (BLAKE2b) the
size and sampled blocks of the content:

* the first and the last :data:`EDGE` bytes (headers, metadata, index);
* a :data:`BLOCK`-byte block every ``stride`` bytes, where ``stride`` is the
  smaller of ``size / MAX_BLOCKS`` and ``plane_bytes`` (one plane's bytes in
  the file: :func:`plane_bytes_of`, the uncompressed plane or the file size
  over its number of planes when compressed). Every plane-sized stretch of the
  file then has a sampled block in it, so a movie replaced by another one (a
  re-export, another acquisition: every plane differs) is always caught.
  A plane compressed far below the file's mean plane size can fall between
  two blocks; the size and the ends (index, metadata) still change with it
  in practice, but that is not a guarantee.

A frame folder's fingerprint is that of every frame file (name, size and
sampled blocks), so one frame re-exported in place changes it.

What it cannot see: a change confined to bytes outside the sampled blocks
(e.g. a few pixels edited in place in the middle of a plane). It is a guard
against replaced movies, not a checksum of every byte.
"""

from __future__ import annotations

import hashlib
import os

#: bytes hashed at each end of a file
EDGE = 65536
#: bytes of each sampled block
BLOCK = 4096
#: at most this many sampled blocks between the ends of one file (without plane_bytes)
MAX_BLOCKS = 256
#: fingerprint format, part of the value: a new scheme reruns extraction once
VERSION = "fp1"


def _file_digest(path: str, h: "hashlib._Hash", plane_bytes: int | None, name: str = "") -> None:
    size = os.path.getsize(path)
    h.update(f"{name}\0{size}\0".encode())
    with open(path, "rb") as fh:
        if size <= 2 * EDGE + BLOCK:
            h.update(fh.read())
            return
        h.update(fh.read(EDGE))
        stride = max(BLOCK, size // MAX_BLOCKS)
        if plane_bytes:
            stride = max(BLOCK, min(stride, int(plane_bytes)))
        pos = EDGE
        while pos < size - EDGE:
            fh.seek(pos)
            h.update(fh.read(BLOCK))
            pos += stride
        fh.seek(size - EDGE)
        h.update(fh.read(EDGE))


def fingerprint(path: str | os.PathLike, plane_bytes: int | None = None) -> str:
    """``"fp1:<size>:<blake2b hex>"`` of a file, or of every file in a folder.

    ``plane_bytes``: bytes of one uncompressed plane (height x width x itemsize);
    every plane-sized stretch then has a sampled block.
    """
    path = os.fspath(path)
    h = hashlib.blake2b(digest_size=16)
    if os.path.isdir(path):
        total = 0
        for name in sorted(os.listdir(path)):
            full = os.path.join(path, name)
            if os.path.isfile(full):
                total += os.path.getsize(full)
                _file_digest(full, h, plane_bytes, name)
        return f"{VERSION}:{total}:{h.hexdigest()}"
    _file_digest(path, h, plane_bytes)
    return f"{VERSION}:{os.path.getsize(path)}:{h.hexdigest()}"


def plane_bytes_of(meta: object) -> int:
    """Sampling stride for an input of :class:`~pyama_flow.io.base.ImageMetadata` ``meta``:
    the bytes of one plane, uncompressed (height x width x itemsize) or, when the
    file is smaller (compressed planes), its size over its number of planes."""
    import numpy as np

    m = meta
    raw = int(m.height) * int(m.width) * np.dtype(m.dtype).itemsize  # type: ignore[attr-defined]
    planes = max(1, int(m.n_fovs) * int(m.n_frames) * int(m.n_channels) * int(m.n_z))  # type: ignore[attr-defined]
    size = int(m.file_size or 0)  # type: ignore[attr-defined]
    return min(raw, size // planes) if size else raw
