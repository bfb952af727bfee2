"""The demo through a real local SLURM (sbatch/squeue) with profiles/slurm,
compared byte for byte with a local run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from slurm_cluster import local_cluster, unavailable_reason

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
CONFIG = str(ROOT / "config" / "config.yaml")

pytestmark = pytest.mark.slow


def _run(workdir: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", CONFIG, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, env=env)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def test_demo_on_local_slurm_matches_local_run(tmp_path):
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install snakemake-executor-plugin-slurm")
    local = tmp_path / "local"
    local.mkdir()
    _run(local, "--cores", "2")

    cluster = tmp_path / "slurm"
    cluster.mkdir()
    with local_cluster(tmp_path / "cluster") as env:
        proc = _run(
            cluster,
            "--profile", str(ROOT / "profiles" / "slurm"),
            "--slurm-no-account",
            "--slurm-status-command", "squeue",
            "--slurm-init-seconds-before-status-checks", "2",
            "--jobs", "4",
            env=env,
        )
        queue = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i %j %T"],
                               capture_output=True, text=True, env=env, check=True).stdout
    log = proc.stdout + proc.stderr
    queued = [line.split() for line in queue.splitlines() if line.strip()]
    assert queued, f"no job went through SLURM:\n{log[-3000:]}"
    assert all(state == "COMPLETED" for _jid, _name, state in queued), queue
    # Snakemake's submission lines carry the SLURM job ids squeue knows
    submitted = re.findall(r"submitted with SLURM jobid (\d+) \(log: ([^)]*)\)", log)
    assert sorted(j for j, _ in submitted) == sorted(jid for jid, _n, _s in queued)
    # the per-FOV chain went out as one group job per FOV, the rest one job per rule
    group_jobs = [path for _j, path in submitted if "/group_fov" in path]
    assert len(group_jobs) == 2, submitted
    # groups, simulate, metadata, merges, tidy, per-sample plots, analysis, overview (qc_config is local)
    assert len(submitted) == 2 + 1 + 1 + 4 + 1 + 2 + 1 + 1

    outputs = sorted(p.relative_to(local) for p in (local / "results").rglob("*.csv"))
    assert any(p.name == "fits_maturation.csv" for p in outputs)
    for rel in outputs:
        assert (cluster / rel).read_bytes() == (local / rel).read_bytes(), f"{rel} differs"
