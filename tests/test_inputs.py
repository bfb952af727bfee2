"""Inputs are what was extracted (issue #18 item 2: content fingerprints) and
missing frames of a frame folder keep their time (item 3)."""

from __future__ import annotations

import json
import logging
import os
import shutil

import pytest
import tifffile

from pyama_flow.io.extract import dataset_metadata, extract as extract_step
from pyama_flow.io import open_image
from pyama_flow.io.base import InputError
from pyama_flow.io import read_metadata
from pyama_flow.io.fingerprint import fingerprint, plane_bytes_of
from pyama_flow.io.source import SourceFrames


@pytest.fixture(scope="module")
def other_movie(tmp_path_factory, small_experiment):
    """Another movie of the small experiment's shape (another seed)."""
    from pyama_flow.devtools.simulate import SimulationConfig, simulate_experiment

    out = tmp_path_factory.mktemp("sim_b")
    simulate_experiment(out / "exp.ome.tif", out / "truth", SimulationConfig(n_fovs=2, n_frames=12, seed=4))
    return out / "exp.ome.tif"


def fp_of(path) -> str:
    """The fingerprint the workflow takes of an input."""
    return fingerprint(path, plane_bytes_of(read_metadata(str(path))))


def replace_keeping_mtime(src, dst) -> None:
    """``cp -p``: another file's content under the old name, size and mtime."""
    st = os.stat(dst)
    shutil.copyfile(src, dst)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


def _write_folder(folder, movie, skip=()):
    folder.mkdir()
    with open_image(str(movie)) as r:
        for t in range(r.metadata.n_frames):
            if t in skip:
                continue
            tifffile.imwrite(folder / f"img_t{t:03d}.tif", r.read_frame(0, t, 1))


def test_fingerprint_sees_a_replaced_movie_not_the_mtime(small_experiment, other_movie, tmp_path):
    a = tmp_path / "a.ome.tif"
    shutil.copy2(small_experiment["path"], a)
    fp = fp_of(a)
    assert fp == fp_of(small_experiment["path"])  # content, not name or mtime
    assert fp.startswith(f"fp1:{a.stat().st_size}:") and len(fp.split(":")[2]) == 32
    os.utime(a, (1, 1))
    assert fp_of(a) == fp
    replace_keeping_mtime(other_movie, a)
    assert fp_of(a) != fp
    # one plane rewritten in place with the same size: every plane has a sampled block
    shutil.copy2(small_experiment["path"], a)
    data = bytearray(a.read_bytes())
    with open_image(str(a)) as r:
        page = r._tif.pages[7]  # one plane, compressed: rewrite its bytes in place
        offset, count = page.dataoffsets[0], page.databytecounts[0]
    assert count < 320 * 320 * 2 // 2
    data[offset:offset + count] = bytes(reversed(data[offset:offset + count]))
    a.write_bytes(bytes(data))
    assert fp_of(a) != fp


def test_folder_fingerprint_sees_one_frame_rewritten_in_place(small_experiment, other_movie, tmp_path):
    folder = tmp_path / "frames"
    _write_folder(folder, small_experiment["path"])
    fp = fingerprint(folder)
    frame = folder / "img_t005.tif"
    st, dst = frame.stat(), folder.stat()
    with open_image(str(other_movie)) as r:
        tifffile.imwrite(frame, r.read_frame(0, 5, 1))
    os.utime(frame, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.utime(folder, ns=(dst.st_atime_ns, dst.st_mtime_ns))
    assert frame.stat().st_size == st.st_size and fingerprint(folder) != fp


def test_reading_a_replaced_source_fails_with_one_line(small_experiment, other_movie, tmp_path):
    a = tmp_path / "exp.ome.tif"
    shutil.copy2(small_experiment["path"], a)
    ref = tmp_path / "raw_ch1.json"
    extract_step(str(a), {}, 0, 1, 0, str(ref), str(tmp_path / "stats.csv"))
    assert json.loads(ref.read_text())["fingerprint"] == fp_of(a)
    SourceFrames(ref).close()
    replace_keeping_mtime(other_movie, a)
    with pytest.raises(InputError) as err:
        SourceFrames(ref)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{ref}: {a} changed since extraction (content fingerprint ")
    assert msg.endswith("rerun the extract jobs of this FOV (snakemake reruns them on its next start)")
    # a reference without a fingerprint (older pyama-flow) is not trusted
    data = json.loads(ref.read_text())
    del data["fingerprint"]
    ref.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"raw_ch1.json: records no content fingerprint of .*rerun the extract"):
        SourceFrames(ref)


def test_extract_and_metadata_refuse_an_input_changed_since_the_start(small_experiment, tmp_path):
    path = str(small_experiment["path"])
    good = fp_of(path)
    wrong = "fp1:1:" + "0" * 32
    for kind in ("json", "tif"):
        out = tmp_path / f"raw_ch0.{kind}"
        with pytest.raises(InputError, match=r"exp.ome.tif: input changed since the workflow started "
                                             r"\(content fingerprint fp1:.*expected fp1:1:0+\); .*start the workflow again"):
            extract_step(path, {}, 0, 0, 0, str(out), str(tmp_path / "s.csv"), expected_fingerprint=wrong)
        assert not out.exists() and not (tmp_path / "s.csv").exists()
    with pytest.raises(InputError, match=r"exp.ome.tif: input changed since the workflow started"):
        dataset_metadata(path, {}, None, wrong)
    meta = dataset_metadata(path, {}, None, good)
    assert meta["input_fingerprint"] == good


def test_missing_frame_keeps_the_later_frames_times(small_experiment, tmp_path, caplog):
    folder = tmp_path / "frames"
    _write_folder(folder, small_experiment["path"], skip={4})
    with caplog.at_level(logging.WARNING):
        meta = dataset_metadata(str(folder), {}, 10.0)
    assert meta["extra"]["frame_numbers"] == [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11]
    times = meta["fov_times_min"]["0"]
    assert times == [0.0, 10.0, 20.0, 30.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0, 110.0]
    assert meta["time_source"] == {"0": "config"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"{folder}: 1 frame numbers missing between 0 and 11 (first: 4): frame k is at "
                        "k x frame_interval_min, so later frames keep their time",
                        f"{folder}: 1 of 1 FOVs have no time stamps (first: FOV 0); using frame index x 10 "
                        "min (frame_interval_min from the config)"]
    # no gap: no warning, times as before
    caplog.clear()
    whole = tmp_path / "whole"
    _write_folder(whole, small_experiment["path"])
    with caplog.at_level(logging.WARNING):
        meta = dataset_metadata(str(whole), {}, 10.0)
    assert meta["fov_times_min"]["0"] == [10.0 * t for t in range(12)]
    assert not [r for r in caplog.records if "frame numbers missing" in r.getMessage()]


def test_info_warns_of_a_missing_frame(small_experiment, tmp_path, capsys):
    from pyama_flow.cli import main

    folder = tmp_path / "frames"
    _write_folder(folder, small_experiment["path"], skip={4, 9})
    main(["info", str(folder), "--summary"])
    out = capsys.readouterr()
    assert out.err == (f"WARNING: {folder}: 2 frame numbers missing between 0 and 11 (first: 4): frame k is at "
            "k x frame_interval_min, so later frames keep their time\n")
    assert "dims:" in out.out
