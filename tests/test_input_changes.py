"""Inputs are what was extracted (issue #18 item 2), through Snakemake with
``storage.raw: source``: an input replaced by another movie of the same shape
with its mtime kept (``cp -p``) reruns extract and metadata, and the results
equal a clean run on the new movie, never a mix; one frame of a frame folder
rewritten in place reruns; a change between extract and a reading job fails
that job with one line."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tifffile
import yaml

from pyama_flow.io import open_image

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

pytestmark = pytest.mark.slow

BASE = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
BASE["datasets"]["demo"]["input"] = "inputs/exp.ome.tif"
BASE["storage"] = {"raw": "source"}
BASE.setdefault("traces", {})["min_frames"] = 8  # the movies have 12 frames


def run(work: Path, config: dict, *args: str, targets: tuple[str, ...] = (),
        check: bool = True) -> subprocess.CompletedProcess:
    cfg = work / "run.yaml"
    cfg.write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        [SNAKEMAKE, *targets, "-s", str(ROOT / "Snakefile"), "--directory", str(work), *args,
         "--configfile", str(cfg)],
        capture_output=True, text=True, cwd=work,
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def planned(work: Path, config: dict, *targets: str) -> dict[str, int]:
    import re

    out = run(work, config, "-n", targets=targets)
    text = out.stdout + out.stderr
    if "Nothing to be done" in text:
        return {}
    table = text[text.index("Job stats:"):].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def replace_keeping_mtime(src: Path, dst: Path) -> None:
    st = os.stat(dst)
    shutil.copyfile(src, dst)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.fixture(scope="module")
def movies(tmp_path_factory):
    """Two movies of one shape and size (2 FOVs x 12 frames x 320^2 uncompressed, another seed)."""
    from pyama_flow.devtools.simulate import SimulationConfig, simulate_experiment

    out = tmp_path_factory.mktemp("movies")
    paths = []
    for seed in (3, 4):
        path = out / f"seed{seed}" / "exp.ome.tif"
        simulate_experiment(path, out / f"seed{seed}" / "truth", SimulationConfig(n_fovs=2, n_frames=12, seed=seed, compression=None))
        paths.append(path)
    assert paths[0].stat().st_size == paths[1].stat().st_size
    return paths


def _start(work: Path, movie: Path) -> None:
    (work / "inputs").mkdir(parents=True)
    shutil.copy2(movie, work / "inputs" / "exp.ome.tif")


def _tables(work: Path) -> dict[Path, bytes]:
    return {p.relative_to(work): p.read_bytes() for p in (work / "results").rglob("*.csv")
            if "benchmarks" not in p.parts}


def test_replaced_input_with_kept_mtime_reruns_extract_and_equals_a_clean_run(movies, tmp_path):
    a, b = movies
    work = tmp_path / "run"
    _start(work, a)
    run(work, BASE, "--cores", "2")
    before = _tables(work)
    assert planned(work, BASE) == {}
    replace_keeping_mtime(b, work / "inputs" / "exp.ome.tif")
    cfg = copy.deepcopy(BASE)
    cfg["segmentation"]["logstd"] = {"n_sigma": 3.5}  # a change that reruns part of the chain
    plan = planned(work, cfg)
    assert plan["extract"] == 4 and plan["metadata"] == 1 and plan["segment"] == 2
    run(work, cfg, "--cores", "2")
    assert planned(work, cfg) == {}
    clean = tmp_path / "clean"
    _start(clean, b)
    run(clean, cfg, "--cores", "2")
    after, expected = _tables(work), _tables(clean)
    assert len(expected) >= 10 and after.keys() == expected.keys()
    for rel in expected:
        assert after[rel] == expected[rel], f"{rel} differs from a clean run on the new input"
    traces = Path("results/demo/fov_000/traces.csv")
    assert len(before[traces].splitlines()) > 12 and len(after[traces].splitlines()) > 12
    assert after[traces] != before[traces]
    meta = json.loads((work / "results" / "demo" / "metadata.json").read_text())
    ref = json.loads((work / "results" / "demo" / "fov_001" / "raw_ch1.json").read_text())
    assert meta["input_fingerprint"] == ref["fingerprint"]
    assert meta["input_fingerprint"] == json.loads((clean / "results/demo/metadata.json").read_text())["input_fingerprint"]


def test_input_changed_after_extract_fails_the_reading_job_with_one_line(movies, tmp_path):
    a, b = movies
    work = tmp_path / "run"
    _start(work, a)
    refs = [f"results/demo/fov_000/raw_ch{c}.json" for c in (0, 1)]
    run(work, BASE, "--cores", "2", targets=tuple(refs))
    # replaced while the workflow runs: this run's DAG was built before (emulated by
    # ignoring params, so that Snakemake does not schedule extract again)
    replace_keeping_mtime(b, work / "inputs" / "exp.ome.tif")
    proc = run(work, BASE, "--cores", "1", "--rerun-triggers", "mtime",
               targets=("results/demo/fov_000/segmentation.tif",), check=False)
    assert proc.returncode != 0
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "changed since extraction" in line]
    assert lines and all("results/demo/fov_000/raw_ch0.json: inputs/exp.ome.tif changed since extraction "
                         "(content fingerprint fp1:" in line for line in lines), lines
    assert lines[0].rstrip().endswith("rerun the extract jobs of this FOV (snakemake reruns them on its next start)")
    assert not (work / "results/demo/fov_000/segmentation.tif").exists()
    # the next ordinary start reruns extract first
    assert planned(work, BASE, "results/demo/fov_000/segmentation.tif")["extract"] == 1


def test_frame_rewritten_in_place_in_a_folder_reruns_extract(movies, tmp_path):
    a, b = movies
    work = tmp_path / "run"
    folder = work / "inputs" / "frames"
    folder.mkdir(parents=True)
    with open_image(str(a)) as r:
        for t in range(12):
            for c, name in ((0, "ph"), (1, "gfp")):
                tifffile.imwrite(folder / f"img_{name}_t{t:03d}.tif", r.read_frame(0, t, c))
    cfg = copy.deepcopy(BASE)
    cfg["datasets"]["demo"] = {
        "input": "inputs/frames", "fovs": "all", "phase": "Phase", "fluorescence": ["GFP"],
        "frame_interval_min": 20,
        "reader": {"pattern": ["*_ph_*.tif", "*_gfp_*.tif"], "channel_names": ["Phase", "GFP"]},
    }
    cfg["samples"] = [{"name": "control", "dataset": "demo", "fovs": "0"}]
    targets = ["results/demo/metadata.json", "results/demo/fov_000/raw_ch1.json"]
    run(work, cfg, "--cores", "2", targets=tuple(targets))
    assert planned(work, cfg, *targets) == {}
    frame = folder / "img_gfp_t005.tif"
    st, fst = frame.stat(), folder.stat()
    with open_image(str(b)) as r:
        tifffile.imwrite(frame, r.read_frame(0, 5, 1))
    os.utime(frame, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.utime(folder, ns=(fst.st_atime_ns, fst.st_mtime_ns))
    assert frame.stat().st_size == st.st_size
    assert planned(work, cfg, *targets) == {"extract": 1, "metadata": 1}
