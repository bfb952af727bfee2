"""The whole workflow on real microscopy files: the 53-frame Nikon ND2
time-lapse, and a multi-position OME-TIFF re-packed from its real frames."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml

from conftest import shared_data

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


def run_workflow(work: Path, config: dict) -> None:
    (work / "c.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run([SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(work),
                           "--configfile", str(work / "c.yaml"), "--cores", "2"],
                          capture_output=True, text=True, cwd=work)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


@pytest.fixture(scope="module")
def nd2_run(tmp_path_factory):
    nd2_path = shared_data("nd2", "arcadia", "example-timelapse.nd2")
    cfg = yaml.safe_load((ROOT / "config" / "examples" / "nd2_timelapse.yaml").read_text())
    cfg["datasets"]["nd2demo"]["input"] = str(nd2_path)
    work = tmp_path_factory.mktemp("nd2")
    run_workflow(work, cfg)
    return work, nd2_path, cfg


def test_nd2_traces_use_the_files_time_stamps(nd2_run):
    import nd2

    work, nd2_path, _ = nd2_run
    traces = pd.read_csv(work / "results/nd2demo/fov_000/traces.csv")
    assert len(traces) >= 30 and traces["cell"].nunique() >= 1
    with nd2.ND2File(nd2_path) as f:
        stamps = np.array([f.frame_metadata(i).channels[0].time.relativeTimeMs for i in range(f.sizes["T"])])
    expected = (stamps - stamps[0]) / 60000.0
    got = traces.groupby("frame")["time"].first()
    assert np.allclose(got.values, expected[got.index.values], atol=1e-6)
    fits = pd.read_csv(work / "results/nd2demo/fov_000/fits_maturation.csv")
    assert set(fits["cell"]) == set(traces["cell"])


def test_multiposition_ome_from_real_frames(nd2_run, tmp_path):
    """Three positions (the real frames, mirrored, flipped) x 2 channels in one
    OME-TIFF; position 0 must give exactly the ND2 run's traces."""
    import nd2

    work_nd2, nd2_path, cfg = nd2_run
    with nd2.ND2File(nd2_path) as f:
        frames = np.asarray(f.asarray())  # (T, Y, X), 53 x 64 x 64: small
        stamps = np.array([f.frame_metadata(i).channels[0].time.relativeTimeMs for i in range(f.sizes["T"])])
    delta_s = (stamps - stamps[0]) / 1000.0
    positions = [frames, frames[:, :, ::-1], frames[:, ::-1, :]]
    path = tmp_path / "multi.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tw:
        for pos in positions:
            data = np.stack([pos, pos], axis=1)  # T, C, Y, X
            tw.write(data, metadata={
                "axes": "TCYX", "Channel": {"Name": ["Phase", "GFP"]},
                "Plane": {"DeltaT": [float(d) for d in delta_s for _ in range(2)], "DeltaTUnit": ["s"] * data.shape[0] * 2},
            })
    multi = {
        "datasets": {"multi": {"input": str(path), "fovs": "0-2", "phase": "Phase", "fluorescence": ["GFP"]}},
        "samples": [{"name": "a", "dataset": "multi", "fovs": "0, 2"}, {"name": "b", "dataset": "multi", "fovs": "1"}],
        "segmentation": cfg["segmentation"], "background": cfg["background"],
        "traces": cfg["traces"], "fit": cfg["fit"],
    }
    work = tmp_path / "run"
    work.mkdir()
    run_workflow(work, multi)
    ours = pd.read_csv(work / "results/multi/fov_000/traces.csv")
    ref = pd.read_csv(work_nd2 / "results/nd2demo/fov_000/traces.csv")
    assert np.array_equal(ours["intensity_total_ch_1"].values, ref["intensity_total_ch_0"].values)
    assert np.allclose(ours["time"], ref["time"], atol=1e-6)
    for fov in (1, 2):
        t = pd.read_csv(work / f"results/multi/fov_{fov:03d}/traces.csv")
        assert (t["fov"] == fov).all() and len(t) > 0
    sample_a = pd.read_csv(work / "results/samples/a/a_intensity_total_ch_1.csv")
    assert set(sample_a["fov"]) == {0, 2}


def test_lif_xyzt_image_runs_through_the_workflow(tmp_path):
    """The x-y-z-t image of a real LAS X LIF (config/examples/lif_xyzt.yaml):
    raw frames are the λ band's maximum projection as liffile reads it, times
    are the file's plane stamps, stacks carry its calibration, cells are traced."""
    import liffile

    from pyama_flow.io.stacks import StackReader

    lif_path = shared_data("lif", "LeicaLASX_wavelength-sweep_example.lif")
    cfg = yaml.safe_load((ROOT / "config" / "examples" / "lif_xyzt.yaml").read_text())
    cfg["datasets"]["lifdemo"]["input"] = str(lif_path)
    run_workflow(tmp_path, cfg)
    fov = tmp_path / "results/lifdemo/fov_000"
    with liffile.LifFile(lif_path) as lif:
        whole = lif.images["x_y_z_t_lambdaEmi"].asarray()  # (T, λ, Z, Y, X)
    for band in (2, 6):  # "λ 560 nm", "λ 580 nm"
        with StackReader(fov / f"raw_ch{band}.tif") as raw:
            assert raw.dtype == np.uint8 and raw.shape == (2, 64, 64)
            assert np.array_equal(np.stack(list(raw)), whole[:, band].max(axis=1))
            assert raw.calibration.pixel_size_um == pytest.approx(0.1048144, rel=1e-5)
            assert raw.calibration.frame_interval_s == pytest.approx(80.91)
    traces = pd.read_csv(fov / "traces.csv")
    assert np.allclose(sorted(traces["time"].unique()), [0.0, 80.91 / 60], atol=1e-6)
    assert traces["cell"].nunique() >= 3 and set(traces.groupby("cell")["frame"].count()) == {2}
    with StackReader(fov / "labels.tif") as labels:
        assert labels.dtype == np.uint16 and int(labels[1].max()) == traces["cell"].max()
