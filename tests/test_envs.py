"""Dependencies: the lock satisfies pyproject.toml, every conda env pin equals the
lock (conda-forge pins only where the channel was checked to have that version),
every rule names an env, and the Snakemake process's own environment is usable."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
RULE_ENVS = sorted(p for p in (ROOT / "envs").glob("*.yaml") if p.stem != "snakemake")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
REQUIREMENTS = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]] + [
    Requirement(d) for extra in PYPROJECT["project"]["optional-dependencies"].values() for d in extra
]
#: the interpreter the conda envs pin (python=3.11)
PY311 = {"python_version": "3.11", "python_full_version": "3.11.7", "implementation_name": "cpython",
         "platform_system": "Linux", "sys_platform": "linux", "platform_machine": "x86_64", "os_name": "posix",
         "platform_python_implementation": "CPython", "extra": ""}


def lock(environment: dict[str, str] = PY311) -> dict[str, str]:
    """``{name: version}`` of requirements-lock.txt for one interpreter (markers evaluated)."""
    out: dict[str, str] = {}
    for line in (ROOT / "requirements-lock.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, _, marker = line.partition(";")
        name, _, version = spec.strip().partition("==")
        assert version, f"requirements-lock.txt: '{line}' is not pinned as name==version"
        if marker.strip() and not Marker(marker.strip()).evaluate(environment):
            continue
        assert canonicalize_name(name) not in out, f"requirements-lock.txt: {name} twice for Python 3.11"
        out[canonicalize_name(name)] = version.strip()
    return out


def env_pins(env: Path) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """``(conda pins, pip pins, other pip lines)`` of a conda env file."""
    data = yaml.safe_load(env.read_text())
    assert set(data) >= {"channels", "dependencies"}, env.name
    assert data["channels"][0] == "conda-forge" and "nodefaults" in data["channels"], env.name
    conda, pip, other = {}, {}, []
    for dep in data["dependencies"]:
        if isinstance(dep, dict):
            assert set(dep) == {"pip"}, f"{env.name}: unexpected section {dep}"
            for line in dep["pip"]:
                m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([0-9][0-9A-Za-z.]*)", line)
                if m:
                    pip[canonicalize_name(m.group(1))] = m.group(2)
                else:
                    other.append(line)
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)=([0-9][0-9A-Za-z.]*)", dep)
        assert m, f"{env.name}: '{dep}' is not pinned as name=version"
        conda[canonicalize_name(m.group(1))] = m.group(2)
    assert not set(conda) & set(pip), f"{env.name}: a package both from conda and pip"
    return conda, pip, other


def checked_on_conda_forge() -> dict[str, str]:
    """The table in envs/README.md: versions checked to exist on conda-forge."""
    text = (ROOT / "envs" / "README.md").read_text().split("## How the conda-forge pins were checked", 1)[1]
    rows = re.findall(r"^\| ([a-z0-9_.-]+) \| ([0-9][0-9A-Za-z.]*) \| conda-forge/", text, re.M)
    return {canonicalize_name(n): v for n, v in rows}


def test_lock_satisfies_pyproject_for_every_requirement():
    locked = lock()
    for req in REQUIREMENTS:
        name = canonicalize_name(req.name)
        assert name in locked, f"{req} is not in requirements-lock.txt: refresh the lock (README)"
        assert req.specifier.contains(locked[name], prereleases=True), \
            f"requirements-lock.txt has {name}=={locked[name]}, outside pyproject's {req}: refresh the lock"


def test_lock_is_made_by_the_readme_command():
    """The lock's header names the command that made it, and the README gives that command."""
    header = (ROOT / "requirements-lock.txt").read_text().splitlines()[1].strip("# ").strip()
    assert header.startswith("uv pip compile pyproject.toml")
    assert header in (ROOT / "README.md").read_text()


def test_there_is_an_env_per_rule_group_and_every_rule_uses_one():
    assert {e.stem for e in RULE_ENVS} == {"io", "imaging", "fitting"}
    text = "\n".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    used = set(re.findall(r'"\.\./\.\./envs/(\w+)\.yaml"', text))
    assert used == {"io", "imaging", "fitting"}


@pytest.mark.parametrize("env", RULE_ENVS, ids=lambda p: p.name)
def test_rule_env_pins_equal_the_lock(env):
    locked = lock()
    conda, pip, other = env_pins(env)
    checked = checked_on_conda_forge()
    assert conda.pop("python") == "3.11"
    assert conda.pop("pip") == checked["pip"]  # the installer of the pip section, not in the lock
    assert other == [], f"{env.name}: only name==version lines in the pip section"
    for name, version in {**conda, **pip}.items():
        assert name in locked, f"{env.name}: {name} is not in requirements-lock.txt"
        assert version == locked[name], f"{env.name}: {name}={version}, the lock has {locked[name]}"
    for name, version in conda.items():
        assert checked.get(name) == version, (
            f"{env.name}: {name}={version} from conda-forge, not in envs/README.md's checked table "
            f"(check the feedstock, or take it from PyPI in the pip section)")
    for name, version in pip.items():
        assert checked.get(name) != version, f"{env.name}: {name}={version} is on conda-forge: pin it there"


def test_rule_envs_cover_what_their_rules_import():
    """The libraries each group of rules imports are in its env (directly or as the lock's pins)."""
    needs = {"io": {"numpy", "tifffile", "imagecodecs", "nd2", "aicspylibczi", "liffile", "pyyaml",
                    "pandas"},
             "imaging": {"numpy", "scipy", "numba", "scikit-image", "tifffile", "imagecodecs", "pandas",
                         "onnxruntime"},
             "fitting": {"numpy", "scipy", "numba", "pandas", "matplotlib", "pillow", "tifffile"}}
    for env in RULE_ENVS:
        conda, pip, _ = env_pins(env)
        missing = needs[env.stem] - set(conda) - set(pip)
        assert not missing, f"{env.name} lacks {missing}"


def test_snakemake_process_env_installs_this_repository_with_the_lock():
    conda, pip, other = env_pins(ROOT / "envs" / "snakemake.yaml")
    assert conda["python"] == "3.11" and checked_on_conda_forge()["pip"] == conda["pip"]
    assert pip == {}
    assert other == ["-c ../requirements-lock.txt", "-e ..[slurm]"]
    # conda runs the pip section from the env file's folder
    assert (ROOT / "envs" / "../requirements-lock.txt").is_file()
    assert (ROOT / "envs" / ".." / "pyproject.toml").is_file()


def test_snakemake_without_pyama_flow_stops_with_one_line(tmp_path):
    """A Snakemake-only environment (pyama-flow's modules not importable) stops at
    once with one line saying where to run Snakemake, not a traceback."""
    code = ("import sys; sys.modules['pyama_flow.io.fovs'] = None; "
            "from snakemake.cli import main; sys.argv = ['snakemake', '-n', '--cores', '1', "
            f"'-s', {str(ROOT / 'Snakefile')!r}, '--configfile', {str(ROOT / 'config' / 'config.yaml')!r}]; main()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "the Snakemake process itself needs pyama-flow's dependencies" in text, text[-2000:]
    assert "envs/snakemake.yaml" in text


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
