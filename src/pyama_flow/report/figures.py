"""Matplotlib plumbing shared by the QC pictures: layout, titles, scale bar, time axis, saving.

Every QC picture is a :func:`figure_with_header` (a header strip for
:func:`add_title` above the panels), drawn with matplotlib's object API (no
pyplot state, imported lazily) and written by :func:`save_figure`. The
``render_*`` functions read a dataset's ``metadata.json`` with
:func:`read_json` and the frame times from it with :func:`fov_times`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pyama_flow.io.atomic import atomic_path
from pyama_flow.report.display import NO_SAMPLE_COLOR

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


# -- figure, axes, title, saving ----------------------------------------------


def figure_with_header(width_in: float, body_height_in: float,
                       header_in: float = 0.5) -> tuple["Figure", Any, Any]:
    """A figure, its header strip (for :func:`add_title`) and its body (sub)figure for the panels."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, body_height_in + header_in), dpi=100, layout="constrained")
    fig.get_layout_engine().set(w_pad=0.02, h_pad=0.02, wspace=0.01, hspace=0.01)
    head, body = fig.subfigures(2, 1, height_ratios=[header_in, body_height_in])
    return fig, head, body


def save_figure(fig: "Figure", path: str, palette: bool = False) -> None:
    """Write a figure as PNG at 100 dpi on white, atomically.

    Parameters
    ----------
    palette : bool
        Quantise to an 8-bit palette (256 colours): 3-6x smaller, for sheets
        of noisy images where the exact grey level does not matter.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    fig.set_facecolor("white")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    image = Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3])
    if palette:
        image = image.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    with atomic_path(path) as tmp:
        # palette images are small: the best compression costs little there
        image.save(tmp, format="PNG", compress_level=9 if palette else 6)


def image_axes_style(ax: "Axes") -> None:
    """An image panel: no ticks, no frame."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def scale_bar_um(width_px: int, pixel_size_um: float) -> float:
    """A round scale-bar length (µm) close to a fifth of the frame width."""
    target = width_px * pixel_size_um / 5.0
    nice = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000]
    return float(min(nice, key=lambda v: abs(math.log(v / target))))


def add_scale_bar(ax: "Axes", width_px: int, height_px: int, factor: int,
                  pixel_size_um: float | None) -> None:
    """White bar with its length in µm in the lower right corner of an image panel."""
    if not pixel_size_um:
        return
    import matplotlib.patheffects as pe
    from matplotlib.patches import Rectangle

    um = scale_bar_um(width_px * factor, pixel_size_um)
    length = um / pixel_size_um / factor
    x1 = width_px * 0.96
    y = height_px * 0.94
    bar_h = max(height_px * 0.012, 1.5)
    ax.add_patch(Rectangle((x1 - length, y - bar_h), length, bar_h, color="white", ec="black", lw=0.5))
    ax.text(x1 - length / 2, y - bar_h * 1.8, f"{um:g} µm", color="white", ha="center",
            va="bottom", fontsize=8, path_effects=[pe.withStroke(linewidth=2, foreground="black")])


def add_title(head: Any, title: str, subtitle: str = "", color: str = NO_SAMPLE_COLOR) -> None:
    """Bold title in the sample's colour and a smaller grey subtitle in the header strip."""
    head.text(0.008, 0.92, title, ha="left", va="top", fontsize=11, fontweight="bold", color=color)
    if subtitle:
        head.text(0.008, 0.40, subtitle, ha="left", va="top", fontsize=8.5, color="#444444")


# -- time axis -----------------------------------------------------------------


def time_unit(times_min: Sequence[float]) -> tuple[float, str]:
    """Divisor and unit for a time axis: hours beyond 3 h of imaging, else minutes."""
    span = float(np.nanmax(times_min)) if len(times_min) else 0.0
    return (60.0, "h") if span > 180.0 else (1.0, "min")


def format_time(t_min: float, unit: tuple[float, str]) -> str:
    """``t`` in the unit of :func:`time_unit` (``"3.5 h"``, ``"40 min"``)."""
    div, name = unit
    return f"{t_min / div:.1f} {name}" if name == "h" else f"{t_min:.0f} {name}"


# -- inputs and titles of the render_* functions -------------------------------


def fov_times(metadata: Mapping[str, Any], fov: int, n_frames: int) -> list[float]:
    """Time (min) of each of a FOV's frames from its metadata; the frame index when unknown."""
    times = metadata.get("fov_times_min", {}).get(str(int(fov)))
    if times is None or len(times) != n_frames:
        return [float(t) for t in range(n_frames)]
    return [float(t) for t in times]


def read_json(path: str) -> Any:
    """A JSON file (``metadata.json``, ``trace_stats.json``) as Python objects."""
    with open(path) as fh:
        return json.load(fh)


def fov_title(dataset: str, fov: int | str, what: str, sample: str | None = None) -> str:
    """``"demo · FOV 000 · raw frames · sample control"``: the title of a FOV's QC figure."""
    title = f"{dataset} · FOV {int(fov):03d} · {what}"
    return f"{title} · sample {sample}" if sample else title
