"""Fit benchmark: accuracy against the Cramér-Rao bound, SE coverage, speed, multi-start gain.

Simulates cells per model with known parameters (181 points over 30 h, i.e.
10-min frames) and Gaussian noise of 5 % of each trace's maximum, fits them
with :func:`pyama_flow.fitting.batch.fit_batch` on one core and prints, per model
and free parameter:

* median relative error |est - true| / |true| (for the location-type
  parameters ``t0`` and ``offset`` the relative error is meaningless near 0;
  the median absolute error is printed, ``t0`` in hours and ``offset`` in %
  of the trace amplitude);
* ``CRB median``: the same median error that an estimator at the Cramér-Rao
  bound would have. Per cell, :func:`pyama_flow.fitting.status.cramer_rao_se` gives
  ``sqrt(diag(sigma^2 (J^T J)^-1))`` with J the model's Jacobian at the
  *true* parameters and sigma the known noise SD; if the errors are
  N(0, se_i^2), the median of |error| / scale over the cells is the m with
  ``mean_i erf(m / (sqrt 2 se_i / scale_i)) = 1/2`` (:func:`crb_median`).
  ``/CRB`` is achieved / bound: ~1 means no unbiased estimator can do better
  on this design (the median itself has ~3 % Monte-Carlo scatter at 2048
  cells; values somewhat below 1 come from the parameter bounds, e.g. the
  maturation ``t0`` in [-1, 1] with true values in [-0.8, 0.8], which make
  the estimator slightly biased but tighter);
* coverage of +-1 SE: fraction of cells with |est - true| <= SE (~68 % if
  the standard errors are right);

and per model the CPU time per cell (single thread), the same for a single
start of our fitter and for a plain scipy ``least_squares`` single start from
the defaults (the reference-style fit), and the fraction of cells whose
multi-start R^2 is >= that scipy single-start R^2 (within 1e-9).

``trivial`` is symmetric in delta and beta (the data cannot tell them apart);
its estimates are compared with the truth after ordering them delta >= beta.
``maturation_blocked`` is fitted with t0 fixed at the known time of the
translation block (with t0 free, t0/G0/Gu0 are not identifiable), so the
model is affine in its free parameters G0, Gu0, offset: the fit is a bounded
linear least-squares problem (the fitter's optimum equals scipy's BVLS to
1e-15 in SS_res), which attains the bound exactly; only the bounds
G0, Gu0 >= 0 could (and slightly do) beat it.

Measured (seed 0, 2048 cells): every free parameter of every model is within
0.93-1.02 of its CRB median, i.e. the fitter is at the information limit of
these designs; where a figure misses the issue's 5 % target, the design, not
the fitter, is the cause.

Designs of ``maturation_blocked`` (is the simulation realistic?)
------------------------------------------------------------------
``maturation_blocked`` (the issue's design, kept unchanged): G0 and Gu0
drawn independently log-uniform in [1e2, 1e4], the block at t0 = 0.5 h.
Measured G0 6.1 % (CRB 6.2 %), Gu0 5.3 % (CRB 5.6 %). Its limit is mostly
the G0/Gu0 split: the two columns ``e^{-beta dt}`` and ``e^{-beta dt} -
e^{-(beta+km) dt}`` differ only in the ~1/km = 0.8 h maturation rise after
the block (about 5 frames), and a quarter of the cells have one of the two
pools < 1/10 of the other, whose relative error is then large. The
offset/G0 near-collinearity (beta = 5.22e-3/h: G0 decays by only 15 % over
30 h) costs less: with the offset fixed the CRB of G0 is 5.4 %, not 6.2 %.
This design is *not* physical: Gu0 > G0 in half of its cells, Gu0 > 10 G0
in 13 %. A cell that has translated for tau hours before the block has
Gu0 / G0 ~ 2 / (km tau) for small tau (Gu relaxes to its quasi-steady state
within ~1/km while mature protein keeps accumulating) and beta / km = 0.004
at steady state: Gu0 = G0 needs the block ~75 minutes after the onset of
expression, Gu0 = 10 G0 about 9 minutes after it.

``maturation_blocked:expressing`` (added; the old design is still printed
first): each cell expresses as in the ``maturation`` model (ktl log-uniform
1e2..1e4, mRNA decay delta log-uniform 0.02..0.3/h as in the ``maturation``
simulation, same km and beta) for tau hours, log-uniform 1..12 h (the block
anywhere from the early rise to the plateau of a transfection), and G0, Gu0
are that model's mature and immature protein at the block (Gu0 / G0 from
0.01 to 1.3, median 0.25). Measured G0 3.8 % (CRB 3.8 %), Gu0 11.3 % (CRB
11.4 %): in a realistic experiment G0 meets the 5 % target but Gu0 cannot,
with any unbiased estimator, because little immature protein is left at the
block and its only signature is the maturation rise in the first hour after
it. Getting Gu0 to ~5 % takes a denser design, e.g. 2-min frames for the first
3 h after the block (CRB: G0 1.7 %, Gu0 5.3 %), not a better fitter.

Other simplifications, common to both designs: the frames before t0 (4 at
t <= 0.5 h) show only the offset, as the SPEC's model is 0 for dt <= 0; a
real recording shows the protein there, so it would start at the block or
drop those frames. They help to pin the offset: with the block at t0 = 0
the CRB of G0 rises to 7.9 % (issue's design) and 4.7 % (expressing). The
noise is white with a constant SD of 5 % of the trace maximum (real traces
also have multiplicative and correlated errors), and km and beta are fixed
at their true values, as in the SPEC defaults.

Criteria held from now on (issue #19)
-------------------------------------
* ``maturation_blocked`` (both designs) is accepted as it is because it sits
  at the Cramér-Rao bound: for every free parameter the median error must be
  <= 1.10 x the CRB median and the +-1 SE coverage within 60-80 %. Each
  design prints ``Cramér-Rao criterion: PASS`` or ``FAIL`` with the worst
  ratio and the coverage range (printed for the other models too, for
  information).
* ``trivial`` multi-start: <= 1 ms per cell (printed as ``target``).
* Fit status (``status`` column): per seed, the share of well-specified
  ``maturation`` cells that are ``ok`` (false alarms), of cells whose onset
  (2-6 h) lies beyond the reference bound of t0 (1 h) that are ``at_bound``
  under ``t0_bounds="reference"`` and ``ok`` under ``"data"`` (with the ktl
  error of both), and of flat noise traces that are ``not_identifiable``.

Measured 2026-12-05 (seed 0, 2048 cells, 2 loaded cores): Cramér-Rao
criterion PASS for ``maturation_blocked`` (0.95-0.98 x CRB, coverage
69.8-70.3 %) and ``maturation_blocked:expressing`` (0.97-1.00 x CRB,
68.8-69.0 %), and for the other models (maturation 0.93-0.96, trivial
0.97-1.02); trivial multi-start 7.4 ms/cell (5.4 ms on an idle machine):
the 1 ms target is not met.

Measured 2026-12-06 (seed 0, 2048 cells, 2 loaded cores, side
by side with the version before): trivial multi-start 0.62-0.88 ms/cell
(before 4.8-5.5), single start 0.15-0.20 (0.87-1.06): the 1 ms target is met.
Every figure of parameter recovery, coverage, R^2 >= scipy and status is
unchanged for every design (trivial 0.98-1.05 x CRB, coverage 65.5-68.8 %;
the other models print the same lines as before). The time excludes the
fit of 8 cells done before it (one-time costs: numba loads the compiled
kernels from its cache, ~0.1-0.3 s; the very first run compiles them,
~12 s of CPU, once per installation). Status (seeds 0-2, 256 cells per kind):
well-specified ok 99.6-100 %; late onset at_bound 97.7-98.8 % under the
reference bounds (ktl error 23.7-26.3 %), ok 100 % under the data bounds
(ktl 2.4-2.7 %); flat noise not_identifiable 100 %.

Run: ``.venv/bin/python benchmarks/bench_fit.py [--quick]``.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # single core

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from scipy.optimize import brentq, least_squares  # noqa: E402
from scipy.special import erf  # noqa: E402

from pyama_flow.fitting.batch import fit_batch  # noqa: E402
from pyama_flow.fitting.fit import fit_traces, tune_malloc  # noqa: E402
from pyama_flow.fitting.params import resolve_params  # noqa: E402
from pyama_flow.fitting.status import cramer_rao_se  # noqa: E402

#: PyAMA fitting one ``maturation`` cell, 181 points (SPEC, measured side by side), ms
PYAMA_MATURATION_MS = (4.8, 6.8)
#: issue #19: median error <= this x the CRB median for every free parameter ...
CRB_RATIO_MAX = 1.10
#: ... and +-1 SE coverage in this range (percent)
COVERAGE_RANGE = (60.0, 80.0)
#: issue #19: trivial multi-start, ms per cell
TRIVIAL_TARGET_MS = 1.0
from pyama_flow.fitting.models import get_model  # noqa: E402

T = np.arange(181) / 6.0  # hours
NOISE = 0.05
CHUNK = 1024
BLOCK_T0 = 0.5


def _log_uniform(rng, lo, hi, n):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


def simulate(design: str, n: int, rng) -> tuple[dict[str, np.ndarray], np.ndarray, dict, np.ndarray]:
    """True parameters (n,), noisy traces (n, 181), the overrides used for fitting and the noise SD (n,)."""
    name = design.split(":")[0]
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
    elif design == "maturation_blocked":
        p = {
            "t0": np.full(n, BLOCK_T0),
            "G0": _log_uniform(rng, 1e2, 1e4, n),
            "Gu0": _log_uniform(rng, 1e2, 1e4, n),
            "km": np.full(n, 1.28),
            "beta": np.full(n, 5.22e-3),
        }
        overrides = {"t0": {"value": BLOCK_T0, "fixed": True}}
    elif design == "maturation_blocked:expressing":
        # the cell has expressed for tau hours (maturation model, mRNA decaying
        # at delta) when translation is blocked: G0, Gu0 are that model's mature
        # and immature protein at the block
        km, beta = 1.28, 5.22e-3
        ktl = _log_uniform(rng, 1e2, 1e4, n)
        delta = _log_uniform(rng, 0.02, 0.3, n)
        tau = _log_uniform(rng, 1.0, 12.0, n)
        c = km + beta
        gu = ktl * (np.exp(-delta * tau) - np.exp(-c * tau)) / (c - delta)
        g = get_model("maturation").evaluate(
            tau, {"t0": 0.0, "ktl": ktl, "km": km, "delta": delta, "beta": beta, "offset": 0.0}
        )
        p = {"t0": np.full(n, BLOCK_T0), "G0": g, "Gu0": gu, "km": np.full(n, km), "beta": np.full(n, beta)}
        overrides = {"t0": {"value": BLOCK_T0, "fixed": True}}
    else:
        raise ValueError(f"unknown design {design!r}")
    mod = get_model(name)
    clean = mod.evaluate(T, {**{k: v[:, None] for k, v in p.items()}, "offset": np.zeros((n, 1))})
    amp = clean.max(axis=1) - clean.min(axis=1)
    p["offset"] = rng.uniform(-0.05, 0.05, n) * amp
    sigma = NOISE * np.abs(clean).max(axis=1)
    y = clean + p["offset"][:, None] + rng.normal(size=clean.shape) * sigma[:, None]
    return p, y, overrides, sigma


def crb_median(se: np.ndarray) -> float:
    """Median of |error| over cells if cell i's error were N(0, se_i^2) (the Cramér-Rao limit).

    Solves ``mean_i P(|Z| se_i <= m) = mean_i erf(m / (se_i sqrt 2)) = 1/2``
    for m: the median of the mixture, not the median of ``0.674 se_i``.
    """
    se = se[np.isfinite(se)]
    if se.size == 0:
        return float("nan")
    se = np.maximum(se, 1e-300)
    return float(brentq(lambda m: np.mean(erf(m / (se * np.sqrt(2.0)))) - 0.5, 0.0, 10.0 * se.max()))


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


def _statuses(status: np.ndarray, names: tuple[str, ...]) -> str:
    return ", ".join(f"{s} {100 * np.mean(status == s):.1f} %" for s in names)


def status_check(seeds, n: int) -> None:
    """Per seed: how the ``status`` column classifies simulated cells of known kind."""
    mod = get_model("maturation")
    print()
    print(f"fit status, maturation, {n} cells per kind and seed, noise {NOISE:.0%} of max")
    for seed in seeds:
        rng = np.random.default_rng(1000 + seed)
        out = []
        for kind, t0_range in (("well-specified (t0 -0.8..0.8 h)", (-0.8, 0.8)), ("late onset (t0 2..6 h)", (2.0, 6.0))):
            p = {
                "t0": rng.uniform(*t0_range, n),
                "ktl": _log_uniform(rng, 1e2, 1e4, n),
                "km": 1.28,
                "delta": _log_uniform(rng, 0.02, 0.3, n),
                "beta": 5.22e-3,
                "offset": 0.0,
            }
            clean = mod.evaluate(T, {k: (v[:, None] if np.ndim(v) else v) for k, v in p.items()})
            y = clean + rng.normal(size=clean.shape) * NOISE * clean.max(axis=1)[:, None]
            rows = [(0, i, 10.0 * f, True, v) for i in range(n) for f, v in enumerate(y[i])]
            import pandas as pd

            df = pd.DataFrame(rows, columns=["fov", "cell", "time", "good", "intensity_total_ch_1"])
            for rule in ("reference", "data"):
                fits = fit_traces(df, "maturation", t0_bounds=rule)
                st = fits["status"].to_numpy()
                err = np.median(np.abs(fits["ktl"].to_numpy() / p["ktl"] - 1))
                out.append(f"  {kind}, t0_bounds={rule}: {_statuses(st, ('ok', 'at_bound', 'not_identifiable', 'poor_fit'))}; "
                           f"ktl median error {100 * err:.1f} %")
        flat = 100.0 + rng.normal(0.0, 10.0, (n, T.size))
        st = fit_batch(T, flat, "maturation")["status"]
        out.append(f"  flat noise: {_statuses(st, ('not_identifiable', 'poor_fit', 'at_bound', 'ok'))}")
        print(f"seed {seed}:")
        print("\n".join(out))


def crb_criterion(ratios: list[float], coverages: list[float]) -> str:
    """The issue #19 Cramér-Rao criterion on one design's free parameters."""
    ok = all(r <= CRB_RATIO_MAX for r in ratios) and all(COVERAGE_RANGE[0] <= c <= COVERAGE_RANGE[1] for c in coverages)
    return (f"Cramér-Rao criterion (median error <= {CRB_RATIO_MAX:.2f} x CRB, coverage "
            f"{COVERAGE_RANGE[0]:.0f}-{COVERAGE_RANGE[1]:.0f} %): {'PASS' if ok else 'FAIL'} "
            f"(worst {max(ratios):.2f} x CRB, coverage {min(coverages):.1f}-{max(coverages):.1f} %)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer cells (CI smoke run)")
    ap.add_argument("--cells", type=int, default=None, help="cells per model (default 2048, quick 256)")
    ap.add_argument(
        "--ref-cells", type=int, default=None, help="cells for the scipy comparison (default 300, quick 60)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--status-seeds", default="0,1,2", help="seeds of the fit-status check ('' to skip)")
    ap.add_argument(
        "--models",
        default="maturation,trivial,maturation_blocked,maturation_blocked:expressing",
        help="designs to run: a model name, or model:design (maturation_blocked:expressing)",
    )
    args = ap.parse_args(argv)
    n = args.cells or (256 if args.quick else 2048)
    n_ref = args.ref_cells or (60 if args.quick else 300)
    rng = np.random.default_rng(args.seed)
    tuned = tune_malloc()  # as the workflow's fit script does

    print(
        f"{n} cells per model, 181 points over 30 h, noise {NOISE:.0%} of max; single thread (CPU time); "
        f"malloc tuned: {tuned}"
    )
    designs = args.models.split(",")
    w = max(19, max(len(d) for d in designs) + 1)
    header = f"{'model':<{w}}{'parameter':<10}{'median error':>22}{'CRB median':>22}{'/CRB':>6}{'coverage +-1SE':>16}"
    summary = []
    for design in designs:
        name = design.split(":")[0]
        truth, y, overrides, sigma = simulate(design, n, rng)
        _, warm = fit_all(name, y[:8], overrides)  # one-time costs (compiled kernels loaded), not per cell
        res, cpu = fit_all(name, y, overrides)
        _, cpu1 = fit_all(name, y, overrides, multistart=False)
        r2_ref, cpu_ref = scipy_single(name, y[:n_ref], overrides)
        ge = float(np.mean(res["r_squared"][:n_ref] >= r2_ref - 1e-9))
        spec = resolve_params(name, overrides)
        names = [s.name for s in spec]
        crb = cramer_rao_se(T, truth, name, spec, sigma)  # at the truth, with the known noise SD
        P, SE = res["params"].copy(), res["se"].copy()
        if name == "trivial":  # label switching: order the two rates
            d, b = names.index("delta"), names.index("beta")
            swap = P[:, d] < P[:, b]
            P[swap, d], P[swap, b] = P[swap, b], P[swap, d]
            SE[swap, d], SE[swap, b] = SE[swap, b], SE[swap, d]
        print()
        print(header)
        amp = np.ptp(y, axis=1)
        ratios, coverages = [], []
        for s in spec:
            if s.fixed:
                continue
            j = names.index(s.name)
            est, tru, se = P[:, j], truth[s.name], SE[:, j]
            err = np.abs(est - tru)
            if s.name == "t0":
                scale, unit = np.ones(n), " h (abs)"
            elif s.name == "offset":
                scale, unit = amp / 100, " % of amp (abs)"
            else:
                scale, unit = np.abs(tru) / 100, " %"
            fmt = ".3f" if s.name == "t0" else ".2f"
            achieved, limit = np.nanmedian(err / scale), crb_median(crb[:, j] / scale)
            cover = np.nanmean(err <= se)
            ratios.append(achieved / limit)
            coverages.append(100 * cover)
            print(
                f"{design:<{w}}{s.name:<10}{f'{achieved:{fmt}}{unit}':>22}{f'{limit:{fmt}}{unit}':>22}"
                f"{achieved / limit:>6.2f}{100 * cover:>15.1f}%"
            )
        ms, ms1, ms_ref = 1e3 * cpu / n, 1e3 * cpu1 / n, 1e3 * cpu_ref / n_ref
        held = " (held to it)" if name == "maturation_blocked" else " (for information)"
        print(f"{design:<{w}}{crb_criterion(ratios, coverages)}{held}")
        print(
            f"{design:<{w}}success {100 * res['success'].mean():.1f} %, median R2 {np.nanmedian(res['r_squared']):.4f}"
        )
        print(f"{design:<{w}}status: {_statuses(res['status'], ('ok', 'at_bound', 'poor_fit', 'not_identifiable', 'failed'))}")
        print(
            f"{design:<{w}}ms/cell: multi-start {ms:.3f}, single start {ms1:.3f}, scipy single start {ms_ref:.2f} "
            f"(x{ms_ref / ms:.1f}); first 8 cells fitted before (one-time costs, e.g. loading compiled "
            f"kernels): {warm:.2f} s"
        )
        if name == "trivial":
            verdict = "PASS" if ms <= TRIVIAL_TARGET_MS else "FAIL"
            print(f"{design:<{w}}target (issue #19): multi-start <= {TRIVIAL_TARGET_MS:.1f} ms/cell: {verdict} "
                  f"({ms:.3f} ms/cell)")
        if name == "maturation":
            lo, hi = (r / ms for r in PYAMA_MATURATION_MS)
            print(f"{design:<{w}}PyAMA (SPEC, measured side by side): {PYAMA_MATURATION_MS[0]}-"
                  f"{PYAMA_MATURATION_MS[1]} ms/cell: {lo:.1f}-{hi:.1f}x faster")
        print(f"{design:<{w}}multi-start R2 >= scipy single-start R2 (1e-9): {100 * ge:.1f} % of {n_ref} cells")
        summary.append((design, ms, ge))
    print()
    print("summary: " + "; ".join(f"{m} {ms:.3f} ms/cell, R2>=single {100 * g:.1f} %" for m, ms, g in summary))
    if args.status_seeds:
        status_check([int(x) for x in args.status_seeds.split(",")], 64 if args.quick else 256)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
