"""``pyama-flow bench``: speed, memory and storage of every per-FOV step."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from pyama_flow.devtools import bench
    p = subparsers.add_parser("bench", help="benchmark every step on a simulated FOV",
                              description=bench.__doc__)
    bench.add_arguments(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pyama_flow.devtools import bench
    bench.run(args)
    return 0
