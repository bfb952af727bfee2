"""Per-step speed and memory of the per-FOV pipeline.

Prints two tables:
1. ms per 1024^2 frame (~120 cells) of each step's kernel on one core, against
   the reference figures in SPEC.md (PyAMA on the same machine class);
2. wall time, peak RSS and bytes written of each per-FOV step run as its own
   process (as a Snakemake job would), for two frame counts, to show that
   memory does not grow with the number of frames.

Usage: python benchmarks/bench_steps.py [--size 1024] [--cells 120] [--frames 40 160] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

REFERENCE_MS = {"segment": 365.0, "background": 404.0, "tracking": 38.0, "traces": 458.0}
TARGET_MS = {"segment": 70.0, "background": 80.0, "tracking": 8.0, "traces": 90.0}


def simulate(folder: Path, size: int, frames: int, cells: int, seed: int = 0) -> Path:
    from pyama_flow.simulate import SimulationConfig, simulate_experiment

    cfg = SimulationConfig(n_fovs=1, n_frames=frames, height=size, width=size, n_cells=cells,
                           margin=40, min_gap=22.0, seed=seed)
    path = folder / "bench.ome.tif"
    simulate_experiment(path, folder / "truth", cfg)
    return path


def kernel_table(path: Path, repeats: int) -> list[tuple[str, float]]:
    """Median ms per frame of each step's per-frame work, in this process."""
    from pyama_flow import background as bg
    from pyama_flow.io import open_image
    from pyama_flow.segmentation.logstd import segment_logstd
    from pyama_flow.tracking import Tracker
    from pyama_flow.traces import frame_features

    with open_image(path) as reader:
        n = min(reader.metadata.n_frames, repeats)
        pcs = [reader.read_frame(0, t, 0) for t in range(n)]
        fls = [reader.read_frame(0, t, 1) for t in range(n)]
    timings: dict[str, list[float]] = {k: [] for k in REFERENCE_MS}
    segs = []
    for img in pcs:
        t0 = time.perf_counter()
        segs.append(segment_logstd(img))
        timings["segment"].append(time.perf_counter() - t0)
    bgs = []
    for img, seg in zip(fls, segs):
        t0 = time.perf_counter()
        bgs.append(bg.evaluate(bg.fit_tiles(img, seg)))
        timings["background"].append(time.perf_counter() - t0)
    tracker = Tracker()
    tracked = []
    for seg in segs:
        t0 = time.perf_counter()
        tracked.append(tracker.update(seg))
        timings["tracking"].append(time.perf_counter() - t0)
    for lab, img, b in zip(tracked, fls, bgs):
        t0 = time.perf_counter()
        frame_features(lab, {1: img}, {1: b})
        timings["traces"].append(time.perf_counter() - t0)
    n_cells = float(np.mean([int(s.max()) for s in segs]))
    print(f"\nPer-frame kernels, {pcs[0].shape[0]}x{pcs[0].shape[1]}, {n_cells:.0f} objects per frame, "
          f"{n} frames, one core (median)")
    print(f"{'step':<12}{'ms/frame':>10}{'reference':>11}{'speed-up':>10}{'target':>9}")
    rows = []
    for k, v in timings.items():
        ms = 1000 * float(np.median(v))
        rows.append((k, ms))
        print(f"{k:<12}{ms:>10.1f}{REFERENCE_MS[k]:>11.0f}{REFERENCE_MS[k] / ms:>9.1f}x{TARGET_MS[k]:>8.0f}")
    total = sum(ms for _, ms in rows)
    print(f"{'total':<12}{total:>10.1f}{sum(REFERENCE_MS.values()):>11.0f}"
          f"{sum(REFERENCE_MS.values()) / total:>9.1f}x")
    return rows


STEP_CODE = {
    "extract_pc": "steps.extract(IN, {}, 0, 0, 0, OUT + '/raw_ch0.tif')",
    "extract_fl": "steps.extract(IN, {}, 0, 1, 0, OUT + '/raw_ch1.tif')",
    "segment": "steps.segment(OUT + '/raw_ch0.tif', OUT + '/segmentation.tif', 'logstd', {})",
    "correct": "steps.correct(OUT + '/raw_ch1.tif', OUT + '/segmentation.tif', OUT + '/background_ch1.npz', 256, 21)",
    "track": "steps.track(OUT + '/segmentation.tif', OUT + '/labels.tif', OUT + '/tracks.csv', {})",
    "traces": ("steps.write_json(OUT + '/metadata.json', steps.dataset_metadata(IN, {}, [0], 10));"
               "steps.traces(OUT + '/labels.tif', {1: OUT + '/raw_ch1.tif'}, {1: OUT + '/background_ch1.npz'},"
               " OUT + '/metadata.json', OUT + '/traces.csv', 0, 0, 1.0, 30, 50)"),
}
STEP_OUTPUT = {
    "extract_pc": ["raw_ch0.tif"], "extract_fl": ["raw_ch1.tif"], "segment": ["segmentation.tif"],
    "correct": ["background_ch1.npz"], "track": ["labels.tif", "tracks.csv"],
    "traces": ["traces.csv", "metadata.json"],
}


def job_table(path: Path, out: Path, n_frames: int) -> dict[str, dict[str, float]]:
    """Each step in its own process: wall s, peak RSS MB, MB written."""
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for step, code in STEP_CODE.items():
        script = (
            "import resource, sys, time, json; sys.path.insert(0, %r)\n"
            "from pyama_flow import steps\n"
            "IN, OUT = %r, %r\n"
            "t0 = time.perf_counter()\n%s\n"
            "print(json.dumps({'wall': time.perf_counter() - t0,"
            " 'rss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))\n"
        ) % (str(ROOT / "src"), str(path), str(out), code)
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"{step} failed:\n{proc.stderr}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        res["written"] = sum((out / f).stat().st_size for f in STEP_OUTPUT[step]) / 1e6
        res["ms_frame"] = 1000 * res["wall"] / n_frames
        rows[step] = res
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--cells", type=int, default=120)
    ap.add_argument("--frames", type=int, nargs="+", default=[40, 160])
    ap.add_argument("--quick", action="store_true", help="256 px, 60 cells... for CI")
    args = ap.parse_args(argv)
    if args.quick:
        args.size, args.cells, args.frames = 512, 40, [10, 30]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results = {}
        for n in args.frames:
            path = simulate(tmp / f"sim{n}", args.size, n, args.cells)
            if n == args.frames[0]:
                kernel_table(path, repeats=min(n, 20))
            results[n] = job_table(path, tmp / f"out{n}", n)
        print(f"\nPer-FOV jobs, each its own process, {args.size}x{args.size}, 2 channels")
        head = f"{'step':<12}" + "".join(
            f"{f'T={n} s':>9}{'ms/frame':>9}{'RSS MB':>8}{'MB out':>8}" for n in args.frames
        )
        print(head)
        for step in STEP_CODE:
            line = f"{step:<12}"
            for n in args.frames:
                r = results[n][step]
                line += f"{r['wall']:>9.2f}{r['ms_frame']:>9.1f}{r['rss']:>8.0f}{r['written']:>8.1f}"
            print(line)


if __name__ == "__main__":
    main()
