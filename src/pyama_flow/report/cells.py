"""QC picture "cells, tracks and filters" (rule ``qc_cells``) of one FOV.

:func:`plot_cells` draws cells per frame (tracked and kept), the track
lengths and the fraction of cells the filters keep; :func:`render_cells`
reads the trace step's outputs and writes the picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pyama_flow.report.display import NO_SAMPLE_COLOR
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


def plot_cells(
    cells_per_frame: Sequence[int],
    kept_per_frame: Sequence[int],
    track_lengths: Sequence[int],
    n_detected: int,
    n_kept: int,
    min_frames: int,
    border: int,
    times_min: Sequence[float],
    title: str,
    color: str = NO_SAMPLE_COLOR,
    curation: str = "",
) -> "Figure":
    """Cells per frame, track lengths and the fraction of cells the filters keep.

    ``curation`` is a line on the FOV's curation decisions (:func:`pyama_flow.traces.curation.curation_note`),
    shown under the subtitle (in red when some decisions are stale) when not empty.
    """
    fig, head, body = figure_with_header(11.0, 3.4, 0.75 if curation else 0.5)
    axes = body.subplots(1, 3, width_ratios=[3, 2.2, 1.5])
    unit = time_unit(times_min)
    t = np.asarray(times_min, np.float64) / unit[0]
    ax = axes[0]
    ax.plot(t[: len(cells_per_frame)], cells_per_frame, color="#b0b0b0", lw=4.0, label="tracked")
    ax.plot(t[: len(kept_per_frame)], kept_per_frame, color=color, lw=1.8, label="kept by filters")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel(f"time ({unit[1]})")
    ax.set_ylabel("cells per frame")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(alpha=0.25, lw=0.5)
    ax = axes[1]
    lengths = np.asarray(track_lengths, np.int64)
    n_frames = len(times_min)
    bins = np.arange(0, max(n_frames, int(lengths.max()) if lengths.size else 1) + 2) - 0.5
    if n_frames > 60:
        bins = np.linspace(0.5, n_frames + 0.5, 41)
    ax.hist(lengths, bins=bins, color=color, alpha=0.85)
    ax.axvline(min_frames - 0.5, color="#d62728", ls="--", lw=1.0, label=f"min_frames = {min_frames}")
    ax.set_xlabel("track length (frames)")
    ax.set_ylabel("tracks")
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    ax.grid(alpha=0.25, lw=0.5)
    ax = axes[2]
    frac = n_kept / n_detected if n_detected else 0.0
    ax.bar([0, 1], [n_detected, n_kept], color=["#7f7f7f", color], width=0.6)
    ax.set_xticks([0, 1], ["tracked", "kept"])
    ax.set_ylabel("cells")
    ax.set_title(f"{frac:.0%} kept", fontsize=10)
    for x, v in ((0, n_detected), (1, n_kept)):
        ax.text(x, v, str(v), ha="center", va="bottom", fontsize=9)
    ax.set_ylim(0, max(n_detected, 1) * 1.18)
    ax.grid(alpha=0.25, lw=0.5, axis="y")
    add_title(head, title, f"{n_kept} of {n_detected} cells kept by the filters "
           f"(present in >= {min_frames} frames, bounding box > {border} px from the border)"
, color)
    if curation:
        head.text(0.008, 0.16, curation, ha="left", va="top", fontsize=8.5,
                  color="#d62728" if "STALE" in curation else "#444444")
    return fig


def render_cells(
    trace_stats_path: str,
    tracks_path: str,
    traces_path: str,
    metadata_path: str,
    fov: int,
    out_path: str,
    title: str,
    color: str = NO_SAMPLE_COLOR,
) -> dict[str, Any]:
    """Cells per frame, track lengths and fraction kept of one FOV.

    Returns
    -------
    dict with ``cells_per_frame``, ``kept_per_frame``, ``n_detected``, ``n_kept``
    and ``curation`` (the line on the FOV's curation decisions shown in the figure).
    """
    from pyama_flow.traces.curation import curation_note

    meta = read_json(metadata_path)
    st = read_json(trace_stats_path)
    tracks = pd.read_csv(tracks_path)
    kept = pd.read_csv(traces_path, usecols=["cell", "frame"])
    per_frame = list(st["cells_per_frame"])
    n = len(per_frame)
    counts = kept.groupby("frame")["cell"].nunique()
    kept_per_frame = [int(counts.get(t, 0)) for t in range(n)]
    lengths = (tracks["last_frame"] - tracks["first_frame"] + 1).to_numpy(np.int64)
    times = fov_times(meta, fov, n)
    filters = st.get("filters", {})
    note = curation_note(traces_path)
    fig = plot_cells(per_frame, kept_per_frame, lengths, int(st["cells_detected"]),
                     int(st["cells_kept"]), int(filters.get("min_frames", 0)),
                     int(filters.get("border", 0)), times, title, color, note)
    save_figure(fig, out_path)
    return {"cells_per_frame": per_frame, "kept_per_frame": kept_per_frame,
            "n_detected": int(st["cells_detected"]), "n_kept": int(st["cells_kept"]),
            "curation": note}
