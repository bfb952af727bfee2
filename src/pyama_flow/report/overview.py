"""The report's first page: every FOV in one table, all traces at a glance, samples side by side.

A user with 100 FOVs should learn from one page how many cells each FOV gave,
what the traces look like and how the samples differ, without opening 100
report entries. Everything here is read from the per-FOV results the
workflow already wrote (``trace_stats.json``, ``traces.csv`` with the
curation decisions applied, ``fits_{model}.csv``, ``frame_stats_ch{c}.csv``)
and the per-sample parameter summaries; nothing is recomputed.

Functions
---------
:func:`fov_table`
    one row per FOV: cells detected, kept by the filters, marked bad, fitted,
    reliable fits, median R², frames with saturated pixels.
:func:`sample_table`
    per sample and parameter: n, median, IQR, with the parameter's unit and
    meaning (from the model module's ``INFO``).
:func:`plot_fov_traces`
    one small panel per FOV with all its traces (good cells in the sample's
    colour, cells marked bad in grey, the median in black).
:func:`plot_sample_comparison`
    per parameter: median and IQR of every sample, with n.
:func:`overview_html`
    the two tables as one self-contained HTML page.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pyama_flow.fitting.models import get_model, param_info

#: FOVs per page of :func:`plot_fov_traces` (10 x 10 panels).
FOVS_PER_PAGE = 100
#: at most this many traces drawn per FOV panel (the median uses all).
MAX_TRACES_PER_PANEL = 300

FOV_COLUMNS = ["dataset", "fov", "sample", "cells_detected", "cells_kept", "cells_marked_bad"]


@dataclass(frozen=True)
class FovResults:
    """Where one FOV's results are (the rule's inputs for that FOV).

    ``fits`` maps a model name to its ``fits_{model}.csv``; ``frame_stats``
    lists the fluorescence channels' ``frame_stats_ch{c}.csv``; ``value_col``
    is the traces' column the fits use (the one :func:`plot_fov_traces` draws).
    """

    dataset: str
    fov: int
    sample: str | None
    trace_stats: str
    traces: str
    fits: Mapping[str, str] = field(default_factory=dict)
    frame_stats: Sequence[str] = ()
    value_col: str = "intensity_total_ch_1"


def reliable(fits: pd.DataFrame) -> pd.Series:
    """Which fits count as reliable: ``status == "ok"`` where the table has a
    status column, else the successful ones."""
    if "status" in fits.columns:
        return fits["status"].astype(str) == "ok"
    return fits["success"].astype(str).str.lower().isin(["true", "1"])


def _saturated_frames(paths: Sequence[str]) -> int:
    """Frames with at least one saturated pixel in any of the channels' statistics."""
    frames: set[int] = set()
    for p in paths:
        st = pd.read_csv(p, usecols=["frame", "n_saturated"])
        frames.update(int(f) for f in st.loc[st["n_saturated"] > 0, "frame"])
    return len(frames)


def fov_row(res: FovResults) -> dict[str, object]:
    """One row of :func:`fov_table` (see there)."""
    from pyama_flow.traces.curation import read_curated

    with open(res.trace_stats) as fh:
        st = json.load(fh)
    traces = read_curated(res.traces)
    good_cells = traces.loc[traces["good"].astype(bool), "cell"].unique() if len(traces) else []
    n_kept = int(traces["cell"].nunique()) if len(traces) else 0
    row: dict[str, object] = {
        "dataset": res.dataset,
        "fov": int(res.fov),
        "sample": res.sample or "",
        "cells_detected": int(st["cells_detected"]),
        "cells_kept": n_kept,
        "cells_marked_bad": n_kept - len(good_cells),
    }
    for model, path in res.fits.items():
        fits = pd.read_csv(path)
        ok = fits["success"].astype(str).str.lower().isin(["true", "1"])
        r2 = fits.loc[ok, "r_squared"].to_numpy(np.float64)
        row[f"fitted_{model}"] = int(ok.sum())
        row[f"reliable_{model}"] = int(reliable(fits).sum())
        row[f"median_r2_{model}"] = float(np.median(r2)) if r2.size else float("nan")
    row["saturated_frames"] = _saturated_frames(res.frame_stats)
    return row


def fov_table(results: Sequence[FovResults]) -> pd.DataFrame:
    """One row per FOV, in the given order.

    Columns: ``dataset, fov, sample, cells_detected`` (tracked cells before
    the filters), ``cells_kept`` (cells in ``traces.csv``: kept by the
    filters), ``cells_marked_bad`` (kept cells with no good row after the
    curation decisions), then per model ``fitted_{model}`` (successful fits),
    ``reliable_{model}`` (see :func:`reliable`), ``median_r2_{model}`` (over
    the successful fits), and ``saturated_frames`` (frames with saturated
    fluorescence pixels).
    """
    rows = [fov_row(r) for r in results]
    if not rows:
        return pd.DataFrame(columns=[*FOV_COLUMNS, "saturated_frames"])
    return pd.DataFrame(rows)


def free_parameters(model: str, overrides: Mapping[str, Mapping[str, object]] | None = None) -> list[str]:
    """The parameters of ``model`` that the fits vary (not fixed by default or by the config)."""
    mod = get_model(model)
    out = []
    for p in mod.PARAMS:
        fixed = (overrides or {}).get(p, {}).get("fixed", mod.DEFAULTS[p].fixed)
        if not fixed:
            out.append(p)
    return out


def sample_table(summary: pd.DataFrame, overrides: Mapping[str, Mapping] | None = None) -> pd.DataFrame:
    """The per-sample parameter summary of the fitted parameters, with unit and meaning.

    ``summary`` has the columns of
    :func:`pyama_flow.report.analysis.summarize_parameters` (``sample, model,
    parameter, n, median, q25, q75, iqr``, ...); parameters fixed in the fit
    (by default or by ``overrides``, the config's ``fit.params``) are left out.
    """
    df = summary.copy()
    keep = [p in free_parameters(m, (overrides or {}).get(m)) for m, p in zip(df["model"], df["parameter"])]
    df = df[np.asarray(keep, bool)].reset_index(drop=True) if len(df) else df
    info = [param_info(m, p) for m, p in zip(df["model"], df["parameter"])]
    df["unit"] = pd.Series([i.unit for i in info], dtype=object)
    df["meaning"] = pd.Series([i.meaning for i in info], dtype=object)
    return df


def _fmt(v: object) -> str:
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return "–"
        a = abs(float(v))
        return f"{v:.3g}" if a == 0 or 1e-3 <= a < 1e5 else f"{v:.2e}"
    return html.escape(str(v))


def _html_table(df: pd.DataFrame, colors: Mapping[str, str], sample_col: str = "sample") -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for rec in df.to_dict("records"):
        color = colors.get(str(rec.get(sample_col, "")), "#333333")
        cells = []
        for c in df.columns:
            style = f' style="color:{color};font-weight:bold"' if c == sample_col else ""
            cells.append(f"<td{style}>{_fmt(rec[c])}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_CSS = (
    "body{font-family:sans-serif;font-size:13px;margin:12px}"
    "table{border-collapse:collapse;margin:6px 0 18px}"
    "th,td{border:1px solid #ccc;padding:2px 6px;text-align:right}"
    "th{background:#f0f0f0;position:sticky;top:0}"
    "td:nth-child(-n+3){text-align:left}"
    "h2{font-size:15px;margin:14px 0 4px}p{margin:4px 0;color:#444}"
)


def overview_html(
    fovs: pd.DataFrame,
    samples: pd.DataFrame | None,
    colors: Mapping[str, str],
    title: str = "Overview",
) -> str:
    """The FOV table and the sample parameter table as one HTML page."""
    total = {c: int(fovs[c].sum()) for c in ("cells_detected", "cells_kept", "cells_marked_bad") if len(fovs)}
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body>"]
    parts.append(f"<h2>Every FOV ({len(fovs)})</h2>")
    if total:
        parts.append(
            f"<p>{total['cells_detected']} cells tracked, {total['cells_kept']} kept by the filters "
            f"(present in enough frames, away from the border), {total['cells_marked_bad']} of them "
            "marked bad (curation or unusable pixels). <i>reliable</i>: fits with status ok "
            "(successful fits where there is no status). Table: <code>qc/overview/fovs.csv</code>.</p>")
    parts.append(_html_table(fovs, colors))
    if samples is not None and len(samples):
        parts.append("<h2>Samples: fitted parameters</h2><p>Per sample over its cells' fits "
                     "(median and interquartile range; n cells). Table: "
                     "<code>qc/overview/samples.csv</code>.</p>")
        cols = ["sample", "model", "parameter", "unit", "n", "median", "q25", "q75", "meaning"]
        parts.append(_html_table(samples[[c for c in cols if c in samples.columns]], colors))
    parts.append("</body></html>")
    return "\n".join(parts)


def _panel_grid(n: int) -> tuple[int, int]:
    cols = max(1, min(10, math.ceil(math.sqrt(n))))
    return max(1, math.ceil(n / cols)), cols


def plot_fov_traces(
    results: Sequence[FovResults],
    path: str | os.PathLike,
    colors: Mapping[str, str],
    title: str = "",
) -> None:
    """One panel per FOV with all its traces (its ``value_col``) against time (h).

    Good cells are drawn in the sample's colour (at most
    :data:`MAX_TRACES_PER_PANEL`, the lowest ids), cells marked bad in grey, the
    median of the good cells per frame in black. Panels share no axes: each FOV
    is scaled to its own range.
    """
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    from pyama_flow.traces.curation import read_curated
    from pyama_flow.report.figures import save_figure

    rows, cols = _panel_grid(len(results))
    fig = Figure(figsize=(max(6.0, 1.9 * cols), max(3.0, 1.5 * rows + 0.5)), dpi=100, layout="constrained")
    if title:
        fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, res in zip(axes, results):
        df = read_curated(res.traces)
        color = colors.get(res.sample or "", "#333333")
        n_good = n_bad = 0
        value_col = res.value_col
        if len(df) and value_col in df.columns:
            df = df.sort_values(["cell", "frame"])
            t = df["time"].to_numpy(np.float64) / 60.0
            v = df[value_col].to_numpy(np.float64)
            cells = df["cell"].to_numpy()
            cut = np.flatnonzero(np.diff(cells)) + 1
            good_cell = df.groupby("cell", sort=True)["good"].any().to_numpy(bool)
            segs = [np.column_stack(p) for p in zip(np.split(t, cut), np.split(v, cut))]
            good = [s for s, g in zip(segs, good_cell) if g]
            bad = [s for s, g in zip(segs, good_cell) if not g]
            n_good, n_bad = len(good), len(bad)
            if bad:
                ax.add_collection(LineCollection(bad[:MAX_TRACES_PER_PANEL], colors="#aaaaaa", linewidths=0.5))
            if good:
                ax.add_collection(LineCollection(good[:MAX_TRACES_PER_PANEL], colors=color,
                                                 linewidths=0.5, alpha=0.35))
                gd = df[df["cell"].isin(df.loc[df["good"].astype(bool), "cell"].unique())]
                med = gd.groupby("frame").agg(time=("time", "first"), value=(value_col, "median"))
                ax.plot(med["time"] / 60.0, med["value"], color="black", lw=1.2)
            ax.autoscale_view()
        ax.set_title(f"{res.dataset} {int(res.fov):03d}: {n_good} cells"
                     + (f" (+{n_bad} bad)" if n_bad else ""), fontsize=7, color=color)
        ax.tick_params(labelsize=6, length=2)
    for ax in axes[len(results):]:
        ax.set_visible(False)
    save_figure(fig, os.fspath(path))


def plot_sample_comparison(table: pd.DataFrame, path: str | os.PathLike, colors: Mapping[str, str]) -> None:
    """Per parameter (one panel each): every sample's median with its IQR as an
    error bar, n beside it, on a log axis where the values span > 2 decades.

    ``table`` is a :func:`sample_table` (one model).
    """
    from matplotlib.figure import Figure

    from pyama_flow.report.figures import save_figure

    params = list(dict.fromkeys(table["parameter"])) if len(table) else []
    n = max(1, len(params))
    cols = min(3, n)
    rows = math.ceil(n / cols)
    samples = list(dict.fromkeys(table["sample"])) if len(table) else []
    height = max(3.0, 0.9 + 0.32 * max(2, len(samples)) * rows)
    fig = Figure(figsize=(max(6.0, 3.6 * cols), height), dpi=100, layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, p in zip(axes, params):
        g = table[table["parameter"] == p].set_index("sample").reindex(samples)
        y = np.arange(len(samples))[::-1]
        for yi, (s, r) in zip(y, g.iterrows()):
            if not np.isfinite(r["median"]):
                continue
            c = colors.get(s, "#333333")
            ax.errorbar(r["median"], yi, xerr=[[r["median"] - r["q25"]], [r["q75"] - r["median"]]],
                        fmt="o", color=c, ms=4, capsize=3)
            ax.annotate(f"n={int(r['n'])}", (r["median"], yi), xytext=(0, 5), textcoords="offset points",
                        ha="center", fontsize=6, color=c)
        lo, hi = np.nanmin(g["q25"].to_numpy(np.float64)), np.nanmax(g["q75"].to_numpy(np.float64))
        if np.isfinite(lo) and lo > 0 and hi / lo > 100:
            ax.set_xscale("log")
        ax.set_yticks(y, samples, fontsize=7)
        ax.set_ylim(-0.7, len(samples) - 0.3)
        unit = str(g["unit"].dropna().iloc[0]) if "unit" in g and g["unit"].notna().any() else ""
        ax.set_xlabel(f"{p} ({unit})" if unit else p, fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(alpha=0.25, lw=0.5, axis="x")
    for ax in axes[len(params):]:
        ax.set_visible(False)
    if not params:
        axes[0].text(0.5, 0.5, "no fitted parameters", ha="center", va="center")
    save_figure(fig, os.fspath(path))


__all__ = [
    "FOVS_PER_PAGE",
    "FovResults",
    "fov_table",
    "free_parameters",
    "overview_html",
    "plot_fov_traces",
    "plot_sample_comparison",
    "reliable",
    "sample_table",
]
