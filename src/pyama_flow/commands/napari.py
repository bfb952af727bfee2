"""``pyama-flow napari FOV_DIR``: a FOV's raw frames, labels and tracks in napari."""

from __future__ import annotations

import argparse
import importlib.util

from pyama_flow.io.base import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "napari",
        help="open a FOV's raw frames, tracked labels and tracks in napari",
        description=(
            "Open results/{dataset}/fov_NNN in napari: every raw_ch{c} as an image layer "
            "(frames read on demand), labels.tif as a labels layer and traces.csv as a "
            "Tracks layer (lineage from tracks.csv), scaled by the pixel size. Needs napari "
            "with a Qt backend: pip install \"napari[all]\"."
        ),
    )
    parser.add_argument("fov_dir", help="a FOV's results folder, e.g. results/demo/fov_000")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from pyama_flow.viewer.napari_layers import fov_layers

    if importlib.util.find_spec("napari") is None:
        raise InputError('napari is not installed: pip install "napari[all]"')
    try:
        layers = fov_layers(args.fov_dir)
    except FileNotFoundError as exc:
        raise InputError(str(exc)) from None
    import napari

    viewer = napari.Viewer(title=str(args.fov_dir))
    for data, kwargs, kind in layers:
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    napari.run()
    return 0
