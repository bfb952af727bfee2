"""A real single-node SLURM cluster on 127.0.0.1 for tests.

Starts munged (if not running), slurmctld and slurmd from a slurm.conf
written to a temporary folder, and stops the daemons it started. Needs the
Debian packages slurm-wlm and munge (``.ci/run`` installs them) and root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo")


def unavailable_reason() -> str | None:
    """Why this machine cannot run the local cluster, or None."""
    missing = [b for b in BINARIES if shutil.which(b) is None and not Path(f"/usr/sbin/{b}").exists()]
    if missing:
        return f"SLURM/munge not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd/munged needs root"
    if not Path("/etc/munge/munge.key").exists():
        return "no /etc/munge/munge.key (munge package not configured)"
    conf = Path("/etc/slurm/slurm.conf")
    if conf.exists() and not conf.read_text().startswith("# pyama-flow test cluster"):
        return f"{conf} belongs to a real cluster; not starting a test cluster here"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sbin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


@contextlib.contextmanager
def local_cluster(folder: Path):
    """Yield the environment (with SLURM_CONF) of a running one-node cluster."""
    folder.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool", "log"):
        (folder / sub).mkdir(exist_ok=True)
    host = socket.gethostname().split(".")[0]
    mem_mb = int(open("/proc/meminfo").read().split()[1]) // 1024 - 2048
    conf = folder / "slurm.conf"
    conf.write_text(
        f"""ClusterName=pyamaflowtest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/log/slurmctld.log
SlurmdLogFile={folder}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
MinJobAge=3600
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={mem_mb} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""
    )
    env = dict(os.environ, SLURM_CONF=str(conf))
    # snakemake-executor-plugin-slurm-jobstep drops SLURM_CONF before its
    # nested srun, which then reads the standard path: put the config there
    # while the cluster runs (never over a config that is not ours)
    system_conf = Path("/etc/slurm/slurm.conf")
    ours = "# pyama-flow test cluster\n"
    if system_conf.exists() and not system_conf.read_text().startswith(ours):
        raise RuntimeError(f"{system_conf} exists: not overwriting a real cluster's config")
    system_conf.parent.mkdir(parents=True, exist_ok=True)
    system_conf.write_text(ours + conf.read_text())
    started_munge = False
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode != 0:
        run_dir = Path("/run/munge")
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(run_dir, "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", _sbin("munged")], check=True)
        started_munge = True
    subprocess.run([_sbin("slurmctld"), "-f", str(conf)], check=True, env=env)
    subprocess.run([_sbin("slurmd"), "-f", str(conf)], check=True, env=env)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=env)
            if out.returncode == 0 and out.stdout.strip() in ("idle", "mixed", "allocated"):
                break
            time.sleep(1)
        else:
            raise RuntimeError(f"local SLURM did not come up: {(folder / 'log' / 'slurmctld.log').read_text()[-2000:]}")
        yield env
    finally:
        for name in ("slurmd", "slurmctld"):
            pid_file = folder / f"{name}.pid"
            with contextlib.suppress(Exception):
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        if started_munge:
            subprocess.run(["pkill", "-x", "munged"], check=False)
        with contextlib.suppress(FileNotFoundError):
            system_conf.unlink()
        time.sleep(1)
