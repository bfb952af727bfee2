"""Parallel scaling of the workflow: wall time with ``--cores 1`` vs ``--cores N`` (issue 9).

Simulates one experiment (default 4 FOVs x 40 frames x 1024^2, 120 cells per
FOV, phase contrast + GFP), then runs the whole workflow on it once per core
count, each in a fresh working directory, and prints wall time, FOV
throughput and the speed-up over one core. Every run must give the same
traces and fits (checked byte for byte).

Run from the repository root on an otherwise idle machine::

    .venv/bin/python benchmarks/bench_cores.py [--fovs 4] [--cores 1 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from pyama_flow.devtools.bench import simulate

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def config(path: Path, n_fovs: int, method: str) -> dict:
    half = max(n_fovs // 2, 1)
    samples = [{"name": "a", "dataset": "exp", "fovs": f"0-{half - 1}"}]
    if n_fovs > half:
        samples.append({"name": "b", "dataset": "exp", "fovs": f"{half}-{n_fovs - 1}"})
    return {
        "datasets": {"exp": {"input": str(path), "phase": "Phase", "fluorescence": ["GFP"]}},
        "samples": samples,
        "segmentation": {"method": method},
        "fit": {"models": ["maturation"]},
    }


def run(work: Path, cores: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(work),
           "--configfile", str(work / "c.yaml"), "--cores", str(cores), "--quiet", "all"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stdout[-3000:] + proc.stderr[-3000:])
    return wall


def tables(work: Path) -> dict[str, bytes]:
    return {str(p.relative_to(work)): p.read_bytes()
            for p in sorted((work / "results").rglob("*.csv")) if "benchmarks" not in p.parts}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fovs", type=int, default=4)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--cells", type=int, default=120)
    ap.add_argument("--cores", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--method", default="logstd", help="segmentation method (default logstd)")
    args = ap.parse_args(argv)
    print(f"bench_cores: {args.fovs} FOVs x {args.frames} frames x {args.size}^2, {args.cells} cells, "
          f"segmentation {args.method}, {os.cpu_count()} CPUs visible")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = simulate(tmp / "input", args.size, args.frames, args.cells, n_fovs=args.fovs)
        walls, outputs = {}, {}
        for cores in args.cores:
            work = tmp / f"cores{cores}"
            work.mkdir()
            (work / "c.yaml").write_text(yaml.safe_dump(config(path, args.fovs, args.method)))
            walls[cores] = run(work, cores)
            outputs[cores] = tables(work)
        base = args.cores[0]
        print(f"{'cores':>6}{'wall s':>9}{'FOVs/h':>9}{'speed-up':>10}")
        for cores in args.cores:
            print(f"{cores:>6}{walls[cores]:>9.1f}{3600 * args.fovs / walls[cores]:>9.1f}"
                  f"{walls[base] / walls[cores]:>9.2f}x")
        same = all(outputs[c] == outputs[base] for c in args.cores)
        print(f"traces and fits byte-identical across core counts: {same}")
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
