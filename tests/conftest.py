"""Shared test fixtures: where the real data lives, and a small simulated experiment."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with a reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} (needs ../shared/data beside the repo)")
    return path


@pytest.fixture(scope="session")
def small_experiment(tmp_path_factory):
    """A 2-FOV, 12-frame simulated experiment with ground truth."""
    from pyama_flow.devtools.simulate import SimulationConfig, simulate_experiment

    out = tmp_path_factory.mktemp("sim")
    cfg = SimulationConfig(n_fovs=2, n_frames=12, seed=3)
    truth = simulate_experiment(out / "exp.ome.tif", out / "truth", cfg)
    return {"path": out / "exp.ome.tif", "truth_dir": out / "truth", "cfg": cfg, **truth}
