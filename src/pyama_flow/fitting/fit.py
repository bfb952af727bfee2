"""Fit tables: every cell of a traces table fitted with one or more models (:func:`fit_traces`).

The cells are cut into fixed batches fitted by
:func:`~pyama_flow.fitting.batch.fit_batch` (in worker processes if asked);
the results become one table per model set (columns :data:`ID_COLUMNS`,
the parameters and their SEs, :data:`STAT_COLUMNS`, ``best_model``,
:data:`STATUS_COLUMNS`), written by :func:`write_fits`. Also
:func:`best_models` (model choice by AIC), :func:`failure_reasons` and
:func:`tune_malloc`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd

from pyama_flow.fitting.batch import fit_batch
from pyama_flow.fitting.models import get_model, list_models
from pyama_flow.fitting.params import ParamSpec, resolve_params
from pyama_flow.fitting.starts import _t0_groups
from pyama_flow.fitting.status import StatusRule
from pyama_flow.io.atomic import atomic_path

#: cells per batch in :func:`fit_traces` (larger batches amortise numpy's
#: per-call overhead); the batches do not depend on ``n_jobs``, which is why
#: the results are identical for any ``n_jobs``.
CHUNK_SIZE = 1024
#: CSV float format of :func:`write_fits`.
FLOAT_FORMAT = "%.9g"
#: Columns of a fit table before the parameters and after their standard errors:
#: ``fov, cell, model, success, r_squared, <params>, <params>_se, residual_std, aic, bic, n_points``.
ID_COLUMNS = ("fov", "cell", "model", "success", "r_squared")
STAT_COLUMNS = ("residual_std", "aic", "bic", "n_points")
#: Last columns of a fit table (after ``best_model`` when there is one): the
#: per-cell status (:data:`STATUSES`) and the free parameters at a bound,
#: ``;``-separated.
STATUS_COLUMNS = ("status", "at_bound")
#: ``fit.t0_bounds``: the model's (reference) bounds, or an upper bound that follows the data
T0_BOUNDS = ("data", "reference")


def tune_malloc() -> bool:
    """Let glibc recycle large freed blocks instead of returning them to the OS.

    The batched fitter allocates many short-lived arrays of a few MB; by
    default glibc maps each from fresh (page-faulting) memory, which costs
    ~30 % of the fitting time on some machines. This raises the mmap and trim
    thresholds of the current process (``mallopt``); memory is reused, the
    results are unchanged. Process-wide, so the library never calls it: the
    workflow's fit script and the benchmark do. A no-op (returning False)
    where glibc's ``mallopt`` is unavailable.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 64 << 20) == 1 and libc.mallopt(m_trim_threshold, 512 << 20) == 1
    except (OSError, AttributeError, TypeError):
        ok = False
    _MALLOC_TUNED = bool(ok)
    return _MALLOC_TUNED


_MALLOC_TUNED = False


def _bounds_set(overrides: Mapping | None, model: str, param: str) -> bool:
    """Whether the user's overrides set a bound of ``param`` (flat or keyed by model)."""
    overrides = dict(overrides or {})
    nested = bool(overrides) and all(key in set(list_models()) for key in overrides)
    ov = (overrides.get(model) if nested else overrides) or {}
    cfg = ov.get(param)
    return isinstance(cfg, Mapping) and ("lb" in cfg or "ub" in cfg)


def _fit_task(task: tuple) -> dict[str, np.ndarray]:
    model_name, spec, t, Y, options = task
    return fit_batch(t, Y, model_name, spec, **options)


def _good_mask(good: pd.Series) -> np.ndarray:
    if good.dtype == bool:
        return good.to_numpy()
    if pd.api.types.is_numeric_dtype(good):
        return good.fillna(0).to_numpy() != 0
    return good.astype(str).str.strip().str.lower().isin(["true", "1", "yes"]).to_numpy()


def _normalise_models(models: str | Sequence[str], overrides: Mapping | None) -> dict[str, tuple[ParamSpec, ...]]:
    names = [models] if isinstance(models, str) else list(models)
    if not names:
        raise ValueError("fit_traces: no model given")
    if len(set(names)) != len(names):
        raise ValueError(f"fit_traces: model listed twice in {names}")
    overrides = dict(overrides or {})
    registered = set(list_models())
    nested = bool(overrides) and all(key in registered for key in overrides)
    if overrides and not nested and len(names) > 1:
        raise ValueError("fit_traces: with several models, overrides must be keyed by model name")
    specs = {}
    for name in names:
        get_model(name)
        ov = overrides.get(name) if nested else overrides
        specs[name] = resolve_params(name, ov)
    return specs


def fit_traces(
    df: pd.DataFrame,
    models: str | Sequence[str],
    overrides: Mapping | None = None,
    value_col: str = "intensity_total_ch_1",
    n_jobs: int | None = 1,
    chunk_size: int = CHUNK_SIZE,
    t0_bounds: str = "reference",
    weighting: str = "none",
    status: StatusRule | Mapping | None = None,
    **options: object,
) -> pd.DataFrame:
    """Fit every cell of a traces table with one or more models.

    Parameters
    ----------
    df : DataFrame
        At least ``fov, cell, time`` (minutes), ``good`` and ``value_col``.
        Only rows with ``good`` true are used; a cell without any is not
        fitted (no output row).
    models : str or list of str
        Registered model names.
    overrides : mapping, optional
        Parameter overrides (see :func:`resolve_params`). With one model,
        ``{param: {...}}``; with several, ``{model: {param: {...}}}`` (also
        accepted for one model).
    value_col : str
        Column to fit.
    n_jobs : int or None
        Worker processes (None or <= 0: all cores). The cells, in (fov, cell)
        order, are cut into fixed batches of ``chunk_size`` (each cell keeps
        its own time points), independent of ``n_jobs``, so the output is
        identical for any ``n_jobs``.
    t0_bounds : {"reference", "data"}
        ``"data"``: the upper bound of a free ``t0`` follows each cell's
        data (:func:`data_t0_upper`; not where the overrides set a bound of
        ``t0``); cells that share a bound are fitted together.
    weighting : {"none", "poisson"}
        See :func:`fit_batch`.
    status : StatusRule or mapping, optional
        Thresholds of the ``status`` column (:func:`classify_fits`).
    **options
        Passed to :func:`fit_batch`.

    Returns
    -------
    DataFrame with columns ``fov, cell, model, success, r_squared``, the
    parameters (of all given models, in ``PARAMS`` order, first model first;
    NaN where a model lacks one), ``{p}_se`` in the same order,
    ``residual_std, aic, bic, n_points`` and, when several models are given,
    ``best_model``: per cell the model with the lowest AIC among its
    successful fits (empty if none succeeded; ties go to the model name that
    sorts first), then ``status`` (:data:`STATUSES`) and ``at_bound`` (the
    free parameters at a bound, ``;``-separated; empty for a failed fit).
    Rows sorted by fov, cell, model. Time is converted to hours.
    """
    if t0_bounds not in T0_BOUNDS:
        raise ValueError(f"t0_bounds must be one of {', '.join(T0_BOUNDS)}, not {t0_bounds!r}")
    options = {**options, "weighting": weighting, "status": StatusRule.from_config(status)}
    specs = _normalise_models(models, overrides)
    missing = [c for c in ("fov", "cell", "time", "good", value_col) if c not in df.columns]
    if missing:
        raise ValueError(f"fit_traces: missing column(s) {', '.join(missing)}")
    param_cols, columns = _table_columns(specs)
    cells = _cell_matrix(df, value_col)
    tasks, keys = _batch_tasks(specs, overrides, cells, chunk_size, t0_bounds, options)
    results = _run_tasks(tasks, n_jobs)
    frames = [_result_frame(fov_k, cell_k, name, res, param_cols) for (fov_k, cell_k, name), res in zip(keys, results)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    return _fits_table(frames, len(specs) > 1)[columns]


def _table_columns(specs: Mapping[str, tuple[ParamSpec, ...]]) -> tuple[list[str], list[str]]:
    """The parameter columns (every model's, first model first) and all columns of a fit table."""
    param_cols: list[str] = []
    for name in specs:
        for p in get_model(name).PARAMS:
            if p not in param_cols:
                param_cols.append(p)
    columns = [*ID_COLUMNS, *param_cols, *[f"{p}_se" for p in param_cols], *STAT_COLUMNS]
    if len(specs) > 1:
        columns.append("best_model")
    columns.extend(STATUS_COLUMNS)
    return param_cols, columns


def _cell_matrix(df: pd.DataFrame, value_col: str) -> tuple[np.ndarray, ...]:
    """The good rows as one row per cell in (fov, cell) order: ``(fovs, cells, lengths, T, Y)``.

    ``T`` (hours) and ``Y`` are ``(cells, longest)``, each cell's own time
    points in time order, NaN-padded; ``lengths`` the points per cell.
    """
    sub = df.loc[_good_mask(df["good"]), ["fov", "cell", "time", value_col]]
    if sub.duplicated(["fov", "cell", "time"]).any():
        raise ValueError("fit_traces: a cell has two rows with the same time")
    sub = sub.sort_values(["fov", "cell", "time"], kind="mergesort")
    fov_a = sub["fov"].to_numpy()
    cell_a = sub["cell"].to_numpy()
    new_cell = np.ones(len(sub), dtype=bool)
    new_cell[1:] = (fov_a[1:] != fov_a[:-1]) | (cell_a[1:] != cell_a[:-1])
    starts = np.flatnonzero(new_cell)
    lengths = np.diff(np.append(starts, len(sub)))
    cell_of_row = np.cumsum(new_cell) - 1
    pos = np.arange(len(sub)) - starts[cell_of_row]
    n_cells = starts.size
    width = int(lengths.max()) if n_cells else 0
    # one row per cell, its own times (hours) and values, NaN-padded
    T_all = np.full((n_cells, width), np.nan)
    Y_all = np.full((n_cells, width), np.nan)
    T_all[cell_of_row, pos] = sub["time"].to_numpy(dtype=np.float64) / 60.0
    Y_all[cell_of_row, pos] = sub[value_col].to_numpy(dtype=np.float64)
    return fov_a[starts], cell_a[starts], lengths, T_all, Y_all


def _batch_tasks(specs, overrides, cells: tuple[np.ndarray, ...], chunk_size: int, t0_bounds: str, options: dict):
    """The :func:`fit_batch` calls: per batch of ``chunk_size`` cells, per model and ``t0`` group.

    Returns ``(tasks, keys)``: the arguments of :func:`_fit_task`, and per
    task the ``(fovs, cells, model)`` of its rows.
    """
    fovs, cell_ids, lengths, T_all, Y_all = cells
    n_cells = lengths.size
    tasks = []
    keys = []
    for lo in range(0, n_cells, chunk_size):
        hi = min(lo + chunk_size, n_cells)
        w = int(lengths[lo:hi].max())
        Tc, Yc = T_all[lo:hi, :w], Y_all[lo:hi, :w]
        if np.all(Tc == Tc[0]):  # shared time vector: pass it once
            Tc = Tc[0]
        for name, spec in specs.items():
            user = _bounds_set(overrides, name, "t0")
            for rows, spec_g in _t0_groups(spec, Tc, Yc, t0_bounds, user):
                Tg = Tc if Tc.ndim == 1 else Tc[rows]
                tasks.append((name, spec_g, Tg, Yc[rows], dict(options)))
                keys.append((fovs[lo:hi][rows], cell_ids[lo:hi][rows], name))
    return tasks, keys


def _run_tasks(tasks: list[tuple], n_jobs: int | None) -> list[dict[str, np.ndarray]]:
    """The results of :func:`_fit_task` for ``tasks``, in order, in ``n_jobs`` worker processes."""
    workers = (os.cpu_count() or 1) if (n_jobs is None or n_jobs <= 0) else int(n_jobs)
    if workers == 1 or len(tasks) <= 1:
        return [_fit_task(task) for task in tasks]
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as ex:
        return list(ex.map(_fit_task, tasks))


def _result_frame(fov_k, cells, name: str, res: Mapping[str, np.ndarray], param_cols: Sequence[str]) -> pd.DataFrame:
    """The rows of one :func:`fit_batch` result (model ``name``), NaN for parameters the model lacks."""
    pnames = list(get_model(name).PARAMS)
    data: dict[str, object] = {
        "fov": fov_k,
        "cell": cells,
        "model": np.full(cells.size, name, dtype=object),
        "success": res["success"],
        "r_squared": res["r_squared"],
    }
    for p in param_cols:
        data[p] = res["params"][:, pnames.index(p)] if p in pnames else np.full(cells.size, np.nan)
    for p in param_cols:
        data[f"{p}_se"] = res["se"][:, pnames.index(p)] if p in pnames else np.full(cells.size, np.nan)
    for c in STAT_COLUMNS:
        data[c] = res[c]
    data["status"] = res["status"]
    data["at_bound"] = _at_bound_names(pnames, res)
    return pd.DataFrame(data)


def _fits_table(frames: list[pd.DataFrame], several: bool) -> pd.DataFrame:
    """The frames as one table sorted by fov, cell, model; with ``best_model`` for ``several`` models."""
    out = pd.concat(frames, ignore_index=True)
    out = out.sort_values(["fov", "cell", "model"], kind="mergesort").reset_index(drop=True)
    out["success"] = out["success"].astype(bool)
    out["n_points"] = out["n_points"].astype(np.int64)
    if several:
        best = best_models(out)
        lookup = {(f, c): m for f, c, m in zip(best["fov"], best["cell"], best["best_model"])}
        out["best_model"] = [lookup.get((f, c), "") for f, c in zip(out["fov"], out["cell"])]
    return out


def _at_bound_names(names: Sequence[str], res: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per cell, the parameters at a bound, ``;``-separated (empty for failed fits)."""
    at = (res["at_lower"] | res["at_upper"]) & res["success"][:, None]
    return np.array([";".join(n for n, a in zip(names, row) if a) for row in at], dtype=object)


def best_models(fits: pd.DataFrame) -> pd.DataFrame:
    """Per cell, the model with the lowest AIC among its successful fits.

    Parameters
    ----------
    fits : rows of one or more models (``fov, cell, model, success, r_squared, aic``),
        e.g. several ``fits_{model}.csv`` concatenated.

    Returns
    -------
    ``fov, cell, best_model`` (empty when no fit of the cell succeeded; ties
    go to the model name that sorts first), then ``aic_{model}`` and
    ``r_squared_{model}`` for every model, sorted by fov, cell.
    """
    fits = fits.copy()
    fits["success"] = fits["success"].astype(str).str.lower().isin(["true", "1"])
    cand = fits[fits["success"] & np.isfinite(fits["aic"].astype(float))]
    best = cand.sort_values(["fov", "cell", "aic", "model"], kind="mergesort").drop_duplicates(["fov", "cell"])
    cells = fits[["fov", "cell"]].drop_duplicates().sort_values(["fov", "cell"], kind="mergesort")
    out = cells.merge(best[["fov", "cell", "model"]].rename(columns={"model": "best_model"}),
                      on=["fov", "cell"], how="left")
    out["best_model"] = out["best_model"].fillna("")
    for model in sorted(fits["model"].unique()):
        part = fits.loc[fits["model"] == model, ["fov", "cell", "aic", "r_squared"]]
        out = out.merge(part.rename(columns={"aic": f"aic_{model}", "r_squared": f"r_squared_{model}"}),
                        on=["fov", "cell"], how="left")
    return out.reset_index(drop=True)


def failure_reasons(fits: pd.DataFrame, overrides: Mapping | None = None) -> pd.Series:
    """Why each row of a fits table did not succeed ("" where it did).

    ``"too few points: n < k free parameters"`` (the cell is in fewer good
    frames than the model has free parameters), ``"no finite optimum"`` or
    ``"did not converge"``. ``overrides`` as for :func:`fit_traces` (keyed by
    model, or flat for a table of one model).
    """
    overrides = dict(overrides or {})
    nested = bool(overrides) and all(key in set(list_models()) for key in overrides)
    n_free: dict[str, int] = {}
    for name in fits["model"].unique() if len(fits) else []:
        ov = overrides.get(name) if nested else overrides
        n_free[name] = sum(not s.fixed for s in resolve_params(name, ov))
    success = fits["success"].astype(str).str.lower().isin(["true", "1"]) if len(fits) else []
    out = []
    for i, (model, ok) in enumerate(zip(fits["model"], success)):
        if ok:
            out.append("")
            continue
        n, k = int(fits["n_points"].iloc[i]), n_free[model]
        if n < max(k, 1):
            out.append(f"too few points: {n} < {k} free parameters")
        elif not np.isfinite(float(fits["r_squared"].iloc[i])):
            out.append("no finite optimum")
        else:
            out.append("did not converge")
    return pd.Series(out, index=fits.index, dtype=object)


def write_fits(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a fits table as CSV with floats as ``%.9g``, atomically.

    Through :func:`~pyama_flow.io.atomic.atomic_path`: readers never see a
    partial file. The same table always gives the same bytes.
    """
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        df.to_csv(fh, index=False, float_format=FLOAT_FORMAT, lineterminator="\n")


__all__ = ["CHUNK_SIZE", "FLOAT_FORMAT", "ID_COLUMNS", "STAT_COLUMNS", "STATUS_COLUMNS", "T0_BOUNDS", "best_models", "failure_reasons", "fit_traces", "tune_malloc", "write_fits"]
