"""QC picture "cell outlines and track ids" (rule ``qc_outlines``) over phase contrast.

:func:`plot_outlines` draws each tracked cell's outline and id in its track's
colour at the first, middle and last frame; :func:`render_outlines` reads
those frames and their labels and writes the picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from pyama_flow.io.source import open_frames
from pyama_flow.io.stacks import StackReader
from pyama_flow.report.display import (
    NO_SAMPLE_COLOR,
    THUMB_SIDE,
    downsample,
    downsample_labels,
    draw_outlines,
    gray_to_rgb,
    label_centroids,
    percentile_stretch,
    select_frames,
    stretch_limits,
    thumbnail_factor,
    track_color,
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


def plot_outlines(
    phase8: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    centroids: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    times_min: Sequence[float],
    frame_indices: Sequence[int],
    title: str,
    factor: int = 1,
    pixel_size_um: float | None = None,
    color: str = NO_SAMPLE_COLOR,
    max_ids: int = 250,
) -> "Figure":
    """Phase contrast with every cell's outline and track id, one panel per frame.

    ``labels`` are the (down-sampled) tracked labels drawn as outlines;
    ``centroids`` are ``(ids, y, x)`` in the down-sampled pixel grid. Outline
    and id share the track's colour (:func:`track_color`), the same in every
    panel, so an id switch shows as a colour change.
    """
    import matplotlib.patheffects as pe

    n = len(frame_indices)
    h, w = np.asarray(phase8[0]).shape
    panel_in = max(w, h) / 100.0
    fig, head, body = figure_with_header(n * panel_in * w / max(w, h) + 0.2, panel_in * h / max(w, h) + 0.35)
    axes = body.subplots(1, n, squeeze=False)[0]
    unit = time_unit(times_min)
    font = 8 if w >= 250 else 6
    for k, t in enumerate(frame_indices):
        ax = axes[k]
        rgb = draw_outlines(gray_to_rgb(phase8[k]) * 0.85, labels[k])
        ax.imshow(rgb, interpolation="nearest")
        image_axes_style(ax)
        ids, cy, cx = centroids[k]
        ax.set_title(f"frame {t} · t = {format_time(times_min[t], unit)} · {len(ids)} cells", fontsize=9)
        if len(ids) <= max_ids:
            for i, y, x in zip(ids, cy, cx):
                light = tuple(0.45 * v + 0.55 for v in track_color(int(i)))
                ax.text(x, y, str(int(i)), color=light, fontsize=font, ha="center",
                        va="center", fontweight="bold",
                        path_effects=[pe.withStroke(linewidth=2.2, foreground="black")])
        if k == 0:
            add_scale_bar(ax, w, h, factor, pixel_size_um)
    sub = "outline and id coloured per track (same colour = same cell in every frame)"
    if any(len(c[0]) > max_ids for c in centroids):
        sub += f"; ids omitted in frames with more than {max_ids} cells"
    add_title(head, title, sub, color)
    return fig


def render_outlines(
    phase_path: str,
    labels_path: str,
    metadata_path: str,
    fov: int,
    out_path: str,
    title: str,
    color: str = NO_SAMPLE_COLOR,
    max_side: int = THUMB_SIDE,
) -> list[int]:
    """Tracked cell outlines and ids over phase contrast at the first, middle and last frame."""
    meta = read_json(metadata_path)
    with open_frames(phase_path) as ph, StackReader(labels_path) as lab:
        n = len(lab)
        idx = select_frames(n)
        factor = thumbnail_factor(lab.shape, max_side)
        frames = [ph[t] for t in idx]
        limits = stretch_limits(frames)
        phase8 = [percentile_stretch(downsample(f, factor), limits=limits) for f in frames]
        labels_small, cents = [], []
        for t in idx:
            full = lab[t]
            labels_small.append(downsample_labels(full, factor))
            ids, cy, cx = label_centroids(full)
            cents.append((ids, (cy + 0.5) / factor - 0.5, (cx + 0.5) / factor - 0.5))
    times = fov_times(meta, fov, n)
    fig = plot_outlines(phase8, labels_small, cents, times, idx, title, factor,
                        meta.get("pixel_size_um"), color)
    save_figure(fig, out_path, palette=True)
    return idx
