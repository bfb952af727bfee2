"""Milliseconds per frame: pyama-flow readers vs. each format's own library call.

Run from the project root::

    .venv/bin/python benchmarks/bench_io.py [--pairs 200]
    .venv/bin/python benchmarks/bench_io.py --fingerprint   # content fingerprint cost only

Real files come from ``../shared/data``. All planes of a file are read in short
chunks, ours and the library's call alternating chunk by chunk so both see the
same machine load; the table gives the median ms per plane of each and the
median of the paired ratios. "Library" is the direct per-plane call on an
already open file:

* ND2: ``ND2File.read_frame(seq)[c].copy()`` (nd2 returns a view of its memory
  map; the copy is what makes a plane usable after the file is closed, and our
  reader returns such a copy);
* CZI: ``CziFile.read_image(T=, C=, Z=[, M=])`` / ``read_mosaic(region, 1.0, ...)``;
* TIFF: ``TiffFile.series[s].pages[k].asarray()``;
* frame folder: ``tifffile.imread(frame_file)``.

Two TIFF inputs are built in a temporary folder from real frames: a
multi-position OME-TIFF from the ND2 time-lapse and a 1022x1024 OME-TIFF from
the Usiigaci T98G phase-contrast frames.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from pyama_flow.io import open_image  # noqa: E402

DATA = ROOT.parent / "shared" / "data"

Plane = tuple[int, int, int, int]


def _time(fn: Callable[[Plane], object], planes: list[Plane]) -> float:
    """Seconds per plane for one pass over ``planes``."""
    start = time.perf_counter()
    for plane in planes:
        fn(plane)
    return (time.perf_counter() - start) / len(planes)


def compare(
    ours: Callable[[Plane], np.ndarray],
    lib: Callable[[Plane], np.ndarray],
    planes: list[Plane],
    pairs: int,
) -> tuple[float, float, float]:
    """ms per plane of ours and of the library, and the paired ratio.

    The planes are read in short chunks (~2 ms), ours and the library's
    alternating, ``pairs`` times; the result is the median chunk time of each
    and the median of the per-pair ratios, which a busy shared machine
    disturbs far less than one long run of each.
    """
    for plane in planes[:2]:  # warm caches, and check the values agree
        np.testing.assert_array_equal(ours(plane), lib(plane))
    per_pass = min(_time(ours, planes), _time(lib, planes)) * len(planes)
    work = planes * max(1, int(0.002 / max(per_pass, 1e-9)))
    a, b = [], []
    for i in range(pairs):
        if i % 2:
            b.append(_time(lib, work))
            a.append(_time(ours, work))
        else:
            a.append(_time(ours, work))
            b.append(_time(lib, work))
    ratio = statistics.median(x / y for x, y in zip(a, b))
    return statistics.median(a) * 1e3, statistics.median(b) * 1e3, ratio


def all_planes(meta) -> list[Plane]:
    return [
        (p, t, c, z)
        for p in range(meta.n_fovs)
        for t in range(meta.n_frames)
        for c in range(meta.n_channels)
        for z in range(meta.n_z)
    ]


def bench_nd2(rows: list, pairs: int) -> None:
    import nd2

    for name in ("example-timelapse.nd2", "example-multichannel.nd2", "example-zstack.nd2"):
        path = DATA / "nd2" / "arcadia" / name
        if not path.exists():
            continue
        with open_image(path) as reader, nd2.ND2File(path) as f:
            m = reader.metadata

            def lib(pl: Plane, f=f, reader=reader, n_c=m.n_channels) -> np.ndarray:
                frame = f.read_frame(reader.seq_index(pl[0], pl[1], pl[3]))
                return (frame[pl[2]] if n_c > 1 else frame).copy()

            res = compare(lambda pl, r=reader: r.read_plane(*pl), lib, all_planes(m), pairs)
            rows.append(("nd2", name, f"{m.height}x{m.width}", *res, "read_frame(seq)[c].copy()"))


def bench_czi(rows: list, pairs: int) -> None:
    import aicspylibczi

    path = DATA / "czi" / "CD_s_1_t_3_c_2_z_5.czi"
    if path.exists():
        czi = aicspylibczi.CziFile(str(path))
        with open_image(path) as reader:
            m = reader.metadata

            def lib(pl: Plane) -> np.ndarray:
                img, _ = czi.read_image(T=pl[1], C=pl[2], Z=pl[3])
                return img.reshape(m.height, m.width)

            res = compare(lambda pl: reader.read_plane(*pl), lib, all_planes(m), pairs)
            rows.append(("czi", path.name, f"{m.height}x{m.width}", *res, "read_image(T,C,Z)"))
    path = DATA / "czi" / "tiles_time_z.czi"
    if path.exists():
        czi = aicspylibczi.CziFile(str(path))
        bb = czi.get_mosaic_bounding_box()
        with open_image(path, mosaic="stitch") as reader:
            m = reader.metadata

            def lib_mosaic(pl: Plane) -> np.ndarray:
                img = czi.read_mosaic(
                    region=(bb.x, bb.y, bb.w, bb.h), scale_factor=1.0, T=pl[1], C=pl[2], Z=pl[3]
                )
                return img.reshape(m.height, m.width)

            res = compare(lambda pl: reader.read_plane(*pl), lib_mosaic, all_planes(m), pairs)
            rows.append(
                ("czi", path.name + " (stitch)", f"{m.height}x{m.width}", *res, "read_mosaic(...)")
            )
        with open_image(path, mosaic="tiles") as reader:
            m = reader.metadata

            def lib_tile(pl: Plane) -> np.ndarray:
                img, _ = czi.read_image(T=pl[1], C=pl[2], Z=pl[3], M=pl[0])
                return img.reshape(m.height, m.width)

            res = compare(lambda pl: reader.read_plane(*pl), lib_tile, all_planes(m), pairs)
            rows.append(
                (
                    "czi",
                    path.name + " (tiles)",
                    f"{m.height}x{m.width}",
                    *res,
                    "read_image(T,C,Z,M)",
                )
            )


def _tiff_row(rows: list, path: Path, label: str, pairs: int) -> None:
    with open_image(path) as reader, tifffile.TiffFile(path) as tif:
        m = reader.metadata

        def lib(pl: Plane) -> np.ndarray:
            s, k = reader._locate(*pl)  # same (series, page) for the library call
            return tif.series[s].pages[k].asarray()

        res = compare(lambda pl: reader.read_plane(*pl), lib, all_planes(m), pairs)
        rows.append(
            (m.format, label, f"{m.height}x{m.width}", *res, "series[s].pages[k].asarray()")
        )


def build_tiffs(tmp: Path) -> list[tuple[Path, str]]:
    """OME-TIFFs from real frames: ND2 time-lapse positions, T98G 1022x1024 frames."""
    out = []
    nd2_path = DATA / "nd2" / "arcadia" / "example-timelapse.nd2"
    if nd2_path.exists():
        import nd2

        with nd2.ND2File(nd2_path) as f:
            frames = np.stack([np.array(f.read_frame(i)) for i in range(50)])
        path = tmp / "nd2_positions.ome.tif"
        with tifffile.TiffWriter(path, ome=True) as w:
            for p in range(5):
                w.write(
                    frames[10 * p : 10 * p + 10],
                    photometric="minisblack",
                    metadata={"axes": "TYX"},
                )
        out.append((path, "ND2 frames -> 5-position OME"))
    t98g = sorted((DATA / "phase_timelapse" / "usiigaci_T98G" / "frames").glob("*.tif"))
    if t98g:
        path = tmp / "t98g.ome.tif"
        stack = np.stack([tifffile.imread(p) for p in t98g])
        tifffile.imwrite(path, stack, ome=True, photometric="minisblack", metadata={"axes": "TYX"})
        out.append((path, "T98G frames -> OME"))
    return out


def bench_tiff(rows: list, pairs: int, tmp: Path) -> None:
    ij = DATA / "tiff" / "neubias" / "xyc_16bit__embryo_transmission_fluorescence.tif"
    if ij.exists():
        _tiff_row(rows, ij, ij.name[:32] + "...", pairs)
    for path, label in build_tiffs(tmp):
        _tiff_row(rows, path, label, pairs)


def bench_folder(rows: list, pairs: int) -> None:
    for folder, label in (
        (DATA / "tiff" / "neubias" / "mitocheck-movie", "mitocheck-movie/"),
        (DATA / "phase_timelapse" / "usiigaci_T98G" / "frames", "usiigaci_T98G/frames/"),
    ):
        if not folder.exists():
            continue
        with open_image(folder) as reader:
            m = reader.metadata
            res = compare(
                lambda pl: reader.read_plane(*pl),
                lambda pl: tifffile.imread(reader.frame_file(pl[1], pl[2])),
                all_planes(m),
                pairs,
            )
            rows.append(
                ("tiff-folder", label, f"{m.height}x{m.width}", *res, "tifffile.imread(file)")
            )


def _evict(path: Path) -> None:
    """Drop this one file's pages from the page cache (a cold read; nothing else is touched)."""
    import os

    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def bench_fingerprint(size: int = 2048, frames: int = 180, repeats: int = 5) -> None:
    """Cost of the content fingerprint (pyama_flow.io.fingerprint) of one FOV input
    (phase + GFP, uncompressed, ``size``^2 x ``frames``), once per input per
    workflow start and once more in each job that reads it: warm page cache and
    this file evicted (cold), against reading every byte (a full BLAKE2b)."""
    import hashlib

    from pyama_flow.devtools.bench import simulate
    from pyama_flow.io import read_metadata
    from pyama_flow.io.fingerprint import fingerprint, plane_bytes_of

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = simulate(Path(tmp), size, frames, cells=300)
        print(f"simulated {path.stat().st_size / 2**30:.2f} GB ({size}^2 x {frames} frames x 2 channels, "
              f"uncompressed) in {time.perf_counter() - t0:.0f} s")
        meta = read_metadata(str(path))
        stride = plane_bytes_of(meta)
        rows = []
        for label, cold in (("warm", False), ("cold", True)):
            times = []
            for _ in range(repeats):
                if cold:
                    _evict(path)
                t0 = time.perf_counter()
                fp = fingerprint(path, stride)
                times.append(time.perf_counter() - t0)
            rows.append((label, statistics.median(times) * 1e3))
        n_blocks = (path.stat().st_size - 2 * 65536) // stride + 2
        _evict(path)
        t0 = time.perf_counter()
        h = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
        full = (time.perf_counter() - t0) * 1e3
        print(f"fingerprint {fp}: {n_blocks} blocks of 4 KiB + 2 x 64 KiB ends, stride {stride} B (one plane)")
        for label, ms in rows:
            print(f"fingerprint, {label} cache: {ms:.1f} ms (median of {repeats})")
        print(f"full BLAKE2b of every byte, cold cache: {full:.0f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pairs", type=int, default=200, help="alternating ours/library timing chunks per file"
    )
    parser.add_argument(
        "--fingerprint", action="store_true",
        help="only the content fingerprint's cost on a simulated 2048^2 x 180-frame input",
    )
    args = parser.parse_args(argv)
    if args.fingerprint:
        bench_fingerprint()
        return 0
    if not DATA.exists():
        print(f"no real data at {DATA}; nothing to benchmark")
        return 1
    rows: list[tuple] = []
    bench_nd2(rows, args.pairs)
    bench_czi(rows, args.pairs)
    with tempfile.TemporaryDirectory() as tmp:
        bench_tiff(rows, args.pairs, Path(tmp))
    bench_folder(rows, args.pairs)
    header = ("format", "file", "plane", "ours ms", "library ms", "ours/library", "library call")
    table = [header]
    for fmt, name, shape, ours, lib, ratio, call in rows:
        table.append((fmt, name, shape, f"{ours:.4f}", f"{lib:.4f}", f"{ratio:.2f}", call))
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for i, r in enumerate(table):
        print(" | ".join(v.ljust(w) for v, w in zip(r, widths)))
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
