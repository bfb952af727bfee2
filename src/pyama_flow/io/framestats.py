"""Per-frame statistics of the extracted frames, with numpy alone.

The extract step computes them on the frames it already reads and writes
them as a CSV table; this module imports nothing heavier than numpy (no
pandas), because every extract job pays its imports.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from pyama_flow.io.atomic import write_text

#: Percentiles recorded per frame (and the contrast stretch uses the outer two).
PERCENTILES: tuple[float, float, float] = (1.0, 50.0, 99.0)
#: Columns of the per-frame statistics table, in order.
STAT_COLUMNS: list[str] = [
    "frame", "mean", "std", "min", "max", "p1", "p50", "p99",
    "n_saturated", "saturated", "dtype_max",
]


def saturation_value(dtype: Any) -> float | None:
    """The value a saturated pixel has: the maximum of an integer dtype, else ``None``."""
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        return float(np.iinfo(dtype).max)
    return None


def percentiles(values: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """``np.percentile(values, q)`` (linear method), as float64.

    For 8- and 16-bit unsigned images the values are read off the cumulative
    histogram (one ``bincount`` instead of a partition of the frame), with the
    same virtual index and interpolation as numpy, so the results are equal.

    Parameters
    ----------
    values : array
        Any shape; all elements are used.
    q : sequence of float
        Percentiles in [0, 100].
    """
    a = np.asarray(values).ravel()
    qs = np.asarray(q, dtype=np.float64)
    if a.size == 0:
        return np.full(qs.shape, np.nan)
    if a.dtype.kind != "u" or a.dtype.itemsize > 2:
        return np.asarray(np.percentile(a, qs), dtype=np.float64)
    return _percentiles_from_cumulative(np.cumsum(_value_counts(a)), a.size, qs)


def _value_counts(values: np.ndarray, chunk: int = 1 << 18) -> np.ndarray:
    """``np.bincount`` of small non-negative integers, a chunk at a time (its
    intp copy of the values stays in cache: twice as fast on a 2048^2 frame)."""
    counts = np.zeros(int(values.max()) + 1, np.int64)
    for i in range(0, values.size, chunk):
        part = np.bincount(values[i : i + chunk])
        counts[: part.size] += part
    return counts


def _percentiles_from_cumulative(cum: np.ndarray, n: int, q: Sequence[float]) -> np.ndarray:
    """:func:`percentiles` of ``n`` integers from their cumulative histogram ``cum``."""
    qs = np.asarray(q, dtype=np.float64)
    quant = qs / 100.0
    virtual = (n - 1) * quant  # numpy's virtual index for method="linear"
    prev = np.floor(virtual)
    nxt = prev + 1
    above = virtual >= n - 1
    prev[above] = n - 1
    nxt[above] = n - 1
    below = virtual < 0
    prev[below] = 0
    nxt[below] = 0
    gamma = virtual - np.floor(virtual)
    lo = np.searchsorted(cum, prev.astype(np.int64), side="right").astype(np.float64)
    hi = np.searchsorted(cum, nxt.astype(np.int64), side="right").astype(np.float64)
    diff = hi - lo
    out = lo + diff * gamma
    return np.where(gamma >= 0.5, hi - diff * (1.0 - gamma), out)


def frame_statistics(frame: np.ndarray, frame_index: int = 0) -> dict[str, Any]:
    """Mean, std, min, max, 1st/50th/99th percentile and saturation of one frame.

    ``n_saturated`` counts pixels at the dtype's maximum (:func:`saturation_value`);
    ``saturated`` is ``n_saturated > 0``. Float frames never saturate
    (``dtype_max`` NaN). ``std`` is the population standard deviation, as numpy's.
    """
    frame = np.asarray(frame)
    sat = saturation_value(frame.dtype)
    if frame.dtype.kind == "u" and frame.dtype.itemsize <= 2 and frame.size:
        # one histogram gives them all: sums are exact integers, so mean is
        # numpy's value and std the correctly rounded one (numpy's pairwise
        # float sum may differ in the last digits, ~1e-15 relative)
        counts = _value_counts(frame.ravel())
        values = np.flatnonzero(counts)
        n = frame.size
        weights = counts[values]
        s1 = int(np.dot(values.astype(np.int64), weights))
        s2 = int(np.dot(values.astype(np.int64) ** 2, weights))  # < 2^32 * 2^31: no overflow
        mean, std = s1 / n, math.sqrt((n * s2 - s1 * s1) / (n * n))
        lo, hi = values[0], values[-1]
        n_sat = int(counts[int(sat)]) if sat is not None and sat < counts.size else 0
        p1, p50, p99 = _percentiles_from_cumulative(np.cumsum(counts), n, PERCENTILES)
    else:
        p1, p50, p99 = percentiles(frame, PERCENTILES)
        n_sat = int(np.count_nonzero(frame == sat)) if sat is not None else 0
        mean, std = frame.mean(dtype=np.float64), frame.std(dtype=np.float64)
        lo, hi = frame.min(), frame.max()
    return {
        "frame": int(frame_index),
        "mean": float(mean),
        "std": float(std),
        "min": float(lo),
        "max": float(hi),
        "p1": float(p1),
        "p50": float(p50),
        "p99": float(p99),
        "n_saturated": n_sat,
        "saturated": n_sat > 0,
        "dtype_max": float(sat) if sat is not None else float("nan"),
    }


def _csv_cell(value: Any) -> str:
    """One cell as pandas' ``to_csv(float_format="%.6f")`` writes it."""
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    return "" if math.isnan(value) else "%.6f" % value


def write_statistics_rows(rows: Iterable[Mapping[str, Any]], path: str) -> None:
    """Rows of :func:`frame_statistics` as the statistics CSV (:data:`STAT_COLUMNS`,
    6 decimals, NaN empty), written atomically; the same bytes as
    :func:`pyama_flow.report.statistics.write_statistics` of the same rows."""
    lines = [",".join(STAT_COLUMNS)]
    lines += [",".join(_csv_cell(row[c]) for c in STAT_COLUMNS) for row in rows]
    write_text(path, "\n".join(lines) + "\n")
