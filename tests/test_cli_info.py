"""``pyama-flow info`` and ``pyama-flow formats`` on real files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from pyama_flow.cli import main
from pyama_flow.io import FormatInfo

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TIMELAPSE = DATA / "nd2" / "arcadia" / "example-timelapse.nd2"
IJ_FILE = DATA / "tiff" / "neubias" / "xyc_16bit__embryo_transmission_fluorescence.tif"
MITOCHECK = DATA / "tiff" / "neubias" / "mitocheck-movie"
TILES = DATA / "czi" / "tiles_time_z.czi"

pytestmark = pytest.mark.realdata


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real test data not found: {path} (needs ../shared/data)")
    return path


def need_module(name: str) -> None:
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"optional reader library {name!r} is not installed")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_info_json_nd2(capsys: pytest.CaptureFixture[str]) -> None:
    need_module("nd2")
    code, out, _err = run(capsys, "info", need(TIMELAPSE))
    assert code == 0
    meta = json.loads(out)
    assert meta["format"] == "nd2"
    assert meta["dims"] == {"P": 1, "T": 53, "C": 1, "Z": 1, "Y": 64, "X": 64}
    assert meta["channel_names"] == ["GFP 488 nm"]
    assert meta["pixel_size_um"] == pytest.approx(0.325)
    assert len(meta["time_min"]) == 53 and meta["time_min"][0] == 0.0
    assert meta["time_min"][1] * 60 == pytest.approx(0.50016, abs=1e-4)
    assert meta["file_size"] == TIMELAPSE.stat().st_size
    assert "λ" in out  # objective name printed as text, not \\u escapes


def test_info_summary_nd2(capsys: pytest.CaptureFixture[str]) -> None:
    need_module("nd2")
    code, out, _err = run(capsys, "info", need(TIMELAPSE), "--summary")
    assert code == 0
    lines = dict(line.split(":", 1) for line in out.strip().splitlines())
    assert lines["format"].strip() == "nd2"
    assert lines["dims"].strip() == "P=1 T=53 C=1 Z=1 Y=64 X=64"
    assert lines["dtype"].strip() == "uint16"
    assert lines["channels"].strip() == "GFP 488 nm"
    assert lines["frame interval"].strip().startswith("0.008336 min")
    assert "0.5002 s" in lines["frame interval"]
    assert lines["pixel size"].strip() == "0.325 um"
    assert lines["size on disk"].strip() == "808.0 KB"


def test_info_summary_imagej_without_times(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "info", need(IJ_FILE), "--summary")
    assert code == 0
    assert "format:         imagej-tiff" in out
    assert "channels:       BF with Disk, C488" in out
    assert "frame interval: single frame" in out
    assert "pixel size:     0.39 um" in out


def test_info_folder_pattern(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "info", need(MITOCHECK), "--pattern", "*T0000[0-9]*.tif")
    assert code == 0
    meta = json.loads(out)
    assert meta["format"] == "tiff-folder"
    assert meta["n_frames"] == 10 and meta["time_min"] is None
    code, out, _err = run(capsys, "info", MITOCHECK, "--summary")
    assert "T=30" in out and "not recorded (frame_interval_min from the config is used)" in out


def test_info_axes_for_plain_tiff(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import tifffile

    frames = [tifffile.imread(p) for p in sorted(need(MITOCHECK).glob("*.tif"))[:6]]
    path = tmp_path / "plain.tif"
    with tifffile.TiffWriter(path) as w:
        for frame in frames:
            w.write(frame, metadata=None, photometric="minisblack")
    code, _out, err = run(capsys, "info", path)
    assert code == 2 and "give 'axes'" in err
    code, out, _err = run(capsys, "info", path, "--axes", "TYX")
    assert code == 0 and json.loads(out)["n_frames"] == 6
    code, out, _err = run(capsys, "info", path, "--axes", "TCYX", "-o", "sizes={C: 2}")
    assert code == 0 and json.loads(out)["dims"]["C"] == 2


def test_info_reader_option(capsys: pytest.CaptureFixture[str]) -> None:
    need_module("aicspylibczi")
    code, out, _err = run(capsys, "info", need(TILES), "-o", "mosaic=tiles")
    assert code == 0 and json.loads(out)["n_fovs"] == 4
    code, _out, err = run(capsys, "info", TILES, "-o", "mosaic=reject")
    assert code == 2 and err.startswith("error: ") and "mosaic CZI (4 tiles)" in err


def test_info_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "movie.avi"
    bad.write_bytes(b"x")
    code, out, err = run(capsys, "info", bad)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and ".nd2" in err and ".czi" in err
    need_module("nd2")
    src = need(TIMELAPSE).read_bytes()
    cut = tmp_path / "cut.nd2"
    cut.write_bytes(src[: len(src) // 2])
    code, _out, err = run(capsys, "info", cut)
    assert code == 2 and err.count("\n") == 1 and str(cut) in err


def test_formats_lists_libraries(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "formats")
    assert code == 0
    assert "Nikon ND2" in out and "Zeiss CZI" in out and "Leica LIF" in out
    assert "folder of one-TIFF-per-frame" in out
    code, out, _err = run(capsys, "formats", "--json")
    rows = {r["library"]: r for r in json.loads(out)}
    assert rows["tifffile"]["installed"] is True and rows["tifffile"]["install"] is None
    assert set(rows) == {"tifffile", "nd2", "aicspylibczi", "liffile"}


def test_formats_shows_pip_command_when_missing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FormatInfo, "installed", property(lambda self: self.library == "tifffile"))
    code, out, _err = run(capsys, "formats")
    assert code == 0
    nd2_line = next(line for line in out.splitlines() if line.startswith("Nikon ND2"))
    czi_line = next(line for line in out.splitlines() if line.startswith("Zeiss CZI"))
    assert nd2_line.rstrip().endswith("no: pip install nd2")
    assert czi_line.rstrip().endswith("no: pip install aicspylibczi")


def test_info_and_thumbnail_of_a_real_lif(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The LAS X x-y-z-t image: summary with its dims, stamps and pixel size; a thumbnail
    of a λ band's max projection; the file's λ-sweep image refused in one line."""
    lif = DATA / "lif" / "LeicaLASX_wavelength-sweep_example.lif"
    need(lif)
    code, out, _ = run(capsys, "info", "--summary", lif, "-o", "image=x_y_z_t_lambdaEmi")
    assert code == 0
    assert "dims:           P=1 T=2 C=10 Z=11 Y=64 X=64" in out
    assert "frame interval: 1.349 min (median, from plane time stamps)" in out
    assert "pixel size:     0.1048 um" in out and "λ 575 nm" in out
    png = tmp_path / "t.png"
    code, _, _ = run(capsys, "thumbnail", lif, "--option", "image=2", "--channel", "λ 575 nm",
                     "--frame", "1", "--mip", "-o", png)
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = run(capsys, "info", lif)
    assert code == 2 and err.count("\n") == 1 and "emission λ sweep (λ: 20) without time" in err
