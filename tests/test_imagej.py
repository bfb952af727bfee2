"""The per-FOV stacks open correctly in a real ImageJ and in a tifffile-only Python.

ImageJ runs headless under Xvfb (``xvfb-run``, the Debian ``imagej`` package's
``ij.jar``; ``.ci/run`` installs both): a macro opens each stack and prints its
dimensions, bit depth, calibration and pixel values, which must equal what
tifffile reads. Skipped with the reason when ImageJ, Java or Xvfb are absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile

from pyama_flow.io.extract import extract

from pyama_flow.segmentation.step import segment

from pyama_flow.tracking.step import track
from pyama_flow.io.stacks import Calibration, read_stack, write_stack

IJ_JARS = ("/usr/share/java/ij.jar", "/usr/share/imagej/ij.jar")
#: (x, y) pixels whose values the macro prints in every frame
PROBES = [(0, 0), (5, 3), (17, 40), (100, 100), (160, 161), (200, 90), (250, 301), (319, 319)]


def imagej_jar() -> str:
    """Path of ij.jar, or skip with the reason."""
    jar = next((j for j in IJ_JARS if os.path.isfile(j)), None)
    missing = [name for name, ok in (("ImageJ (ij.jar; apt-get install imagej)", jar),
                                     ("java", shutil.which("java")),
                                     ("xvfb-run (apt-get install xvfb)", shutil.which("xvfb-run")))
               if not ok]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    return jar  # type: ignore[return-value]


def run_imagej(files: list[Path], tmp_path: Path) -> tuple[str, dict[int, dict]]:
    """Open each file in ImageJ; (ImageJ version, per file: header facts and per-frame values)."""
    xs = ",".join(str(x) for x, _ in PROBES)
    ys = ",".join(str(y) for _, y in PROBES)
    names = ",".join(f'"{f}"' for f in files)
    macro = textwrap.dedent(f"""\
        setBatchMode(true);
        print("VERSION " + getVersion());
        files = newArray({names});
        xs = newArray({xs}); ys = newArray({ys});
        for (i = 0; i < files.length; i++) {{
            open(files[i]);
            getDimensions(w, h, c, z, t);
            getPixelSize(unit, pw, ph);
            print("FILE " + i + " " + w + " " + h + " " + c + " " + z + " " + t + " " + bitDepth()
                  + " " + unit + " " + d2s(pw, 9) + " " + d2s(Stack.getFrameInterval(), 6));
            for (f = 1; f <= t; f++) {{
                Stack.setFrame(f);
                s = "";
                for (k = 0; k < xs.length; k++) {{
                    if (xs[k] < w && ys[k] < h) s = s + " " + d2s(getPixel(xs[k], ys[k]), 0);
                }}
                getStatistics(area, mean, min, max);
                print("FRAME " + i + " " + f + " " + d2s(min, 0) + " " + d2s(max, 0) + " "
                      + d2s(mean, 6) + s);
            }}
            close();
        }}
        """)
    path = tmp_path / "probe.ijm"
    path.write_text(macro, encoding="utf-8")
    cmd = ["xvfb-run", "-a", "java", "-Xmx512m", "-cp", imagej_jar(), "ij.ImageJ", "-batch", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    version = ""
    out: dict[int, dict] = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if parts[:1] == ["VERSION"]:
            version = parts[1]
        elif parts[:1] == ["FILE"]:
            i = int(parts[1])
            out[i] = {"w": int(parts[2]), "h": int(parts[3]), "c": int(parts[4]), "z": int(parts[5]),
                      "t": int(parts[6]), "bits": int(parts[7]), "unit": parts[8],
                      "pixel": float(parts[9]), "interval": float(parts[10]), "frames": []}
        elif parts[:1] == ["FRAME"]:
            out[int(parts[1])]["frames"].append([float(v) for v in parts[3:]])
    assert version, f"ImageJ did not run: {proc.stdout[-500:]} {proc.stderr[-500:]}"
    return version, out


def expected_values(stack: np.ndarray) -> list[list[float]]:
    """What the macro prints per frame: min, max, mean, then the probe pixels."""
    rows = []
    for frame in stack.astype(np.float64):
        h, w = frame.shape
        probes = [frame[y, x] for x, y in PROBES if x < w and y < h]
        rows.append([frame.min(), frame.max(), frame.mean(), *probes])
    return rows


def assert_same(ij: dict, path: Path, bits: int, cal: Calibration) -> None:
    """ImageJ's view of ``path`` equals tifffile's: T frames as time, calibration, values."""
    stack = read_stack(path)
    t, h, w = stack.shape
    assert (ij["w"], ij["h"], ij["c"], ij["z"], ij["t"]) == (w, h, 1, 1, t), path.name
    assert ij["bits"] == bits, path.name
    assert ij["unit"] in ("µm", "um", "micron", "microns"), (path.name, ij["unit"])
    assert ij["pixel"] == pytest.approx(cal.pixel_size_um, rel=1e-6)
    assert ij["interval"] == pytest.approx(cal.frame_interval_s, rel=1e-6)
    for f, (got, want) in enumerate(zip(ij["frames"], expected_values(stack), strict=True)):
        assert got[:2] == want[:2] and got[3:] == want[3:], (path.name, f)
        assert got[2] == pytest.approx(want[2], abs=1e-5), (path.name, f)


@pytest.fixture(scope="module")
def fov_outputs(small_experiment, tmp_path_factory):
    """raw, segmentation and labels stacks of FOV 1, written by the steps with the default codec."""
    out = tmp_path_factory.mktemp("ij")
    raw = out / "raw_ch0.tif"
    extract(str(small_experiment["path"]), {}, 1, 0, 0, str(raw))
    segment(str(raw), str(out / "segmentation.tif"), "logstd", {})
    track(str(out / "segmentation.tif"), str(out / "labels.tif"), str(out / "tracks.csv"), {})
    cfg = small_experiment["cfg"]
    return out, Calibration(cfg.pixel_size_um, cfg.frame_interval_min * 60)


def test_default_stacks_open_correctly_in_imagej(fov_outputs, tmp_path):
    out, cal = fov_outputs
    # wide labels (more than 65535 ids) are uint32: ImageJ shows them as 32-bit, values exact
    wide = np.zeros((3, 64, 48), np.uint32)
    wide[:, 10:20, 5:30] = 70000 + np.arange(3)[:, None, None]
    wide[1, 40:, :] = 16_000_000
    write_stack(tmp_path / "wide.tif", iter(wide), 3, (64, 48), np.uint32, calibration=cal)
    # 8-bit raw frames (LIF, many cameras)
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (4, 50, 70), dtype=np.uint8)
    write_stack(tmp_path / "u8.tif", iter(small), 4, (50, 70), np.uint8, calibration=cal)
    files = [out / "raw_ch0.tif", out / "segmentation.tif", out / "labels.tif",
             tmp_path / "wide.tif", tmp_path / "u8.tif"]
    _, seen = run_imagej(files, tmp_path)
    assert read_stack(out / "labels.tif").dtype == np.uint16  # ids fit: 16-bit integers in ImageJ
    assert read_stack(out / "labels.tif").max() > 0
    for i, bits in enumerate([16, 16, 16, 32, 8]):
        assert i in seen, f"ImageJ could not open {files[i].name}"
        assert_same(seen[i], files[i], bits, cal)


def test_predictor_is_what_old_imagej_misreads(fov_outputs, tmp_path):
    """Control: the same frames with deflate + horizontal predictor (what the
    stacks used to be) come out wrong in ImageJ < 1.53v, so the comparison above
    does catch a wrongly decoded stack."""
    out, cal = fov_outputs
    stack = read_stack(out / "raw_ch0.tif")
    path = tmp_path / "predictor.tif"
    tifffile.imwrite(path, stack, imagej=True, compression="zlib", predictor=True,
                     resolution=(1 / cal.pixel_size_um,) * 2,
                     metadata={"axes": "TYX", "unit": "um", "finterval": cal.frame_interval_s})
    version, seen = run_imagej([path], tmp_path)
    if version >= "1.53v":
        pytest.skip(f"ImageJ {version} decodes the predictor correctly")
    assert seen[0]["t"] == len(stack)
    assert [row[3:] for row in seen[0]["frames"]] != [row[3:] for row in expected_values(stack)]


def test_default_stacks_read_without_imagecodecs(fov_outputs):
    """napari installed with pip has tifffile but no imagecodecs: a plain tifffile
    must read the default stacks (deflate needs only Python's zlib)."""
    out, cal = fov_outputs
    code = textwrap.dedent(f"""\
        import sys
        sys.modules["imagecodecs"] = None  # as if not installed
        import json, tifffile
        res = {{}}
        for name in ("raw_ch0.tif", "segmentation.tif", "labels.tif"):
            with tifffile.TiffFile({str(out)!r} + "/" + name) as tif:
                data = tif.asarray()
                num, den = tif.pages[0].tags["XResolution"].value
                res[name] = [tif.series[0].axes, list(data.shape), str(data.dtype),
                             int(data.astype("int64").sum()), den / num,
                             tif.imagej_metadata.get("finterval")]
        print(json.dumps(res))
        """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-800:]
    import json

    res = json.loads(proc.stdout)
    for name, (axes, shape, dtype, total, pixel, interval) in res.items():
        stack = read_stack(out / name)
        assert axes == "TYX" and tuple(shape) == stack.shape and dtype == str(stack.dtype), name
        assert total == int(stack.astype(np.int64).sum()), name
        assert pixel == pytest.approx(cal.pixel_size_um) and interval == pytest.approx(cal.frame_interval_s)
