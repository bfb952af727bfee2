"""Process-level memory settings for the per-FOV jobs.

Each step allocates the same few frame-sized arrays for every frame (16-32 MB
at 2048^2). glibc serves blocks that large with ``mmap`` and returns them on
``free``, so every frame pays for fresh zero pages (a fifth of the segment
step's time at 2048^2). :func:`reuse_large_blocks` makes such blocks come
from the heap and stay there once freed, so the next frame reuses them; the
peak (the arrays of one frame) is unchanged, and it does not grow with the
number of frames.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def reuse_large_blocks(mmap_threshold_mb: int = 256, trim_threshold_mb: int = 512) -> bool:
    """Serve blocks below ``mmap_threshold_mb`` from the heap and keep up to
    ``trim_threshold_mb`` of freed heap. Returns False (and changes nothing)
    where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(_M_MMAP_THRESHOLD, mmap_threshold_mb << 20) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, trim_threshold_mb << 20) == 1
    return bool(ok)
