"""Result stacks (streamed TIFF, atomic) and FOV selections."""

import os

import numpy as np
import pytest
import tifffile

from pyama_flow.fovs import parse_fovs
from pyama_flow.io.stacks import StackReader, atomic_path, read_stack, write_stack


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
