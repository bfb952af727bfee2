"""Fitted ktl against simulated truth, through the workflow's own steps.

Usage::

    .venv/bin/python benchmarks/bench_kinetics.py [--quick] [--seeds 0 1 2] [--sigma 1.0]

What a scientist publishes is the fitted rate. Each case is a
``pyama_flow.devtools.simulate`` FOV (384², 40 frames of 20 min, the demo's
movie length; cells express as in the ``maturation`` model with known
``ktl``, ``delta``, ``t0``) at one of three densities (``sparse``: 8 cells,
32 px apart; ``medium``: 20, 8 px; ``dense``: 40, touching) with a Gaussian
PSF of ``--sigma`` px on the fluorescence. Every frame goes through the
steps the workflow runs with the defaults of ``config/exp.yaml``:
segmentation (``watershed``), tracking (``Tracker()``, final ids as in
``labels.tif``), background tiles (64 px, as the demo's config sets for
small frames; the default 256 is for 1024-2048 px frames), traces
(:class:`pyama_flow.traces.features.TraceBuilder`, reference filters
``min_frames`` 30, ``border`` 50) and the fit
(:func:`pyama_flow.fitting.fit.fit_traces`, ``maturation``,
``t0_bounds="data"``). Measures (``measure``): ``expanded`` (the default,
mask grown 3 px, background dilation 3) and ``mask`` (PyAMA's in-mask sum,
dilation 21); label sources: ``segmented`` and ``truth`` (the true masks,
as an external segmentation would give them).

A tracked cell is scored when one true cell is matched to it (IoU >= 0.5,
:func:`bench_intensity.match`) in at least 90 % of the frames it has in the
traces table, so merged or swapped tracks are left out (their count is
reported). Reported per case: fitted cells, scored cells, the share with
``status == ok``, and over the scored ``ok`` cells the median |relative
error| of ``ktl`` (and its signed median), then the same over all scored
cells.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_intensity import DENSITIES, match, track_labels

from pyama_flow.background import model as bgmod
from pyama_flow.devtools.simulate import SimulationConfig, simulate_experiment
from pyama_flow.fitting.fit import fit_traces
from pyama_flow.segmentation import segment_frame
from pyama_flow.traces.features import TraceBuilder, TraceFilter, expand_labels

#: measure -> (traces.expand_px, background.dilation)
MEASURES = {"expanded": (3, 3), "mask": (0, 21)}
FILTERS = TraceFilter(min_frames=30, border=50)


def traces_table(labels: list[np.ndarray], fluo: np.ndarray, times_min: np.ndarray, margin: int,
                 dilation: int) -> pd.DataFrame:
    """The traces step on in-memory frames (correct step's tile model, then features)."""
    builder = TraceBuilder(0, 0, [1], 1.0, margin)
    for t, lab in enumerate(labels):
        fl = fluo[t]
        bg = bgmod.evaluate(bgmod.fit_tiles(fl, expand_labels(lab, margin), tile_size=64, dilation=dilation))
        builder.add_frame(t, float(times_min[t]), lab, {1: fl}, {1: bg})
    return builder.table(FILTERS)


def true_cell_of_tracks(labels: list[np.ndarray], truth: np.ndarray, df: pd.DataFrame) -> dict[int, int]:
    """Tracked id -> true id, for tracks whose frames in ``df`` match one true cell in >= 90 % of them."""
    hits: dict[int, list[int]] = {}
    for t, lab in enumerate(labels):
        for true_id, seg_id in match(truth[t], lab).items():
            hits.setdefault(seg_id, []).append(true_id)
    frames = df.groupby("cell")["frame"].nunique()
    out = {}
    for cell, n in frames.items():
        ids = hits.get(int(cell), [])
        if ids:
            best = max(set(ids), key=ids.count)
            if ids.count(best) >= 0.9 * n:
                out[int(cell)] = best
    return out


def case_rows(seed: int, density: str, sigma: float) -> list[dict]:
    n_cells, gap = DENSITIES[density]
    cfg = SimulationConfig(n_fovs=1, n_frames=40, height=384, width=384, n_cells=n_cells, min_gap=gap,
                           psf_sigma=sigma, seed=seed, frame_interval_min=20.0, compression=None)
    with tempfile.TemporaryDirectory() as tmp:
        simulate_experiment(Path(tmp) / "sim.ome.tif", Path(tmp) / "truth", cfg)
        movie = tifffile.imread(Path(tmp) / "sim.ome.tif")
        truth = tifffile.imread(Path(tmp) / "truth" / "labels_fov000.tif")
        params = pd.read_csv(Path(tmp) / "truth" / "params.csv").set_index("cell")
    times = np.arange(cfg.n_frames) * cfg.frame_interval_min
    sources = {
        "segmented": track_labels([segment_frame(movie[t, 0], method="watershed") for t in range(cfg.n_frames)]),
        "truth": list(truth),
    }
    rows = []
    for source, labels in sources.items():
        for measure, (margin, dilation) in MEASURES.items():
            df = traces_table(labels, movie[:, 1], times, margin, dilation)
            fits = fit_traces(df, "maturation", t0_bounds="data").set_index("cell")
            owner = true_cell_of_tracks(labels, truth, df)
            for cell, fit in fits.iterrows():
                true_id = owner.get(int(cell))
                true_ktl = float(params.loc[true_id, "ktl"]) if true_id is not None else np.nan
                rows.append({"seed": seed, "density": density, "sigma": sigma, "source": source,
                             "measure": measure, "cell": int(cell), "status": fit["status"],
                             "scored": true_id is not None, "rel": (float(fit["ktl"]) - true_ktl) / true_ktl})
    return rows


def summary(df: pd.DataFrame) -> pd.DataFrame:
    out = []
    for key, g in df.groupby(["source", "measure", "density"], sort=False):
        scored = g[g["scored"]]
        ok = scored[scored["status"] == "ok"]
        out.append(dict(zip(["source", "measure", "density"], key),
                        fitted=len(g), scored=len(scored), ok_share=(scored["status"] == "ok").mean(),
                        ok_median=ok["rel"].abs().median(), ok_bias=ok["rel"].median(),
                        ok_p90=ok["rel"].abs().quantile(0.9),
                        all_median=scored["rel"].abs().median()))
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sigma", type=float, default=1.0, help="PSF sigma (px) of the fluorescence")
    args = ap.parse_args(argv)
    seeds = args.seeds[:1] if args.quick else args.seeds
    rows = [r for seed in seeds for d in DENSITIES for r in case_rows(seed, d, args.sigma)]
    df = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print(f"fitted ktl, maturation model, seeds {seeds}, PSF sigma {args.sigma} px: |relative error| "
          "over the scored cells with status ok (median, signed median, p90) and over all scored cells")
    print(summary(df).round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
