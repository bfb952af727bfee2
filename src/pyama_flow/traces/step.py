"""The traces step: per-cell features of every frame, filtered, in one table."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pyama_flow.io.base import InputError
from pyama_flow.io.source import open_frames
from pyama_flow.io.atomic import write_json
from pyama_flow.io.stacks import StackReader

if TYPE_CHECKING:
    import pandas as pd

    from pyama_flow.traces.features import TraceBuilder

# The step imports what only it needs inside the function: a job is its own
# process, and start-up (numba, pandas, scipy) is paid per job.

log = logging.getLogger("pyama_flow")

from pyama_flow.io.stacks import check_same_shape


def traces(
    labels_path: str,
    raw_paths: Mapping[int, str],
    background_paths: Mapping[int, str],
    metadata_path: str,
    out_path: str,
    fov: int,
    pc_channel: int,
    background_weight: float,
    min_frames: int,
    border: int,
    lineage_path: str | None = None,
    stats_path: str | None = None,
    expand_px: float = 0.0,
) -> pd.DataFrame:
    """Per-cell features of every frame, filtered as the reference, sorted by cell, frame.

    ``expand_px`` > 0 (``traces.measure: expanded``) sums ``intensity_total``
    over each cell's mask grown by that margin into its own territory
    (:func:`pyama_flow.traces.features.expand_labels`); 0 is PyAMA's in-mask sum.
    """
    from pyama_flow.traces.features import TraceBuilder, TraceFilter, write_traces

    times = _fov_times(metadata_path, fov)
    builder = TraceBuilder(fov, pc_channel, sorted(raw_paths), background_weight, expand_px)
    _measure_frames(builder, labels_path, raw_paths, background_paths, times, metadata_path)
    raw_table = builder.table(None)
    df = builder.table(TraceFilter(min_frames=min_frames, border=border))
    _warn_about_rows(builder, raw_table, df, out_path, min_frames, border)
    if lineage_path is not None:
        import pandas as pd

        from pyama_flow.tracking.lineage import join_lineage

        df = join_lineage(df, pd.read_csv(lineage_path))
    write_traces(df, out_path)
    if stats_path is not None:
        per_frame = raw_table.groupby("frame")["cell"].nunique()
        write_json(
            stats_path,
            {
                "fov": int(fov),
                "cells_detected": int(raw_table["cell"].nunique()),
                "cells_kept": int(df["cell"].nunique()),
                "rows_kept": int(len(df)),
                "cells_per_frame": [int(per_frame.get(t, 0)) for t in range(len(times))],
                "filters": {"min_frames": int(min_frames), "border": int(border)},
                "measure": {"mode": "expanded" if expand_px > 0 else "mask",
                            "expand_px": float(expand_px)},
            },
        )
    log.info("FOV %d: %d of %d cells kept by the filters (min_frames=%d, border=%d)",
             fov, df["cell"].nunique(), raw_table["cell"].nunique(), min_frames, border)
    return df


def _fov_times(metadata_path: str, fov: int) -> list[float]:
    """The time points (minutes) of one FOV from the dataset metadata.

    Parameters
    ----------
    metadata_path : str
        The dataset's ``metadata.json`` (``fov_times_min``: FOV -> minutes).
    fov : int
        FOV index.

    Returns
    -------
    list of float, one per frame.

    Raises
    ------
    InputError
        The metadata has no time points for ``fov``.
    """
    with open(metadata_path) as fh:
        meta = json.load(fh)
    try:
        return meta["fov_times_min"][str(fov)]
    except KeyError:
        raise InputError(f"{metadata_path}: no time points for FOV {fov}") from None


def _measure_frames(
    builder: TraceBuilder,
    labels_path: str,
    raw_paths: Mapping[int, str],
    background_paths: Mapping[int, str],
    times: list[float],
    metadata_path: str,
) -> None:
    """Add every frame of a FOV to ``builder``, streaming labels, raw frames and backgrounds.

    Parameters
    ----------
    builder : TraceBuilder
        Collects the per-frame features (its channels are ``sorted(raw_paths)``).
    labels_path : str
        Tracked label stack.
    raw_paths, background_paths : dict channel -> str
        Raw fluorescence stack and background tile models of each channel.
    times : list of float
        Time of each frame (minutes).
    metadata_path : str
        Where ``times`` come from (named when their count differs from the frames').

    Raises
    ------
    InputError
        A raw stack's frame shape, or the number of time points, differs from the labels'.
    """
    from pyama_flow.background import model as bgmod

    channels = sorted(raw_paths)
    labels = StackReader(labels_path)
    raws = {c: open_frames(raw_paths[c]) for c in channels}
    bgs = {c: bgmod.BackgroundModels(background_paths[c]) for c in channels}
    try:
        for c in channels:
            check_same_shape(labels, raws[c])
        if len(times) != len(labels):
            raise InputError(
                f"{metadata_path}: FOV {builder.fov} has {len(times)} time points but "
                f"{labels_path} has {len(labels)} frames; they come from different inputs: "
                "delete this FOV's results and rerun"
            )
        for t in range(len(labels)):
            builder.add_frame(
                t,
                times[t],
                labels[t],
                {c: raws[c][t] for c in channels},
                {c: bgs[c].spline(t) for c in channels},
            )
    finally:
        labels.close()
        for r in raws.values():
            r.close()


def _warn_about_rows(builder: TraceBuilder, raw_table: pd.DataFrame, df: pd.DataFrame, out_path: str,
                     min_frames: int, border: int) -> None:
    """Log the rows with NaN / inf or saturated pixels, and a FOV left without cells.

    Parameters
    ----------
    builder : TraceBuilder
        The FOV's builder, after every frame was added (its row counts and frames).
    raw_table, df : DataFrame
        The traces table before and after the filters.
    out_path : str
        The traces file (named when it has no rows).
    min_frames, border : int
        The filters (named when they removed every cell).
    """
    fov = builder.fov
    if builder.invalid_rows:
        log.warning(
            "FOV %d: %d cell rows in %d frames (first: frame %d) cover NaN/inf pixels of the "
            "input or background; their intensity_total leaves those pixels out and they "
            "are marked good=False (not fitted, not merged)",
            fov, builder.invalid_rows, len(builder.invalid_frames), builder.invalid_frames[0],
        )
    if builder.saturated_rows:
        log.warning(
            "FOV %d: %d cell rows in %d frames (first: frame %d) have fluorescence pixels at the "
            "dtype's maximum (saturated): their intensity_total is only a lower bound",
            fov, builder.saturated_rows, len(builder.saturated_frames), builder.saturated_frames[0],
        )
    if raw_table.empty:
        log.warning("FOV %d: no cells in any frame (blank or unsegmentable phase channel?); "
                    "%s has the columns and no rows", fov, out_path)
    elif df.empty:
        log.warning("FOV %d: all %d cells removed by the filters (min_frames=%d, border=%d); "
                    "%s has the columns and no rows",
                    fov, raw_table["cell"].nunique(), min_frames, border, out_path)
