"""Traces, fits and curation for the viewer: tables in, JSON-ready dicts out.

Curation is a log of decisions (``curation.csv`` beside ``traces.csv``, see
:mod:`pyama_flow.traces.curation`) applied to the current traces wherever they are
read. A mark appends one line under a cross-process lock; the workflow's
``fit``, ``merge`` and ``tidy`` rules take the log as input, so the next
``snakemake`` run refits that FOV and what depends on the fits, and nothing
upstream.
"""

from __future__ import annotations

import csv
import io
import math
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pyama_flow.fitting.models import get_model
from pyama_flow.traces import curation
from pyama_flow.traces.features import read_traces

#: Points of a fitted curve over a cell's time span.
CURVE_POINTS = 400
#: Columns of a traces table that are per-cell features (plottable over time).
FEATURE = re.compile(r"^(.+)_ch_(\d+)$")
INSPECTED = curation.INSPECTED
DECISIONS = curation.DECISIONS

_table_cache: dict[str, tuple[int, pd.DataFrame]] = {}
_table_lock = threading.Lock()
_curated_cache: dict[str, tuple] = {}


def read_table(path: Path, reader=pd.read_csv) -> pd.DataFrame:
    """A CSV read once per modification time (``reader`` parses it)."""
    key = f"{reader.__module__}.{reader.__name__}:{path}"
    mtime = path.stat().st_mtime_ns
    with _table_lock:
        hit = _table_cache.get(key)
        if hit is not None and hit[0] == mtime:
            return hit[1]
    df = reader(str(path))
    with _table_lock:
        _table_cache[key] = (mtime, df)
        while len(_table_cache) > 32:
            _table_cache.pop(next(iter(_table_cache)))
    return df


def feature_columns(columns: Sequence[str]) -> list[str]:
    """The per-channel feature columns of a traces table (``area_ch_0``, ``intensity_total_ch_1``, ...)."""
    return [c for c in columns if FEATURE.match(c)]


def default_value_column(columns: Sequence[str]) -> str | None:
    """The column the workflow fits by default: the first ``intensity_total_ch_{c}``."""
    for c in columns:
        if c.startswith("intensity_total_ch_"):
            return c
    feats = feature_columns(columns)
    return feats[0] if feats else None


def phase_channel(columns: Sequence[str]) -> int | None:
    """The segmentation channel: the ``c`` of the ``area_ch_{c}`` column."""
    for c in columns:
        if c.startswith("area_ch_"):
            return int(c.rsplit("_", 1)[1])
    return None


def _clean(values: np.ndarray) -> list:
    """A column as a JSON-ready list (NaN -> ``None``, numpy scalars -> Python)."""
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        return [None if not math.isfinite(v) else float(v) for v in arr.tolist()]
    return arr.tolist()


def fov_traces(df: pd.DataFrame, columns: Sequence[str] | None = None) -> dict[str, Any]:
    """All traces of a FOV, one entry per cell.

    Parameters
    ----------
    df : DataFrame
        A traces table (sorted by cell, frame).
    columns : sequence of str, optional
        Value columns to include (default: every feature column).

    Returns
    -------
    dict with ``columns`` (the value columns) and ``cells``: a list of
    ``{cell, good, n_good, frame, time, <column>: [...]}`` with one list
    entry per row of the cell; ``good`` is true if any of its rows is.
    """
    cols = list(columns) if columns is not None else feature_columns(df.columns)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(", ".join(missing))
    cells = []
    for cell, sub in df.groupby("cell", sort=True):
        good = sub["good"].to_numpy(bool) if "good" in sub else np.ones(len(sub), bool)
        entry: dict[str, Any] = {
            "cell": int(cell),
            "good": bool(good.any()),
            "n_good": int(good.sum()),
            "frame": _clean(sub["frame"].to_numpy()),
            "time": _clean(sub["time"].to_numpy()),
        }
        for c in cols:
            entry[c] = _clean(sub[c].to_numpy())
        cells.append(entry)
    return {"columns": cols, "cells": cells}


def review_columns(fits: pd.DataFrame | None, decided: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Per cell, what the cell list sorts by: ``r_squared`` and ``status`` of
    one model's fit (``None`` where the cell has no fit, or the table no such
    column) and ``reviewed`` (the cell has a decision in ``curation.csv``)."""
    out: dict[int, dict[str, Any]] = {}
    if fits is not None and len(fits):
        r2 = fits["r_squared"].to_numpy(np.float64) if "r_squared" in fits else np.full(len(fits), np.nan)
        status = fits["status"].astype(str).tolist() if "status" in fits else [None] * len(fits)
        for cell, r, st in zip(fits["cell"].astype(int), r2, status):
            out[int(cell)] = {"r_squared": float(r) if np.isfinite(r) else None, "status": st}
    for cell in decided:
        out.setdefault(int(cell), {"r_squared": None, "status": None})["reviewed"] = True
    return out


def cell_rows(df: pd.DataFrame, cell: int) -> dict[str, list]:
    """Every column of one cell's rows, as lists (KeyError if the cell is absent)."""
    sub = df[df["cell"] == int(cell)]
    if sub.empty:
        raise KeyError(f"cell {cell} is not in the traces")
    return {c: _clean(sub[c].to_numpy()) for c in sub.columns}


def fit_record(fits: pd.DataFrame, cell: int, model: str) -> dict[str, Any] | None:
    """The fit of one cell by one model: its table row as a dict, or ``None``.

    Returns
    -------
    dict with ``model, success, r_squared, params`` (name -> value, in the
    model's ``PARAMS`` order), ``se`` (name -> standard error),
    ``residual_std, aic, bic, n_points``.
    """
    rows = fits[fits["cell"] == int(cell)]
    if "model" in rows.columns:
        rows = rows[rows["model"] == model]
    if rows.empty:
        return None
    row = rows.iloc[0]
    names = list(get_model(model).PARAMS)

    def num(v: Any) -> float | None:
        v = float(v)
        return v if math.isfinite(v) else None

    return {
        "model": model,
        "success": _truthy(row.get("success", False)),
        "r_squared": num(row.get("r_squared", math.nan)),
        "params": {p: num(row[p]) for p in names},
        "se": {p: num(row[f"{p}_se"]) if f"{p}_se" in row.index else None for p in names},
        "residual_std": num(row.get("residual_std", math.nan)),
        "aic": num(row.get("aic", math.nan)),
        "bic": num(row.get("bic", math.nan)),
        "n_points": int(row["n_points"]) if "n_points" in row.index and pd.notna(row["n_points"]) else None,
    }


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def fit_curve(model: str, params: Mapping[str, float | None], t_min: Sequence[float],
              n: int = CURVE_POINTS) -> dict[str, list] | None:
    """The model evaluated on a fine grid over the time span ``t_min`` (minutes).

    The models take hours (the fitter divides ``time`` by 60), so the grid
    is built in minutes, evaluated at ``grid / 60`` and returned in both.

    Returns
    -------
    ``{"time": [...], "t_hours": [...], "value": [...]}`` or ``None`` when a
    parameter is missing (failed fit) or there are no times.
    """
    if any(v is None for v in params.values()) or len(t_min) == 0:
        return None
    t = np.asarray(t_min, dtype=np.float64)
    t = t[np.isfinite(t)]
    if t.size == 0:
        return None
    grid = np.linspace(float(t.min()), float(t.max()), n) if t.max() > t.min() else t[:1]
    hours = grid / 60.0
    y = np.asarray(get_model(model).evaluate(hours, {k: float(v) for k, v in params.items()}), np.float64)
    y = np.broadcast_to(y, hours.shape)
    return {"time": _clean(grid), "t_hours": _clean(hours), "value": _clean(y)}


# -- curation ---------------------------------------------------------------------


def _format_good(style: str, good: bool) -> str:
    """A ``good`` value written like the file's existing ones."""
    if style in ("1", "0"):
        return "1" if good else "0"
    if style in ("true", "false"):
        return "true" if good else "false"
    if style in ("TRUE", "FALSE"):
        return "TRUE" if good else "FALSE"
    return "True" if good else "False"


def set_good_text(text: str, cell: int, good: bool) -> tuple[str, int]:
    """A traces CSV with the ``good`` field of one cell's lines set, all else unchanged.

    Parameters
    ----------
    text : str
        The CSV (header line first, columns ``cell`` and ``good``).
    cell : int
    good : bool

    Returns
    -------
    (new text, number of lines of the cell). Lines of other cells, the
    header and the line endings are kept byte for byte; the new value is
    spelled like the file's (``True``/``False``, ``1``/``0``, ...).

    Raises
    ------
    KeyError
        The file has no ``cell`` or ``good`` column, or no line of ``cell``.
    """
    lines = text.splitlines(keepends=True)
    if not lines:
        raise KeyError("empty traces file")
    header = next(csv.reader([lines[0]]))
    try:
        ci, gi = header.index("cell"), header.index("good")
    except ValueError:
        raise KeyError("the traces have no 'cell' or 'good' column") from None
    style = "True"
    for line in lines[1:2]:
        style = next(csv.reader([line]))[gi].strip() or style
    new_value = _format_good(style, good)
    out = [lines[0]]
    n = 0
    for line in lines[1:]:
        body = line.rstrip("\r\n")
        if not body:
            out.append(line)
            continue
        fields = next(csv.reader([body]))
        try:
            is_cell = int(float(fields[ci])) == int(cell)
        except ValueError:
            is_cell = False
        if not is_cell:
            out.append(line)
            continue
        fields[gi] = new_value
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow(fields)
        out.append(buf.getvalue() + line[len(body):])
        n += 1
    if n == 0:
        raise KeyError(f"cell {cell} is not in the traces")
    return "".join(out), n


def mark_cell(fov_dir: Path, cell: int, good: bool) -> dict[str, Any]:
    """Record one cell's ``good`` verdict in the FOV's ``curation.csv``.

    Returns
    -------
    dict with ``cell``, ``good``, ``rows`` (rows of the cell) and ``file``.

    Raises
    ------
    FileNotFoundError
        The FOV has no traces.
    KeyError
        The cell is not in the traces.
    """
    d = curation.record(fov_dir, cell, good)
    df = read_traces_cached(fov_dir / "traces.csv")
    n = int((df["cell"] == int(cell)).sum())
    return {"cell": d.cell, "good": d.good, "rows": n, "file": str(fov_dir / DECISIONS),
            "fingerprint": d.fingerprint}


def _mtime(path: Path) -> int:
    return path.stat().st_mtime_ns if path.is_file() else 0


def curated(traces_path: Path) -> tuple[pd.DataFrame, list[int]]:
    """The traces with the decisions applied and the stale decided cells.

    Cached per modification time of ``traces.csv`` and ``curation.csv``.
    """
    fov_dir = traces_path.parent
    curation.import_inspected(fov_dir)
    key = (str(traces_path), _mtime(traces_path), _mtime(fov_dir / DECISIONS))
    with _table_lock:
        hit = _curated_cache.get(key[0])
        if hit is not None and hit[0] == key:
            return hit[1]
    df, stale = curation.apply_decisions(read_traces_cached(traces_path),
                                         curation.load_decisions(fov_dir))
    with _table_lock:
        _curated_cache[key[0]] = (key, (df, stale))
        while len(_curated_cache) > 32:
            _curated_cache.pop(next(iter(_curated_cache)))
    return df, stale


def read_traces_cached(path: Path) -> pd.DataFrame:
    """:func:`pyama_flow.traces.features.read_traces`, cached per modification time."""
    return read_table(path, read_traces)
