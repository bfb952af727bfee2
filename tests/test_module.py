"""pyama-flow used as a Snakemake module from another folder (``module`` +
``use rule * from``), the way deployed workflows are used: every path the
workflow builds (schema, src/, scripts, envs, report captions) must resolve from
the repository, not from the including workflow's folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

SNAKEFILE = """\
configfile: "config/config.yaml"


module pyama_flow:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from pyama_flow as pf_*
"""


def deploy(folder: Path, config: dict | None = None) -> Path:
    """A workflow folder that includes this repository as a module."""
    (folder / "config").mkdir(parents=True)
    if config is None:
        shutil.copy(ROOT / "config" / "config.yaml", folder / "config" / "config.yaml")
    else:
        (folder / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "Snakefile").write_text(SNAKEFILE.format(snakefile=ROOT / "Snakefile"))
    return folder


def snakemake(folder: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=folder, capture_output=True,
                          text=True, timeout=900, env=env)


def rule_counts(proc: subprocess.CompletedProcess, prefix: str = "") -> dict[str, int]:
    """``{rule: jobs}`` of a ``snakemake -n --quiet rules`` summary (``total`` kept as is)."""
    counts = {}
    for line in (proc.stdout + proc.stderr).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0] if parts[0] == "total" else prefix + parts[0]] = int(parts[1])
    return counts


def test_demo_dry_runs_through_the_module(tmp_path):
    folder = deploy(tmp_path / "deployed")
    direct = snakemake(ROOT, "-n", "--cores", "2", "--quiet", "rules")
    out = snakemake(folder, "-n", "--cores", "2", "--quiet", "rules")
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    counts, expected = rule_counts(out), rule_counts(direct, prefix="pf_")
    assert counts == expected and counts["total"] > 30, (counts, expected)
    assert not (folder / "results").exists()  # a dry run writes no results


def test_schema_is_checked_through_the_module(tmp_path):
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["segmentation"]["method"] = "nope"
    folder = deploy(tmp_path / "deployed", config)
    out = snakemake(folder, "-n", "--cores", "1")
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "segmentation.method" in text and "FileNotFoundError" not in text, text[-2000:]


@pytest.mark.slow
def test_first_run_through_the_module_keeps_logs_small(tmp_path):
    """The demo run end to end through the module as a first run (an empty numba
    cache, so the kernels compile): every job log <= 200 KB (no third-party DEBUG
    output), INFO lines about the compiles, console lines naming the FOV."""
    folder = deploy(tmp_path / "deployed")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    out = snakemake(folder, "--cores", "2", env=env)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert (folder / "results" / "all_traces.csv").stat().st_size > 0
    logs = list((folder / "results" / "logs").rglob("*.log"))
    assert len(logs) > 30
    sizes = {str(p.relative_to(folder)): p.stat().st_size for p in logs}
    assert max(sizes.values()) <= 200_000, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
    assert not any("DEBUG" in p.read_text() and "numba" in p.read_text() for p in logs)
    assert "compiling image kernels once for this installation (~30 s)" in text
    assert "compiling the fitter's kernels once for this installation (~6 s)" in text
    assert "INFO [dataset=demo, fov=000] segmented 40 frames" in text
    assert any((tmp_path / "numba-cache").rglob("kernels.*.nbi"))  # the compile went there
