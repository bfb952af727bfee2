"""Curation as decisions (pyama_flow.traces.curation): fingerprints, stale decisions,
PyAMA import/export, and appends from several processes."""

from __future__ import annotations

import logging
import multiprocessing as mp

import numpy as np
import pandas as pd
import pytest

from pyama_flow.traces import curation
from pyama_flow.traces.features import read_traces


def _traces(scale: float = 1.0, shift_cell: int | None = None) -> pd.DataFrame:
    """Three cells x four frames; ``scale`` changes intensities only,
    ``shift_cell`` moves that cell's boxes (another object under the id)."""
    rows = []
    for cell in (1, 2, 3):
        for frame in range(4):
            dx = 5 if cell == shift_cell else 0
            rows.append({"fov": 0, "cell": cell, "frame": frame, "time": 15.0 * frame, "good": True,
                         "bbox_x0": 10 * cell + dx, "bbox_y0": 3, "bbox_x1": 10 * cell + 8 + dx,
                         "bbox_y1": 11, "area_ch_0": 40 + cell + frame,
                         "intensity_total_ch_1": scale * (1000 * cell + frame)})
    return pd.DataFrame(rows)


def _write(fov_dir, df, name="traces.csv"):
    fov_dir.mkdir(parents=True, exist_ok=True)
    df.to_csv(fov_dir / name, index=False)


def test_fingerprint_ignores_intensities_not_geometry():
    a = curation.fingerprints(_traces())
    assert a == curation.fingerprints(_traces(scale=7.0))  # a traces parameter changed
    b = curation.fingerprints(_traces(shift_cell=2))
    assert a[1] == b[1] and a[3] == b[3] and a[2] != b[2]
    assert len(set(a.values())) == 3


def test_decisions_apply_to_new_traces_and_stale_ones_are_ignored(tmp_path, caplog):
    fov = tmp_path / "fov_000"
    _write(fov, _traces())
    curation.record(fov, 2, False)
    curation.record(fov, 3, False)
    curation.record(fov, 3, True)  # the last decision wins
    # new intensities (background_weight changed): decisions still apply, values are the new ones
    _write(fov, _traces(scale=221.0))
    df = curation.read_curated(fov / "traces.csv")
    assert df.groupby("cell")["good"].all().to_dict() == {1: True, 2: False, 3: True}
    assert df.loc[df["cell"] == 2, "intensity_total_ch_1"].tolist() == [442000.0, 442221.0, 442442.0, 442663.0]
    # new labels: cell 2 is another object now; its decision is not applied, and warned
    _write(fov, _traces(shift_cell=2))
    with caplog.at_level(logging.WARNING, logger="pyama_flow"):
        df = curation.read_curated(fov / "traces.csv")
    assert df["good"].all()
    msgs = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert msgs == [curation.stale_message(str(fov), [2])]
    assert "fov_000" in msgs[0] and "cells 2;" not in msgs[0] and "on cells 2 " in msgs[0]
    _, stale = curation.apply_decisions(read_traces(str(fov / "traces.csv")), curation.load_decisions(fov))
    assert stale == [2]


def test_record_refuses_unknown_cell_and_missing_traces(tmp_path):
    fov = tmp_path / "fov_000"
    with pytest.raises(FileNotFoundError, match="fov_000: no traces.csv"):
        curation.record(fov, 1, False)
    _write(fov, _traces())
    with pytest.raises(KeyError, match="cell 9 is not in the traces"):
        curation.record(fov, 9, False)
    assert not (fov / "curation.csv").exists()


def test_malformed_log_is_a_clear_error(tmp_path):
    fov = tmp_path / "fov_000"
    _write(fov, _traces())
    (fov / "curation.csv").write_text("cell,good,time,fingerprint\n1,maybe,2026-01-01T00:00:00Z,ab\n")
    with pytest.raises(ValueError, match=r"curation.csv: line 2 is not cell,good\(true/false\),time,fingerprint"):
        curation.read_curated(fov / "traces.csv")
    (fov / "curation.csv").write_text("cell,verdict\n")
    with pytest.raises(ValueError, match="curation.csv: header must be cell,good,time,fingerprint"):
        curation.load_decisions(fov)


def test_pyama_inspected_is_imported_and_exported(tmp_path):
    fov = tmp_path / "fov_000"
    df = _traces()
    _write(fov, df)
    inspected = df.copy()
    inspected.loc[inspected["cell"] == 3, "good"] = False
    _write(fov, inspected, curation.INSPECTED)
    got = curation.load_decisions(fov)  # imported on first read
    assert list(got) == [3] and got[3].good is False
    assert got[3].fingerprint == curation.fingerprints(df)[3]
    assert curation.import_inspected(fov) == 0  # once only
    (fov / curation.INSPECTED).unlink()
    out = curation.export_inspected(fov, tmp_path / "exported.csv")
    back = read_traces(str(out))
    expected = read_traces(str(fov / "traces.csv"))
    expected.loc[expected["cell"] == 3, "good"] = False
    pd.testing.assert_frame_equal(back, expected, check_dtype=False)


def _marker(args):
    fov, cells = args
    for c in cells:
        curation.record(fov, c, c % 2 == 0)


def test_marks_from_several_processes_are_never_lost(tmp_path):
    fov = tmp_path / "fov_000"
    df = pd.concat([_traces().assign(cell=lambda d, k=k: d["cell"] + 3 * k) for k in range(40)])
    _write(fov, df)
    cells = sorted(df["cell"].unique())
    chunks = [cells[i::4] for i in range(4)]
    with mp.get_context("fork").Pool(4) as pool:
        pool.map(_marker, [(fov, ch) for ch in chunks])
    log = pd.read_csv(fov / "curation.csv")
    assert len(log) == len(cells) and sorted(log["cell"]) == cells
    got = curation.load_decisions(fov)
    assert {c: d.good for c, d in got.items()} == {c: c % 2 == 0 for c in cells}
    assert np.all(log.columns == ["cell", "good", "time", "fingerprint"])


def test_cli_import_and_export(tmp_path, capsys):
    from pyama_flow.cli import main

    fov = tmp_path / "fov_000"
    df = _traces()
    _write(fov, df)
    inspected = df.copy()
    inspected.loc[inspected["cell"] == 1, "good"] = False
    _write(fov, inspected, curation.INSPECTED)
    assert main(["curation", "import", str(fov)]) == 0
    assert "1 decisions imported into curation.csv" in capsys.readouterr().err
    assert main(["curation", "import", str(fov)]) == 0
    assert "curation.csv exists; nothing imported" in capsys.readouterr().err
    curation.record(fov, 2, False)
    assert main(["curation", "export", str(fov), "-o", "out.csv"]) == 0
    out = read_traces(str(fov / "out.csv"))
    assert out.groupby("cell")["good"].all().to_dict() == {1: False, 2: False, 3: True}
    assert main(["curation", "export", str(tmp_path / "nope")]) == 2
    assert "nope: no traces.csv" in capsys.readouterr().err


def test_report_cells_figure_names_applied_and_stale_decisions(tmp_path):
    """The report's cells figure of a FOV says how many decisions apply and which are stale."""
    import json

    from pyama_flow.report.cells import render_cells

    fov = tmp_path / "fov_000"
    _write(fov, _traces())
    assert curation.curation_note(fov / "traces.csv") == ""  # no decisions: no line
    curation.record(fov, 2, False)
    curation.record(fov, 3, False)
    assert curation.curation_note(fov / "traces.csv") == (
        "curation: 2 decisions applied (2 marked bad, 0 good)")
    _write(fov, _traces(shift_cell=2))  # new labels: cell 2 is another object
    note = curation.curation_note(fov / "traces.csv")
    assert note.startswith("curation: 1 decisions applied (1 marked bad, 0 good); 1 STALE")
    assert "cells 2)" in note
    (fov / "trace_stats.json").write_text(json.dumps(
        {"cells_per_frame": [3, 3, 3, 3], "cells_detected": 3, "cells_kept": 3, "filters": {}}))
    pd.DataFrame({"cell": [1, 2, 3], "first_frame": [0, 0, 0], "last_frame": [3, 3, 3]}).to_csv(
        fov / "tracks.csv", index=False)
    (tmp_path / "metadata.json").write_text(json.dumps({"fovs": [0], "times_min": [0, 15, 30, 45]}))
    out = render_cells(str(fov / "trace_stats.json"), str(fov / "tracks.csv"), str(fov / "traces.csv"),
                       str(tmp_path / "metadata.json"), 0, str(tmp_path / "cells.png"), "FOV 000")
    assert out["curation"] == note and (tmp_path / "cells.png").stat().st_size > 0
