"""``pyama-flow formats``: supported input formats, their libraries and install state."""

from __future__ import annotations

import argparse
import json
from importlib import metadata as importlib_metadata

from pyama_flow.io import FORMATS, FormatInfo


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "formats",
        help="list the input formats and whether their reader library is installed",
        description="List each input format, the library that reads it, and how to install it.",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list instead")
    parser.set_defaults(func=run)
    return parser


def _version(fmt: FormatInfo) -> str | None:
    try:
        return importlib_metadata.version(fmt.pip)
    except importlib_metadata.PackageNotFoundError:
        return None


def format_rows() -> list[dict[str, object]]:
    """One dict per format: name, suffixes, library, installed, version, install command."""
    rows = []
    for fmt in FORMATS:
        installed = fmt.installed
        rows.append(
            {
                "format": fmt.name,
                "suffixes": list(fmt.suffixes) or ["<folder>"],
                "library": fmt.library,
                "installed": installed,
                "version": _version(fmt) if installed else None,
                "install": None if installed else f"pip install {fmt.pip}",
            }
        )
    return rows


def run(args: argparse.Namespace) -> int:
    rows = format_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [("format", "files", "library", "installed")]
    for row in rows:
        state = f"yes ({row['version']})" if row["installed"] else f"no: {row['install']}"
        table.append(
            (str(row["format"]), " ".join(row["suffixes"]), str(row["library"]), state)  # type: ignore[arg-type]
        )
    widths = [max(len(r[i]) for r in table) for i in range(3)]
    for r in table:
        print("  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3])
    return 0
