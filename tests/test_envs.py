"""Per-rule conda environments: parse, pin every package, agree with
pyproject.toml and with the versions the tests run with; and every rule names one."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
ENVS = sorted((ROOT / "envs").glob("*.yaml"))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
REQUIREMENTS = {
    Requirement(r).name.lower(): Requirement(r)
    for r in PYPROJECT["project"]["dependencies"]
    + [d for extra in PYPROJECT["project"]["optional-dependencies"].values() for d in extra]
}


def pins(env: Path) -> dict[str, str]:
    data = yaml.safe_load(env.read_text())
    assert set(data) >= {"channels", "dependencies"}, env.name
    assert "conda-forge" in data["channels"]
    out = {}
    for dep in data["dependencies"]:
        assert isinstance(dep, str), f"{env.name}: nested pip section not expected: {dep}"
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)=([0-9][0-9A-Za-z.]*)", dep)
        assert m, f"{env.name}: '{dep}' is not pinned as name=version"
        out[m.group(1).lower()] = m.group(2)
    return out


def test_there_is_an_env_per_rule_group():
    assert {e.stem for e in ENVS} == {"io", "imaging", "fitting"}


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_env_pins_agree_with_pyproject_and_installed(env):
    for name, version in pins(env).items():
        if name == "python":
            assert version == "3.11"
            continue
        req = REQUIREMENTS.get(name)
        assert req is not None, f"{env.name}: {name} is not a dependency in pyproject.toml"
        assert req.specifier.contains(version, prereleases=True), f"{name}={version} outside {req}"
        assert metadata.version(name) == version, f"{env.name}: {name}={version}, tests run with {metadata.version(name)}"


def test_every_rule_has_conda_log_and_benchmark():
    text = "\n".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    rules = re.findall(r"^\s*rule (\w+):", text, re.M)
    assert len(rules) >= 10
    for block in re.split(r"^\s*rule \w+:", text, flags=re.M)[1:]:
        for key in ("conda:", "log:", "benchmark:", "resources:", "threads:"):
            assert key in block, f"a rule lacks {key}"


def test_library_is_importable_from_a_rule_script_in_any_environment(tmp_path):
    """scripts/_common.py puts the repository's src/ first on sys.path, so a conda
    env made from envs/*.yaml (which does not install pyama-flow) still imports it.
    Run with -S: no site-packages, so the import cannot come from an installed copy."""
    code = ("import sys; sys.path.insert(0, %r); import _common, pyama_flow; print(pyama_flow.__file__)"
            % str(ROOT / "scripts"))
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == ROOT / "src" / "pyama_flow" / "__init__.py"
