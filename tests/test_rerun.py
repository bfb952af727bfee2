"""Rerun only what changed: after a complete run, a changed parameter reruns
only the steps that use it and what depends on them."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

pytestmark = pytest.mark.slow

BASE = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
BASE["simulate"]["n_fovs"] = 3
BASE["datasets"]["demo"]["fovs"] = "0-1"


def _snakemake(work: Path, config: dict, *args: str) -> str:
    cfg = work / "run.yaml"
    cfg.write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(work), "--configfile", str(cfg), *args],
        capture_output=True, text=True, cwd=work,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def planned(work: Path, config: dict) -> dict[str, int]:
    """Rules and job counts a dry run would execute."""
    out = _snakemake(work, config, "-n")
    if "Nothing to be done" in out:
        return {}
    table = out[out.index("Job stats:"):].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    work = tmp_path_factory.mktemp("rerun")
    _snakemake(work, BASE, "--cores", "2")
    return work


def test_nothing_changed_runs_nothing(done):
    assert planned(done, BASE) == {}


# qc_config renders the effective config for the report's "Parameters" page,
# so it (a sub-second local job) reruns on any config edit by design.
QC_FOV = ("qc_outlines", "qc_background", "qc_cells")


def test_fit_parameter_reruns_only_fits(done):
    cfg = copy.deepcopy(BASE)
    cfg["fit"]["params"] = {"maturation": {"delta": {"value": 0.05}}}
    assert planned(done, cfg) == {"fit": 2, "qc_sample": 2, "analysis": 1, "qc_overview": 1, "qc_config": 1,
                                  "all": 1}


def test_segmentation_parameter_reruns_downstream_not_extract(done):
    cfg = copy.deepcopy(BASE)
    cfg["segmentation"]["logstd"] = {"n_sigma": 3.5}
    assert planned(done, cfg) == {
        "segment": 2, "correct": 2, "track": 2, "traces": 2, "fit": 2, "merge": 4, "tidy": 1,
        **{q: 2 for q in QC_FOV}, "qc_sample": 2, "analysis": 1, "qc_overview": 1, "qc_config": 1, "all": 1,
    }


def test_added_fov_runs_its_chain_and_the_merges(done):
    cfg = copy.deepcopy(BASE)
    cfg["datasets"]["demo"]["fovs"] = "0-2"
    cfg["samples"][1]["fovs"] = "1-2"
    plan = planned(done, cfg)
    assert plan.pop("qc_config") == 1
    assert plan == {
        "extract": 2, "segment": 1, "correct": 1, "track": 1, "traces": 1, "fit": 1,
        "merge": 2, "tidy": 1, "all": 1,
        "qc_frames": 1, "qc_frame_stats": 2, **{q: 1 for q in QC_FOV}, "qc_sample": 1, "analysis": 1,
        "qc_overview": 1,
    }


def test_unrelated_edit_reruns_nothing(done):
    cfg = copy.deepcopy(BASE)
    cfg["fit"]["params"] = {"trivial": {"delta": {"value": 0.05}}}  # a model that is not run
    cfg["datasets"]["demo"]["frame_interval_min"] = 10  # the file has time stamps
    assert planned(done, cfg) == {"qc_config": 1, "all": 1}


def test_curated_traces_rerun_only_the_fits(done):
    """PyAMA's *_inspected.csv: imported into the decisions log curation.csv
    when the workflow starts; only the fit and what depends on it rerun."""
    import pandas as pd

    fov_dir = done / "results" / "demo" / "fov_000"
    traces = pd.read_csv(fov_dir / "traces.csv")
    bad = int(traces["cell"].iloc[0])
    traces.loc[traces["cell"] == bad, "good"] = False
    traces.to_csv(fov_dir / "traces_inspected.csv", index=False, float_format="%.6f")
    try:
        assert planned(done, BASE) == {"fit": 1, "merge": 2, "tidy": 1, "qc_sample": 1, "analysis": 1, "qc_cells": 1,
                                       "qc_overview": 1, "all": 1}
        log = pd.read_csv(fov_dir / "curation.csv")
        assert log["cell"].tolist() == [bad] and log["good"].tolist() == [False]
        _snakemake(done, BASE, "--cores", "2")
        fits = pd.read_csv(fov_dir / "fits_maturation.csv")
        assert bad not in set(fits["cell"]) and len(fits) == traces["cell"].nunique() - 1
        merged = pd.read_csv(done / "results" / "samples" / "control" / "control_intensity_total_ch_1.csv")
        assert bad not in set(merged["cell"])  # good = false rows are dropped
    finally:
        for name in ("traces_inspected.csv", "curation.csv", ".curation.csv.lock"):
            (fov_dir / name).unlink(missing_ok=True)


def _mark(results: Path, dataset: str, fov: int, cell: int, good: bool) -> dict:
    """POST /api/mark through the viewer's WSGI app, as the page does."""
    import io
    import json
    import wsgiref.util

    from pyama_flow.viewer import ViewerApp

    body = json.dumps({"good": good}).encode()
    env: dict = {}
    wsgiref.util.setup_testing_defaults(env)
    env.update(REQUEST_METHOD="POST", PATH_INFO=f"/api/mark/{dataset}/{fov}/{cell}", HTTP_HOST="127.0.0.1:8765",
               CONTENT_TYPE="application/json", CONTENT_LENGTH=str(len(body)), **{"wsgi.input": io.BytesIO(body)})
    out = {}
    data = b"".join(ViewerApp(results, token=None)(env, lambda status, h: out.update(status=status)))
    assert out["status"].startswith("200"), data
    return json.loads(data)


def test_decision_survives_new_traces_and_stale_decision_warns(done, tmp_path):
    """Issue #18: a cell marked bad in the viewer, then a traces parameter
    changed: the traces and fits are rerun on the NEW intensities and the
    decision is still applied; a decision made on other labels warns and is
    ignored."""
    import shutil

    import pandas as pd

    work = tmp_path / "copy"
    shutil.copytree(done, work, symlinks=True)
    results = work / "results"
    fov_dir = results / "demo" / "fov_000"
    old = pd.read_csv(fov_dir / "traces.csv")
    bad = int(old["cell"].iloc[0])
    assert _mark(results, "demo", 0, bad, False)["file"] == "demo/fov_000/curation.csv"
    assert planned(work, BASE) == {"fit": 1, "merge": 2, "tidy": 1, "qc_sample": 1, "analysis": 1, "qc_cells": 1,
                                       "qc_overview": 1, "all": 1}
    _snakemake(work, BASE, "--cores", "2")
    fits = pd.read_csv(fov_dir / "fits_maturation.csv")
    assert bad not in set(fits["cell"])

    cfg = copy.deepcopy(BASE)
    cfg.setdefault("traces", {})["background_weight"] = 0.5
    plan = planned(work, cfg)
    assert plan["traces"] == 2 and plan["fit"] == 2 and plan["merge"] == 4 and plan["tidy"] == 1
    _snakemake(work, cfg, "--cores", "2")
    new = pd.read_csv(fov_dir / "traces.csv")
    col = "intensity_total_ch_1"
    assert not (new[col].to_numpy() == old[col].to_numpy()).all()  # new intensities
    refit = pd.read_csv(fov_dir / "fits_maturation.csv")
    assert bad not in set(refit["cell"]) and set(refit["cell"]) == set(new["cell"]) - {bad}
    assert not refit.set_index("cell")["ktl"].equals(fits.set_index("cell")["ktl"])  # fitted again
    merged = pd.read_csv(results / "samples" / "control" / f"control_{col}.csv")
    assert bad not in set(merged["cell"])
    mine = merged[merged["fov"] == 0].merge(new[new["good"]], on=["cell", "time"])
    assert len(mine) == int(((new["cell"] != bad) & new["good"]).sum())
    pd.testing.assert_series_equal(mine["value"], mine[col], check_names=False, atol=1e-5)
    tidy = pd.read_csv(results / "all_traces.csv")
    assert not tidy[(tidy["fov"] == 0) & (tidy["cell"] == bad)]["good"].any()

    # a decision made on other labels (its fingerprint differs): warned, ignored
    log = (fov_dir / "curation.csv").read_text().splitlines()
    cell, good, when, _fp = log[-1].split(",")
    (fov_dir / "curation.csv").write_text("\n".join(log[:-1] + [f"{cell},{good},{when},0000000000000000"]) + "\n")
    _snakemake(work, cfg, "--cores", "2")
    warned = (results / "logs" / "demo" / "fov_000" / "fit_maturation.log").read_text()
    assert f"decisions in curation.csv on cells {bad} were made on other labels/tracks" in warned
    assert "fov_000" in warned
    assert bad in set(pd.read_csv(fov_dir / "fits_maturation.csv")["cell"])  # ignored: fitted again
