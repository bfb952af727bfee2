"""Result stacks (streamed TIFF, atomic) and FOV selections."""

import os

import numpy as np
import pytest
import tifffile

from pyama_flow.io.fovs import parse_fovs
from pyama_flow.io.atomic import atomic_path
from pyama_flow.io.stacks import StackReader, read_stack, write_stack


def test_roundtrip_one_page_per_frame(tmp_path):
    frames = [np.full((30, 40), i, np.uint16) for i in range(7)]
    write_stack(tmp_path / "s.tif", iter(frames), 7, (30, 40), np.uint16)
    with tifffile.TiffFile(tmp_path / "s.tif") as tif:
        assert len(tif.pages) == 7
        assert tif.series[0].shape == (7, 30, 40)
    with StackReader(tmp_path / "s.tif") as r:
        assert r.shape == (7, 30, 40) and r.dtype == np.uint16
        assert r[5][0, 0] == 5 and r[-1][0, 0] == 6
    assert np.array_equal(read_stack(tmp_path / "s.tif"), np.stack(frames))


def test_labels_compress_more_than_20x(tmp_path):
    lab = np.zeros((10, 512, 512), np.uint32)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:512, :512]
    for t in range(10):
        for i in range(1, 60):
            cy, cx = rng.integers(20, 490, 2)
            lab[t][(yy - cy) ** 2 + (xx - cx) ** 2 < 100] = i
    write_stack(tmp_path / "l.tif", iter(lab), 10, (512, 512), np.uint32)
    assert lab.nbytes / os.path.getsize(tmp_path / "l.tif") > 20


def test_failed_write_leaves_nothing(tmp_path):
    def frames():
        yield np.zeros((4, 4), np.uint8)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_stack(tmp_path / "x.tif", frames(), 3, (4, 4), np.uint8)
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="shape"):
        write_stack(tmp_path / "y.tif", iter([np.zeros((5, 4))]), 1, (4, 4), np.uint8)
    assert os.listdir(tmp_path) == []


def test_atomic_path_permissions(tmp_path):
    with atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("x")
    mode = os.stat(tmp_path / "a.txt").st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


@pytest.mark.parametrize(
    "spec,n,expected",
    [("0-3, 7", 10, [0, 1, 2, 3, 7]), ("all", 3, [0, 1, 2]), (5, 6, [5]), ([2, 0, 2], 3, [0, 2]),
     (" 1 - 2 ,4", None, [1, 2, 4])],
)
def test_parse_fovs(spec, n, expected):
    assert parse_fovs(spec, n) == expected


@pytest.mark.parametrize(
    "spec,n,message",
    [("0-12", 10, "FOV 10 is outside the file"), ("3-1", 10, "cannot read '3-1'"),
     ("a", 10, "cannot read 'a'"), ("all", None, "needs the number of FOVs"), ("", 4, "empty"),
     (",", 4, "datasets.x.fovs: ',' selects no FOV"), (" , ,", 4, "selects no FOV"),
     ([], 4, r"datasets.x.fovs: \[\] selects no FOV")],
)
def test_parse_fovs_errors(spec, n, message):
    with pytest.raises(ValueError, match=message):
        parse_fovs(spec, n, what="datasets.x.fovs")


def test_calibration_and_metadata_round_trip(tmp_path):
    from pyama_flow.io.stacks import Calibration

    frames = [np.full((6, 5), i, np.uint16) for i in range(3)]
    write_stack(tmp_path / "c.tif", iter(frames), 3, (6, 5), np.uint16,
                metadata={"source": "a b\nc.nd2", "fov": 4}, calibration=Calibration(0.65, 600.0))
    with StackReader(tmp_path / "c.tif") as r:
        assert r.calibration == Calibration(pytest.approx(0.65), 600.0)
        assert r.description == {"source": "a b c.nd2", "fov": 4}  # one line per key
    with tifffile.TiffFile(tmp_path / "c.tif") as tif:
        assert tif.is_imagej and tif.series[0].axes == "TYX" and tif.imagej_metadata["frames"] == 3
    write_stack(tmp_path / "n.tif", iter(frames), 3, (6, 5), np.uint16)  # nothing known: nothing claimed
    with tifffile.TiffFile(tmp_path / "n.tif") as tif:
        assert "unit" not in tif.imagej_metadata and "finterval" not in tif.imagej_metadata
    assert Calibration.of(float("nan"), -1.0) == Calibration(None, None)


def test_labels_are_uint16_until_an_id_passes_65535(tmp_path):
    """Two frames of 45,000 one-pixel cells each, 300 px apart (nothing links):
    90,000 track ids do not fit uint16, so labels.tif is uint32 with the same ids."""
    from pyama_flow.tracking.step import track as track_step
    from pyama_flow.io.stacks import label_dtype

    assert label_dtype(65535) == np.uint16 and label_dtype(65536) == np.uint32
    seg = np.zeros((2, 600, 600), np.uint16)
    ids = np.arange(1, 45001, dtype=np.uint16).reshape(300, 150)
    seg[0, ::2, 0:300:2] = ids
    seg[1, ::2, 300::2] = ids
    write_stack(tmp_path / "seg.tif", iter(seg), 2, (600, 600), np.uint16)
    track_step(str(tmp_path / "seg.tif"), str(tmp_path / "labels.tif"), str(tmp_path / "tracks.csv"), {})
    labels = read_stack(tmp_path / "labels.tif")
    assert labels.dtype == np.uint32 and labels.max() == 90000
    assert len(np.unique(labels[1])) == 45001 and labels[1][labels[1] > 0].min() == 45001
    # a few cells: uint16
    small = seg[:, :20, :20] % 7
    write_stack(tmp_path / "s.tif", iter(small), 2, (20, 20), np.uint16)
    track_step(str(tmp_path / "s.tif"), str(tmp_path / "l2.tif"), str(tmp_path / "t2.csv"), {})
    assert read_stack(tmp_path / "l2.tif").dtype == np.uint16
