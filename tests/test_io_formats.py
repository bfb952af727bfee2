"""Input readers on real microscopy files: ND2, CZI, OME/ImageJ/plain TIFF, frame folders.

Expected values come from the files' own libraries (nd2, aicspylibczi,
tifffile) and from ``known-metadata.yml`` (what NIS-Elements shows for the
Arcadia ND2 files). Files built for a test (truncated copies, OME-TIFF re-packs
of real ND2 frames) are written to ``tmp_path``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from pyama_flow.io import FORMATS, FormatInfo, open_image, read_metadata
from pyama_flow.io.base import InputError
from pyama_flow.io.folder import order_frames

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ND2_DIR = DATA / "nd2" / "arcadia"
CZI_DIR = DATA / "czi"
NEUBIAS = DATA / "tiff" / "neubias"
IJ_FILE = NEUBIAS / "xyc_16bit__embryo_transmission_fluorescence.tif"
MITOCHECK = NEUBIAS / "mitocheck-movie"
LIF_DIR = DATA / "lif"
LIF_SWEEP = LIF_DIR / "LeicaLASX_wavelength-sweep_example.lif"
LIF_XZ = LIF_DIR / "testdata_2channel_xz.lif"

pytestmark = pytest.mark.realdata


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real test data not found: {path} (needs ../shared/data)")
    return path


def need_module(name: str) -> None:
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"optional reader library {name!r} is not installed")


# ----------------------------------------------------------------------------- ND2
# NIS-Elements optical-configuration names in the YAML vs. the channel names
# stored in the files ("Mono" is brightfield, "GFP 488 nm" is the FITC set).
_CHANNEL_ALIASES = {"BRIGHTFIELD": ("MONO", "BRIGHTFIELD"), "FITC": ("FITC", "GFP")}


def _known_nd2() -> dict:
    need_module("nd2")
    return yaml.safe_load(need(ND2_DIR / "known-metadata.yml").read_text())


def _nd2_params() -> list[str]:
    path = ND2_DIR / "known-metadata.yml"
    if not path.exists():
        return ["<missing>"]
    return sorted(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("name", _nd2_params())
def test_nd2_matches_known_metadata(name: str) -> None:
    known = _known_nd2()[name]
    with open_image(need(ND2_DIR / name)) as reader:
        m = reader.metadata
        assert m.format == "nd2"
        assert m.n_channels == len(known)
        for i, (yaml_name, info) in enumerate(known.items()):
            res = info["resolution"]
            assert (m.height, m.width, m.n_z) == (
                res["y_size_px"],
                res["x_size_px"],
                res["z_size_px"],
            )
            assert m.pixel_size_um == pytest.approx(res["xy_step_um"], rel=1e-9)
            if m.n_z > 1:
                assert m.extra["z_step_um"] == pytest.approx(res["z_step_um"])
            aliases = _CHANNEL_ALIASES.get(yaml_name, (yaml_name,))
            assert any(a in m.channel_names[i].upper() for a in aliases), (
                yaml_name,
                m.channel_names,
            )
            optics, acq = info["optics"], info["acquisition"]
            assert m.extra["magnification"] == pytest.approx(optics["magnification"])
            assert m.extra["numerical_aperture"] == pytest.approx(optics["numerical_aperture"])
            assert m.extra["zoom"] == pytest.approx(acq["zoom"])
            assert m.extra["exposure_s"][i] == pytest.approx(acq["exposure_time_s"])
            assert m.extra["binning"][i] == acq["binning"]
        assert m.objective and f"{known[next(iter(known))]['optics']['magnification']:g}x" in (
            m.objective
        )
        assert m.microscope == "Ti2 Microscope"


def test_nd2_dims_and_names_of_every_file() -> None:
    need_module("nd2")
    expected = {
        "example-timelapse.nd2": ((1, 53, 1, 1, 64, 64), ["GFP 488 nm"]),
        "example-multichannel.nd2": (
            (1, 1, 4, 1, 256, 256),
            ["Mono", "DAPI", "FITC BP", "TRITC BP"],
        ),
        "example-pbmc.nd2": ((1, 1, 4, 1, 256, 256), ["Mono", "DAPI", "FITC BP", "TRITC BP"]),
        "example-cerevisiae.nd2": ((1, 1, 2, 1, 256, 256), ["DIC", "FITC BP"]),
        "example-zstack.nd2": ((1, 1, 1, 11, 128, 128), ["FITC BP"]),
    }
    for name, (dims, channels) in expected.items():
        m = read_metadata(need(ND2_DIR / name))
        assert tuple(m.dims.values()) == dims, name
        assert m.channel_names == channels, name
        assert m.dtype == "uint16"


def test_nd2_time_stamps_are_the_real_frame_times() -> None:
    need_module("nd2")
    import nd2

    path = need(ND2_DIR / "example-timelapse.nd2")
    with open_image(path) as reader, nd2.ND2File(path) as f:
        times = np.asarray(reader.metadata.time_min)
        events = f.events(orient="list")  # a second route to the same stamps
        stamps_s = np.asarray(events["Time [s]"], dtype=np.float64)
        period_ms = f.experiment[0].parameters.periodDiff.avg
    assert len(times) == 53
    assert times[0] == 0.0
    np.testing.assert_allclose(times, (stamps_s - stamps_s[0]) / 60.0, atol=1e-9)
    # NIS-Elements: 500 ms exposure, back to back -> 500.16 ms mean period
    assert np.diff(times).mean() * 60000 == pytest.approx(period_ms, rel=1e-6)
    assert np.all(np.diff(times) > 0)
    assert reader.metadata.extra["time_source"] == "frame time stamps"


@pytest.mark.parametrize(
    "name", sorted(p.name for p in ND2_DIR.glob("*.nd2")) or ["example-timelapse.nd2"]
)
def test_nd2_pixels_equal_nd2_library(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    need_module("nd2")
    import nd2

    path = need(ND2_DIR / name)
    with nd2.ND2File(path) as f:
        full, dims = f.asarray(), list(f.sizes)
    for axis in "PTCZ":  # nd2 drops size-1 axes: put them back, order P T C Z Y X
        if axis not in dims:
            full, dims = full[np.newaxis], [axis, *dims]
    ref = full.transpose([dims.index(a) for a in "PTCZYX"])
    # the reader must never load the whole file
    monkeypatch.setattr(nd2.ND2File, "asarray", lambda *a, **k: pytest.fail("asarray called"))
    monkeypatch.setattr(nd2.ND2File, "to_dask", lambda *a, **k: pytest.fail("to_dask called"))
    with open_image(path) as reader:
        m = reader.metadata
        ref = ref.reshape(m.n_fovs, m.n_frames, m.n_channels, m.n_z, m.height, m.width)
        for p in range(m.n_fovs):
            for t in range(m.n_frames):
                for c in range(m.n_channels):
                    for z in range(m.n_z):
                        plane = reader.read_plane(p, t, c, z)
                        assert plane.dtype == np.uint16 and plane.flags.c_contiguous
                        np.testing.assert_array_equal(plane, ref[p, t, c, z])
        if m.n_z > 1:
            np.testing.assert_array_equal(
                reader.read_frame(0, 0, 0, "max"), ref[0, 0, 0].max(axis=0)
            )
            np.testing.assert_array_equal(reader.read_frame(0, 0, 0, 7), ref[0, 0, 0, 7])


def test_nd2_channel_by_name_and_out_of_range() -> None:
    need_module("nd2")
    with open_image(need(ND2_DIR / "example-multichannel.nd2")) as reader:
        assert reader.channel_index("FITC BP") == 2
        assert reader.channel_index("dapi") == 1
        with pytest.raises(InputError, match=r"channel 4 is out of range \(valid: 0-3\)"):
            reader.read_plane(0, 0, 4)
        with pytest.raises(InputError, match=r"FOV 1 is out of range \(valid: 0-0\)"):
            reader.read_frame(1, 0, 0)
        with pytest.raises(InputError, match=r"Z plane 1 is out of range \(valid: 0-0\)"):
            reader.read_frame(0, 0, 0, 1)
        with pytest.raises(InputError, match="no channel named 'GFP'"):
            reader.channel_index("GFP")


def test_nd2_truncated_file_is_a_one_line_input_error(tmp_path: Path) -> None:
    need_module("nd2")
    src = need(ND2_DIR / "example-timelapse.nd2").read_bytes()
    cut = tmp_path / "half.nd2"
    cut.write_bytes(src[: len(src) // 2])
    with pytest.raises(InputError) as err:
        with open_image(cut) as reader:
            for t in range(reader.metadata.n_frames):
                reader.read_plane(0, t, 0)
    msg = str(err.value)
    assert str(cut) in msg and "\n" not in msg and msg.isprintable()
    assert "ND2" in msg


def test_nd2_two_readers_share_a_file() -> None:
    need_module("nd2")
    path = need(ND2_DIR / "example-timelapse.nd2")
    a, b = open_image(path), open_image(path)
    first = a.read_plane(0, 3, 0)
    a.close()
    np.testing.assert_array_equal(b.read_plane(0, 3, 0), first)
    b.close()


def test_nd2_unknown_option() -> None:
    need_module("nd2")
    with pytest.raises(InputError, match="axes do not apply to ND2"):
        open_image(need(ND2_DIR / "example-timelapse.nd2"), axes="TYX")
    # None-valued options are ignored, so callers may pass every option they know
    open_image(ND2_DIR / "example-timelapse.nd2", axes=None, pattern=None).close()


# ----------------------------------------------------------------------------- OME-TIFF
def _repack_nd2_as_ome(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """Multi-position OME-TIFF from real ND2 time-lapse frames.

    FOV p holds frames 10p..10p+4 as channel 0 and the same frames flipped as
    channel 1; plane DeltaT are the ND2's own time stamps in seconds.
    """
    need_module("nd2")
    import nd2

    with nd2.ND2File(need(ND2_DIR / "example-timelapse.nd2")) as f:
        stamps = np.array([f.frame_metadata(i).channels[0].time.relativeTimeMs for i in range(53)])
        frames = np.stack([np.array(f.read_frame(i)) for i in range(53)])
    n_p, n_t = 3, 5
    data = np.empty((n_p, n_t, 2, 64, 64), np.uint16)
    delta_s = np.empty((n_p, n_t, 2))
    for p in range(n_p):
        for t in range(n_t):
            data[p, t, 0] = frames[10 * p + t]
            data[p, t, 1] = frames[10 * p + t, ::-1]
            delta_s[p, t, :] = stamps[10 * p + t] / 1000.0 + np.array([0.0, 0.05])
    out = tmp_path / "positions.ome.tif"
    with tifffile.TiffWriter(out, ome=True) as w:
        for p in range(n_p):
            w.write(
                data[p],
                photometric="minisblack",
                metadata={
                    "axes": "TCYX",
                    "Name": f"Pos{p}",
                    "Channel": {"Name": ["GFP", "GFP flipped"]},
                    "PhysicalSizeX": 0.325,
                    "PhysicalSizeY": 0.325,
                    "Plane": {
                        "DeltaT": delta_s[p].reshape(-1).tolist(),
                        "DeltaTUnit": ["s"] * (n_t * 2),
                    },
                },
            )
    return out, data, delta_s


def test_ome_tiff_positions_are_fovs_with_plane_times(tmp_path: Path) -> None:
    path, data, delta_s = _repack_nd2_as_ome(tmp_path)
    with open_image(path) as reader:
        m = reader.metadata
        assert m.format == "ome-tiff"
        assert (m.n_fovs, m.n_frames, m.n_channels, m.n_z, m.height, m.width) == (
            3,
            5,
            2,
            1,
            64,
            64,
        )
        assert m.channel_names == ["GFP", "GFP flipped"]
        assert m.pixel_size_um == pytest.approx(0.325)
        for p in range(3):
            for t in range(5):
                for c in range(2):
                    np.testing.assert_array_equal(reader.read_plane(p, t, c), data[p, t, c])
            for c in range(2):
                expected = (delta_s[p, :, c] - delta_s[p, 0, c]) / 60.0
                np.testing.assert_allclose(reader.frame_times(p, c), expected, atol=1e-9)
        np.testing.assert_allclose(m.time_min, (delta_s[0, :, 0] - delta_s[0, 0, 0]) / 60.0)
        # tifffile's own reading of the same plane
        with tifffile.TiffFile(path) as tif:
            np.testing.assert_array_equal(
                reader.read_plane(2, 4, 1), tif.series[2].asarray()[4, 1]
            )


def test_tiff_truncated_is_a_one_line_input_error(tmp_path: Path) -> None:
    src = need(IJ_FILE).read_bytes()
    for frac in (0.5, 0.9):
        cut = tmp_path / f"cut{frac}.tif"
        cut.write_bytes(src[: int(len(src) * frac)])
        with pytest.raises(InputError) as err:
            with open_image(cut) as reader:
                for c in range(reader.metadata.n_channels):
                    reader.read_plane(0, 0, c)
        msg = str(err.value)
        assert str(cut) in msg and "\n" not in msg and "truncated" in msg


@pytest.mark.parametrize("frac", [0.5, 0.99])
def test_ome_tiff_truncated_is_a_one_line_input_error(tmp_path: Path, frac: float) -> None:
    path, _data, _dt = _repack_nd2_as_ome(tmp_path)
    src = path.read_bytes()
    cut = tmp_path / "cut.ome.tif"
    cut.write_bytes(src[: int(len(src) * frac)])  # 0.99: only the OME-XML is lost
    with pytest.raises(InputError) as err:
        with open_image(cut) as reader:
            m = reader.metadata
            for p in range(m.n_fovs):
                for t in range(m.n_frames):
                    reader.read_plane(p, t, 0)
    assert str(cut) in str(err.value) and "\n" not in str(err.value)
    assert "truncated" in str(err.value)


# ----------------------------------------------------------------------------- ImageJ / plain
def test_imagej_hyperstack_two_channels() -> None:
    path = need(IJ_FILE)
    with open_image(path) as reader, tifffile.TiffFile(path) as tif:
        m = reader.metadata
        assert m.format == "imagej-tiff"
        assert (m.n_fovs, m.n_frames, m.n_channels, m.n_z, m.height, m.width) == (
            1,
            1,
            2,
            1,
            341,
            341,
        )
        assert m.dtype == "uint16"
        assert m.channel_names == ["BF with Disk", "C488"]  # ImageJ Info "Channel name #k"
        assert m.pixel_size_um == pytest.approx(0.39, rel=1e-6)
        assert m.time_min is None
        ref = tif.asarray()
        for c in range(2):
            np.testing.assert_array_equal(reader.read_plane(0, 0, c), ref[c])
        np.testing.assert_array_equal(
            reader.read_frame(0, 0, reader.channel_index("C488")), ref[1]
        )


def test_imagej_single_ifd_contiguous_stack(tmp_path: Path) -> None:
    """ImageJ's > 4 GB layout: one IFD, planes stored back to back after it."""
    src = tifffile.imread(need(IJ_FILE))  # (2, 341, 341) real planes
    data = np.stack([src, src[:, ::-1], src[:, :, ::-1]])  # (T=3, C=2, Y, X)
    desc = (
        "ImageJ=1.53t\nimages=6\nchannels=2\nframes=3\nhyperstack=true\n"
        "mode=grayscale\nfinterval=600.0\n"
    )
    path = tmp_path / "bigstack.tif"
    tifffile.imwrite(path, data[0, 0], description=desc, metadata=None)
    with tifffile.TiffFile(path) as tif:  # the plane data sits at the end of the file
        assert tif.pages[0].dataoffsets[0] + tif.pages[0].databytecounts[0] == path.stat().st_size
    with open(path, "ab") as fh:
        fh.write(data.reshape(-1, 341, 341)[1:].tobytes())
    with tifffile.TiffFile(path) as tif:
        assert len(tif.series[0].pages) == 1 and tif.series[0].shape == (3, 2, 341, 341)
    with open_image(path) as reader:
        m = reader.metadata
        assert (m.n_frames, m.n_channels) == (3, 2)
        assert m.time_min == [0.0, 10.0, 20.0]  # finterval 600 s
        for t in range(3):
            for c in range(2):
                np.testing.assert_array_equal(reader.read_plane(0, t, c), data[t, c])
    # cut: the missing planes are reported at open
    raw = path.read_bytes()
    cut = tmp_path / "bigstack_cut.tif"
    cut.write_bytes(raw[: len(raw) - 1000])
    with pytest.raises(InputError, match="truncated"):
        open_image(cut)


def test_plain_tiff_needs_axes_and_uses_them(tmp_path: Path) -> None:
    frames = np.stack(
        [np.asarray(tifffile.imread(p)) for p in sorted(need(MITOCHECK).glob("*.tif"))[:12]]
    )
    path = tmp_path / "plain.tif"
    with tifffile.TiffWriter(path) as w:
        for frame in frames:  # 12 separate pages, no shape metadata
            w.write(frame, metadata=None, photometric="minisblack")
    with pytest.raises(InputError, match="give 'axes'"):
        open_image(path)
    with open_image(path, axes="TYX") as reader:
        assert (reader.metadata.n_frames, reader.metadata.n_channels) == (12, 1)
        np.testing.assert_array_equal(reader.read_plane(0, 11, 0), frames[11])
    with open_image(path, axes="TCYX", sizes={"C": 2}) as reader:
        m = reader.metadata
        assert (m.n_frames, m.n_channels) == (6, 2)
        for t in range(6):
            for c in range(2):
                np.testing.assert_array_equal(reader.read_plane(0, t, c), frames[2 * t + c])
    with open_image(path, axes="CTYX", sizes={"C": 3}) as reader:
        np.testing.assert_array_equal(reader.read_plane(0, 1, 2), frames[2 * 4 + 1])
    with pytest.raises(InputError, match="need 'sizes'"):
        open_image(path, axes="TCZYX")


def test_big_endian_tiff_values(tmp_path: Path) -> None:
    src = tifffile.imread(need(IJ_FILE))
    path = tmp_path / "be.tif"
    tifffile.imwrite(path, src, byteorder=">", photometric="minisblack", metadata={"axes": "CYX"})
    with open_image(path) as reader:
        plane = reader.read_plane(0, 0, 1)
    assert plane.dtype == np.dtype("uint16") and plane.dtype.isnative
    np.testing.assert_array_equal(plane, src[1])


def test_compressed_tiff_goes_through_tifffile(tmp_path: Path) -> None:
    src = tifffile.imread(need(IJ_FILE))
    path = tmp_path / "zlib.tif"
    tifffile.imwrite(
        path, src, compression="zlib", photometric="minisblack", metadata={"axes": "CYX"}
    )
    with open_image(path) as reader:
        np.testing.assert_array_equal(reader.read_plane(0, 0, 0), src[0])
        np.testing.assert_array_equal(reader.read_plane(0, 0, 1), src[1])


def test_rgb_tiff_is_rejected(tmp_path: Path) -> None:
    gray = tifffile.imread(need(MITOCHECK) / sorted(os.listdir(MITOCHECK))[0])
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, np.stack([gray] * 3, axis=-1), photometric="rgb")
    with pytest.raises(InputError, match="RGB images are not supported"):
        open_image(path)


# ----------------------------------------------------------------------------- CZI
def test_czi_dims_channels_times_and_pixels() -> None:
    need_module("aicspylibczi")
    import aicspylibczi

    path = need(CZI_DIR / "CD_s_1_t_3_c_2_z_5.czi")
    czi = aicspylibczi.CziFile(str(path))
    with open_image(path) as reader:
        m = reader.metadata
        assert (m.n_fovs, m.n_frames, m.n_channels, m.n_z, m.height, m.width) == (
            1,
            3,
            2,
            5,
            170,
            240,
        )
        assert m.dtype == "uint16"
        assert m.channel_names == ["LED555", "LED470"]
        assert m.pixel_size_um == pytest.approx(0.090576674152210312)
        assert m.objective == "Plan-Apochromat 50x/1.2"
        assert m.extra["time_source"] == "sub-block acquisition times"
        # AcquisitionTime of the channel-0, Z-0 sub-blocks: 09:47:08.2794823,
        # 09:48:08.3049156, 09:49:08.3703511
        np.testing.assert_allclose(m.time_min, [0.0, 60.0254333 / 60, 120.0908688 / 60], atol=1e-6)
        np.testing.assert_allclose(
            reader.frame_times(0, 1), [0.0, 60.0204329 / 60, 120.0878686 / 60], atol=1e-6
        )
        for t in range(3):
            for c in range(2):
                stack = []
                for z in range(5):
                    ref, _ = czi.read_image(T=t, C=c, Z=z)
                    plane = reader.read_plane(0, t, c, z)
                    np.testing.assert_array_equal(plane, ref.reshape(170, 240))
                    stack.append(plane)
                np.testing.assert_array_equal(
                    reader.read_frame(0, t, c, "max"), np.max(stack, axis=0)
                )


def test_czi_single_plane() -> None:
    need_module("aicspylibczi")
    m = read_metadata(need(CZI_DIR / "s_1_t_1_c_1_z_1.czi"))
    assert tuple(m.dims.values()) == (1, 1, 1, 1, 325, 475)
    assert m.channel_names == ["Bright"]
    assert m.pixel_size_um == pytest.approx(1.0833333333333333)
    assert m.time_min == [0.0]


def test_czi_mosaic_stitch_tiles_reject() -> None:
    need_module("aicspylibczi")
    import aicspylibczi

    path = need(CZI_DIR / "tiles_time_z.czi")
    czi = aicspylibczi.CziFile(str(path))
    with pytest.raises(InputError, match="mosaic CZI \\(4 tiles\\)") as err:
        open_image(path, mosaic="reject")
    assert "\n" not in str(err.value)
    with open_image(path, mosaic="tiles") as tiles, open_image(path) as stitched:
        mt, ms = tiles.metadata, stitched.metadata
        assert (mt.n_fovs, mt.n_frames, mt.n_channels, mt.n_z, mt.height, mt.width) == (
            4,
            2,
            2,
            2,
            256,
            256,
        )
        assert (ms.n_fovs, ms.n_frames, ms.n_channels, ms.n_z, ms.height, ms.width) == (
            1,
            2,
            2,
            2,
            512,
            512,
        )
        assert ms.dtype == "uint8" and ms.channel_names == ["Ch1", "T PMT"]
        for t in range(2):
            for z in range(2):
                boxes = czi.get_all_mosaic_tile_bounding_boxes(T=t, C=0, Z=z)
                x0 = min(b.x for b in boxes.values())
                y0 = min(b.y for b in boxes.values())
                assembled = np.zeros((512, 512), np.uint8)
                for tile, box in boxes.items():
                    ref, _ = czi.read_image(T=t, C=0, Z=z, M=tile.m_index)
                    ours = tiles.read_plane(tile.m_index, t, 0, z)
                    np.testing.assert_array_equal(ours, ref.reshape(256, 256))
                    assembled[box.y - y0 : box.y - y0 + 256, box.x - x0 : box.x - x0 + 256] = ours
                np.testing.assert_array_equal(stitched.read_plane(0, t, 0, z), assembled)
                assert assembled.any()


def test_czi_truncated_is_a_one_line_input_error(tmp_path: Path) -> None:
    need_module("aicspylibczi")
    src = need(CZI_DIR / "CD_s_1_t_3_c_2_z_5.czi").read_bytes()
    cut = tmp_path / "half.czi"
    cut.write_bytes(src[: len(src) // 2])
    with pytest.raises(InputError) as err:
        with open_image(cut) as reader:
            m = reader.metadata
            for t in range(m.n_frames):
                for c in range(m.n_channels):
                    for z in range(m.n_z):
                        reader.read_plane(0, t, c, z)
    assert str(cut) in str(err.value) and "\n" not in str(err.value)


# ----------------------------------------------------------------------------- LIF
def test_lif_xyzt_image_dims_metadata_and_pixels() -> None:
    """The x-y-z-t image of the LAS X sweep file: T=2, λ=10 bands as channels, Z=11, 64x64 uint8."""
    need_module("liffile")
    import liffile

    path = need(LIF_SWEEP)
    with open_image(path, image="x_y_z_t_lambdaEmi") as reader:
        m = reader.metadata
        assert (m.n_fovs, m.n_frames, m.n_channels, m.n_z, m.height, m.width) == (1, 2, 10, 11, 64, 64)
        assert m.dtype == "uint8" and m.format == "lif"
        # emission bands 550-595 nm in 5 nm steps (LambdaDetectionBegin/StepSize of the XML)
        assert m.channel_names == [f"λ {nm} nm" for nm in range(550, 600, 5)]
        # the planes' own stamps: frame 1 starts 80.91 s after frame 0
        assert m.time_min == pytest.approx([0.0, 80.91 / 60], abs=1e-6)
        assert m.extra["time_source"] == "plane time stamps"
        assert m.pixel_size_um == pytest.approx(0.1048144, rel=1e-5)
        assert m.extra["z_step_um"] == pytest.approx(0.5002, rel=1e-3)
        assert m.objective == "HC PL APO CS2 63x/1.30 GLYC" and m.microscope == "TCS SP8"
        assert m.extra["lif_dims"] == {"T": 2, "λ": 10, "Z": 11, "Y": 64, "X": 64}
        with liffile.LifFile(path) as lif:
            whole = lif.images["x_y_z_t_lambdaEmi"].asarray()  # (T, λ, Z, Y, X)
        for t, c, z in [(0, 0, 0), (1, 9, 10), (1, 3, 5), (0, 7, 2)]:
            assert np.array_equal(reader.read_plane(0, t, c, z), whole[t, c, z])
        mip = reader.read_frame(0, 1, reader.channel_index("λ 575 nm"), "max")
        assert np.array_equal(mip, whole[1, 5].max(axis=0))
        with pytest.raises(InputError, match=r"frame 2 is out of range \(valid: 0-1\)"):
            reader.read_plane(0, 2, 0, 0)


def test_lif_pixel_size_agrees_with_readlif() -> None:
    """readlif (the other LIF reader) gives the same scale for the same image."""
    need_module("readlif")
    from readlif.reader import LifFile

    path = need(LIF_SWEEP)
    scale = LifFile(str(path)).get_image(2).scale  # px per µm
    assert read_metadata(path, image=2).pixel_size_um == pytest.approx(1 / scale[0], rel=1e-6)


@pytest.mark.parametrize("path,image,reason", [
    (LIF_SWEEP, None, r"'x_y_lambdaEmi' \(λ: 20, Y: 64, X: 64\) is an emission λ sweep \(λ: 20\) without time"),
    (LIF_SWEEP, "x_y_lambdaExc", r"'x_y_lambdaExc' \(Λ: 15, Y: 64, X: 64\) is an excitation Λ sweep"),
    (LIF_XZ, None, r"'xzt' \(T: 20, C: 2, Z: 128, X: 128\) is an X-Z line scan \(no Y\)"),
    (LIF_XZ, "xzy", r"'xzy' \(Y: 23, C: 2, Z: 128, X: 128\) is an X-Z scan: its planes are Z-X"),
    (LIF_XZ, 2, r"'xz' \(C: 2, Z: 512, X: 512\) is an X-Z line scan"),
])
def test_lif_odd_layouts_are_refused_in_one_line(path: Path, image: object, reason: str) -> None:
    need_module("liffile")
    with pytest.raises(InputError, match=reason) as err:
        open_image(need(path), image=image)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    if path == LIF_SWEEP:  # says which image would do
        assert "time-lapse images here: 'x_y_z_t_lambdaEmi'" in msg
    else:
        assert "no X-Y time-lapse image" in msg


def test_lif_image_option_names_globs_and_errors(tmp_path: Path) -> None:
    need_module("liffile")
    path = need(LIF_SWEEP)
    assert read_metadata(path, image="x_y_z_t*").extra["images"] == ["x_y_z_t_lambdaEmi"]
    with pytest.raises(InputError, match=r"no image named 'nope' \(images: 'x_y_lambdaEmi', "):
        open_image(path, image="nope")
    with pytest.raises(InputError, match=r"image 7 is out of range \(valid: 0-2\)"):
        open_image(path, image=7)
    with pytest.raises(InputError, match="do not apply to LIF input"):
        open_image(path, image=2, axes="TYX")
    cut = tmp_path / "half.lif"
    cut.write_bytes(path.read_bytes()[:40000])
    with pytest.raises(InputError) as err:
        open_image(cut, image=2)
    assert str(cut) in str(err.value) and "\n" not in str(err.value)
    cut.write_bytes(path.read_bytes()[:600000])  # the x-y-z-t image's pixels end at 1149961
    with open_image(cut, image=2) as reader:
        assert reader.read_plane(0, 0, 0, 0).shape == (64, 64)  # stored before the cut
        with pytest.raises(InputError, match=r"cannot read image 'x_y_z_t_lambdaEmi' frame 1 channel 9 Z 10"):
            reader.read_plane(0, 1, 9, 10)


# ----------------------------------------------------------------------------- folders
def test_mitocheck_folder_thirty_frames_in_order() -> None:
    folder = need(MITOCHECK)
    with open_image(folder, pattern="*.tif") as reader:
        m = reader.metadata
        assert m.format == "tiff-folder"
        assert (m.n_fovs, m.n_frames, m.n_channels, m.height, m.width) == (1, 30, 1, 190, 211)
        assert m.dtype == "uint8"
        assert m.time_min is None
        assert m.file_size == sum(p.stat().st_size for p in folder.glob("*.tif"))
        for t in range(30):
            name = f"EMBO_2012_Group3--empty--empty--W0002--P001--T{t:05d}--Z000--C.tif"
            assert os.path.basename(reader.frame_file(t)) == name
            np.testing.assert_array_equal(
                reader.read_plane(0, t, 0), tifffile.imread(folder / name)
            )


def test_folder_natural_order_and_channels(tmp_path: Path) -> None:
    sources = sorted(need(MITOCHECK).glob("*.tif"))[:12]
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, src in enumerate(sources, start=1):  # t1..t12, unpadded
        shutil.copy(src, folder / f"pos3_t{i}_ph.tif")
        shutil.copy(sources[-i], folder / f"pos3_t{i}_gfp.tif")
    with open_image(folder, pattern=["*_ph.tif", "*_gfp.tif"], channel_names=["ph", "gfp"]) as r:
        m = r.metadata
        assert (m.n_frames, m.n_channels, m.channel_names) == (12, 2, ["ph", "gfp"])
        order = [os.path.basename(r.frame_file(t)) for t in range(12)]
        assert order[:3] == ["pos3_t1_ph.tif", "pos3_t2_ph.tif", "pos3_t3_ph.tif"]
        assert order[-1] == "pos3_t12_ph.tif"
        np.testing.assert_array_equal(r.read_plane(0, 9, 0), tifffile.imread(sources[9]))
        np.testing.assert_array_equal(r.read_plane(0, 9, 1), tifffile.imread(sources[-10]))
    # "folder/pattern" form
    with open_image(folder / "*_gfp.tif") as r:
        assert r.metadata.n_frames == 12 and r.metadata.extra["patterns"] == ["*_gfp.tif"]
    # the default pattern takes both channels: same frame numbers -> clear error
    with pytest.raises(InputError, match="same frame number"):
        open_image(folder)
    with pytest.raises(InputError, match="no file matches"):
        open_image(folder, pattern="*.png")
    # a frame with another shape is reported when read
    tifffile.imwrite(folder / "pos3_t7_gfp.tif", np.zeros((5, 5), np.uint8))
    with open_image(folder, pattern="*_gfp.tif") as r:
        with pytest.raises(InputError, match="expected"):
            r.read_plane(0, 6, 0)


def test_order_frames_rules() -> None:
    names = ["a_t10.tif", "a_t2.tif", "a_t1.tif"]
    assert [n for _i, n in order_frames("f", names)] == ["a_t1.tif", "a_t2.tif", "a_t10.tif"]
    # the last number that changes, not the last number
    names = ["s1_t3_c0.tif", "s1_t1_c0.tif", "s1_t2_c0.tif"]
    assert [i for i, _n in order_frames("f", names)] == [1, 2, 3]
    assert [n for _i, n in order_frames("f", ["b9.tif", "a_2_10.tif"])] == ["b9.tif", "a_2_10.tif"]
    with pytest.raises(InputError, match="'mask.tif' has no frame number"):
        order_frames("f", ["t1.tif", "mask.tif"])
    names = ["img-005-x.tif", "img-001-x.tif"]
    assert [n for _i, n in order_frames("f", names, frame_regex=r"img-(\d+)")] == [
        "img-001-x.tif",
        "img-005-x.tif",
    ]


# ----------------------------------------------------------------------------- dispatch
def test_unsupported_format_lists_suffixes(tmp_path: Path) -> None:
    path = tmp_path / "movie.avi"
    path.write_bytes(b"not a microscopy file")
    with pytest.raises(InputError) as err:
        open_image(path)
    msg = str(err.value)
    assert "unsupported format" in msg and str(path) in msg
    for suffix in (".nd2", ".czi", ".ome.tif", ".tif"):
        assert suffix in msg


def test_missing_library_names_pip_package(monkeypatch: pytest.MonkeyPatch) -> None:
    path = need(ND2_DIR / "example-timelapse.nd2")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("nd2", "aicspylibczi") else real_find_spec(name, *a),
    )
    with pytest.raises(InputError, match=r"needs the 'nd2' package: pip install nd2"):
        open_image(path)
    with pytest.raises(InputError, match=r"pip install aicspylibczi"):
        open_image(need(CZI_DIR / "s_1_t_1_c_1_z_1.czi"))


def test_missing_library_via_formatinfo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FormatInfo, "installed", property(lambda self: self.library != "tifffile"))
    with pytest.raises(InputError, match="pip install tifffile"):
        open_image(need(IJ_FILE))


def test_every_format_registered() -> None:
    readers = {f.reader for f in FORMATS}
    assert readers == {"tiff:TiffReader", "nd2:ND2Reader", "czi:CziReader", "lif:LifReader",
                       "folder:FolderReader"}


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        open_image(tmp_path / "nothing.nd2")


def test_nd2_loop_layout_matches_nd2_loop_indices() -> None:
    """Multi-position ND2 (T outer, P, Z inner): our frame index is nd2's own.

    No real multi-position ND2 is available, so the (P, T, Z) -> sequence index
    mapping is checked against ``nd2``'s ``loop_indices`` for such experiments.
    """
    need_module("nd2")
    from types import SimpleNamespace

    from nd2._util import loop_indices

    from pyama_flow.io.nd2 import _loop_layout

    for order in (("TimeLoop", "XYPosLoop", "ZStackLoop"), ("XYPosLoop", "TimeLoop")):
        counts = {"TimeLoop": 4, "XYPosLoop": 3, "ZStackLoop": 2}
        experiment = [SimpleNamespace(type=t, count=counts[t]) for t in order]
        sizes, strides = _loop_layout("x.nd2", experiment)
        assert sizes == {"P": 3, "T": 4, "Z": 2 if "ZStackLoop" in order else 1}
        for seq, idx in enumerate(loop_indices(experiment)):
            ours = sum(idx.get(a, 0) * strides[a] for a in "PTZ")
            assert ours == seq
    with pytest.raises(InputError, match="unsupported ND2 loop"):
        _loop_layout("x.nd2", [SimpleNamespace(type="CustomLoop", count=2)])


def _read_in_child(args: tuple[str, tuple[int, int, int, int]]) -> np.ndarray:
    path, plane = args
    with open_image(path) as reader:
        return reader.read_plane(*plane)


def test_several_processes_read_one_file() -> None:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    if "fork" not in mp.get_all_start_methods():
        pytest.skip("needs the fork start method")
    jobs = [(str(need(IJ_FILE)), (0, 0, c, 0)) for c in (0, 1, 0, 1)]
    if importlib.util.find_spec("nd2") is not None:
        jobs += [(str(need(ND2_DIR / "example-timelapse.nd2")), (0, t, 0, 0)) for t in (0, 9, 52)]
    with ProcessPoolExecutor(2, mp_context=mp.get_context("fork")) as pool:
        results = list(pool.map(_read_in_child, jobs))
    for (path, plane), got in zip(jobs, results):
        np.testing.assert_array_equal(got, _read_in_child((path, plane)))
