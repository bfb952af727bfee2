"""Shared by the rule scripts: make the library importable in any environment
(the repository's ``src/`` comes first on ``sys.path``), send logging to the
rule's log file, and turn bad input into a one-line error."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def remove_stale_temporaries(paths) -> list[str]:
    """Delete temporary files a killed earlier attempt left beside ``paths``.

    Outputs are written to ``.{name}.*.part`` (``atomic_path``) and renamed
    at the end, and scratch files beside them are named so too
    (``scratch_path``); ``.{name}.*.tmp`` is what ``write_fits`` used before
    2026-12-07. A job killed with SIGKILL cannot clean up, so the next
    attempt does (Snakemake runs one job per output at a time, so nothing
    else is writing them).
    """
    removed = []
    for out in paths:
        out = Path(out)
        if not out.parent.is_dir():
            continue
        for pattern in (f".{out.name}.*.part", f".{out.name}.*.tmp"):
            for stale in out.parent.glob(pattern):
                try:
                    stale.unlink()
                    removed.append(str(stale))
                except OSError:
                    pass
    return removed


@contextlib.contextmanager
def atomic_outputs(paths):
    """Temporary paths beside several outputs; every one is renamed onto its
    output only when the block succeeds (else all are removed). For library
    functions that write straight to the paths they are given."""
    from pyama_flow.io.atomic import atomic_path

    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_path(p)) for p in paths]


@contextlib.contextmanager
def atomic_directory(target):
    """A temporary folder beside ``target`` (a folder) renamed onto it on success.

    Stale temporary folders of an interrupted earlier attempt are removed first.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.*.part"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def scratch_folder(parent, name):
    """A temporary folder ``.{name}.*.part`` in ``parent``, removed at the end
    (and stale ones of an interrupted earlier attempt removed first)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for stale in parent.glob(f".{name}.*.part"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".part", dir=parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def configure_logging(log_file: str | None, where: str) -> None:
    """Our own log lines (logger ``pyama_flow``): DEBUG and up to ``log_file``,
    INFO and up to stderr, each line naming the job's wildcards (``where``,
    e.g. ``dataset=demo, fov=000``) so that a console of parallel jobs says
    which FOV a line belongs to.

    Other libraries log only warnings and errors: numba alone writes megabytes
    of compiler DEBUG output while it compiles the kernels.
    """
    prefix = f"[{where}] ".replace("%", "%%") if where else ""
    formatter = logging.Formatter(f"%(asctime)s %(levelname)s {prefix}%(message)s")
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO)
    handlers: list[logging.Handler] = [console]
    if log_file:  # the rule's log keeps the details (debug lines, tracebacks)
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    for handler in handlers:
        handler.setFormatter(formatter)
    logging.basicConfig(level=logging.WARNING, handlers=handlers, force=True)
    logging.getLogger("pyama_flow").setLevel(logging.DEBUG)


def run(main, snakemake) -> None:
    """Call ``main(snakemake)`` with logging to ``snakemake.log[0]``.

    Bad input (``InputError`` / ``ValueError``) and a full disk (``OSError``
    ENOSPC / EDQUOT: :func:`disk_full_message`) end the job with one line on
    stderr naming the rule's wildcards (the traceback goes to the log file
    only); anything else keeps its traceback on stderr and in the log.
    """
    from pyama_flow.io.base import InputError
    from pyama_flow.memory import reuse_large_blocks

    reuse_large_blocks()  # frame-sized arrays are reused from frame to frame, not re-faulted
    log_file = snakemake.log[0] if len(snakemake.log) else None
    where = ", ".join(f"{k}={v}" for k, v in snakemake.wildcards.items())
    configure_logging(log_file, where)
    log = logging.getLogger("pyama_flow")
    for stale in remove_stale_temporaries(snakemake.output):
        log.info("removed %s (left by an interrupted earlier attempt)", stale)
    try:
        main(snakemake)
    except (InputError, ValueError) as exc:
        log.error("%s", exc)  # the line names the wildcards (configure_logging)
        log.debug(traceback.format_exc())
        sys.exit(1)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        log.error("%s", disk_full_message(exc, snakemake.output))
        log.debug(traceback.format_exc())
        sys.exit(1)


def _mount_point(path: Path) -> Path:
    """The mount point of the filesystem holding ``path`` (its nearest existing folder)."""
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n // 2**20} MB"


def disk_full_message(exc: OSError, outputs) -> str:
    """One line for a write that found the filesystem full (ENOSPC) or the quota
    used up (EDQUOT): the file being written (the error's file name where it has
    one, else the job's first output not yet written) and the space left there.

    The atomic writers have already removed their temporaries, so nothing
    partial is left; the user frees space and reruns."""
    outputs = [str(o) for o in outputs]
    target = exc.filename or next((o for o in outputs if not os.path.exists(o)), None)
    target = str(target or (outputs[0] if outputs else os.getcwd()))
    # an atomic writer's temporary ``.{name}.*.part`` / ``.tmp``: name the output
    name = Path(target).name
    for out in outputs:
        if name.startswith(f".{Path(out).name}.") and Path(target).parent == Path(out).parent:
            target = out
    mount = _mount_point(Path(target).parent if not os.path.isdir(target) else Path(target))
    try:
        free = f"{_size(shutil.disk_usage(mount).free)} free on {mount}"
    except OSError:
        free = f"free space on {mount} unknown"
    what = "no space left on device" if exc.errno == errno.ENOSPC else "disk quota exceeded"
    return f"{target}: {what} ({free}); free space and rerun"
