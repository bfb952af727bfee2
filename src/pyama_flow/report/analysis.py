"""Per-sample analysis of fits and traces: tables, summaries, PCA and plots.

Inputs
------
``fits``
    The table of :func:`pyama_flow.fitting.fit.fit_traces` (``fov, cell, model,
    success, r_squared``, parameters...) with a ``sample`` column (see
    :func:`assign_samples`; without one every row is sample ``"all"``).
``traces``
    Long table ``sample, fov, cell, time, value`` with ``time`` in minutes,
    e.g. the per-sample tables of the merge step stacked with a ``sample``
    column (:func:`stack_samples`).

All numbers come back as DataFrames; every ``plot_*`` function takes data
and an output path, writes one PNG (matplotlib's Agg canvas, no pyplot
state) and returns the Figure. Each sample keeps one colour in all plots (:func:`sample_colors`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pyama_flow.fitting.fit import ID_COLUMNS, STAT_COLUMNS, STATUS_COLUMNS
from pyama_flow.fitting.models import get_model
from pyama_flow.fitting.status import STATUSES
from pyama_flow.io.atomic import atomic_path
from pyama_flow.report.display import NO_SAMPLE_COLOR

log = logging.getLogger("pyama_flow")

TIME_LABEL = "time (h)"
INTENSITY_LABEL = "intensity (a.u.)"
#: Columns of a fit / parameter table that are not parameters.
_BASE = {*ID_COLUMNS, *STAT_COLUMNS, *STATUS_COLUMNS, "best_model", "sample"}
#: Statuses whose fits the tables, plots and PCA use by default (config ``fit.status.include``).
RELIABLE = ("ok",)
#: The plots of an analysis, by output name (``{name}.png`` of :func:`analyze`, one path
#: each for :func:`render_sample_analysis`).
SAMPLE_PLOTS: dict[str, str] = {
    "parameters": "parameter distributions",
    "r_squared": "R² histogram",
    "examples": "example cells",
    "median_trace": "median trace",
    "pca": "PCA",
}


# ---------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------


def assign_samples(df: pd.DataFrame, samples: Mapping[str, Iterable[int]]) -> pd.DataFrame:
    """Copy of ``df`` with a ``sample`` column from ``{sample: fovs}``; rows of other FOVs are dropped."""
    of = {}
    for name, fovs in samples.items():
        for f in fovs:
            if int(f) in of:
                raise ValueError(f"FOV {f} is in samples {of[int(f)]!r} and {name!r}")
            of[int(f)] = name
    out = df[df["fov"].isin(list(of))].copy()
    out.insert(0, "sample", out["fov"].map(of))
    return out.reset_index(drop=True)


def stack_samples(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Stack per-sample tables (e.g. merge outputs ``time, fov, cell, value``) with a ``sample`` column."""
    frames = [t.assign(sample=name) for name, t in tables.items()]
    if not frames:
        return pd.DataFrame(columns=["sample", "time", "fov", "cell", "value"])
    out = pd.concat(frames, ignore_index=True)
    return out[["sample"] + [c for c in out.columns if c != "sample"]]


def _with_sample(df: pd.DataFrame) -> pd.DataFrame:
    return df if "sample" in df.columns else df.assign(sample="all")


def _samples(df: pd.DataFrame) -> list[str]:
    return list(pd.unique(df["sample"]))


def sample_colors(samples: Sequence[str]) -> dict[str, tuple[float, float, float, float]]:
    """One colour per sample (tab10, then tab20), in the given order."""
    from matplotlib import colormaps

    tab = colormaps["tab10"].colors + colormaps["tab20"].colors[1::2]
    return {s: (*tab[i % len(tab)], 1.0) for i, s in enumerate(samples)}


def fit_status(fits: pd.DataFrame) -> pd.Series:
    """Each row's status: the ``status`` column, or (a table written before
    it existed) ``ok`` where ``success`` is true and ``failed`` elsewhere."""
    if "status" in fits.columns:
        return fits["status"].fillna("failed").astype(str)
    if "success" in fits.columns:
        ok = fits["success"].astype(str).str.lower().isin(["true", "1"])
        return pd.Series(np.where(ok, "ok", "failed"), index=fits.index, dtype=object)
    return pd.Series("ok", index=fits.index, dtype=object)


def select_fits(fits: pd.DataFrame, include: Iterable[str] | None = RELIABLE) -> pd.DataFrame:
    """The rows whose status is in ``include`` (None: every successful fit).

    Raises
    ------
    ValueError
        An unknown status in ``include``.
    """
    if include is None:
        return fits[fit_status(fits) != "failed"]
    include = list(include)
    bad = [s for s in include if s not in STATUSES]
    if bad:
        raise ValueError(f"unknown fit status {bad[0]!r} (statuses: {', '.join(STATUSES)})")
    return fits[fit_status(fits).isin(include).to_numpy()]


def status_counts(fits: pd.DataFrame) -> pd.DataFrame:
    """Per sample, the number of cells of every status: ``sample, n_ok, n_at_bound, ...``."""
    fits = _with_sample(fits)
    st = fit_status(fits)
    rows = []
    for sample in _samples(fits):
        counts = st[(fits["sample"] == sample).to_numpy()].value_counts()
        rows.append({"sample": sample, **{f"n_{s}": int(counts.get(s, 0)) for s in _STATUS_ORDER}})
    return pd.DataFrame(rows, columns=["sample", *[f"n_{s}" for s in _STATUS_ORDER]])


#: order of the status counts (most trusted first)
_STATUS_ORDER = ("ok", "at_bound", "poor_fit", "not_identifiable", "failed")


def traces_of(traces: pd.DataFrame, fits: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``traces`` whose ``(sample, fov, cell)`` has a row in ``fits``."""
    traces, fits = _with_sample(traces), _with_sample(fits)
    keys = pd.MultiIndex.from_frame(fits[["sample", "fov", "cell"]].astype({"fov": np.int64, "cell": np.int64}))
    mine = pd.MultiIndex.from_frame(traces[["sample", "fov", "cell"]].astype({"fov": np.int64, "cell": np.int64}))
    return traces[mine.isin(keys)]


def _params_of(fits: pd.DataFrame, model: str | None) -> list[str]:
    if model is not None:
        return list(get_model(model).PARAMS)
    return [c for c in fits.columns if c not in _BASE and not c.endswith("_se")]


def _one_model(fits: pd.DataFrame, model: str | None) -> tuple[pd.DataFrame, str | None]:
    if model is None and "model" in fits.columns:
        models = list(pd.unique(fits["model"]))
        if len(models) > 1:
            raise ValueError(f"fits hold several models {models}: pass model=")
        model = models[0] if models else None
    if model is not None and "model" in fits.columns:
        fits = fits[fits["model"] == model]
    return fits, model


def parameter_table(
    fits: pd.DataFrame,
    model: str | None = None,
    successful_only: bool = True,
    include: Iterable[str] | None = RELIABLE,
) -> pd.DataFrame:
    """The cells of one model: ``sample, fov, cell, model, r_squared``, its parameters (and ``status``).

    ``include``: the statuses kept (:func:`select_fits`; default the reliable
    fits, ``ok``); with ``successful_only`` false, every row. Rows sorted by
    sample (first appearance), fov, cell.
    """
    fits, model = _one_model(_with_sample(fits), model)
    if successful_only:
        fits = select_fits(fits, include)
    params = [p for p in _params_of(fits, model) if p in fits.columns]
    cols = ["sample", "fov", "cell"] + (["model"] if "model" in fits.columns else []) + ["r_squared"] + params
    cols += ["status"] if "status" in fits.columns else []
    order = {s: i for i, s in enumerate(_samples(fits))}
    out = fits[cols].copy()
    out["_o"] = out["sample"].map(order)
    return out.sort_values(["_o", "fov", "cell"], kind="mergesort").drop(columns="_o").reset_index(drop=True)


def summarize_parameters(
    fits: pd.DataFrame,
    model: str | None = None,
    params: Sequence[str] | None = None,
    r2_threshold: float = 0.9,
    include: Iterable[str] | None = RELIABLE,
) -> pd.DataFrame:
    """Per sample and parameter: ``n, median, q25, q75, iqr``, ``frac_r2_above`` and the status counts.

    ``n`` counts the fits whose status is in ``include`` (default ``ok``;
    None: every successful fit) with a finite value; ``frac_r2_above`` is the
    fraction of all fitted cells of the sample (failed fits count as below)
    with ``r_squared > r2_threshold``; ``n_ok, n_at_bound, n_poor_fit,
    n_not_identifiable, n_failed`` count all the sample's cells by status
    (:func:`status_counts`).
    """
    fits, model = _one_model(_with_sample(fits), model)
    params = list(params) if params is not None else [p for p in _params_of(fits, model) if p in fits.columns]
    counts = status_counts(fits).set_index("sample")
    count_cols = list(counts.columns)
    rows = []
    for sample in _samples(fits):
        g = fits[fits["sample"] == sample]
        ok = select_fits(g, include)
        r2 = g["r_squared"].to_numpy(dtype=np.float64)
        frac = float(np.mean(np.nan_to_num(r2, nan=-np.inf) > r2_threshold)) if r2.size else np.nan
        for p in params:
            v = ok[p].to_numpy(dtype=np.float64)
            v = v[np.isfinite(v)]
            q25, med, q75 = np.quantile(v, [0.25, 0.5, 0.75]) if v.size else (np.nan,) * 3
            rows.append(
                {
                    "sample": sample,
                    "model": model,
                    "parameter": p,
                    "n": int(v.size),
                    "median": float(med),
                    "q25": float(q25),
                    "q75": float(q75),
                    "iqr": float(q75 - q25),
                    "frac_r2_above": frac,
                    **{c: int(counts.loc[sample, c]) for c in count_cols},
                }
            )
    return pd.DataFrame(
        rows,
        columns=["sample", "model", "parameter", "n", "median", "q25", "q75", "iqr", "frac_r2_above", *count_cols],
    )


def time_grid(traces: pd.DataFrame, n: int = 100) -> np.ndarray:
    """``n`` equally spaced times (hours) over the range the traces cover."""
    t = traces["time"].to_numpy(dtype=np.float64) / 60.0
    t = t[np.isfinite(t)]
    if t.size == 0:
        return np.zeros(0)
    return np.linspace(t.min(), t.max(), n)


def resample_traces(
    traces: pd.DataFrame, grid_h: np.ndarray, scale: bool = False, outside: str = "nan"
) -> tuple[pd.DataFrame, np.ndarray]:
    """Every cell's trace on a common time grid by linear interpolation.

    Parameters
    ----------
    traces : DataFrame ``sample, fov, cell, time (min), value``
    grid_h : times in hours
    scale : divide each trace by its maximum absolute value (if > 0)
    outside : ``"nan"`` (no value outside a cell's own time range) or
        ``"edge"`` (hold its first / last value)

    Returns
    -------
    keys : DataFrame ``sample, fov, cell`` (one row per cell)
    X : (n_cells, n_grid) float64
    """
    traces = _with_sample(traces)
    keys, rows = [], []
    grid_h = np.asarray(grid_h, dtype=np.float64)
    for (sample, fov, cell), g in traces.groupby(["sample", "fov", "cell"], sort=False):
        t = g["time"].to_numpy(dtype=np.float64) / 60.0
        v = g["value"].to_numpy(dtype=np.float64)
        ok = np.isfinite(t) & np.isfinite(v)
        if not ok.any():
            continue
        order = np.argsort(t[ok], kind="stable")
        t, v = t[ok][order], v[ok][order]
        x = np.interp(grid_h, t, v)
        if outside == "nan":
            x[(grid_h < t[0]) | (grid_h > t[-1])] = np.nan
        if scale:
            m = np.nanmax(np.abs(x)) if np.isfinite(x).any() else 0.0
            if m > 0:
                x = x / m
        keys.append((sample, fov, cell))
        rows.append(x)
    key_df = pd.DataFrame(keys, columns=["sample", "fov", "cell"])
    X = np.array(rows, dtype=np.float64).reshape(len(rows), grid_h.size)
    return key_df, X


def median_trace(traces: pd.DataFrame, grid_h: np.ndarray | None = None, n: int = 100) -> pd.DataFrame:
    """Per sample and grid time: median and 10 / 90 % quantiles across cells.

    Columns ``sample, time_h, median, q10, q90, n_cells``; each cell counts
    only inside its own time range.
    """
    traces = _with_sample(traces)
    grid_h = time_grid(traces, n) if grid_h is None else np.asarray(grid_h, dtype=np.float64)
    keys, X = resample_traces(traces, grid_h, scale=False, outside="nan")
    out = []
    for sample in _samples(traces):
        sel = (keys["sample"] == sample).to_numpy()
        Xs = X[sel]
        cnt = np.sum(np.isfinite(Xs), axis=0)
        with np.errstate(all="ignore"):
            q = np.full((3, grid_h.size), np.nan)
            has = cnt > 0
            if has.any():
                q[:, has] = np.nanquantile(Xs[:, has], [0.5, 0.1, 0.9], axis=0)
        out.append(
            pd.DataFrame(
                {
                    "sample": sample,
                    "time_h": grid_h,
                    "median": q[0],
                    "q10": q[1],
                    "q90": q[2],
                    "n_cells": cnt.astype(np.int64),
                }
            )
        )
    if not out:
        return pd.DataFrame(columns=["sample", "time_h", "median", "q10", "q90", "n_cells"])
    return pd.concat(out, ignore_index=True)


def trace_pca(traces: pd.DataFrame, n_grid: int = 100, n_components: int = 5) -> dict[str, pd.DataFrame]:
    """PCA of the cells' traces (SVD in numpy).

    Each trace is interpolated onto ``n_grid`` common times (holding its end
    values outside its own range), divided by its maximum absolute value,
    and the mean trace is subtracted. Component signs are fixed so that each
    component's largest loading is positive.

    Returns
    -------
    dict with ``scores`` (``sample, fov, cell, PC1..``), ``components``
    (``time_h, PC1..``), ``explained`` (``component, explained_variance_ratio,
    cumulative``) and ``mean`` (``time_h, mean``).
    """
    traces = _with_sample(traces)
    grid = time_grid(traces, n_grid)
    keys, X = resample_traces(traces, grid, scale=True, outside="edge")
    names = [f"PC{i + 1}" for i in range(n_components)]
    if X.shape[0] == 0:
        empty = {n: [] for n in names}
        return {
            "scores": pd.DataFrame({"sample": [], "fov": [], "cell": [], **empty}),
            "components": pd.DataFrame({"time_h": grid, **{n: np.nan for n in names}}),
            "explained": pd.DataFrame({"component": names, "explained_variance_ratio": np.nan, "cumulative": np.nan}),
            "mean": pd.DataFrame({"time_h": grid, "mean": np.nan}),
        }
    mean = X.mean(axis=0)
    Xc = X - mean
    U, S, Vt = np.linalg.svd(Xc, full_matrices=False)
    var = S**2
    total = var.sum()
    ratio = var / total if total > 0 else np.zeros_like(var)
    k = min(n_components, Vt.shape[0])
    for i in range(k):  # deterministic signs
        if Vt[i, np.argmax(np.abs(Vt[i]))] < 0:
            Vt[i] *= -1
            U[:, i] *= -1
    scores = np.full((X.shape[0], n_components), np.nan)
    scores[:, :k] = U[:, :k] * S[:k]
    comps = np.full((n_components, grid.size), np.nan)
    comps[:k] = Vt[:k]
    ev = np.full(n_components, np.nan)
    ev[:k] = ratio[:k]
    return {
        "scores": pd.concat([keys, pd.DataFrame(scores, columns=names)], axis=1),
        "components": pd.DataFrame({"time_h": grid, **{n: comps[i] for i, n in enumerate(names)}}),
        "explained": pd.DataFrame({"component": names, "explained_variance_ratio": ev, "cumulative": np.cumsum(ev)}),
        "mean": pd.DataFrame({"time_h": grid, "mean": mean}),
    }


# ---------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------


def _save(fig: Figure, path: str | os.PathLike) -> None:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100, format="png")


def _grid_shape(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(max_cols, max(1, n))
    return int(np.ceil(max(n, 1) / cols)), cols


def plot_parameter_distributions(
    table: pd.DataFrame,
    path: str | os.PathLike,
    params: Sequence[str] | None = None,
    colors: Mapping[str, object] | None = None,
) -> Figure:
    """Histogram of every parameter per sample (log axis for positive values spanning > 2 decades).

    ``table`` is a :func:`parameter_table`. Constant (fixed) parameters are skipped.
    """
    table = _with_sample(table)
    if params is None:
        params = [c for c in table.columns if c not in _BASE]
    params = [p for p in params if table[p].nunique(dropna=True) > 1]
    samples = _samples(table)
    colors = dict(colors or sample_colors(samples))
    rows, cols = _grid_shape(len(params), 3)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, p in zip(axes, params):
        v_all = table[p].to_numpy(dtype=np.float64)
        v_all = v_all[np.isfinite(v_all)]
        logx = v_all.size > 0 and v_all.min() > 0 and v_all.max() / v_all.min() > 100
        if v_all.size:
            lo, hi = (np.log10(v_all.min()), np.log10(v_all.max())) if logx else (v_all.min(), v_all.max())
            edges = np.linspace(lo, hi if hi > lo else lo + 1, 31)
            if logx:
                edges = 10**edges
        for s in samples:
            v = table.loc[table["sample"] == s, p].to_numpy(dtype=np.float64)
            v = v[np.isfinite(v)]
            if v.size:
                ax.hist(v, bins=edges, histtype="step", linewidth=1.5, color=colors[s], label=f"{s} (n={v.size})")
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(p)
        ax.set_ylabel("cells")
    for ax in axes[len(params) :]:
        ax.set_visible(False)
    if params:
        axes[0].legend(fontsize="small")
    _save(fig, path)
    return fig


def plot_r2_histogram(
    fits: pd.DataFrame,
    path: str | os.PathLike,
    colors: Mapping[str, object] | None = None,
    include: Iterable[str] | None = RELIABLE,
) -> Figure:
    """Histogram of R^2 per sample (the fits whose status is in ``include``, see :func:`select_fits`)."""
    fits = select_fits(_with_sample(fits), include)
    samples = _samples(fits)
    colors = dict(colors or sample_colors(samples))
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.subplots()
    for s in samples:
        v = fits.loc[fits["sample"] == s, "r_squared"].to_numpy(dtype=np.float64)
        v = v[np.isfinite(v)]
        ax.hist(
            v, bins=np.linspace(0, 1, 41), histtype="step", linewidth=1.5, color=colors[s], label=f"{s} (n={v.size})"
        )
    ax.set_xlabel("R²")
    ax.set_ylabel("cells")
    ax.legend(fontsize="small")
    _save(fig, path)
    return fig


def plot_example_cells(
    traces: pd.DataFrame,
    fits: pd.DataFrame,
    path: str | os.PathLike,
    n: int = 12,
    seed: int = 0,
    colors: Mapping[str, object] | None = None,
    include: Iterable[str] | None = RELIABLE,
) -> tuple[pd.DataFrame, Figure]:
    """Grid of example cells: data points and the fitted curve.

    Up to ``n`` fits whose status is in ``include`` (:func:`select_fits`) are
    drawn at random (fixed ``seed``), spread over the samples. Returns
    ``(cells drawn: sample, fov, cell, model, Figure)``.
    """
    traces, fits = _with_sample(traces), _with_sample(fits)
    ok = select_fits(fits, include)
    rng = np.random.default_rng(seed)
    picks = []
    samples = _samples(ok)
    per = max(1, int(np.ceil(n / max(len(samples), 1))))
    for s in samples:
        g = ok[ok["sample"] == s]
        take = rng.choice(len(g), size=min(per, len(g)), replace=False) if len(g) else []
        picks.append(g.iloc[sorted(take)])
    chosen = pd.concat(picks).head(n) if picks else ok.head(0)
    colors = dict(colors or sample_colors(_samples(fits)))
    rows, cols = _grid_shape(len(chosen), 4)
    fig = Figure(figsize=(3.6 * cols, 2.8 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    by_cell = {k: g for k, g in traces.groupby(["sample", "fov", "cell"], sort=False)}
    for ax, (_, row) in zip(axes, chosen.iterrows()):
        g = by_cell.get((row["sample"], row["fov"], row["cell"]))
        color = colors.get(row["sample"], "k")
        if g is not None:
            t = g["time"].to_numpy(dtype=np.float64) / 60.0
            ax.plot(t, g["value"].to_numpy(dtype=np.float64), ".", markersize=3, color=color, alpha=0.6)
            mod = get_model(row["model"])
            tt = np.linspace(np.nanmin(t), np.nanmax(t), 400)
            p = {k: float(row[k]) for k in mod.PARAMS}
            ax.plot(tt, mod.evaluate(tt, p), "-", color="k", linewidth=1.2)
        ax.set_title(
            f"{row['sample']} fov {row['fov']} cell {row['cell']}  R²={row['r_squared']:.3f}", fontsize="small"
        )
        ax.set_xlabel(TIME_LABEL)
        ax.set_ylabel(INTENSITY_LABEL)
    for ax in axes[len(chosen) :]:
        ax.set_visible(False)
    _save(fig, path)
    return chosen[["sample", "fov", "cell", "model"]].reset_index(drop=True), fig


def plot_median_trace(
    summary: pd.DataFrame, path: str | os.PathLike, colors: Mapping[str, object] | None = None
) -> Figure:
    """Median trace per sample with its 10-90 % band (``summary`` from :func:`median_trace`)."""
    samples = _samples(summary)
    colors = dict(colors or sample_colors(samples))
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for s in samples:
        g = summary[summary["sample"] == s]
        ax.fill_between(g["time_h"], g["q10"], g["q90"], color=colors[s], alpha=0.25, linewidth=0)
        ax.plot(g["time_h"], g["median"], color=colors[s], label=s)
    ax.set_xlabel(TIME_LABEL)
    ax.set_ylabel(INTENSITY_LABEL)
    ax.legend(fontsize="small")
    _save(fig, path)
    return fig


def plot_pca(
    pca: Mapping[str, pd.DataFrame],
    path: str | os.PathLike,
    colors: Mapping[str, object] | None = None,
    n_curves: int = 3,
) -> Figure:
    """Explained variance, scores PC1 vs PC2 by sample, and the first components over time."""
    scores, comps, ev = pca["scores"], pca["components"], pca["explained"]
    samples = _samples(scores) if len(scores) else []
    colors = dict(colors or sample_colors(samples))
    fig = Figure(figsize=(14, 4), layout="constrained")
    a1, a2, a3 = fig.subplots(1, 3)
    x = np.arange(1, len(ev) + 1)
    a1.bar(x, ev["explained_variance_ratio"], color="0.6", label="component")
    a1.plot(x, ev["cumulative"], "o-", color="k", label="cumulative")
    a1.set_xticks(x, ev["component"])
    a1.set_ylabel("explained variance ratio")
    a1.set_ylim(0, 1.05)
    a1.legend(fontsize="small")
    for s in samples:
        g = scores[scores["sample"] == s]
        a2.scatter(g["PC1"], g["PC2"], s=10, color=colors[s], label=s, alpha=0.7)
    a2.set_xlabel("PC1")
    a2.set_ylabel("PC2")
    if samples:
        a2.legend(fontsize="small")
    for name in [c for c in comps.columns if c != "time_h"][:n_curves]:
        a3.plot(comps["time_h"], comps[name], label=name)
    a3.set_xlabel(TIME_LABEL)
    a3.set_ylabel("loading (scaled intensity)")
    a3.legend(fontsize="small")
    _save(fig, path)
    return fig


# ---------------------------------------------------------------------------
# everything for a set of samples (analyze), or for one sample from its files
# (render_sample_analysis, the report's rule qc_sample)
# ---------------------------------------------------------------------------


def _write_plots(
    paths: Mapping[str, str],
    table: pd.DataFrame,
    fits: pd.DataFrame,
    traces: pd.DataFrame,
    med: pd.DataFrame,
    pca: Mapping[str, pd.DataFrame],
    colors: Mapping[str, object],
    n_examples: int,
    include: Iterable[str] | None,
) -> pd.DataFrame:
    """Every plot of :data:`SAMPLE_PLOTS`, each to its path in ``paths``; returns the example cells' table."""
    plot_parameter_distributions(table, paths["parameters"], colors=colors)
    plot_r2_histogram(fits, paths["r_squared"], colors=colors, include=include)
    examples, _ = plot_example_cells(traces, fits, paths["examples"], n=n_examples, colors=colors, include=include)
    plot_median_trace(med, paths["median_trace"], colors=colors)
    plot_pca(pca, paths["pca"], colors=colors)
    return examples


def analyze(
    fits: pd.DataFrame,
    traces: pd.DataFrame,
    out_dir: str | os.PathLike,
    model: str | None = None,
    r2_threshold: float = 0.9,
    n_examples: int = 12,
    n_grid: int = 100,
    include: Iterable[str] | None = RELIABLE,
) -> dict[str, pd.DataFrame]:
    """Write every table (CSV) and plot (PNG) of the analysis into ``out_dir``.

    Files: ``parameters.csv``, ``summary.csv``, ``median_trace.csv``,
    ``pca_scores.csv``, ``pca_components.csv``, ``pca_explained.csv``,
    ``parameters.png``, ``r_squared.png``, ``examples.png``,
    ``median_trace.png``, ``pca.png``. Returns the tables by name.

    Only the cells whose fit status is in ``include`` (default ``ok``; None:
    every successful fit) enter the parameter table, the plots, the median
    trace and the PCA; ``summary.csv`` counts every cell by status.
    """
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    fits, traces = _with_sample(fits), _with_sample(traces)
    fits_m, model = _one_model(fits, model)
    samples = list(dict.fromkeys(_samples(fits_m) + _samples(traces)))
    colors = sample_colors(samples)
    table = parameter_table(fits_m, model, include=include)
    summary = summarize_parameters(fits_m, model, r2_threshold=r2_threshold, include=include)
    used = traces_of(traces, select_fits(fits_m, include)) if len(fits_m) else traces.iloc[:0]
    med = median_trace(used, n=n_grid)
    pca = trace_pca(used, n_grid=n_grid)
    tables = {
        "parameters": table,
        "summary": summary,
        "median_trace": med,
        "pca_scores": pca["scores"],
        "pca_components": pca["components"],
        "pca_explained": pca["explained"],
    }
    for name, df in tables.items():
        df.to_csv(os.path.join(out_dir, f"{name}.csv"), index=False, float_format="%.9g", lineterminator="\n")
    paths = {name: os.path.join(out_dir, f"{name}.png") for name in SAMPLE_PLOTS}
    tables["examples"] = _write_plots(paths, table, fits_m, traces, med, pca, colors, n_examples, include)
    return tables


def render_sample_analysis(
    fits_paths: Sequence[str],
    traces_path: str,
    sample: str,
    model: str,
    out_paths: Mapping[str, str],
    summary_path: str,
    color: str = NO_SAMPLE_COLOR,
    n_examples: int = 12,
    include: Sequence[str] | None = ("ok",),
) -> pd.DataFrame:
    """A sample's fit and trace plots (:data:`SAMPLE_PLOTS`) in the sample's colour, and its parameter summary.

    Parameters
    ----------
    fits_paths : the ``fits_{model}.csv`` of the sample's FOVs.
    traces_path : the sample's merged table (``time, fov, cell, value``) of the fitted column.
    out_paths : one PNG path per key of :data:`SAMPLE_PLOTS`.
    summary_path : CSV of the parameter summary (median, quartiles, fraction R² > 0.9, cells per status).
    include : the fit statuses whose cells the plots and the summary use
        (config ``fit.status.include``; default the reliable fits, ``ok``).

    Returns
    -------
    The parameter summary.
    """
    fits = pd.concat([pd.read_csv(p) for p in fits_paths], ignore_index=True)
    if "model" in fits.columns:
        fits = fits[fits["model"] == model]
    fits.insert(0, "sample", sample)
    traces = stack_samples({sample: pd.read_csv(traces_path)})
    used = traces_of(traces, select_fits(fits, include))
    _write_plots(out_paths, parameter_table(fits, model, include=include), fits, traces, median_trace(used),
                 trace_pca(used), {sample: color}, n_examples, include)
    summary = summarize_parameters(fits, model, include=include)
    with atomic_path(summary_path) as tmp:
        summary.to_csv(tmp, index=False, float_format="%.9g")
    counts = status_counts(fits).iloc[0].drop("sample") if len(fits) else pd.Series(dtype=int)
    log.info("sample %s, model %s: %d fits (%s), %d cells with traces, %d used (status in %s)", sample, model,
             len(fits), ", ".join(f"{k[2:]} {v}" for k, v in counts.items()),
             traces.groupby(["fov", "cell"]).ngroups, used.groupby(["fov", "cell"]).ngroups,
             "any but failed" if include is None else "/".join(include))
    return summary


__all__ = [
    "INTENSITY_LABEL",
    "TIME_LABEL",
    "RELIABLE",
    "SAMPLE_PLOTS",
    "analyze",
    "assign_samples",
    "fit_status",
    "select_fits",
    "status_counts",
    "traces_of",
    "median_trace",
    "parameter_table",
    "plot_example_cells",
    "plot_median_trace",
    "plot_parameter_distributions",
    "plot_pca",
    "plot_r2_histogram",
    "render_sample_analysis",
    "resample_traces",
    "sample_colors",
    "stack_samples",
    "summarize_parameters",
    "time_grid",
    "trace_pca",
]
