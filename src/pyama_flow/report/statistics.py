"""QC picture "per-frame statistics" (rule ``qc_frame_stats``): the table, its plot and its page.

The statistics themselves (mean, std, min, max, percentiles, saturated
pixels of every frame) are computed by the extract step, with numpy alone, in
:mod:`pyama_flow.io.framestats`. Here: the table as a DataFrame
(:func:`statistics_table`, :func:`write_statistics`, :func:`read_statistics`),
its plot over time (:func:`plot_frame_statistics`), its HTML page
(:func:`statistics_html`), and :func:`render_frame_statistics`, which writes both.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pyama_flow.io.framestats import STAT_COLUMNS
from pyama_flow.io.atomic import atomic_path, write_text
from pyama_flow.report.display import NO_SAMPLE_COLOR, channel_color
from pyama_flow.report.figures import (
    add_title,
    figure_with_header,
    fov_times,
    read_json,
    save_figure,
    time_unit,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure


# -- the table ----------------------------------------------------------------------


def statistics_table(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows of :func:`frame_statistics` as a table with :data:`STAT_COLUMNS`."""
    df = pd.DataFrame(list(rows), columns=STAT_COLUMNS)
    return df.astype({"frame": np.int64, "n_saturated": np.int64, "saturated": bool})


def write_statistics(df: pd.DataFrame, path: str) -> None:
    """The per-frame statistics table as CSV (6 decimals), written atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6f")


def read_statistics(path: str) -> pd.DataFrame:
    """Read a table written by :func:`write_statistics`."""
    return pd.read_csv(path)


# -- plot, page and render -------------------------------------------------------


def plot_frame_statistics(
    stats: pd.DataFrame,
    times_min: Sequence[float],
    title: str,
    line_color: Sequence[float] | str = "#1f77b4",
    color: str = NO_SAMPLE_COLOR,
) -> "Figure":
    """Per-frame statistics over time: level, spread and saturation.

    Top: mean ± std and median (bleaching, focus drift of phase contrast);
    middle: min, 1st, 99th percentile and max, with the dtype maximum when the
    data come near it; bottom: saturated pixels per frame. Frames with
    saturated pixels are marked red in every panel.
    """
    fig, head, body = figure_with_header(7.2, 6.2)
    axes = body.subplots(3, 1, sharex=True, height_ratios=[3, 3, 1.6])
    unit = time_unit(times_min)
    t = np.asarray(times_min, np.float64)[stats["frame"].to_numpy()] / unit[0]
    sat = stats["saturated"].to_numpy(bool)
    mean, std = stats["mean"].to_numpy(), stats["std"].to_numpy()
    ax = axes[0]
    ax.fill_between(t, mean - std, mean + std, color=line_color, alpha=0.18, lw=0, label="mean ± std")
    ax.plot(t, mean, color=line_color, lw=1.8, label="mean")
    ax.plot(t, stats["p50"], color="black", lw=1.0, ls="--", label="median")
    ax.set_ylabel("intensity (a.u.)")
    ax.legend(fontsize=7.5, loc="best", frameon=False, ncol=3)
    ax = axes[1]
    ax.plot(t, stats["max"], color="#d62728", lw=1.0, label="max")
    ax.plot(t, stats["p99"], color=line_color, lw=1.5, label="99th pct")
    ax.plot(t, stats["p1"], color=line_color, lw=1.5, ls=":", label="1st pct")
    ax.plot(t, stats["min"], color="#7f7f7f", lw=1.0, label="min")
    dmax = float(stats["dtype_max"].iloc[0]) if len(stats) else float("nan")
    if np.isfinite(dmax) and float(stats["max"].max()) >= 0.5 * dmax:
        ax.axhline(dmax, color="#d62728", ls="--", lw=0.8, label=f"dtype max {dmax:.0f}")
    ax.set_ylabel("intensity (a.u.)")
    ax.legend(fontsize=7.5, loc="best", frameon=False, ncol=5)
    ax = axes[2]
    ax.bar(t, stats["n_saturated"], width=(t[1] - t[0]) * 0.8 if len(t) > 1 else 1.0,
           color=np.where(sat, "#d62728", "#7f7f7f"))
    ax.set_ylabel("saturated\npixels")
    ax.set_ylim(0, max(1.0, float(stats["n_saturated"].max()) * 1.15) if len(stats) else 1.0)
    ax.yaxis.get_major_locator().set_params(integer=True)
    if not sat.any():
        ax.text(0.5, 0.5, "none", transform=ax.transAxes, ha="center", va="center", color="#7f7f7f")
    ax.set_xlabel(f"time ({unit[1]})")
    for a in axes:
        a.grid(alpha=0.25, lw=0.5)
        for ts in t[sat]:
            a.axvline(ts, color="#d62728", alpha=0.25, lw=2)
    n_sat = int(sat.sum())
    if np.isfinite(dmax):
        sub = (f"{n_sat} of {len(stats)} frames with saturated pixels (= {dmax:.0f})"
               if n_sat else f"no saturated pixels (dtype max {dmax:.0f}) in {len(stats)} frames")
    else:
        sub = f"{len(stats)} frames (float data: no saturation value)"
    add_title(head, title, sub, color)
    return fig


def statistics_html(stats: pd.DataFrame, times_min: Sequence[float], title: str) -> str:
    """The per-frame statistics as a self-contained HTML page, one table row per frame.

    Saturated frames are highlighted and counted in the heading.
    """
    cols = ["mean", "std", "min", "max", "p1", "p50", "p99"]
    head = ("<tr><th>frame</th><th>time (min)</th>"
            + "".join(f"<th>{c}</th>" for c in cols)
            + "<th>saturated pixels</th></tr>")
    # integer-valued columns (min, max, percentiles of integer data) without decimals
    integral = {c: bool(np.all(np.mod(stats[c].to_numpy(np.float64), 1.0) == 0)) for c in cols}
    body = []
    for row in stats.itertuples(index=False):
        cls = ' class="sat"' if row.saturated else ""
        t = times_min[int(row.frame)] if int(row.frame) < len(times_min) else float("nan")
        cells = "".join(
            f"<td>{getattr(row, c):.0f}</td>" if integral[c] else f"<td>{getattr(row, c):.2f}</td>"
            for c in cols
        )
        body.append(f"<tr{cls}><td>{int(row.frame)}</td><td>{t:.1f}</td>{cells}"
                    f"<td>{int(row.n_saturated)}</td></tr>")
    n_sat = int(stats["saturated"].sum())
    dmax = float(stats["dtype_max"].iloc[0]) if len(stats) else float("nan")
    note = (f"{n_sat} of {len(stats)} frames have saturated pixels (value {dmax:.0f})"
            if np.isfinite(dmax) else "float data: no saturation value")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; font-size: 13px; margin: 12px; color: #222; background: #fff; }}
h1 {{ font-size: 16px; margin: 0 0 4px 0; }}
p {{ margin: 0 0 8px 0; color: #555; }}
table {{ border-collapse: collapse; font-variant-numeric: tabular-nums; }}
th, td {{ padding: 2px 8px; text-align: right; border-bottom: 1px solid #e4e4e4; }}
th {{ position: sticky; top: 0; background: #f0f0f0; }}
tr.sat td {{ background: #fde0e0; color: #a00; font-weight: bold; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(note)}; intensities in a.u. (raw camera values), percentiles p1/p50/p99.</p>
<table id="frame-statistics">
<thead>{head}</thead>
<tbody>
{chr(10).join(body)}
</tbody>
</table>
</body></html>
"""


def render_frame_statistics(
    stats_path: str,
    metadata_path: str,
    fov: int,
    channel: int,
    png_path: str,
    html_path: str,
    title: str,
    phase: bool = False,
    color: str = NO_SAMPLE_COLOR,
) -> pd.DataFrame:
    """Plot and HTML table of a channel's per-frame statistics (from the extract step)."""
    meta = read_json(metadata_path)
    stats = read_statistics(stats_path)
    names = meta.get("channel_names", [])
    times = fov_times(meta, fov, len(stats))
    name = names[channel] if channel < len(names) else ""
    line = (0.2, 0.2, 0.2) if phase else tuple(0.7 * v for v in channel_color(name, channel))
    fig = plot_frame_statistics(stats, times, title, line, color)
    save_figure(fig, png_path)
    write_text(html_path, statistics_html(stats, times, title))
    return stats
