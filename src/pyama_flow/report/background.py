"""QC picture "background" (rule ``qc_background``): raw frame, background model, difference.

:func:`plot_background` draws them for the first, middle and last frame;
:func:`render_background` reads those frames and the background models of
:mod:`pyama_flow.background` and writes the picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from pyama_flow.io.source import open_frames
from pyama_flow.report.display import (
    NO_SAMPLE_COLOR,
    downsample,
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


def plot_background(
    raw: Sequence[np.ndarray],
    background: Sequence[np.ndarray],
    times_min: Sequence[float],
    frame_indices: Sequence[int],
    title: str,
    limits: tuple[float, float],
    factor: int = 1,
    pixel_size_um: float | None = None,
    color: str = NO_SAMPLE_COLOR,
) -> "Figure":
    """Raw frame, its background and raw - background, one row per frame.

    Raw and background share one display range (``limits``, a.u.) so the
    background can be compared with the raw frame by eye; the difference is
    shown on a symmetric range around 0 (blue below, red above).
    """
    n = len(frame_indices)
    h, w = np.asarray(raw[0]).shape
    side = min(max(w, h), 260) / 100.0
    fig, head, body = figure_with_header(3 * side * w / max(w, h) + 1.9, n * side * h / max(w, h) + 0.4)
    gs = body.add_gridspec(n, 5, width_ratios=[1, 1, 0.07, 1, 0.07])
    axes = np.array([[body.add_subplot(gs[k, j]) for j in (0, 1, 3)] for k in range(n)])
    cax_raw, cax_diff = body.add_subplot(gs[:, 2]), body.add_subplot(gs[:, 4])
    unit = time_unit(times_min)
    diffs = [np.asarray(r, np.float32) - np.asarray(b, np.float32) for r, b in zip(raw, background)]
    dlim = max(float(np.percentile(np.abs(np.concatenate([d.ravel() for d in diffs])), 99)), 1e-6)
    lo, hi = limits
    im_raw = im_diff = None
    for k, t in enumerate(frame_indices):
        im_raw = axes[k, 0].imshow(raw[k], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        axes[k, 1].imshow(background[k], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        im_diff = axes[k, 2].imshow(diffs[k], cmap="RdBu_r", vmin=-dlim, vmax=dlim, interpolation="nearest")
        for ax in axes[k]:
            image_axes_style(ax)
        axes[k, 0].set_ylabel(f"frame {t}\nt = {format_time(times_min[t], unit)}", fontsize=9)
        if k == 0:
            for ax, name in zip(axes[0], ("raw", "background", "raw − background")):
                ax.set_title(name, fontsize=9)
            add_scale_bar(axes[0, 0], w, h, factor, pixel_size_um)
    cb = body.colorbar(im_raw, cax=cax_raw)
    cb.set_label("intensity (a.u.)", fontsize=8)
    cb.ax.tick_params(labelsize=7)
    cb2 = body.colorbar(im_diff, cax=cax_diff)
    cb2.set_label("difference (a.u.)", fontsize=8)
    cb2.ax.tick_params(labelsize=7)
    add_title(head, title, f"raw and background on one scale ({lo:.0f}-{hi:.0f} a.u., 1st-99th "
           "percentile of the raw frames)", color)
    return fig


def render_background(
    raw_path: str,
    background_path: str,
    metadata_path: str,
    fov: int,
    channel: int,
    out_path: str,
    title: str,
    color: str = NO_SAMPLE_COLOR,
    max_side: int = 260,
) -> list[int]:
    """Raw frame beside its background model (and the difference), three frames."""
    from pyama_flow.background.model import BackgroundModels

    meta = read_json(metadata_path)
    bgs = BackgroundModels(background_path)
    with open_frames(raw_path) as raw:
        n = len(raw)
        idx = select_frames(n)
        factor = thumbnail_factor(raw.shape, max_side)
        frames = [raw[t] for t in idx]
        limits = stretch_limits(frames)
        raw_small = [downsample(f, factor) for f in frames]
        bg_small = [downsample(bgs[t], factor) for t in idx]
    times = fov_times(meta, fov, n)
    fig = plot_background(raw_small, bg_small, times, idx, title, limits, factor,
                          meta.get("pixel_size_um"), color)
    save_figure(fig, out_path, palette=True)
    return idx
