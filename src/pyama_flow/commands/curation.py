"""``pyama-flow curation import|export FOV_DIR...``: PyAMA's traces_inspected.csv
to and from the decisions log curation.csv."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """\
Curation is stored as decisions (curation.csv beside traces.csv: cell, good,
time, fingerprint) and applied to the current traces.csv by every step that
reads traces. A PyAMA traces_inspected.csv is imported automatically the
first time a FOV's decisions are read (workflow or viewer) when curation.csv
does not exist yet; `import` does it now. `export` writes PyAMA's format:
traces.csv with the decisions applied (stale decisions are ignored, as in
the workflow).

  pyama-flow curation import results/demo/fov_000
  pyama-flow curation export results/demo/fov_* -o traces_inspected.csv
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "curation",
        help="import / export PyAMA's traces_inspected.csv from / to the decisions (curation.csv)",
        description="Convert between PyAMA's traces_inspected.csv and pyama-flow's curation.csv.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=("import", "export"))
    parser.add_argument("fov_dirs", nargs="+", metavar="FOV_DIR", help="FOV folders (with traces.csv)")
    parser.add_argument("-o", "--output", default="traces_inspected.csv",
                        help="export: file name written in each FOV folder (default traces_inspected.csv)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from pyama_flow.traces import curation
    dirs = [Path(d) for d in args.fov_dirs]
    missing = [d for d in dirs if not (d / "traces.csv").is_file()]
    if missing:
        print(f"error: {missing[0]}: no traces.csv (not a FOV folder of the results)", file=sys.stderr)
        return 2
    for d in dirs:
        if args.action == "import":
            if (d / curation.DECISIONS).exists():
                print(f"{d}: {curation.DECISIONS} exists; nothing imported", file=sys.stderr)
            elif not (d / curation.INSPECTED).is_file():
                print(f"{d}: no {curation.INSPECTED}; nothing imported", file=sys.stderr)
            else:
                n = curation.import_inspected(d)
                print(f"{d}: {n} decisions imported into {curation.DECISIONS}", file=sys.stderr)
        else:
            out = curation.export_inspected(d, d / Path(args.output).name)
            print(f"{d}: wrote {out}", file=sys.stderr)
    return 0
