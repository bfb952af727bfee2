"""Files written atomically: to a hidden temporary name beside the target, renamed at the end.

A failed or killed job never leaves a file that looks complete: readers see
the old file or the whole new one. Standard library only, so the jobs that
write tables and text (traces, fits, reports, lineages) do not import the
image libraries of :mod:`pyama_flow.io.stacks`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _hidden_temp(path: Path) -> Path:
    """A new empty file ``.{name}.*.part`` in the folder of ``path`` (created if needed).

    A job killed with SIGKILL cannot remove it; the rule scripts' next attempt
    removes every ``.{output}.*.part`` of its outputs before it starts.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (``.{name}.*.part``); rename onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    The file gets the permissions of a normally created one (``0o666`` less
    the umask), not ``mkstemp``'s 0600.
    """
    path = Path(path)
    tmp_path = _hidden_temp(path)
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


@contextlib.contextmanager
def scratch_path(beside: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden scratch file beside ``beside`` (``.{name}.*.part``), removed afterwards (also on error).

    For intermediate data a job needs on disk while it writes ``beside`` (e.g.
    the track job's provisional frames); named like :func:`atomic_path`'s
    temporary files, so a killed job's scratch is removed by its next attempt.
    """
    tmp_path = _hidden_temp(Path(beside))
    try:
        yield tmp_path
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file (UTF-8) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, data: Any) -> None:
    """JSON with sorted keys, one space indent, written atomically."""
    write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
