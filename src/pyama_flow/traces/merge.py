"""Merge per-FOV traces into per-sample tables (SPEC step 7)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from pyama_flow.io.atomic import atomic_path
from pyama_flow.traces.curation import read_curated

MERGE_COLUMNS = ["time", "fov", "cell", "value"]
_NOT_FEATURES = {"centroid_x", "centroid_y"}


def feature_columns(df: pd.DataFrame) -> list[str]:
    """The ``{feature}_ch_{c}`` columns of a traces table."""
    return [c for c in df.columns if "_ch_" in c and c not in _NOT_FEATURES]


def long_table(traces: pd.DataFrame, column: str) -> pd.DataFrame:
    """``time, fov, cell, value`` of one feature column; rows with good = false dropped."""
    good = traces[traces["good"].astype(bool)] if "good" in traces else traces
    out = good[["time", "fov", "cell", column]].rename(columns={column: "value"})
    return out.sort_values(["fov", "cell", "time"], kind="stable").reset_index(drop=True)


def merge_sample(trace_paths: Iterable[str]) -> pd.DataFrame:
    """Concatenate FOV traces tables (each already sorted by cell, frame)."""
    frames = [read_curated(p) for p in trace_paths]
    frames = [f for f in frames if len(f.columns)]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True).sort_values(
        ["fov", "cell", "frame"], kind="stable"
    ).reset_index(drop=True)


def write_sample_tables(
    sample: str, trace_paths: Sequence[str], out_paths: dict[str, str]
) -> None:
    """Write ``{sample}_{feature}_ch_{c}.csv`` for each requested feature column.

    ``out_paths`` maps a feature column (``intensity_total_ch_1``) to its file.
    """
    df = merge_sample(trace_paths)
    for column, path in out_paths.items():
        if column not in df.columns:
            table = pd.DataFrame(columns=MERGE_COLUMNS)
        else:
            table = long_table(df, column)
        with atomic_path(path) as tmp:
            table.to_csv(tmp, index=False, float_format="%.6f")


def tidy_traces(
    sample_of: dict[tuple[str, int], str],
    trace_paths: dict[tuple[str, int], str],
    channel_names: dict[str, list[str]] | None = None,
) -> pd.DataFrame:
    """One long table of every trace value of the experiment.

    Columns: ``sample, dataset, fov, cell, frame, time, good, feature, channel,
    channel_name, value``; ``channel_name`` is the dataset's name of the
    channel (``channel_names[dataset][channel]``, from its metadata), empty
    where unknown.
    """
    parts = []
    for key in sorted(trace_paths):
        dataset, fov = key
        df = read_curated(trace_paths[key])
        if df.empty:
            continue
        feats = feature_columns(df)
        long = df.melt(
            id_vars=["fov", "cell", "frame", "time", "good"],
            value_vars=feats,
            var_name="column",
            value_name="value",
        )
        split = long["column"].str.rsplit("_ch_", n=1, expand=True)
        long["feature"] = split[0]
        long["channel"] = split[1].astype(int)
        names = (channel_names or {}).get(dataset, [])
        long["channel_name"] = [names[c] if 0 <= c < len(names) else "" for c in long["channel"]]
        long["dataset"] = dataset
        long["sample"] = sample_of.get(key, "")
        parts.append(long.drop(columns="column"))
    cols = ["sample", "dataset", "fov", "cell", "frame", "time", "good", "feature", "channel", "channel_name",
            "value"]
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, ignore_index=True)[cols]
    return out.sort_values(["dataset", "fov", "cell", "feature", "channel", "frame"],
                           kind="stable").reset_index(drop=True)
