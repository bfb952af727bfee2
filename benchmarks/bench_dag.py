"""Snakemake overhead at scale: DAG build and dry-run time for many FOVs (issue 9).

Writes one multi-position OME-TIFF with N positions (2 frames, 2 channels,
32 px: only the metadata matters here) and a config with two samples over all
of them and two fit models, and times, for each N, ``snakemake -n`` (parse
the Snakefile, validate the config, read the file's metadata, build the DAG
of every job, print the plan): the time before the first job starts, and the
cost of checking what is left to do. It also counts how often the input file
is opened meanwhile (smallest N, with ``strace`` when installed): FOV discovery reads the
file's header once per Snakemake invocation, not once per job.

Run from the repository root::

    .venv/bin/python benchmarks/bench_dag.py [--fovs 100 1000]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def write_positions(path: Path, n_fovs: int) -> None:
    """``n_fovs`` positions of (2 frames, 2 channels, 32 x 32) uint16."""
    data = np.zeros((2, 2, 32, 32), np.uint16)
    with tifffile.TiffWriter(path, ome=True) as tw:
        for p in range(n_fovs):
            tw.write(data, photometric="minisblack", metadata={
                "axes": "TCYX", "Name": f"FOV {p}", "Channel": {"Name": ["Phase", "GFP"]},
                "Plane": {"DeltaT": [t * 600.0 for t in range(2) for _ in range(2)],
                          "DeltaTUnit": ["s"] * 4}})


def config(path: Path, n_fovs: int) -> dict:
    half = n_fovs // 2
    return {
        "datasets": {"exp": {"input": str(path), "phase": "Phase", "fluorescence": ["GFP"]}},
        "samples": [{"name": "a", "dataset": "exp", "fovs": f"0-{half - 1}"},
                    {"name": "b", "dataset": "exp", "fovs": f"{half}-{n_fovs - 1}"}],
        "fit": {"models": ["maturation", "trivial"]},
    }


def dry_run(work: Path, extra: list[str]) -> tuple[float, int, str]:
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(work),
           "--configfile", str(work / "c.yaml"), "-n", "--quiet", "rules", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stdout[-2000:] + proc.stderr[-2000:])
    text = proc.stdout + proc.stderr
    total = next((int(line.split()[1]) for line in text.splitlines() if line.startswith("total")), -1)
    return wall, total, text


def opens_of(work: Path, path: Path) -> int | None:
    """How many times the dry run opens ``path`` (None without strace)."""
    if shutil.which("strace") is None:
        return None
    trace = work / "strace.txt"
    cmd = ["strace", "-f", "-e", "trace=open,openat", "-o", str(trace), SNAKEMAKE, "-s",
           str(ROOT / "Snakefile"), "--directory", str(work), "--configfile", str(work / "c.yaml"),
           "-n", "--quiet", "rules"]
    subprocess.run(cmd, capture_output=True, text=True, cwd=work, check=True)
    return sum(1 for line in trace.read_text().splitlines() if str(path) in line and "ENOENT" not in line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fovs", type=int, nargs="+", default=[100, 1000])
    args = ap.parse_args(argv)
    print(f"{'FOVs':>6}{'jobs':>8}{'dry run s':>11}{'ms/job':>8}{'input opened':>14}")
    for n in args.fovs:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            path = work / "positions.ome.tif"
            write_positions(path, n)
            (work / "c.yaml").write_text(yaml.safe_dump(config(path, n)))
            dry_run(work, [])  # warm the file cache and Python's bytecode cache
            wall, jobs, _ = dry_run(work, [])
            # strace slows the run several-fold: count the opens on the smallest N only
            opened = opens_of(work, path) if n == min(args.fovs) else None
            print(f"{n:>6}{jobs:>8}{wall:>11.1f}{1000 * wall / max(jobs, 1):>8.1f}"
                  f"{'n/a' if opened is None else opened:>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
