"""QC picture "raw frames" (rule ``qc_frames``): each channel's first, middle and last frame.

:func:`plot_frame_sheet` draws a sheet of thumbnails (one row per channel and
the composite, one column per frame); ``pyama-flow thumbnail`` uses it too.
:func:`render_frames` reads the frames shown and writes the sheet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pyama_flow.io.source import open_frames
from pyama_flow.report.display import (
    NO_SAMPLE_COLOR,
    PHASE_COLOR,
    THUMB_SIDE,
    channel_color,
    composite,
    downsample,
    gray_to_rgb,
    percentile_stretch,
    select_frames,
    stretch_limits,
    thumbnail_factor,
)
from pyama_flow.report.figures import (
    add_scale_bar,
    add_title,
    figure_with_header,
    format_time,
    fov_times,
    image_axes_style,
    read_json,
    save_figure,
    time_unit,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure


def plot_frame_sheet(
    rows: Sequence[Mapping[str, Any]],
    times_min: Sequence[float] | None,
    frame_indices: Sequence[int],
    title: str,
    pixel_size_um: float | None = None,
    factor: int = 1,
    color: str = NO_SAMPLE_COLOR,
    subtitle: str = "contrast: 1st-99th percentile of the frames shown, per channel",
) -> "Figure":
    """Thumbnails: one row per channel (and the composite), one column per frame.

    Parameters
    ----------
    rows : sequence of dict
        ``name`` (row label), ``images`` (one float RGB or uint8 image per
        frame), and optionally ``limits`` (display range in a.u.) and
        ``rgb`` (colour of the black -> colour bar drawn beside the row).
    times_min : sequence of float or None
        Time of every frame of the stack (minutes); ``None`` when unknown.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LinearSegmentedColormap, Normalize

    n_rows, n_cols = len(rows), len(frame_indices)
    h, w = np.asarray(rows[0]["images"][0]).shape[:2]
    panel_in = max(w, h) / 100.0
    fig, head, body = figure_with_header(max(n_cols * panel_in * w / max(w, h) + 1.4, 5.5),
                              n_rows * panel_in * h / max(w, h) + 0.35 + 0.05 * n_rows)
    axes = body.subplots(n_rows, n_cols, squeeze=False)
    unit = time_unit(times_min) if times_min is not None else (1.0, "min")
    for r, row in enumerate(rows):
        for k, t in enumerate(frame_indices):
            ax = axes[r, k]
            img = np.asarray(row["images"][k])
            if img.ndim == 2:
                ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            else:
                ax.imshow(img, interpolation="nearest")
            image_axes_style(ax)
            if r == 0:
                when = f" · t = {format_time(times_min[t], unit)}" if times_min is not None else ""
                ax.set_title(f"frame {t}{when}", fontsize=9)
            if k == 0:
                ax.set_ylabel(row["name"], fontsize=9)
            if r == 0 and k == 0:
                add_scale_bar(ax, w, h, factor, pixel_size_um)
        if row.get("limits") is not None:
            lo, hi = row["limits"]
            cmap = LinearSegmentedColormap.from_list("ch", [(0, 0, 0), tuple(row.get("rgb", PHASE_COLOR))])
            cb = body.colorbar(ScalarMappable(Normalize(lo, hi), cmap), ax=axes[r, :].tolist(),
                              fraction=0.04, pad=0.01, aspect=12)
            cb.set_label("a.u.", fontsize=8)
            cb.ax.tick_params(labelsize=7)
    add_title(head, title, subtitle, color)
    return fig


def channel_label(names: Sequence[str], c: int) -> str:
    """``"GFP (ch 1)"``: a channel's name and index."""
    name = names[c] if 0 <= c < len(names) else f"channel {c}"
    return f"{name} (ch {c})"


def render_frames(
    raw_paths: Mapping[int, str],
    metadata_path: str,
    fov: int,
    phase_channel: int,
    out_path: str,
    title: str,
    color: str = NO_SAMPLE_COLOR,
    max_side: int = THUMB_SIDE,
) -> list[int]:
    """Thumbnail sheet of one FOV: each channel's first, middle and last frame, and the composite.

    Reads only the frames shown. Each channel is stretched to the 1st-99th
    percentile of its shown frames; the composite adds phase contrast (grey,
    half weight) and each fluorescence channel in its colour.

    Returns
    -------
    The frame indices shown.
    """
    meta = read_json(metadata_path)
    names = meta.get("channel_names", [])
    channels = sorted(raw_paths)
    readers = {c: open_frames(raw_paths[c]) for c in channels}
    try:
        n = len(readers[channels[0]])
        idx = select_frames(n)
        factor = thumbnail_factor(readers[channels[0]].shape, max_side)
        rows, comp_frames, comp_colors, comp_weights = [], [], [], []
        fl_rank = 0
        for c in channels:
            frames = [readers[c][t] for t in idx]
            limits = stretch_limits(frames)
            small = [percentile_stretch(downsample(f, factor), limits=limits) for f in frames]
            is_phase = c == phase_channel
            rgb = channel_color(names[c] if c < len(names) else "", fl_rank, phase=is_phase)
            if not is_phase:
                fl_rank += 1
            rows.append({"name": channel_label(names, c), "images": [gray_to_rgb(s, rgb) for s in small],
                         "limits": limits, "rgb": rgb})
            comp_frames.append(small)
            comp_colors.append(rgb)
            comp_weights.append(0.5 if is_phase else 1.0)
    finally:
        for r in readers.values():
            r.close()
    if len(channels) > 1:
        comps = [composite([f[k] for f in comp_frames], comp_colors, comp_weights) for k in range(len(idx))]
        legend = " + ".join(
            f"{names[c] if c < len(names) else c}" + (" (grey)" if c == phase_channel else "")
            for c in channels
        )
        rows.append({"name": f"composite\n{legend}", "images": comps})
    times = fov_times(meta, fov, n)
    fig = plot_frame_sheet(rows, times, idx, title, meta.get("pixel_size_um"), factor, color)
    save_figure(fig, out_path, palette=True)
    return idx
