"""A FOV's results as napari layers: raw frames, tracked labels and tracks.

Nothing here imports napari: :func:`fov_layers` returns napari's "layer data
tuples" ``(data, kwargs, layer_type)``, which ``pyama-flow napari FOV_DIR``
(or three lines of Python, README "Outputs") hands to a napari viewer::

    import napari
    from pyama_flow.viewer.napari_layers import fov_layers

    viewer = napari.Viewer()
    for data, kwargs, kind in fov_layers("results/demo/fov_000"):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    napari.run()

Frames stay on disk: image and labels data are :class:`LazyStack` objects
that read only the frames napari asks for (one per time step shown), so a
2048² x 180-frame FOV opens with a few frames in memory. Axes are (T, Y, X)
with the stack's pixel size as the Y/X scale (µm, where recorded) and frames
as T, so the layers and the tracks (``traces.csv`` centroids, ``tracks.csv``
parents as the lineage graph) overlay.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pyama_flow.io.source import open_frames
from pyama_flow.io.stacks import FrameStack, StackReader

LayerData = tuple[Any, dict[str, Any], str]


class LazyStack:
    """A (T, Y, X) array-like over a :class:`FrameStack` that reads frames on indexing.

    Supports what napari uses: ``shape``, ``dtype``, ``ndim``, ``len``,
    ``[key]`` with NumPy basic indexing (ints, slices, Ellipsis) and
    ``np.asarray`` (every frame: small stacks only).
    """

    def __init__(self, stack: FrameStack) -> None:
        self.stack = stack
        self.shape: tuple[int, int, int] = tuple(int(s) for s in stack.shape)  # type: ignore[assignment]
        self.dtype = np.dtype(stack.dtype)
        self.ndim = 3

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = next(i for i, k in enumerate(key) if k is Ellipsis)
            key = key[:i] + (slice(None),) * (3 - len(key) + 1) + key[i + 1:]
        first, rest = (key[0], key[1:]) if key else (slice(None), ())
        if isinstance(first, (int, np.integer)):
            return self.stack[int(first)][rest]
        if not isinstance(first, slice):
            raise TypeError(f"LazyStack: unsupported index {first!r} on the T axis")
        frames = [self.stack[t][rest] for t in range(*first.indices(len(self)))]
        if frames:
            return np.stack(frames)
        return np.zeros((0, *self.shape[1:]), self.dtype)[(slice(None), *rest)]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def close(self) -> None:
        self.stack.close()


def _scale(stack: FrameStack) -> tuple[float, float, float]:
    """(T, Y, X) scale: frames, and the pixel size in µm where recorded (else 1 px)."""
    px = stack.calibration.pixel_size_um or 1.0
    return (1.0, px, px)


def _contrast(frame: np.ndarray) -> list[float]:
    """1st-99.8th percentile of a frame (napari would otherwise read every frame)."""
    finite = frame[np.isfinite(frame)] if frame.dtype.kind == "f" else frame
    if finite.size == 0:
        return [0.0, 1.0]
    lo, hi = np.percentile(finite, [1.0, 99.8])
    return [float(lo), float(hi) if hi > lo else float(lo) + 1.0]


def track_data(fov_dir: str | os.PathLike) -> tuple[np.ndarray, dict[int, list[int]], dict[str, np.ndarray]]:
    """napari Tracks data from ``traces.csv`` (and ``tracks.csv`` where present).

    Returns
    -------
    data : (N, 4) float64
        ``cell, frame, centroid_y, centroid_x`` sorted by cell then frame.
    graph : dict
        ``{cell: [parent]}`` for cells whose parent is in ``tracks.csv``.
    properties : dict
        ``good`` per row (1.0 / 0.0).
    """
    fov_dir = Path(fov_dir)
    traces = pd.read_csv(fov_dir / "traces.csv",
                         usecols=["cell", "frame", "centroid_x", "centroid_y", "good"])
    traces = traces.sort_values(["cell", "frame"], kind="stable")
    data = traces[["cell", "frame", "centroid_y", "centroid_x"]].to_numpy(np.float64)
    graph: dict[int, list[int]] = {}
    tracks_csv = fov_dir / "tracks.csv"
    if tracks_csv.is_file():
        tracks = pd.read_csv(tracks_csv, usecols=["cell", "parent"])
        present = set(traces["cell"].astype(int))
        for cell, parent in zip(tracks["cell"].astype(int), tracks["parent"].astype(int), strict=True):
            if parent > 0 and cell in present and parent in present:
                graph[cell] = [parent]
    good = traces["good"].astype(str).str.lower().isin(["true", "1", "1.0"]).to_numpy(np.float64)
    return data, graph, {"good": good}


def fov_layers(fov_dir: str | os.PathLike) -> list[LayerData]:
    """Layer data tuples of one FOV: every ``raw_ch{c}`` (``.tif`` or ``.json``), ``labels.tif``, tracks.

    Raises
    ------
    FileNotFoundError
        ``fov_dir`` has none of these files.
    """
    fov_dir = Path(fov_dir)
    layers: list[LayerData] = []
    raws = sorted(fov_dir.glob("raw_ch*.*"), key=lambda p: (len(p.stem), p.stem))
    for path in raws:
        found = re.fullmatch(r"raw_ch(\d+)\.(tif|json)", path.name)
        if not found:
            continue
        stack = open_frames(path)
        layers.append((LazyStack(stack), {
            "name": f"raw ch{found.group(1)}", "scale": _scale(stack), "blending": "additive",
            "colormap": "gray", "contrast_limits": _contrast(stack[0]) if len(stack) else [0.0, 1.0],
        }, "image"))
    labels_path = fov_dir / "labels.tif"
    scale = layers[0][1]["scale"] if layers else None
    if labels_path.is_file():
        labels = StackReader(labels_path)
        scale = _scale(labels)
        layers.append((LazyStack(labels), {"name": "labels", "scale": scale, "opacity": 0.4}, "labels"))
    data, graph, props = track_data(fov_dir) if (fov_dir / "traces.csv").is_file() else (None, {}, {})
    if data is not None and len(data):  # napari has no empty Tracks layer
        kwargs: dict[str, Any] = {"name": "tracks", "graph": graph, "properties": props,
                                  "tail_length": 10}
        if scale is not None:
            kwargs["scale"] = scale
        layers.append((data, kwargs, "tracks"))
    if not layers:
        raise FileNotFoundError(f"{fov_dir}: no raw_ch*.tif/json, labels.tif or traces.csv")
    return layers
