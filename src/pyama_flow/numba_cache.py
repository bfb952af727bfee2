"""Whether numba's on-disk cache holds a module's compiled kernels.

Modules with compiled kernels (``cache=True``) log a one-time "compiling"
line at import when their cache is missing, so a first run that pauses to
compile says why. Kept apart from the kernel modules so that asking costs no
numba import.
"""

from __future__ import annotations

import os
from pathlib import Path


def kernels_cached(source: str | os.PathLike) -> bool:
    """Whether numba has compiled kernels of ``source`` cached on disk.

    Looks where numba documents its cache: ``NUMBA_CACHE_DIR`` if set, else
    ``__pycache__`` beside the source, else (source folder not writable) the
    user's cache folder; an index (``.nbi``) older than the source is stale.
    """
    source = Path(source)
    pattern = f"{source.stem}.*.nbi"
    if os.environ.get("NUMBA_CACHE_DIR"):
        places = [Path(os.environ["NUMBA_CACHE_DIR"])]
    else:
        user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "numba"
        places = [source.parent / "__pycache__", user]
    try:
        mtime = source.stat().st_mtime
        for place in places:
            found = place.glob(pattern) if place.name == "__pycache__" else place.rglob(pattern)
            if any(index.stat().st_mtime >= mtime for index in found):
                return True
    except OSError:
        pass
    return False
