"""``pyama-flow info FILE``: the metadata of a microscopy file as JSON or a summary."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np
import yaml

from pyama_flow.io import open_image
from pyama_flow.io.base import ImageMetadata, InputError
from pyama_flow.io.folder import gap_warning


def _option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with the value parsed as YAML (``sizes={C: 2}``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), yaml.safe_load(value)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "info",
        help="print the metadata of a microscopy file (JSON, or --summary)",
        description="Print what pyama-flow reads from a microscopy file or frame folder.",
    )
    parser.add_argument("file", help="ND2, CZI, LIF, TIFF file, or a folder of TIFF frames")
    parser.add_argument("--summary", action="store_true", help="short human-readable summary")
    parser.add_argument("--axes", help="axes of a plain TIFF, e.g. TCYX")
    parser.add_argument(
        "--pattern",
        action="append",
        help="glob of the frame files in a folder (repeat for one pattern per channel)",
    )
    parser.add_argument(
        "-o",
        "--option",
        action="append",
        type=_option,
        default=[],
        metavar="KEY=VALUE",
        help="any other reader option, e.g. mosaic=tiles or sizes='{C: 2}'",
    )
    parser.set_defaults(func=run)
    return parser


def reader_options(args: argparse.Namespace) -> dict[str, Any]:
    """Reader options from the command line."""
    options: dict[str, Any] = dict(args.option or [])
    if args.axes:
        options["axes"] = args.axes
    if args.pattern:
        options["pattern"] = args.pattern[0] if len(args.pattern) == 1 else list(args.pattern)
    return options


def _size(nbytes: int) -> str:
    value = float(nbytes)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{nbytes} B"  # pragma: no cover


def frame_interval_min(meta: ImageMetadata) -> float | None:
    """Median interval between frames in minutes, or ``None`` without time stamps."""
    if not meta.time_min or len(meta.time_min) < 2:
        return None
    return float(np.median(np.diff(np.asarray(meta.time_min, dtype=np.float64))))


def summary(meta: ImageMetadata) -> str:
    """A few lines describing the file."""
    dims = " ".join(f"{k}={v}" for k, v in meta.dims.items())
    interval = frame_interval_min(meta)
    if interval is not None:
        source = meta.extra.get("time_source") or "file"
        seconds = f" = {interval * 60:.4g} s" if interval < 1 else ""
        time_text = f"{interval:.4g} min{seconds} (median, from {source})"
    elif meta.n_frames > 1:
        time_text = "not recorded (frame_interval_min from the config is used)"
    else:
        time_text = "single frame"
    pixel = f"{meta.pixel_size_um:.4g} um" if meta.pixel_size_um else "not recorded"
    lines = [
        f"file:           {meta.path}",
        f"format:         {meta.format}",
        f"dims:           {dims}",
        f"dtype:          {meta.dtype}",
        f"channels:       {', '.join(meta.channel_names)}",
        f"frame interval: {time_text}",
        f"pixel size:     {pixel}",
    ]
    if meta.objective:
        lines.append(f"objective:      {meta.objective}")
    if meta.microscope:
        lines.append(f"microscope:     {meta.microscope}")
    lines.append(f"size on disk:   {_size(meta.file_size)}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    options = reader_options(args)
    try:
        with open_image(args.file, **options) as reader:
            meta = reader.metadata
    except TypeError as exc:  # unexpected keyword from -o
        raise InputError(f"{args.file}: bad reader option ({exc})") from None
    warning = gap_warning(meta.path, (meta.extra or {}).get("frame_numbers"))
    if warning:
        print(f"WARNING: {warning}", file=sys.stderr)
    if args.summary:
        print(summary(meta))
    else:
        print(json.dumps(meta.to_dict(), indent=2, ensure_ascii=False))
    return 0
