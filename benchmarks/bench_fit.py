"""Fit benchmark: accuracy, standard-error coverage, speed and multi-start gain.

Simulates cells per model with known parameters (181 points over 30 h, i.e.
10-min frames) and Gaussian noise of 5 % of each trace's maximum, fits them
with :func:`pyama_flow.fitting.fit_batch` on one core and prints, per model
and free parameter:

* median relative error |est - true| / |true| (for the location-type
  parameters ``t0`` and ``offset`` the relative error is meaningless near 0;
  the median absolute error is printed, ``t0`` in hours and ``offset`` in %
  of the trace amplitude);
* coverage of +-1 SE: fraction of cells with |est - true| <= SE (~68 % if
  the standard errors are right);

and per model the CPU time per cell (single thread), the same for a single
start of our fitter and for a plain scipy ``least_squares`` single start from
the defaults (the reference-style fit), and the fraction of cells whose
multi-start R^2 is >= that scipy single-start R^2 (within 1e-9).

``trivial`` is symmetric in delta and beta (the data cannot tell them apart);
its estimates are compared with the truth after ordering them delta >= beta.
``maturation_blocked`` is fitted with t0 fixed at the known time of the
translation block (with t0 free, t0/G0/Gu0 are not identifiable).

Run: ``.venv/bin/python benchmarks/bench_fit.py [--quick]``.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # single core

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from scipy.optimize import least_squares  # noqa: E402

from pyama_flow.fitting import fit_batch, resolve_params, tune_malloc  # noqa: E402
from pyama_flow.models import get_model  # noqa: E402

T = np.arange(181) / 6.0  # hours
NOISE = 0.05
CHUNK = 1024
BLOCK_T0 = 0.5


def _log_uniform(rng, lo, hi, n):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


def simulate(name: str, n: int, rng) -> tuple[dict[str, np.ndarray], np.ndarray, dict]:
    """True parameters (n,), noisy traces (n, 181) and the overrides used for fitting."""
    if name == "maturation":
        p = {
            "t0": rng.uniform(-0.8, 0.8, n),
            "ktl": _log_uniform(rng, 1e2, 1e4, n),
            "km": np.full(n, 1.28),
            "delta": _log_uniform(rng, 0.02, 0.3, n),
            "beta": np.full(n, 5.22e-3),
        }
        overrides: dict = {}
    elif name == "trivial":
        p = {
            "t0": rng.uniform(1.0, 8.0, n),
            "ktl": _log_uniform(rng, 10.0, 1e3, n),
            "delta": rng.uniform(0.15, 0.5, n),
            "beta": rng.uniform(0.02, 0.06, n),
        }
        overrides = {}
    else:
        p = {
            "t0": np.full(n, BLOCK_T0),
            "G0": _log_uniform(rng, 1e2, 1e4, n),
            "Gu0": _log_uniform(rng, 1e2, 1e4, n),
            "km": np.full(n, 1.28),
            "beta": np.full(n, 5.22e-3),
        }
        overrides = {"t0": {"value": BLOCK_T0, "fixed": True}}
    mod = get_model(name)
    clean = mod.evaluate(T, {**{k: v[:, None] for k, v in p.items()}, "offset": np.zeros((n, 1))})
    amp = clean.max(axis=1) - clean.min(axis=1)
    p["offset"] = rng.uniform(-0.05, 0.05, n) * amp
    y = clean + p["offset"][:, None] + rng.normal(size=clean.shape) * NOISE * np.abs(clean).max(axis=1)[:, None]
    return p, y, overrides


def fit_all(name, y, overrides, **options):
    out = []
    t1 = time.process_time()
    for lo in range(0, y.shape[0], CHUNK):
        out.append(fit_batch(T, y[lo : lo + CHUNK], name, resolve_params(name, overrides), **options))
    cpu = time.process_time() - t1
    res = {k: np.concatenate([o[k] for o in out]) for k in out[0]}
    return res, cpu


def scipy_single(name, y, overrides):
    mod = get_model(name)
    spec = resolve_params(name, overrides)
    free = [s.name for s in spec if not s.fixed]
    fixed = {s.name: s.value for s in spec if s.fixed}
    x0 = np.array([s.value for s in spec if not s.fixed])
    bounds = (np.array([s.lb for s in spec if not s.fixed]), np.array([s.ub for s in spec if not s.fixed]))
    r2 = np.empty(y.shape[0])
    t1 = time.process_time()
    for i, yi in enumerate(y):

        def params(x):
            return {**fixed, **dict(zip(free, x))}

        res = least_squares(
            lambda x: mod.evaluate(T, params(x)) - yi, x0, jac=lambda x: mod.jacobian(T, params(x), free), bounds=bounds
        )
        ss = float(res.fun @ res.fun)
        sst = float(((yi - yi.mean()) ** 2).sum())
        r2[i] = np.clip(1 - ss / sst, 0, 1) if sst > 0 else 0.0
    return r2, time.process_time() - t1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer cells (CI smoke run)")
    ap.add_argument("--cells", type=int, default=None, help="cells per model (default 2048, quick 256)")
    ap.add_argument(
        "--ref-cells", type=int, default=None, help="cells for the scipy comparison (default 300, quick 60)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", default="maturation,trivial,maturation_blocked")
    args = ap.parse_args(argv)
    n = args.cells or (256 if args.quick else 2048)
    n_ref = args.ref_cells or (60 if args.quick else 300)
    rng = np.random.default_rng(args.seed)
    tuned = tune_malloc()  # as the workflow's fit script does

    print(
        f"{n} cells per model, 181 points over 30 h, noise {NOISE:.0%} of max; single thread (CPU time); "
        f"malloc tuned: {tuned}"
    )
    header = f"{'model':<19}{'parameter':<10}{'median error':>22}{'coverage +-1SE':>16}"
    summary = []
    for name in args.models.split(","):
        truth, y, overrides = simulate(name, n, rng)
        res, cpu = fit_all(name, y, overrides)
        _, cpu1 = fit_all(name, y, overrides, multistart=False)
        r2_ref, cpu_ref = scipy_single(name, y[:n_ref], overrides)
        ge = float(np.mean(res["r_squared"][:n_ref] >= r2_ref - 1e-9))
        spec = resolve_params(name, overrides)
        names = [s.name for s in spec]
        P, SE = res["params"].copy(), res["se"].copy()
        if name == "trivial":  # label switching: order the two rates
            d, b = names.index("delta"), names.index("beta")
            swap = P[:, d] < P[:, b]
            P[swap, d], P[swap, b] = P[swap, b], P[swap, d]
            SE[swap, d], SE[swap, b] = SE[swap, b], SE[swap, d]
        print()
        print(header)
        amp = np.ptp(y, axis=1)
        for s in spec:
            if s.fixed:
                continue
            j = names.index(s.name)
            est, tru, se = P[:, j], truth[s.name], SE[:, j]
            err = np.abs(est - tru)
            if s.name == "t0":
                label = f"{np.nanmedian(err):.3f} h (abs)"
            elif s.name == "offset":
                label = f"{100 * np.nanmedian(err / amp):.2f} % of amp (abs)"
            else:
                label = f"{100 * np.nanmedian(err / np.abs(tru)):.2f} %"
            cover = np.nanmean(err <= se)
            print(f"{name:<19}{s.name:<10}{label:>22}{100 * cover:>15.1f}%")
        ms, ms1, ms_ref = 1e3 * cpu / n, 1e3 * cpu1 / n, 1e3 * cpu_ref / n_ref
        print(f"{name:<19}success {100 * res['success'].mean():.1f} %, median R2 {np.nanmedian(res['r_squared']):.4f}")
        print(
            f"{name:<19}ms/cell: multi-start {ms:.3f}, single start {ms1:.3f}, scipy single start {ms_ref:.2f} "
            f"(x{ms_ref / ms:.1f})"
        )
        print(f"{name:<19}multi-start R2 >= scipy single-start R2 (1e-9): {100 * ge:.1f} % of {n_ref} cells")
        summary.append((name, ms, ge))
    print()
    print("summary: " + "; ".join(f"{m} {ms:.3f} ms/cell, R2>=single {100 * g:.1f} %" for m, ms, g in summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
