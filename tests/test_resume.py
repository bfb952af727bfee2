"""Interrupted runs pick up where they stopped and give the same bytes.

The demo (32 frames) is killed mid-way, twice over: the whole Snakemake
process group with SIGKILL (a crashed node or a closed terminal), then
resumed with ``--unlock`` and ``--rerun-incomplete``; and a single job (the segment script)
killed while ``--retries 1`` is set. Both must end with every
``results/**/*.csv`` byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pyama_flow.io.stacks import StackReader

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

pytestmark = pytest.mark.slow

CONFIG = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
CONFIG["simulate"]["n_frames"] = 32
CONFIG["traces"] = {"min_frames": 10}


def command(work: Path, *args: str) -> list[str]:
    (work / "c.yaml").write_text(yaml.safe_dump(CONFIG))
    return [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(work),
            "--configfile", str(work / "c.yaml"), "--cores", "2", *args]


def run(work: Path, *args: str) -> str:
    proc = subprocess.run(command(work, *args), capture_output=True, text=True, cwd=work)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    return out


def start(work: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    """Snakemake in its own process group (its jobs are its children), output to a file."""
    log = work / "snakemake.out"
    with open(log, "w") as fh:
        proc = subprocess.Popen(command(work, *args), stdout=fh, stderr=subprocess.STDOUT,
                                cwd=work, start_new_session=True)
    return proc, log


def wait_for(what: str, condition, proc: subprocess.Popen, log: Path, timeout: float = 600):
    """Poll ``condition()`` until it returns something truthy (every 10 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if proc.poll() is not None:
            pytest.fail(f"the run ended before {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"timed out waiting for {what}")


def processes_in(work: Path) -> list[int]:
    """PIDs of processes whose working directory is ``work`` (our run's jobs)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd") == str(work):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def script_process(work: Path, rule: str) -> int | None:
    """PID of the python process running ``rule``'s script in ``work``."""
    for pid in processes_in(work):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(arg.decode(errors="replace").endswith(f".{rule}.py") for arg in cmdline):
            return pid
    return None


def csv_files(work: Path) -> dict[str, bytes]:
    return {str(p.relative_to(work)): p.read_bytes() for p in sorted((work / "results").rglob("*.csv"))}


def temporaries(work: Path) -> list[str]:
    return [str(p) for p in (work / "results").rglob(".*") if p.name.endswith((".part", ".tmp"))]


def assert_same_results(work: Path, reference: dict[str, bytes]) -> None:
    got = csv_files(work)
    assert sorted(got) == sorted(reference)
    assert any(name.endswith("fits_maturation.csv") for name in got)
    for name, data in reference.items():
        assert got[name] == data, f"{name} differs from the uninterrupted run"
    assert temporaries(work) == []


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, bytes]:
    work = tmp_path_factory.mktemp("uninterrupted")
    run(work)
    return csv_files(work)


def test_killed_run_resumes_with_rerun_incomplete(reference, tmp_path):
    proc, log = start(tmp_path)
    fovs = tmp_path / "results" / "demo"
    # mid-way: after the first FOV's frames are extracted, while a job is
    # writing one of its outputs (its temporary .part file exists)
    parts = wait_for(
        "a job writing a per-FOV output",
        lambda: list(fovs.glob("fov_*/raw_ch*.tif")) and list(fovs.glob("fov_*/.*.part")),
        proc, log,
    )
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for pid in processes_in(tmp_path):  # nothing of the run may go on writing
        os.kill(pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    incomplete = tmp_path / ".snakemake" / "incomplete"
    assert incomplete.is_dir() and any(incomplete.iterdir()), "Snakemake did not mark running jobs"
    # every output present after the kill is whole: stacks read to the last
    # frame, tables parse; the killed writers left only their temporaries
    for path in (tmp_path / "results").rglob("*.tif"):
        with StackReader(path) as stack:
            for frame in stack:
                assert frame.size
    for path in (tmp_path / "results").rglob("*.csv"):
        pd.read_csv(path)
    assert parts and all(p.name.startswith(".") and p.name.endswith(".part") for p in parts)

    # a killed Snakemake cannot release its lock: the next run says so, and
    # --unlock (safe: nothing runs any more) clears it
    locked = subprocess.run(command(tmp_path, "--rerun-incomplete"), capture_output=True, text=True,
                            cwd=tmp_path)
    assert locked.returncode != 0 and "Directory cannot be locked" in locked.stdout + locked.stderr
    run(tmp_path, "--unlock")
    out = run(tmp_path, "--rerun-incomplete")
    assert "Nothing to be done" not in out
    assert_same_results(tmp_path, reference)
    assert "Nothing to be done" in run(tmp_path, "-n")


def test_killed_job_is_retried_and_gives_the_same_results(reference, tmp_path):
    proc, log = start(tmp_path, "--retries", "1")
    seg_parts = lambda: list((tmp_path / "results" / "demo").glob("fov_*/.segmentation.tif.*.part"))  # noqa: E731
    pid = wait_for(
        "the segment job writing its stack",
        lambda: seg_parts() and script_process(tmp_path, "segment"),
        proc, log,
    )
    os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=900) == 0, log.read_text()[-6000:]
    text = log.read_text()
    assert "Error in rule segment" in text  # the killed attempt failed ...
    assert "Trying to restart job" in text  # ... and was retried
    assert_same_results(tmp_path, reference)
