"""``pyama-flow thumbnail FILE``: one frame of a microscopy file as a contrast-stretched PNG."""

from __future__ import annotations

import argparse
import os

import numpy as np

from pyama_flow.report import display, figures, frames
from pyama_flow.io import open_image
from pyama_flow.io.base import InputError
from pyama_flow.io.atomic import atomic_path
from pyama_flow.commands.info import _option, reader_options


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "thumbnail",
        help="write one frame of a microscopy file as a PNG (1st-99th percentile stretch)",
        description=(
            "Quick look at raw input: read one frame (FOV, channel, time point; one Z "
            "plane or the max projection) of any file pyama-flow reads and write it as "
            "a contrast-stretched PNG with title, colour bar (a.u.) and scale bar."
        ),
    )
    parser.add_argument("file", help="ND2, CZI, LIF, TIFF file, or a folder of TIFF frames")
    parser.add_argument("--fov", type=int, default=0, help="FOV index (default 0)")
    parser.add_argument("--channel", default="0", help="channel index or name (default 0)")
    parser.add_argument("--frame", type=int, default=0, help="time point index (default 0)")
    zgroup = parser.add_mutually_exclusive_group()
    zgroup.add_argument("--z", type=int, default=0, help="Z plane (default 0)")
    zgroup.add_argument("--mip", action="store_true", help="maximum-intensity projection over Z")
    parser.add_argument("-o", "--output", required=True, help="PNG file to write")
    parser.add_argument("--low", type=float, default=1.0, help="percentile shown black (default 1)")
    parser.add_argument("--high", type=float, default=99.0, help="percentile shown white (default 99)")
    parser.add_argument(
        "--max-side", type=int, default=1024,
        help="block-average down to at most this many px per side (default 1024)",
    )
    parser.add_argument(
        "--plain", action="store_true",
        help="only the stretched pixels (8-bit grey PNG), no title, colour bar or scale bar",
    )
    parser.add_argument("--axes", help="axes of a plain TIFF, e.g. TCYX")
    parser.add_argument(
        "--pattern", action="append",
        help="glob of the frame files in a folder (repeat for one pattern per channel)",
    )
    parser.add_argument(
        "--option", action="append", type=_option, default=[], metavar="KEY=VALUE",
        help="any other reader option, e.g. mosaic=tiles",
    )
    parser.set_defaults(func=run)
    return parser


def _pct(q: float) -> str:
    """``1`` -> ``"1st"``, ``99`` -> ``"99th"``, ``2.5`` -> ``"2.5th"``."""
    if q != int(q):
        return f"{q:g}th"
    n = int(q)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _channel(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


def read_thumbnail_frame(
    path: str, fov: int, channel: int | str, frame: int, z: int | str, **options
) -> tuple[np.ndarray, dict]:
    """One frame and what the figure needs to describe it (channel name, time, pixel size)."""
    try:
        with open_image(path, **options) as reader:
            c = reader.channel_index(channel)
            image = reader.read_frame(fov, frame, c, z)
            m = reader.metadata
            times = reader.frame_times(fov)
            info = {
                "channel": c,
                "name": m.channel_names[c] if c < len(m.channel_names) else f"channel {c}",
                "n_z": m.n_z,
                "time_min": float(times[frame]) if times is not None and frame < len(times) else None,
                "pixel_size_um": m.pixel_size_um,
            }
    except TypeError as exc:  # unexpected keyword from --option
        raise InputError(f"{path}: bad reader option ({exc})") from None
    return image, info


def run(args: argparse.Namespace) -> int:
    z: int | str = "max" if args.mip else args.z
    image, info = read_thumbnail_frame(
        args.file, args.fov, _channel(args.channel), args.frame, z, **reader_options(args)
    )
    limits = display.stretch_limits(image, args.low, args.high)
    factor = display.thumbnail_factor(image.shape, args.max_side)
    small = display.percentile_stretch(display.downsample(image, factor), limits=limits)
    if args.plain:
        from PIL import Image

        with atomic_path(args.output) as tmp:
            Image.fromarray(small).save(tmp, format="PNG")
    else:
        rgb = display.display_color(info["name"])
        zdesc = f"max of {info['n_z']} Z planes" if z == "max" else f"Z {z}"
        times = None
        if info["time_min"] is not None:
            times = [0.0] * args.frame + [info["time_min"]]
        title = f"{os.path.basename(args.file)} · FOV {args.fov} · {info['name']} (ch {info['channel']})"
        fig = frames.plot_frame_sheet(
            [{"name": f"{info['name']} (ch {info['channel']})", "images": [display.gray_to_rgb(small, rgb)],
              "limits": limits, "rgb": rgb}],
            times,
            [args.frame],
            title,
            pixel_size_um=info["pixel_size_um"],
            factor=factor,
            subtitle=(f"{zdesc} · {image.dtype} {image.shape[1]}x{image.shape[0]} px · display "
                      f"{_pct(args.low)}-{_pct(args.high)} pct = {limits[0]:.6g}-{limits[1]:.6g} a.u."),
        )
        figures.save_figure(fig, args.output)
    print(f"{args.output}: FOV {args.fov}, channel {info['name']} (ch {info['channel']}), "
          f"frame {args.frame}, {'max projection' if z == 'max' else f'z {z}'}, "
          f"display {limits[0]:.6g}-{limits[1]:.6g}")
    return 0
