"""The report's overview: every FOV in one table, the traces of every FOV, samples compared."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from PIL import Image

from pyama_flow.traces import curation
from pyama_flow.report.overview import (
    FovResults,
    fov_table,
    overview_html,
    plot_fov_traces,
    plot_sample_comparison,
    sample_table,
)


def _fov(root, fov, n_cells, saturated_frames=(), statuses=(), detected=None):
    """A FOV folder with traces of ``n_cells`` cells x 6 frames, its stats and fits."""
    d = root / f"fov_{fov:03d}"
    d.mkdir(parents=True)
    rows = [{"fov": fov, "cell": c, "frame": t, "time": 30.0 * t, "good": True,
             "bbox_x0": 10 * c, "bbox_y0": 0, "bbox_x1": 10 * c + 5, "bbox_y1": 5, "area_ch_0": 30,
             "intensity_total_ch_1": 100.0 * c * (t + 1)}
            for c in range(1, n_cells + 1) for t in range(6)]
    pd.DataFrame(rows).to_csv(d / "traces.csv", index=False)
    (d / "trace_stats.json").write_text(json.dumps(
        {"cells_detected": detected or n_cells + 2, "cells_kept": n_cells, "cells_per_frame": [n_cells] * 6}))
    pd.DataFrame({"frame": range(6), "n_saturated": [3 if t in saturated_frames else 0 for t in range(6)]}).to_csv(
        d / "frame_stats_ch1.csv", index=False)
    fits = pd.DataFrame({"fov": fov, "cell": range(1, n_cells + 1), "model": "maturation",
                         "success": [s != "failed" for s in statuses],
                         "r_squared": np.linspace(0.5, 0.9, n_cells), "status": list(statuses)})
    fits.to_csv(d / "fits_maturation.csv", index=False)
    return FovResults("demo", fov, "control" if fov == 0 else "treated", str(d / "trace_stats.json"),
                      str(d / "traces.csv"), {"maturation": str(d / "fits_maturation.csv")},
                      [str(d / "frame_stats_ch1.csv")])


def test_fov_table_counts_cells_fits_and_saturation_per_fov(tmp_path):
    a = _fov(tmp_path, 0, 3, saturated_frames=(2, 5), statuses=("ok", "at_bound", "failed"))
    b = _fov(tmp_path, 1, 4, statuses=("ok", "ok", "poor_fit", "ok"), detected=9)
    curation.record(tmp_path / "fov_001", 2, False)  # a curation decision: cell 2 of FOV 1 is bad
    table = fov_table([a, b])
    assert table.to_dict("records") == [
        {"dataset": "demo", "fov": 0, "sample": "control", "cells_detected": 5, "cells_kept": 3,
         "cells_marked_bad": 0, "fitted_maturation": 2, "reliable_maturation": 1,
         "median_r2_maturation": 0.6, "saturated_frames": 2},
        {"dataset": "demo", "fov": 1, "sample": "treated", "cells_detected": 9, "cells_kept": 4,
         "cells_marked_bad": 1, "fitted_maturation": 4, "reliable_maturation": 3,
         "median_r2_maturation": float(np.median(np.linspace(0.5, 0.9, 4))), "saturated_frames": 0},
    ]
    page = overview_html(table, None, {"control": "#1f77b4"})
    assert page.count("<tr>") == 3 and ">treated</td>" in page
    assert "14 cells tracked, 7 kept by the filters" in page and "1 of them marked bad" in page
    out = tmp_path / "traces.png"
    plot_fov_traces([a, b], out, {"control": "#1f77b4", "treated": "#ff7f0e"})
    img = np.asarray(Image.open(out).convert("L"), dtype=np.float64)
    assert img.shape[0] >= 300 and img.shape[1] >= 600 and img.std() > 10


def test_sample_table_keeps_fitted_parameters_with_unit_and_meaning(tmp_path):
    summary = pd.DataFrame([
        {"sample": s, "model": "maturation", "parameter": p, "n": 8, "median": m, "q25": m * 0.8,
         "q75": m * 1.2, "iqr": m * 0.4}
        for s, k in (("control", 1.0), ("treated", 2.0))
        for p, m in (("t0", 0.5 * k), ("ktl", 1e4 * k), ("km", 1.28), ("delta", 0.1 * k), ("beta", 5.22e-3),
                     ("offset", 900.0))
    ])
    table = sample_table(summary)
    # km and beta are fixed by default: left out
    assert table["parameter"].tolist() == ["t0", "ktl", "delta", "offset"] * 2
    assert table.set_index(["sample", "parameter"]).loc[("treated", "delta"), "unit"] == "1/h"
    assert "mRNA" in table.set_index(["sample", "parameter"]).loc[("control", "delta"), "meaning"]
    # a parameter freed in the config stays
    freed = sample_table(summary, {"maturation": {"km": {"fixed": False}}})
    assert "km" in set(freed["parameter"])
    out = tmp_path / "samples.png"
    plot_sample_comparison(table, out, {"control": "#1f77b4", "treated": "#ff7f0e"})
    assert np.asarray(Image.open(out).convert("L"), dtype=np.float64).std() > 10
    page = overview_html(pd.DataFrame(), table, {})
    assert "a.u./h" in page and "translation rate" in page
