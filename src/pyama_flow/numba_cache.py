"""Whether numba's on-disk cache holds a module's compiled kernels.

Modules with compiled kernels (``cache=True``) log a one-time "compiling"
line at import when their cache is missing, so a first run that pauses to
compile says why. Kept apart from the kernel modules so that asking costs no
numba import.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path


def cache_subfolder(source: str | os.PathLike) -> str:
    """The folder numba gives ``source``'s kernels inside a cache directory
    (``NUMBA_CACHE_DIR`` or the user's): the source folder's name and a SHA-1
    of its absolute path, as ``numba.core.caching`` names it, so two modules
    of one name in different packages do not share it."""
    folder = os.path.dirname(os.path.abspath(source))
    return f"{os.path.basename(folder)}_{hashlib.sha1(folder.encode()).hexdigest()}"


def kernels_cached(source: str | os.PathLike) -> bool:
    """Whether numba has compiled kernels of ``source`` cached on disk.

    Looks where numba documents its cache: ``NUMBA_CACHE_DIR`` if set, else
    ``__pycache__`` beside the source, else (source folder not writable) the
    user's cache folder, in the source's own subfolder of the cache
    directories (:func:`cache_subfolder`); an index (``.nbi``) older than the
    source is stale.
    """
    source = Path(source)
    pattern = f"{source.stem}.*.nbi"
    sub = cache_subfolder(source)
    if os.environ.get("NUMBA_CACHE_DIR"):
        places = [Path(os.environ["NUMBA_CACHE_DIR"]) / sub]
    else:
        user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "numba"
        places = [source.parent / "__pycache__", user / sub]
    try:
        mtime = source.stat().st_mtime
        for place in places:
            if any(index.stat().st_mtime >= mtime for index in place.glob(pattern)):
                return True
    except OSError:
        pass
    return False


def announce_compile(source: str | os.PathLike, what: str, cost: str) -> None:
    """Log "compiling {what} once for this installation ({cost})" when
    ``source``'s kernels are not cached (:func:`kernels_cached`); call it at
    the top of a kernel module, before numba is imported."""
    if not kernels_cached(source):
        logging.getLogger("pyama_flow").info("compiling %s once for this installation (%s)", what, cost)
