"""Size and speed of the TIFF codecs a per-FOV stack could use, per kind of frame.

Run from the project root::

    .venv/bin/python benchmarks/bench_codecs.py [--size 2048] [--frames 6]

Cases (each a separate row block, never pooled):

* simulated phase contrast, fluorescence and tracked labels of a ``size``²
  FOV (:mod:`pyama_flow.devtools.simulate`, ``--frames`` frames, 200 cells);
* the real Usiigaci T98G phase-contrast frames (1022x1024 uint16) and their
  ID masks, from ``../shared/data`` (skipped when absent).

For each candidate the frames are written as one (T, Y, X) stack, one page per
frame, exactly as :func:`pyama_flow.io.stacks.write_stack` does, then read back
page by page (and checked equal). Figures: size in % of the uncompressed pixels,
write and read ms per frame scaled to a 2048² frame (ms per pixel x 2048²;
the best of ``--repeats`` passes), and whether ImageJ 1.53t (the Debian
``imagej``) decodes it correctly: deflate and LZW with the horizontal
predictor are decoded into wrong 16-bit values before ImageJ 1.53v, and ImageJ
has no Zstandard decoder at all (``tests/test_imagej.py`` checks the codecs
the project offers in a real ImageJ).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DATA = ROOT.parent / "shared" / "data"

#: name -> (tifffile codec or None, level, predictor, ImageJ 1.53t reads it correctly)
CANDIDATES: dict[str, tuple[str | None, int | None, bool, str]] = {
    "none": (None, None, False, "yes"),
    "zlib-1": ("zlib", 1, False, "yes"),
    "zlib-6": ("zlib", 6, False, "yes"),
    "zlib-1+predictor": ("zlib", 1, True, "WRONG values"),
    "lzw": ("lzw", None, False, "yes"),
    "lzw+predictor": ("lzw", None, True, "WRONG values"),
    "zstd-1": ("zstd", 1, False, "refused"),
    "zstd-1+predictor": ("zstd", 1, True, "refused"),
}


def simulated_cases(folder: Path, size: int, frames: int) -> dict[str, np.ndarray]:
    """Phase contrast, fluorescence and truth labels of one simulated FOV."""
    from pyama_flow.devtools.simulate import SimulationConfig, simulate_experiment

    cfg = SimulationConfig(n_fovs=1, n_frames=frames, height=size, width=size, n_cells=200,
                           margin=40, min_gap=22.0, seed=0, compression=None)
    path = folder / "sim.ome.tif"
    simulate_experiment(path, folder / "truth", cfg)
    data = tifffile.imread(path)  # (T, C, Y, X)
    labels = tifffile.imread(folder / "truth" / "labels_fov000.tif")
    return {
        f"simulated phase {size}²": np.ascontiguousarray(data[:, 0]),
        f"simulated fluorescence {size}²": np.ascontiguousarray(data[:, 1]),
        f"simulated labels {size}² (uint16)": labels.astype(np.uint16),
    }


def real_cases() -> dict[str, np.ndarray]:
    """The real T98G phase-contrast frames and ID masks (empty when the data is absent)."""
    base = DATA / "phase_timelapse" / "usiigaci_T98G"
    frames = sorted((base / "frames").glob("*.tif"))
    masks = sorted((base / "id_masks").glob("*"))[:12]
    if not frames:
        print(f"({base} absent: real cases skipped)")
        return {}
    out = {"real T98G phase 1022x1024": np.stack([tifffile.imread(f) for f in frames]).astype(np.uint16)}
    if masks:
        from PIL import Image

        out["real T98G ID masks (uint16)"] = np.stack(
            [np.asarray(Image.open(f)) for f in masks]).astype(np.uint16)
    return out


def measure(stack: np.ndarray, name: str, folder: Path, repeats: int) -> tuple[float, float, float]:
    """(size %, write ms, read ms) of one candidate; ms per frame scaled to 2048²."""
    codec, level, predictor, _ = CANDIDATES[name]
    path = folder / f"{name}.tif"
    args = {"level": level} if level is not None else None
    best_w = best_r = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        with tifffile.TiffWriter(path) as tw:
            tw.write(iter(stack), shape=stack.shape, dtype=stack.dtype, compression=codec,
                     compressionargs=args, predictor=predictor or None, photometric="minisblack",
                     metadata=None)
        best_w = min(best_w, time.perf_counter() - t0)
        t0 = time.perf_counter()
        with tifffile.TiffFile(path) as tif:
            back = [page.asarray() for page in tif.pages]
        best_r = min(best_r, time.perf_counter() - t0)
    if not np.array_equal(np.stack(back), stack):
        raise SystemExit(f"{name}: read back differs")
    scale = 1000 * 2048 * 2048 / stack[0].size / len(stack)
    return 100 * path.stat().st_size / stack.nbytes, best_w * scale, best_r * scale


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases = {**simulated_cases(folder, args.size, args.frames), **real_cases()}
        for case, stack in cases.items():
            print(f"\n{case}: {len(stack)} frames {stack.dtype}")
            print(f"{'codec':<20}{'size %':>8}{'write ms':>10}{'read ms':>9}  ImageJ 1.53t")
            for name in CANDIDATES:
                size, w, r = measure(stack, name, folder, args.repeats)
                print(f"{name:<20}{size:>8.1f}{w:>10.1f}{r:>9.1f}  {CANDIDATES[name][3]}")
    print("\nms per frame scaled to a 2048² frame; best of", args.repeats, "passes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
