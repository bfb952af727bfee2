"""The whole workflow through Snakemake on the demo config, in a temporary
folder, checked against the simulator's ground truth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pyama_flow.io.stacks import read_stack
from pyama_flow.devtools.metrics import match_instances, segmentation_scores

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo")
    snakemake(work, "--cores", "2", "--configfile", str(ROOT / "config" / "config.yaml"))
    return work


def _track_to_truth(labels: np.ndarray, truth: np.ndarray) -> dict[tuple[int, int], int]:
    """(frame, track id) -> true id for objects matched at IoU >= 0.5."""
    out = {}
    for t in range(len(labels)):
        pred_ids, true_ids, _ = match_instances(labels[t], truth[t], 0.5)
        out.update({(t, int(p)): int(q) for p, q in zip(pred_ids, true_ids)})
    return out


def test_outputs_exist(demo_run):
    res = demo_run / "results"
    for fov in ("fov_000", "fov_001"):
        for name in ("raw_ch0.tif", "raw_ch1.tif", "segmentation.tif", "background_ch1.npz",
                     "labels.tif", "tracks.csv", "traces.csv", "fits_maturation.csv"):
            assert (res / "demo" / fov / name).stat().st_size > 0, name
    assert (res / "demo" / "metadata.json").exists()
    for sample in ("control", "treated"):
        table = pd.read_csv(res / "samples" / sample / f"{sample}_intensity_total_ch_1.csv")
        assert list(table.columns) == ["time", "fov", "cell", "value"]
        assert len(table) > 0
    tidy = pd.read_csv(res / "all_traces.csv")
    assert set(tidy["sample"]) == {"control", "treated"}
    meta = json.loads((res / "demo" / "metadata.json").read_text())
    names = dict(zip(tidy["channel"], tidy["channel_name"]))
    assert names == {c: meta["channel_names"][c] for c in (0, 1)} and names[0] != names[1]
    # every rule left a log and a benchmark
    assert len(list((res / "logs").rglob("*.log"))) >= 19
    assert len(list((res / "benchmarks").rglob("*.tsv"))) >= 19


def test_segmentation_f1(demo_run):
    for fov in (0, 1):
        pred = read_stack(demo_run / f"results/demo/fov_{fov:03d}/segmentation.tif")
        true = read_stack(demo_run / f"resources/demo/truth/labels_fov{fov:03d}.tif")
        assert segmentation_scores(list(pred), list(true)).f1 >= 0.9


def test_every_true_cell_keeps_one_id(demo_run):
    for fov in (0, 1):
        labels = read_stack(demo_run / f"results/demo/fov_{fov:03d}/labels.tif")
        true = read_stack(demo_run / f"resources/demo/truth/labels_fov{fov:03d}.tif")
        mapping = _track_to_truth(labels, true)
        n_frames = len(true)
        for tid in np.unique(true[true > 0]):
            ids = [p for (t, p), q in mapping.items() if q == tid]
            best = max(ids.count(i) for i in set(ids)) if ids else 0
            assert best >= 0.9 * n_frames, f"FOV {fov} true cell {tid}: longest id covers {best}/{n_frames}"


def test_traces_match_truth(demo_run):
    truth = pd.read_csv(demo_run / "resources/demo/truth/traces.csv")
    n_checked = 0
    for fov in (0, 1):
        traces = pd.read_csv(demo_run / f"results/demo/fov_{fov:03d}/traces.csv")
        labels = read_stack(demo_run / f"results/demo/fov_{fov:03d}/labels.tif")
        true = read_stack(demo_run / f"resources/demo/truth/labels_fov{fov:03d}.tif")
        mapping = _track_to_truth(labels, true)
        traces["true"] = [mapping.get((f, c), 0) for f, c in zip(traces["frame"], traces["cell"])]
        t = truth[truth["fov"] == fov].rename(columns={"cell": "true", "intensity_total": "truth"})
        joined = traces.merge(t[["true", "frame", "truth", "time"]], on=["true", "frame"],
                              suffixes=("", "_true"))
        assert np.allclose(joined["time"], joined["time_true"])  # real time stamps, minutes
        peak = joined.groupby("true")["truth"].transform("max")
        rel = (joined["intensity_total_ch_1"] - joined["truth"]).abs() / peak
        assert rel.median() < 0.05 and rel.quantile(0.9) < 0.08
        n_checked += joined["true"].nunique()
    assert n_checked >= 8  # most simulated cells pass the reference filters


def test_fits_recover_parameters(demo_run):
    params = pd.read_csv(demo_run / "resources/demo/truth/params.csv")
    errors = {"ktl": [], "delta": []}
    for fov in (0, 1):
        fits = pd.read_csv(demo_run / f"results/demo/fov_{fov:03d}/fits_maturation.csv")
        assert list(fits.columns[:5]) == ["fov", "cell", "model", "success", "r_squared"]
        traces = pd.read_csv(demo_run / f"results/demo/fov_{fov:03d}/traces.csv")
        labels = read_stack(demo_run / f"results/demo/fov_{fov:03d}/labels.tif")
        true = read_stack(demo_run / f"resources/demo/truth/labels_fov{fov:03d}.tif")
        mapping = _track_to_truth(labels, true)
        for _, row in fits[fits["success"]].iterrows():
            frames = traces.loc[traces["cell"] == row["cell"], "frame"]
            ids = [mapping.get((f, int(row["cell"])), 0) for f in frames]
            tid = max(set(ids), key=ids.count)
            p = params[(params["fov"] == fov) & (params["cell"] == tid)].iloc[0]
            for name in errors:
                errors[name].append(abs(row[name] / p[name] - 1))
    assert len(errors["ktl"]) >= 8
    for name, errs in errors.items():
        assert np.median(errs) < 0.25, f"median relative error of {name}: {np.median(errs):.3f}"


def test_second_run_does_nothing(demo_run):
    proc = snakemake(demo_run, "--cores", "2", "--configfile", str(ROOT / "config" / "config.yaml"), "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_lint_is_clean():
    proc = subprocess.run([SNAKEMAKE, "--lint", "-s", str(ROOT / "Snakefile")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def run_demo_with_storage(demo_run, tmp_path, storage, cores):
    """The demo in ``tmp_path`` with another ``storage`` config; its tables must be
    byte-identical to those of ``demo_run`` (defaults, 2 cores)."""
    import yaml

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["storage"] = storage
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(tmp_path, "--cores", str(cores), "--configfile", str(tmp_path / "c.yaml"))
    outputs = sorted(p.relative_to(demo_run) for p in (demo_run / "results").rglob("*.csv")
                     if "benchmarks" not in p.parts)
    assert len(outputs) >= 10
    for rel in outputs:
        assert (tmp_path / rel).read_bytes() == (demo_run / rel).read_bytes(), f"{rel} differs"


def test_one_core_and_other_storage_give_byte_identical_results(demo_run, tmp_path):
    """--cores 1 with Zstandard stacks (the opt-in) and temporary raw extracts:
    the same tables as the 2-core run with deflate (the default) and kept raw stacks."""
    import tifffile

    run_demo_with_storage(demo_run, tmp_path, {"compression": "zstd", "raw": "temp"}, cores=1)
    fov = Path("results/demo/fov_000")
    assert not list((tmp_path / "results").rglob("raw_ch*.tif"))  # temp(): gone after the run
    assert (demo_run / fov / "raw_ch0.tif").exists()
    for run, codec in ((tmp_path, "ZSTD"), (demo_run, "ADOBE_DEFLATE")):
        for name in ("segmentation.tif", "labels.tif"):
            with tifffile.TiffFile(run / fov / name) as tif:
                assert tif.pages[0].compression.name == codec
    # the deleted temporaries do not make the next run redo anything
    proc = snakemake(tmp_path, "--cores", "1", "--configfile", str(tmp_path / "c.yaml"), "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_raw_source_reads_the_input_and_gives_byte_identical_results(demo_run, tmp_path):
    """storage.raw: source: no raw copy at all (raw_ch{c}.json points into the
    input), the same tables as the run with kept raw stacks, nothing left to do."""
    run_demo_with_storage(demo_run, tmp_path, {"raw": "source"}, cores=2)
    assert not list((tmp_path / "results").rglob("raw_ch*.tif"))
    refs = sorted((tmp_path / "results").rglob("raw_ch*.json"))
    assert len(refs) == len(list((demo_run / "results").rglob("raw_ch*.tif"))) >= 4
    assert all(p.stat().st_size < 1000 for p in refs)
    proc = snakemake(tmp_path, "--cores", "1", "--configfile", str(tmp_path / "c.yaml"), "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_snakefmt_is_clean():
    snakefmt = str(Path(sys.executable).with_name("snakefmt"))
    proc = subprocess.run([snakefmt, "--check", "Snakefile", "workflow"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _external_run(work: Path, measure: str) -> pd.DataFrame:
    import yaml

    config = {
        "datasets": {"sim": {"input": "movie.ome.tif", "phase": "Phase", "fluorescence": ["GFP"]}},
        "segmentation": {"method": "external", "external": {"path": "truth/labels_fov{fov:03d}.tif"}},
        "background": {"tile_size": 64},
        "traces": {"measure": measure},
    }
    (work / "c.yaml").write_text(yaml.safe_dump(config))
    snakemake(work, "results/sim/fov_000/traces.csv", "--cores", "2", "--configfile", str(work / "c.yaml"))
    return pd.read_csv(work / "results/sim/fov_000/traces.csv")


def test_external_segmentation_runs_the_workflow_on_the_true_labels(tmp_path):
    """``segmentation.method: external`` on the simulator's true labels (fluorescence
    blurred by a 1.5 px PSF): the labels are taken as they are, every cell is
    tracked, and ``intensity_total`` (measure: expanded, the default) is within
    the issue's targets (median relative error <= 0.03, 90th percentile <= 0.10);
    PyAMA's in-mask sum on the same masks is biased low by the blurred rim."""
    from pyama_flow.devtools.simulate import SimulationConfig, simulate_experiment

    cfg = SimulationConfig(n_fovs=1, n_frames=32, psf_sigma=1.5, seed=5)  # the demo's layout, blurred
    truth = simulate_experiment(tmp_path / "movie.ome.tif", tmp_path / "truth", cfg)["traces"]
    true_labels = read_stack(tmp_path / "truth" / "labels_fov000.tif")
    errors = {}
    for measure in ("expanded", "mask"):
        traces = _external_run(tmp_path, measure)
        assert np.array_equal(read_stack(tmp_path / "results/sim/fov_000/segmentation.tif"), true_labels)
        labels = read_stack(tmp_path / "results/sim/fov_000/labels.tif")
        mapping = _track_to_truth(labels, true_labels)
        traces["true"] = [mapping.get((f, c), 0) for f, c in zip(traces["frame"], traces["cell"])]
        joined = traces.merge(truth.rename(columns={"cell": "true"}), on=["true", "frame"])
        assert joined["true"].nunique() == traces["cell"].nunique() >= 6  # one track per true cell
        joined = joined[joined["intensity_total"] >= 0.2 * joined.groupby("true")["intensity_total"].transform("max")]
        errors[measure] = (joined["intensity_total_ch_1"] - joined["intensity_total"]) / joined["intensity_total"]
    grown = errors["expanded"].abs()
    assert grown.median() <= 0.03 and grown.quantile(0.9) <= 0.10
    assert errors["mask"].median() < -0.04  # the rim's light, lost (-0.06 on this movie)
