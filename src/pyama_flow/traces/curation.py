"""Curation as decisions: the user's verdict on cells, applied to the current traces.

A FOV's decisions live in ``curation.csv`` beside its ``traces.csv``: an
append-only log with the columns ``cell, good, time, fingerprint``; the last
line of a cell wins. ``fingerprint`` identifies the cell the decision was
made on: a hash of its frames and label geometry (bounding boxes and the
segmentation channel's area) in ``traces.csv``. Intensities are not part of
it, so a change of a traces parameter (``traces.background_weight``, ...)
keeps the decisions; a change of segmentation or tracking that gives the id
to another object makes them *stale*.

Every reader of traces (fit, merge, tidy, the viewer) reads
:func:`read_curated`: the current ``traces.csv`` with the decisions applied.
A stale decision is **ignored** (the cell keeps the ``good`` of the new
traces) and logged as a WARNING naming the FOV and the cells.

Appending takes an exclusive ``fcntl`` lock on the log and writes each line
with one ``write`` call, so marks from several viewer processes are never
lost. PyAMA's ``traces_inspected.csv`` is imported into ``curation.csv`` the
first time the decisions of a FOV are read (when the log does not exist yet),
and :func:`export_inspected` writes it back from the traces and decisions.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import logging
import os
import time
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pyama_flow.io.atomic import atomic_path
from pyama_flow.traces.features import read_traces

log = logging.getLogger("pyama_flow")

#: The decisions log of a FOV (beside traces.csv).
DECISIONS = "curation.csv"
#: PyAMA's curated copy of the traces.
INSPECTED = "traces_inspected.csv"
HEADER = ("cell", "good", "time", "fingerprint")
#: Columns of the traces that identify a cell's object (whichever exist).
GEOMETRY = ("frame", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1")


@dataclass(frozen=True)
class Decision:
    """One cell's verdict: ``good``, when (UTC ISO time) and on which object."""

    cell: int
    good: bool
    time: str
    fingerprint: str


def _geometry_columns(df: pd.DataFrame) -> list[str]:
    cols = [c for c in GEOMETRY if c in df.columns]
    cols += sorted(c for c in df.columns if c.startswith("area_ch_"))[:1]
    return cols


def fingerprints(df: pd.DataFrame) -> dict[int, str]:
    """Cell id -> a short hash of its frames and label geometry (not intensities).

    Parameters
    ----------
    df : DataFrame
        A traces table with a ``cell`` column.

    Returns
    -------
    dict mapping each cell to 16 hex digits of a SHA-256.
    """
    cols = _geometry_columns(df)
    out: dict[int, str] = {}
    if df.empty:
        return out
    for cell, sub in df.sort_values(["cell", "frame"] if "frame" in df else ["cell"]).groupby("cell"):
        values = np.round(sub[cols].to_numpy(np.float64), 3)
        h = hashlib.sha256(",".join(cols).encode() + values.tobytes())
        out[int(cell)] = h.hexdigest()[:16]
    return out


def _parse(path: Path, text: str) -> dict[int, Decision]:
    """The last decision per cell of a log's text (ValueError naming the line)."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return {}
    if tuple(rows[0]) != HEADER:
        raise ValueError(f"{path}: header must be {','.join(HEADER)}, got {','.join(rows[0])}")
    out: dict[int, Decision] = {}
    for i, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            cell, good, when, fp = row
            out[int(cell)] = Decision(int(cell), {"true": True, "false": False}[good.lower()], when, fp)
        except (ValueError, KeyError):
            raise ValueError(f"{path}: line {i} is not cell,good(true/false),time,fingerprint: "
                             f"{','.join(row)!r}") from None
    return out


@contextmanager
def _locked(path: Path):
    """An exclusive cross-process lock on ``path`` (created empty if absent)."""
    fd = os.open(path.parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _line(d: Decision) -> str:
    return f"{d.cell},{'true' if d.good else 'false'},{d.time},{d.fingerprint}\n"


def import_inspected(fov_dir: Path) -> int:
    """Convert PyAMA's ``traces_inspected.csv`` into ``curation.csv`` (once).

    A decision is recorded for each cell whose ``good`` in the inspected
    copy (true if any row is) differs from ``traces.csv``; its fingerprint is
    taken from the inspected copy, so a cell whose object changed since is
    stale. Nothing happens when the log exists or there is no inspected copy.

    Returns
    -------
    The number of decisions imported.
    """
    fov_dir = Path(fov_dir)
    inspected, traces, out = fov_dir / INSPECTED, fov_dir / "traces.csv", fov_dir / DECISIONS
    if out.exists() or not inspected.is_file() or not traces.is_file():
        return 0
    with _locked(out):
        if out.exists():
            return 0
        old = read_traces(str(inspected))
        new = read_traces(str(traces))
        old_good = old.groupby("cell")["good"].any()
        new_good = new.groupby("cell")["good"].any() if not new.empty else pd.Series(dtype=bool)
        fps = fingerprints(old)
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(inspected.stat().st_mtime))
        lines = [",".join(HEADER) + "\n"]
        for cell, good in old_good.items():
            if bool(new_good.get(cell, not good)) != bool(good):
                lines.append(_line(Decision(int(cell), bool(good), when, fps[int(cell)])))
        with atomic_path(out) as tmp:
            Path(tmp).write_text("".join(lines), encoding="utf-8")
    log.info("%s: imported %d decisions from %s into %s", fov_dir.name, len(lines) - 1, INSPECTED, DECISIONS)
    return len(lines) - 1


def load_decisions(fov_dir: Path) -> dict[int, Decision]:
    """The FOV's decisions (last per cell); PyAMA's inspected copy imported first.

    Raises
    ------
    ValueError
        A malformed line, naming the file and line.
    """
    fov_dir = Path(fov_dir)
    import_inspected(fov_dir)
    path = fov_dir / DECISIONS
    if not path.is_file():
        return {}
    return _parse(path, path.read_text(encoding="utf-8"))


def record(fov_dir: Path, cell: int, good: bool) -> Decision:
    """Append one decision on ``cell`` of the current ``traces.csv`` (process-safe).

    Raises
    ------
    FileNotFoundError
        The FOV has no traces.csv.
    KeyError
        The cell is not in the traces.
    """
    fov_dir = Path(fov_dir)
    traces = fov_dir / "traces.csv"
    if not traces.is_file():
        raise FileNotFoundError(f"{fov_dir.name}: no traces.csv")
    import_inspected(fov_dir)
    fps = fingerprints(read_traces(str(traces)))
    if int(cell) not in fps:
        raise KeyError(f"cell {cell} is not in the traces")
    d = Decision(int(cell), bool(good), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), fps[int(cell)])
    path = fov_dir / DECISIONS
    with _locked(path):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            data = _line(d)
            if os.fstat(fd).st_size == 0:
                data = ",".join(HEADER) + "\n" + data
            os.write(fd, data.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
    return d


def apply_decisions(df: pd.DataFrame, decisions: dict[int, Decision]) -> tuple[pd.DataFrame, list[int]]:
    """The traces with ``good`` set by each decision whose fingerprint still matches.

    Parameters
    ----------
    df : DataFrame
        The current traces (``cell``, ``good``, geometry columns).
    decisions : dict
        From :func:`load_decisions`.

    Returns
    -------
    (a copy of ``df`` with ``good`` updated, sorted stale cell ids). A stale
    decision (the cell is gone or its object changed) is not applied.
    """
    out = df.copy()
    if not decisions or out.empty:
        return out, sorted(decisions) if out.empty else []
    fps = fingerprints(out)
    stale = sorted(c for c, d in decisions.items() if fps.get(c) != d.fingerprint)
    for cell, d in decisions.items():
        if cell not in stale:
            out.loc[out["cell"] == cell, "good"] = d.good
    return out, stale


def stale_message(where: str, stale: Iterable[int]) -> str:
    """The WARNING text for stale decisions of one FOV."""
    cells = ", ".join(str(c) for c in stale)
    return (f"{where}: decisions in {DECISIONS} on cells {cells} were made on other labels/tracks "
            "(fingerprint differs); ignored: these cells keep the good of the new traces.csv")


def read_curated(traces_path: str | os.PathLike) -> pd.DataFrame:
    """``traces.csv`` with the decisions beside it applied; stale ones warned and ignored."""
    path = Path(traces_path)
    df = read_traces(str(path))
    decisions = load_decisions(path.parent)
    out, stale = apply_decisions(df, decisions)
    if stale:
        log.warning(stale_message(str(path.parent), stale))
    return out


def curation_note(traces_path: str | os.PathLike) -> str:
    """One line on a FOV's decisions for the report: how many were applied and which are stale.

    Empty when the FOV has no decisions.
    """
    path = Path(traces_path)
    decisions = load_decisions(path.parent)
    if not decisions:
        return ""
    _, stale = apply_decisions(read_traces(str(path)), decisions)
    applied = [d for c, d in decisions.items() if c not in stale]
    n_bad = sum(not d.good for d in applied)
    note = (f"curation: {len(applied)} decisions applied ({n_bad} marked bad, "
            f"{len(applied) - n_bad} good)")
    if stale:
        cells = ", ".join(str(c) for c in stale[:12]) + (", ..." if len(stale) > 12 else "")
        note += (f"; {len(stale)} STALE, ignored (made on other labels/tracks: cells {cells}); "
                 "review them in the viewer")
    return note


def export_inspected(fov_dir: Path, out: str | os.PathLike | None = None) -> Path:
    """Write PyAMA's ``traces_inspected.csv`` from ``traces.csv`` and the decisions."""
    fov_dir = Path(fov_dir)
    target = Path(out) if out is not None else fov_dir / INSPECTED
    df = read_curated(fov_dir / "traces.csv")
    with atomic_path(target) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6f")
    return target
