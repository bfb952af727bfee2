"""Per-sample analysis: summaries, median trace, PCA, plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pyama_flow.report.analysis import (
    INTENSITY_LABEL,
    TIME_LABEL,
    analyze,
    assign_samples,
    median_trace,
    parameter_table,
    plot_example_cells,
    resample_traces,
    sample_colors,
    stack_samples,
    summarize_parameters,
    trace_pca,
)
from pyama_flow.fitting.fit import fit_traces
from pyama_flow.fitting.models import get_model

MINUTES = np.arange(0, 1810, 10.0)  # 181 frames over 30 h


def _two_class_traces(rng, n=12, noise=0.02):
    """Sample 'fast': early, quickly decaying expression; 'slow': steady late rise."""
    mod = get_model("maturation")
    tables = {}
    for sample, delta, fov0 in (("fast", 0.5, 0), ("slow", 0.02, 5)):
        rows = []
        for c in range(n):
            p = {
                "t0": rng.uniform(-0.5, 0.5),
                "ktl": 10 ** rng.uniform(2.5, 3.5),
                "km": 1.28,
                "delta": delta * rng.uniform(0.8, 1.25),
                "beta": 5.22e-3,
                "offset": 0.0,
            }
            y = mod.evaluate(MINUTES / 60.0, p)
            y = y + rng.normal(0, noise * y.max(), y.size)
            rows.append(pd.DataFrame({"time": MINUTES, "fov": fov0 + c % 2, "cell": c, "value": y}))
        tables[sample] = pd.concat(rows, ignore_index=True)
    return stack_samples(tables)


def _fits_from_long(traces):
    df = traces.rename(columns={"value": "intensity_total_ch_1"}).assign(good=True)
    fits = fit_traces(df, "maturation")
    samples = {s: sorted(set(traces.loc[traces["sample"] == s, "fov"])) for s in pd.unique(traces["sample"])}
    return assign_samples(fits, samples)


def test_summary_matches_hand_values():
    fits = pd.DataFrame(
        {
            "sample": ["a"] * 5 + ["b"] * 3,
            "fov": [0] * 8,
            "cell": range(8),
            "model": "maturation",
            "success": [True, True, True, True, False, True, True, True],
            "r_squared": [0.95, 0.5, 0.99, 0.91, np.nan, 0.2, 0.95, 0.3],
            "delta": [0.1, 0.2, 0.3, 0.4, np.nan, 1.0, 2.0, 4.0],
        }
    )
    s = summarize_parameters(fits, params=["delta"])
    a = s[s["sample"] == "a"].iloc[0]
    assert a["n"] == 4 and a["median"] == pytest.approx(0.25)
    assert (a["q25"], a["q75"]) == pytest.approx((0.175, 0.325))
    assert a["iqr"] == pytest.approx(0.15)
    assert a["frac_r2_above"] == pytest.approx(3 / 5)  # the failed fit counts as below
    b = s[s["sample"] == "b"].iloc[0]
    assert b["median"] == 2.0 and b["frac_r2_above"] == pytest.approx(1 / 3)
    table = parameter_table(fits, "maturation")
    assert len(table) == 7 and list(table.columns[:5]) == ["sample", "fov", "cell", "model", "r_squared"]


def test_resample_and_median_trace_hand_values():
    rows = []
    for c in range(1, 10):  # value = c * t_h, cell c observed from hour c-1 on
        t = MINUTES[MINUTES >= (c - 1) * 60]
        rows.append(pd.DataFrame({"sample": "s", "fov": 0, "cell": c, "time": t, "value": c * t / 60.0}))
    traces = pd.concat(rows, ignore_index=True)
    grid = np.array([0.5, 10.0, 29.0])
    keys, X = resample_traces(traces, grid)
    assert list(keys["cell"]) == list(range(1, 10))
    assert X[0].tolist() == pytest.approx([0.5, 10.0, 29.0])
    assert np.isnan(X[1, 0]) and X[1, 1] == pytest.approx(20.0)
    med = median_trace(traces, grid_h=grid)
    last = med.iloc[-1]
    cs = np.arange(1, 10) * 29.0
    assert last["median"] == pytest.approx(np.median(cs))
    assert (last["q10"], last["q90"]) == pytest.approx(tuple(np.quantile(cs, [0.1, 0.9])))
    assert med["n_cells"].tolist() == [1, 9, 9]


def test_pca_separates_two_response_classes():
    traces = _two_class_traces(np.random.default_rng(0))
    pca = trace_pca(traces, n_grid=80, n_components=3)
    scores = pca["scores"]
    pc1_fast = scores.loc[scores["sample"] == "fast", "PC1"].to_numpy()
    pc1_slow = scores.loc[scores["sample"] == "slow", "PC1"].to_numpy()
    assert pc1_fast.max() < pc1_slow.min() or pc1_slow.max() < pc1_fast.min()
    ev = pca["explained"]["explained_variance_ratio"].to_numpy()
    assert ev[0] > 0.5 and np.all(np.diff(ev) <= 1e-12) and ev.sum() <= 1 + 1e-12
    comps = pca["components"][["PC1", "PC2", "PC3"]].to_numpy()
    assert np.allclose(comps.T @ comps, np.eye(3), atol=1e-10)  # orthonormal components


def test_pca_is_deterministic_and_scale_free():
    traces = _two_class_traces(np.random.default_rng(1), n=6)
    a = trace_pca(traces)
    b = trace_pca(traces.assign(value=traces["value"] * 7.5))  # every trace scaled to its max
    assert np.allclose(a["scores"][["PC1", "PC2"]], b["scores"][["PC1", "PC2"]], atol=1e-9)


def test_analyze_writes_tables_and_plots(tmp_path):
    traces = _two_class_traces(np.random.default_rng(2), n=8)
    fits = _fits_from_long(traces)
    tables = analyze(fits, traces, tmp_path, model="maturation", n_examples=6)
    for name in ("parameters", "summary", "median_trace", "pca_scores", "pca_components", "pca_explained"):
        assert (tmp_path / f"{name}.csv").stat().st_size > 0
    for name in ("parameters", "r_squared", "examples", "median_trace", "pca"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = tables["summary"]
    delta = summary[summary["parameter"] == "delta"].set_index("sample")["median"]
    assert delta["fast"] == pytest.approx(0.5, rel=0.2) and delta["slow"] == pytest.approx(0.02, rel=0.2)
    assert set(summary["sample"]) == {"fast", "slow"}
    assert (summary["frac_r2_above"] > 0.9).all()


def test_example_grid_labels_and_colors(tmp_path):
    traces = _two_class_traces(np.random.default_rng(3), n=4)
    fits = _fits_from_long(traces)
    cells, fig = plot_example_cells(traces, fits, tmp_path / "ex.png", n=4)
    assert len(cells) == 4 and set(cells["sample"]) == {"fast", "slow"}
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert all(ax.get_xlabel() == TIME_LABEL and ax.get_ylabel() == INTENSITY_LABEL for ax in visible)
    # each panel: data points and a fitted curve
    assert all(len(ax.lines) == 2 for ax in visible)
    colors = sample_colors(["fast", "slow"])
    assert colors["fast"] != colors["slow"] and sample_colors(["fast", "slow"]) == colors


def test_assign_samples():
    df = pd.DataFrame({"fov": [0, 1, 2, 3], "cell": [1, 1, 1, 1]})
    out = assign_samples(df, {"ctrl": [0, 1], "drug": [3]})
    assert out["sample"].tolist() == ["ctrl", "ctrl", "drug"]
    with pytest.raises(ValueError, match="FOV 1"):
        assign_samples(df, {"a": [0, 1], "b": [1]})


def test_analysis_uses_reliable_fits_and_counts_every_status(tmp_path):
    # 4 cells of sample "fast" start expressing at 4 h, beyond t0's reference
    # bound (1 h): their fits are held at the bound, so the analysis leaves them
    # out by default, and says how many it left out
    rng = np.random.default_rng(4)
    traces = _two_class_traces(rng, n=6)
    mod = get_model("maturation")
    late = []
    for c in range(100, 104):
        p = {"t0": 4.0, "ktl": 1000.0, "km": 1.28, "delta": 0.5, "beta": 5.22e-3, "offset": 0.0}
        y = mod.evaluate(MINUTES / 60.0, p)
        late.append(pd.DataFrame({"sample": "fast", "time": MINUTES, "fov": 0, "cell": c,
                                  "value": y + rng.normal(0, 0.02 * y.max(), y.size)}))
    traces = pd.concat([traces, *late], ignore_index=True)
    fits = _fits_from_long(traces)
    late_rows = fits["cell"] >= 100
    assert (fits.loc[late_rows, "status"] == "at_bound").all()
    assert (fits.loc[~late_rows, "status"] == "ok").all()
    tables = analyze(fits, traces, tmp_path / "ok", model="maturation", n_examples=4)
    assert not (tables["parameters"]["cell"] >= 100).any() and len(tables["parameters"]) == 12
    assert not (tables["pca_scores"]["cell"] >= 100).any() and len(tables["pca_scores"]) == 12
    s = tables["summary"].set_index(["sample", "parameter"])
    assert s.loc[("fast", "delta"), "n"] == 6 and s.loc[("fast", "delta"), "n_at_bound"] == 4
    assert s.loc[("fast", "delta"), "n_ok"] == 6 and s.loc[("slow", "delta"), "n_at_bound"] == 0
    assert s.loc[("fast", "delta"), "median"] == pytest.approx(0.5, rel=0.2)
    everything = ["ok", "at_bound", "poor_fit", "not_identifiable", "failed"]
    all_tables = analyze(fits, traces, tmp_path / "all", model="maturation", n_examples=4, include=everything)
    assert len(all_tables["parameters"]) == 16 and len(all_tables["pca_scores"]) == 16
    assert all_tables["summary"].set_index(["sample", "parameter"]).loc[("fast", "delta"), "n"] == 10
    with pytest.raises(ValueError, match="unknown fit status 'good'"):
        summarize_parameters(fits, "maturation", include=["good"])
