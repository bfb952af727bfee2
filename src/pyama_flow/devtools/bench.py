"""Per-step speed, memory and storage of the per-FOV pipeline (``pyama-flow bench``).

Prints three tables:
1. ms per frame of each step's kernel on one core, against the reference
   figures in SPEC.md (PyAMA on the same machine class, 1024^2, ~120 cells);
2. wall time, ms per frame, peak RSS and bytes written of each per-FOV step
   run as its own process (as a Snakemake job is), for each frame count, so
   that memory can be seen not to grow with the number of frames;
3. storage of one FOV against the reference layout (uint16 raw copies, bool
   mask, float32 background, uint16 labels, uncompressed).

Presets: default 1024^2 at 40 and 180 frames with 120 cells; ``--scale``
2048^2 x 180 frames with 300 cells (a real FOV); ``--quick`` 512^2 for CI.
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

SRC = Path(__file__).resolve().parents[2]

#: PyAMA's per-frame steps on a 1024^2 frame (SPEC, "Measured reference figures":
#: measured side by side with this project), ms, (lowest, highest) of the runs
REFERENCE_MS = {"segment": (165.0, 181.0), "background": (284.0, 305.0), "tracking": (11.0, 12.0),
                "traces": (31.0, 43.0)}
#: the four steps together, as measured (not the sum of the ranges' ends)
REFERENCE_TOTAL_MS = (507.0, 524.0)
TARGET_MS = {"segment": 70.0, "background": 80.0, "tracking": 8.0, "traces": 90.0}


def span(reference: tuple[float, float], scale: float = 1.0) -> str:
    """``"a-b"``: a reference range in ms, scaled."""
    return "-".join(f"{scale * r:.0f}" for r in reference)


def speedup(reference: tuple[float, float], ms: float, scale: float = 1.0) -> str:
    """``"a-b"``: how many times faster ``ms`` is than the reference range (scaled)."""
    lo, hi = (scale * r / ms for r in reference)
    return f"{lo:.1f}-{hi:.1f}"


def simulate(folder: Path, size: int, frames: int, cells: int, seed: int = 0, n_fovs: int = 1) -> Path:
    """``folder/bench.ome.tif``: ``n_fovs`` simulated FOVs (truth in ``folder/truth``).

    The planes are uncompressed, as a microscope writes them (an ND2 or a
    Micro-Manager OME-TIFF: 1.5 GB per channel of a 2048^2 x 180 FOV).
    """
    from pyama_flow.devtools.simulate import SimulationConfig, simulate_experiment

    cfg = SimulationConfig(n_fovs=n_fovs, n_frames=frames, height=size, width=size, n_cells=cells,
                           margin=40, min_gap=22.0, seed=seed, compression=None)
    path = folder / "bench.ome.tif"
    simulate_experiment(path, folder / "truth", cfg)
    return path


def kernel_table(path: Path, repeats: int) -> list[tuple[str, float]]:
    """Median ms per frame of each step's per-frame work, in this process (with
    freed frame-sized blocks kept for the next frame, as the rule scripts do).

    Tracking is what the track step does per frame: :meth:`Tracker.stream`
    (linking, merges, divisions and their dating back) over the frames, and
    the final ids; its frames come out a few frames late, so it is timed over
    the whole stream (mean per frame, best of three passes) after the other
    steps, on their segmentations. The traces step measures the frames of
    ``Tracker.update``.
    """
    from pyama_flow.background import model as bg
    from pyama_flow.io import open_image
    from pyama_flow.memory import reuse_large_blocks
    from pyama_flow.segmentation.logstd import segment_logstd
    from pyama_flow.tracking.tracker import Tracker
    from pyama_flow.traces.features import frame_features

    reuse_large_blocks()
    timings: dict[str, list[float]] = {k: [] for k in REFERENCE_MS}
    tracker = Tracker()
    objects, segs = [], []
    with open_image(path) as reader:  # frame by frame, as the jobs stream them
        n = min(reader.metadata.n_frames, repeats)
        for t in range(n):
            pc, fl = reader.read_frame(0, t, 0), reader.read_frame(0, t, 1)
            t0 = time.perf_counter()
            seg = segment_logstd(pc)
            t1 = time.perf_counter()
            spline = bg.BackgroundSpline(bg.fit_tiles(fl, seg))  # the tile model and its spline
            t2 = time.perf_counter()
            tracked = tracker.update(seg)
            t3 = time.perf_counter()
            frame_features(tracked, {1: fl}, {1: spline})  # the spline evaluated on the cells' boxes
            t4 = time.perf_counter()
            for key, dt in zip(REFERENCE_MS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                timings[key].append(dt)
            objects.append(int(seg.max()))
            segs.append(seg)
            shape = pc.shape
    passes = []
    for _ in range(3):
        t0 = time.perf_counter()
        stream_tracker = Tracker()
        for _tracked in stream_tracker.stream(segs):
            pass
        stream_tracker.relabel_lut()
        passes.append((time.perf_counter() - t0) / len(segs))
    timings["tracking"] = [min(passes)]
    n_cells = float(np.mean(objects))
    # the SPEC's figures are per 1024^2 frame: scale them by frame area
    scale = shape[0] * shape[1] / 1024**2
    print(f"\nPer-frame kernels, {shape[0]}x{shape[1]}, {n_cells:.0f} objects per frame, "
          f"{n} frames, one core (median); reference and target scaled x{scale:g} from 1024^2")
    print(f"{'step':<12}{'ms/frame':>10}{'reference':>12}{'speed-up':>14}{'target':>9}")
    rows = []
    for k, v in timings.items():
        ms = 1000 * float(np.median(v))
        rows.append((k, ms))
        print(f"{k:<12}{ms:>10.1f}{span(REFERENCE_MS[k], scale):>12} {speedup(REFERENCE_MS[k], ms, scale):>12}x{TARGET_MS[k] * scale:>8.0f}")
    total = sum(ms for _, ms in rows)
    print(f"{'total':<12}{total:>10.1f}{span(REFERENCE_TOTAL_MS, scale):>12} {speedup(REFERENCE_TOTAL_MS, total, scale):>12}x")
    return rows


#: each step called as its Snakemake rule's script calls it (the same outputs);
#: RAW is the raw extract's codec by ``storage.raw``: "zlib" (the default codec) where the copy is
#: kept (keep, the default), "none" where it is temp(), "source" where there is
#: no copy (RAW0 / RAW1 are then ``.json`` references into the input)
RAW_MODES = {"raw: keep (zlib copy, the default)": "zlib", "raw: temp (uncompressed copy)": "none",
             "raw: source (no copy)": "source"}
STEP_CODE = {
    "extract_pc": ("from pyama_flow.io.extract import extract\n"
                   "extract(IN, {}, 0, 0, 0, RAW0, OUT + '/frame_stats_ch0.csv', RAW)"),
    "extract_fl": ("from pyama_flow.io.extract import extract\n"
                   "extract(IN, {}, 0, 1, 0, RAW1, OUT + '/frame_stats_ch1.csv', RAW)"),
    "segment": ("from pyama_flow.segmentation.step import segment\n"
                "segment(RAW0, OUT + '/segmentation.tif', SEG, {})"),
    "correct": ("from pyama_flow.background.step import correct\n"
                "correct(RAW1, OUT + '/segmentation.tif', OUT + '/background_ch1.npz', 256, 21)"),
    "track": ("from pyama_flow.tracking.step import track\n"
              "track(OUT + '/segmentation.tif', OUT + '/labels.tif', OUT + '/tracks.csv', {})"),
    "traces": ("from pyama_flow.io.extract import dataset_metadata\n"
               "from pyama_flow.io.atomic import write_json\n"
               "from pyama_flow.traces.step import traces\n"
               "write_json(OUT + '/metadata.json', dataset_metadata(IN, {}, 10))\n"
               "traces(OUT + '/labels.tif', {1: RAW1}, {1: OUT + '/background_ch1.npz'},"
               " OUT + '/metadata.json', OUT + '/traces.csv', 0, 0, 1.0, 30, 50,"
               " OUT + '/tracks.csv', OUT + '/trace_stats.json')"),
}
STEP_OUTPUT = {
    "extract_pc": ["raw_ch0.{ext}", "frame_stats_ch0.csv"], "extract_fl": ["raw_ch1.{ext}", "frame_stats_ch1.csv"],
    "segment": ["segmentation.tif"], "correct": ["background_ch1.npz"], "track": ["labels.tif", "tracks.csv"],
    "traces": ["traces.csv", "metadata.json", "trace_stats.json"],
}


#: libraries the jobs once skipped by keeping copies of their code (a numpy port of
#: ``linear_sum_assignment``, a port of FITPACK's interpolating spline, an edit of
#: numba's BLAS probe), removed because each costs far less than the 10 % of a whole
#: FOV that would earn a copy its place; :func:`library_costs` prints what they cost
LIBRARY_IMPORTS = {
    "scipy.optimize": "linear_sum_assignment (tracking)",
    "scipy.interpolate": "RectBivariateSpline (background)",
    "scipy.linalg": "imported by numba's BLAS probe when a kernel loads",
}


def import_seconds(module: str, repeats: int = 5) -> float:
    """Median wall time of importing ``module`` in a fresh interpreter that has
    already imported numpy, scipy and numba (what every job imports anyway) and,
    for any other module, ``scipy.linalg`` (counted once, as its own line)."""
    before = "numpy, scipy, numba" + ("" if module == "scipy.linalg" else ", scipy.linalg")
    code = (f"import time, {before}\n"
            f"t = time.perf_counter(); import {module}; print(time.perf_counter() - t)")
    runs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True).stdout) for _ in range(repeats)]
    return float(np.median(runs))


def library_costs(results: dict[str, dict[str, float]], n_frames: int) -> None:
    """Print what the library imports cost one FOV's jobs, against the whole FOV."""
    whole = sum(r["wall"] for r in results.values())
    print(f"\nLibrary imports in the jobs of one FOV (T={n_frames}, whole FOV {whole:.1f} s); "
          "a copy of library code would have to save 10 % to earn its place")
    print(f"{'library':<20}{'s/import':>9}{'jobs':>5}{'s/FOV':>7}{'% FOV':>7}  used for / imported by")
    for module, use in LIBRARY_IMPORTS.items():
        jobs = [step for step, r in results.items() if module in r.get("libraries", [])]
        cost = import_seconds(module)
        print(f"{module:<20}{cost:>9.2f}{len(jobs):>5}{cost * len(jobs):>7.2f}"
              f"{100 * cost * len(jobs) / whole:>7.1f}  {use}: {', '.join(jobs) or 'no job'}")


def raw_ext(codec: str) -> str:
    """File ending of the raw extract for a :data:`RAW_MODES` codec."""
    return "json" if codec == "source" else "tif"


def job_table(path: Path, out: Path, n_frames: int, raw_codec: str,
              segmentation: str = "logstd") -> dict[str, dict[str, float]]:
    """Each step in its own process: wall s (the whole process: interpreter
    start, imports, loading the compiled kernels, work, exit), peak RSS MB, MB written.

    Peak RSS is the child's own high-water mark (``VmHWM``): ``ru_maxrss``
    would carry over the parent's peak across ``exec``.
    """
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for step, code in STEP_CODE.items():
        script = (
            "import resource, sys, json; sys.path.insert(0, %r)\n"
            "from pyama_flow.memory import reuse_large_blocks; reuse_large_blocks()  # as the rule scripts\n"
            "IN, OUT, RAW, SEG = %r, %r, %r, %r\n"
            "RAW0, RAW1 = OUT + '/raw_ch0.%s', OUT + '/raw_ch1.%s'\n"
            "%s\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')]\n"
            "rss = int(hwm[0].split()[1]) / 1024 if hwm else "
            "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
            "print(json.dumps({'rss': rss, 'libraries': [m for m in %r if m in sys.modules]}))\n"
        ) % (str(SRC), str(path), str(out), raw_codec, segmentation, raw_ext(raw_codec), raw_ext(raw_codec), code,
             tuple(LIBRARY_IMPORTS))
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode:
            raise SystemExit(f"{step} failed:\n{proc.stderr}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        res["wall"] = wall
        res["written"] = sum((out / f.format(ext=raw_ext(raw_codec))).stat().st_size
                             for f in STEP_OUTPUT[step]) / 1e6
        res["ms_frame"] = 1000 * wall / n_frames
        rows[step] = res
    return rows


def storage_table(out: Path, n_frames: int, size: int, mode: str, n_fl: int = 1) -> None:
    """What one FOV keeps on disk against PyAMA's uncompressed layout (``mode``: a :data:`RAW_MODES` key)."""
    codec = RAW_MODES[mode]
    ext = raw_ext(codec)
    kept = {
        "raw (phase + fluorescence)": [] if codec == "none" else [f"raw_ch0.{ext}", f"raw_ch1.{ext}"],
        "segmentation (labels)": ["segmentation.tif"],
        "background (tile models)": ["background_ch1.npz"],
        "tracked labels": ["labels.tif"],
        "tables": ["tracks.csv", "traces.csv", "metadata.json", "frame_stats_ch0.csv",
                   "frame_stats_ch1.csv", "trace_stats.json"],
    }
    px = n_frames * size * size
    reference = {
        "raw (phase + fluorescence)": px * 2 * (1 + n_fl),
        "segmentation (labels)": px * 1,  # bool mask
        "background (tile models)": px * 4 * n_fl,  # float32 image
        "tracked labels": px * 2,  # uint16
        "tables": 0,
    }
    print(f"\nStorage of one FOV ({n_frames} frames, {size}x{size}) vs the reference layout, {mode}"
          f"{' (deleted after the run)' if codec == 'none' else ''}")
    print(f"{'output':<30}{'ours MB':>10}{'reference MB':>14}")
    total = ref_total = 0.0
    for name, files in kept.items():
        mb = sum((out / f).stat().st_size for f in files) / 1e6
        total += mb
        ref_total += reference[name] / 1e6
        print(f"{name:<30}{mb:>10.1f}{reference[name] / 1e6:>14.1f}")
    share = 100 * total / ref_total
    print(f"{'total':<30}{total:>10.1f}{ref_total:>14.1f}   ({share:.{0 if share >= 1 else 1}f} % of the reference)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="pyama-flow bench", description=__doc__.splitlines()[0])
    add_arguments(ap)
    run(ap.parse_args(argv))
    return 0


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--size", type=int, default=1024, help="frame side in px (default 1024)")
    ap.add_argument("--cells", type=int, default=120, help="cells per FOV (default 120)")
    ap.add_argument("--frames", type=int, nargs="+", default=[40, 180],
                    help="frame counts to run (default 40 180)")
    ap.add_argument("--quick", action="store_true", help="512 px, 10 and 30 frames, 40 cells (CI)")
    ap.add_argument("--scale", action="store_true", help="a full-size FOV: 2048 px, 180 frames, 300 cells")
    ap.add_argument("--segmentation", choices=["logstd", "watershed"], default="logstd",
                    help="the segment job's method (default logstd, the reference's; the workflow's "
                         "default is watershed); the kernel table always runs LOG-STD")


def run(args: argparse.Namespace) -> None:
    if args.quick:
        args.size, args.cells, args.frames = 512, 40, [10, 30]
    elif args.scale:
        args.size, args.cells, args.frames = 2048, 300, [180]
    print(f"pyama-flow bench: {args.size}x{args.size}, {args.cells} cells, frames {args.frames}, "
          f"{os.cpu_count()} CPUs visible, one thread per process, segment job: {args.segmentation}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results: dict[str, dict[int, dict[str, dict[str, float]]]] = {mode: {} for mode in RAW_MODES}
        for n in args.frames:
            t0 = time.perf_counter()
            path = simulate(tmp / f"sim{n}", args.size, n, args.cells)
            print(f"simulated {n} frames in {time.perf_counter() - t0:.0f} s")
            if n == args.frames[0]:
                kernel_table(path, repeats=min(n, 20))
            for i, (mode, codec) in enumerate(RAW_MODES.items()):
                results[mode][n] = job_table(path, tmp / f"out{n}_{i}", n, codec, args.segmentation)
            if n != args.frames[-1]:
                (tmp / f"sim{n}" / "bench.ome.tif").unlink()
        ref_ms = tuple(r * args.size**2 / 1024**2 for r in REFERENCE_TOTAL_MS)
        for mode, res in results.items():
            job_summary(mode, res, args.frames, args.size, ref_ms)
        library_costs(results[next(iter(RAW_MODES))][args.frames[-1]], args.frames[-1])
        for i, mode in enumerate(RAW_MODES):
            storage_table(tmp / f"out{args.frames[-1]}_{i}", args.frames[-1], args.size, mode)


def job_summary(mode: str, results: dict[int, dict[str, dict[str, float]]], frames: list[int],
                size: int, ref_ms: tuple[float, float]) -> None:
    """Print one raw mode's job table and its whole-FOV figures against the reference."""
    print(f"\nPer-FOV jobs, each its own process, {size}x{size}, 2 channels, {mode}")
    print(f"{'step':<12}" + "".join(f"{f'T={n} s':>9}{'ms/frame':>9}{'RSS MB':>8}{'MB out':>8}" for n in frames))
    totals = {n: [0.0, 0.0, 0.0] for n in frames}
    for step in STEP_CODE:
        line = f"{step:<12}"
        for n in frames:
            r = results[n][step]
            totals[n][0] += r["wall"]
            totals[n][1] = max(totals[n][1], r["rss"])
            totals[n][2] += r["written"]
            line += f"{r['wall']:>9.2f}{r['ms_frame']:>9.1f}{r['rss']:>8.0f}{r['written']:>8.1f}"
        print(line)
    line = f"{'whole FOV':<12}"
    for n in frames:
        wall, rss, written = totals[n]
        line += f"{wall:>9.2f}{1000 * wall / n:>9.1f}{rss:>8.0f}{written:>8.1f}"
    print(line + "   (RSS: the largest job)")
    for n in frames:
        ms = 1000 * totals[n][0] / n
        print(f"whole FOV, T={n}: {ms:.0f} ms per frame, every job's start-up and I/O included; "
              f"the reference's steps alone take {span(ref_ms)} ms per {size}^2 frame "
              f"(SPEC, scaled by area): {speedup(ref_ms, ms)}x faster")
    if len(frames) > 1:
        a, b = frames[0], frames[-1]
        per_frame = 1000 * (totals[b][0] - totals[a][0]) / (b - a)
        fixed = totals[a][0] - per_frame * a / 1000
        if per_frame > 0:  # else too few frames to tell the per-frame cost from the noise
            print(f"each further frame: {per_frame:.0f} ms ({speedup(ref_ms, per_frame)}x faster than the "
                  f"reference); fixed cost per FOV (6 job start-ups): {fixed:.1f} s")

if __name__ == "__main__":
    sys.exit(main())
