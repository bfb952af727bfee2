"""Per-cell fitter: configuration, accuracy, statistics, multi-start, tables, CSV."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import least_squares

from pyama_flow.fitting.batch import fit_batch, fit_cell
from pyama_flow.fitting.fit import fit_traces, write_fits
from pyama_flow.fitting.models import get_model
from pyama_flow.fitting.params import resolve_params
from pyama_flow.fitting.status import cramer_rao_se

T = np.arange(181) / 6.0  # hours, 10-min frames


def _curve(name, **p):
    mod = get_model(name)
    full = {k: d.value for k, d in mod.DEFAULTS.items()}
    full.update(p)
    return mod.evaluate(T, full), full


# ---------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------


def test_resolve_defaults_and_overrides():
    spec = resolve_params("maturation")
    assert [s.name for s in spec] == list(get_model("maturation").PARAMS)
    by = {s.name: s for s in spec}
    assert by["km"].fixed and by["beta"].fixed and not by["delta"].fixed
    spec = resolve_params(
        "maturation",
        {"km": {"value": 1.3, "fixed": True}, "delta": {"value": 0.02, "lb": 1e-4, "ub": 5}, "beta": {"fixed": False}},
    )
    by = {s.name: s for s in spec}
    assert (by["km"].value, by["km"].fixed) == (1.3, True)
    assert (by["delta"].value, by["delta"].lb, by["delta"].ub) == (0.02, 1e-4, 5.0)
    assert by["beta"].fixed is False and by["beta"].value == 5.22e-3


@pytest.mark.parametrize(
    "override, words",
    [
        ({"kappa": {"value": 1}}, ["maturation", "kappa"]),
        ({"delta": {"lb": 2, "ub": 1}}, ["maturation", "delta", "lower bound"]),
        ({"delta": {"value": 20}}, ["maturation", "delta", "outside"]),
        ({"t0": {"value": 0.5, "lb": 0.6}}, ["maturation", "t0", "outside"]),
        ({"ktl": {"start": 3}}, ["maturation", "ktl", "start"]),
        ({"ktl": {"value": "abc"}}, ["maturation", "ktl"]),
    ],
)
def test_resolve_rejects(override, words):
    with pytest.raises(ValueError) as err:
        resolve_params("maturation", override)
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg


# ---------------------------------------------------------------------------
# accuracy on exact data
# ---------------------------------------------------------------------------


def test_maturation_recovers_exact_parameters():
    y, p = _curve("maturation", t0=0.35, ktl=800.0, delta=0.12, offset=25.0)
    res = fit_cell(T, y, "maturation")
    assert res["success"] and res["r_squared"] == pytest.approx(1.0, abs=1e-12)
    for k in ("t0", "ktl", "delta", "offset"):
        assert res[k] == pytest.approx(p[k], rel=1e-6, abs=1e-6)
    assert res["km"] == 1.28 and np.isnan(res["km_se"]) and np.isnan(res["beta_se"])
    assert res["n_points"] == 181


def test_trivial_recovers_exact_parameters():
    y, p = _curve("trivial", t0=4.2, ktl=150.0, delta=0.35, beta=0.04, offset=-3.0)
    res = fit_cell(T, y, "trivial")
    assert res["success"] and res["r_squared"] > 1 - 1e-12
    # delta and beta enter symmetrically: compare as a set
    assert sorted([res["delta"], res["beta"]]) == pytest.approx([0.04, 0.35], rel=1e-6)
    for k in ("t0", "ktl", "offset"):
        assert res[k] == pytest.approx(p[k], rel=1e-6, abs=1e-6)


def test_blocked_recovers_exact_parameters_with_known_t0():
    y, p = _curve("maturation_blocked", t0=0.5, G0=1200.0, Gu0=400.0, offset=10.0)
    res = fit_cell(T, y, "maturation_blocked", {"t0": {"value": 0.5, "fixed": True}})
    assert res["success"]
    for k in ("G0", "Gu0", "offset"):
        assert res[k] == pytest.approx(p[k], rel=1e-7)


def test_fit_at_singular_point_delta_equals_beta():
    y, p = _curve("maturation", t0=0.2, ktl=500.0, delta=5.22e-3, offset=0.0)
    res = fit_cell(T, y, "maturation")
    assert res["success"] and res["r_squared"] > 1 - 1e-12
    assert res["delta"] == pytest.approx(5.22e-3, rel=1e-5)


# ---------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------


def test_statistics_match_hand_computation():
    rng = np.random.default_rng(3)
    y, _ = _curve("maturation", t0=-0.2, ktl=3000.0, delta=0.08, offset=40.0)
    y = y + rng.normal(0, 0.05 * y.max(), y.size)
    res = fit_cell(T, y, "maturation")
    mod = get_model("maturation")
    p = {k: res[k] for k in mod.PARAMS}
    free = ["t0", "ktl", "delta", "offset"]
    r = mod.evaluate(T, p) - y
    ss = float(r @ r)
    sst = float(((y - y.mean()) ** 2).sum())
    n, k = y.size, len(free)
    assert res["r_squared"] == pytest.approx(1 - ss / sst, rel=1e-9)
    J = mod.jacobian(T, p, free)
    cov = np.linalg.inv(J.T @ J) * ss / (n - k)
    for j, name in enumerate(free):
        assert res[f"{name}_se"] == pytest.approx(np.sqrt(cov[j, j]), rel=1e-6)
    assert res["residual_std"] == pytest.approx(np.sqrt(ss / (n - k)), rel=1e-9)
    loglik = -n / 2 * (np.log(2 * np.pi * ss / n) + 1)
    assert res["aic"] == pytest.approx(2 * (k + 1) - 2 * loglik, rel=1e-9)
    assert res["bic"] == pytest.approx((k + 1) * np.log(n) - 2 * loglik, rel=1e-9)
    # optimality: gradient of the cost vanishes at the returned parameters
    g = J.T @ r
    assert np.all(np.abs(g) <= 1e-4 * np.sqrt(np.diag(J.T @ J) * ss))


def test_cramer_rao_se_hand_computed():
    # maturation_blocked with t0, Gu0 fixed: y = G0 e^{-beta dt} (dt > 0) + offset, a straight
    # regression on the column e; (J^T J)^-1 of [e, 1] by hand
    t0, beta, sigma = 0.5, 5.22e-3, 3.0
    dt = T - t0
    e = np.where(dt > 0, np.exp(-beta * np.maximum(dt, 0.0)), 0.0)
    n, s1, s2 = T.size, e.sum(), (e * e).sum()
    det = n * s2 - s1 * s1
    ov = {"t0": {"value": t0, "fixed": True}, "Gu0": {"value": 50.0, "fixed": True}}
    se = cramer_rao_se(T, {"G0": 800.0, "offset": 4.0}, "maturation_blocked", ov, sigma)
    names = list(get_model("maturation_blocked").PARAMS)
    assert se.shape == (1, len(names))
    assert se[0, names.index("G0")] == pytest.approx(sigma * np.sqrt(n / det), rel=1e-10)
    assert se[0, names.index("offset")] == pytest.approx(sigma * np.sqrt(s2 / det), rel=1e-10)
    for fixed in ("t0", "Gu0", "km", "beta"):
        assert np.isnan(se[0, names.index(fixed)])
    # per-cell sigma and an array of parameters in PARAMS order; NaN times are dropped
    P = np.array([[t0, 800.0, 50.0, 1.28, beta, 4.0], [t0, 10.0, 50.0, 1.28, beta, 4.0]])
    holes = T.copy()
    holes[100:] = np.nan
    se2 = cramer_rao_se(holes, P, "maturation_blocked", ov, np.array([sigma, 2 * sigma]))
    n, s1, s2 = 100, e[:100].sum(), (e[:100] ** 2).sum()
    det = n * s2 - s1 * s1
    assert se2[:, names.index("G0")] == pytest.approx(sigma * np.sqrt(n / det) * np.array([1, 2]), rel=1e-10)
    # t0 free in maturation_blocked: its column lies in the span of G0's and Gu0's -> not identifiable
    se3 = cramer_rao_se(T, {"t0": 0.55, "G0": 800.0, "Gu0": 50.0}, "maturation_blocked", None, sigma)
    assert np.all(np.isnan(se3[0, [names.index(p) for p in ("t0", "G0", "Gu0", "offset")]]))


def test_cramer_rao_se_is_the_fit_se_with_known_noise():
    # a model affine in its free parameters: the fit's SE scaled from the
    # residual SD to the true sigma is the Cramer-Rao bound; and the bound
    # matches the spread of the estimates over noise draws
    rng = np.random.default_rng(7)
    ov = {"t0": {"value": 0.5, "fixed": True}}
    y, p = _curve("maturation_blocked", t0=0.5, G0=1200.0, Gu0=400.0, offset=10.0)
    sigma = 0.05 * y.max()
    Y = y + rng.normal(0, sigma, (400, y.size))
    res = fit_batch(T, Y, "maturation_blocked", ov)
    crb = cramer_rao_se(T, p, "maturation_blocked", ov, sigma)[0]
    names = list(get_model("maturation_blocked").PARAMS)
    for name in ("G0", "Gu0", "offset"):
        j = names.index(name)
        assert res["se"][:, j] / res["residual_std"] * sigma == pytest.approx(np.full(400, crb[j]), rel=1e-8)
        assert np.std(res["params"][:, j]) == pytest.approx(crb[j], rel=0.1)


def test_nan_points_are_dropped():
    rng = np.random.default_rng(4)
    y, _ = _curve("maturation", t0=0.1, ktl=500.0, delta=0.2, offset=5.0)
    y = y + rng.normal(0, 2.0, y.size)
    holes = y.copy()
    drop = rng.choice(y.size, 40, replace=False)
    holes[drop] = np.nan
    keep = np.setdiff1d(np.arange(y.size), drop)
    a = fit_cell(T, holes, "maturation")
    b = fit_cell(T[keep], y[keep], "maturation")
    assert a["n_points"] == b["n_points"] == 141
    for k in ("t0", "ktl", "delta", "offset", "r_squared"):
        assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-8)


def test_too_few_points_and_constant_data():
    y, _ = _curve("maturation", t0=0.1, ktl=500.0, delta=0.2)
    few = np.full_like(y, np.nan)
    few[[10, 50, 90]] = y[[10, 50, 90]]
    res = fit_cell(T, few, "maturation")  # 3 points, 4 free parameters
    assert res["success"] is False and res["n_points"] == 3 and np.isnan(res["ktl"])
    res = fit_cell(T, np.full(T.size, 7.0), "maturation")
    assert res["success"] and res["r_squared"] == 0.0  # SS_tot == 0
    # ktl >= 1 forbids a flat curve: the best fit is a small rise around 7
    assert res["ktl"] == pytest.approx(1.0) and abs(res["offset"] - 7.0) < 0.2


def test_fixed_parameters_stay_fixed():
    y, _ = _curve("maturation", t0=0.1, ktl=500.0, delta=0.2, offset=3.0)
    res = fit_cell(T, y, "maturation", {"delta": {"value": 0.3, "fixed": True}, "km": {"value": 1.5}})
    assert res["delta"] == 0.3 and res["km"] == 1.5 and np.isnan(res["delta_se"])
    assert res["success"] and 0 < res["r_squared"] < 1


def test_per_cell_time_vectors():
    rng = np.random.default_rng(5)
    B = 6
    Tm = np.stack([T + rng.uniform(0, 0.1) for _ in range(B)])
    mod = get_model("maturation")
    Y = np.stack(
        [
            mod.evaluate(
                Tm[i],
                {
                    "t0": 0.2 * i - 0.5,
                    "ktl": 300.0 * (i + 1),
                    "km": 1.28,
                    "delta": 0.05 * (i + 1),
                    "beta": 5.22e-3,
                    "offset": 2.0,
                },
            )
            for i in range(B)
        ]
    )
    Y += rng.normal(0, 3.0, Y.shape)
    Y[2, 150:] = np.nan
    res = fit_batch(Tm, Y, "maturation")
    for i in range(B):
        one = fit_cell(Tm[i], Y[i], "maturation")
        assert res["r_squared"][i] == pytest.approx(one["r_squared"], abs=1e-9)
        assert res["params"][i, 3] == pytest.approx(one["delta"], rel=1e-5)


# ---------------------------------------------------------------------------
# multi-start never worse than a single start from the SPEC defaults
# ---------------------------------------------------------------------------


def _scipy_single_start(t, y, name):
    mod = get_model(name)
    spec = resolve_params(name)
    free = [s.name for s in spec if not s.fixed]
    fixed = {s.name: s.value for s in spec if s.fixed}
    x0 = np.array([s.value for s in spec if not s.fixed])
    lb = np.array([s.lb for s in spec if not s.fixed])
    ub = np.array([s.ub for s in spec if not s.fixed])

    def params(x):
        return {**fixed, **dict(zip(free, x))}

    res = least_squares(
        lambda x: mod.evaluate(t, params(x)) - y, x0, jac=lambda x: mod.jacobian(t, params(x), free), bounds=(lb, ub)
    )
    ss = float(res.fun @ res.fun)
    sst = float(((y - y.mean()) ** 2).sum())
    return float(np.clip(1 - ss / sst, 0, 1)) if sst > 0 else 0.0


def _simulated_cells(name, n, rng):
    mod = get_model(name)
    cells = []
    for i in range(n):
        kind = i % 5
        if name == "maturation":
            p = {
                "t0": rng.uniform(-1, 1),
                "ktl": 10 ** rng.uniform(1, 4.5),
                "km": 1.28,
                "delta": 10 ** rng.uniform(-2.5, 0.5),
                "beta": 5.22e-3,
                "offset": rng.normal(0, 50),
            }
        else:
            p = {
                "t0": rng.uniform(0, 20),
                "ktl": 10 ** rng.uniform(0.5, 3),
                "delta": 10 ** rng.uniform(-2, 0.5),
                "beta": 10 ** rng.uniform(-2, 0),
                "offset": rng.normal(0, 20),
            }
        y = mod.evaluate(T, p)
        amp = max(np.ptp(y), 1.0)
        if kind == 0:
            y = y + rng.normal(0, 0.05 * amp, T.size)
        elif kind == 1:
            y = y + rng.normal(0, 0.3 * amp, T.size)  # very noisy
        elif kind == 2:
            y = rng.normal(p["offset"], 5.0, T.size)  # non-responder
        elif kind == 3:
            y = y + rng.normal(0, 0.05 * amp, T.size)
            y[rng.choice(T.size, 5, replace=False)] += 3 * amp  # outliers
        else:
            y = y[::-1] + rng.normal(0, 0.05 * amp, T.size)  # decaying: wrong shape
        cells.append(y)
    return np.array(cells)


@pytest.mark.parametrize("name, n", [("maturation", 80), ("trivial", 40)])
def test_multistart_never_worse_than_scipy_single_start(name, n):
    rng = np.random.default_rng(7 if name == "maturation" else 8)
    Y = _simulated_cells(name, n, rng)
    ours = fit_batch(T, Y, name)
    assert ours["success"].all()
    for i in range(n):
        ref = _scipy_single_start(T, Y[i], name)
        assert ours["r_squared"][i] >= ref - 1e-9, (i, ours["r_squared"][i], ref)


# ---------------------------------------------------------------------------
# traces table -> fits table
# ---------------------------------------------------------------------------


def _traces(rng, n_fov=2, n_cell=5):
    mod = get_model("maturation")
    rows = []
    truth = {}
    for fov in range(n_fov):
        for cell in range(n_cell):
            p = {
                "t0": rng.uniform(-0.5, 0.5),
                "ktl": 10 ** rng.uniform(2, 3.5),
                "km": 1.28,
                "delta": 10 ** rng.uniform(-1.5, -0.5),
                "beta": 5.22e-3,
                "offset": rng.normal(0, 10),
            }
            truth[(fov, cell)] = p
            minutes = np.arange(181) * 10.0 + fov * 0.5  # each FOV has its own time stamps
            y = mod.evaluate(minutes / 60.0, p) + rng.normal(0, 1.0, minutes.size)
            good = np.ones(minutes.size, dtype=bool)
            good[-20:] = cell != 3  # cell 3 has bad rows at the end ...
            yb = np.where(good, y, 1e6)  # ... whose values are garbage
            for f, (tm, v, g) in enumerate(zip(minutes, yb, good)):
                rows.append((fov, cell + 10, f, tm, g, v))
    df = pd.DataFrame(rows, columns=["fov", "cell", "frame", "time", "good", "intensity_total_ch_1"])
    # a cell that is bad everywhere is not fitted
    extra = df[(df.fov == 0) & (df.cell == 10)].copy()
    extra["cell"] = 99
    extra["good"] = False
    df = pd.concat([df, extra], ignore_index=True).sample(frac=1.0, random_state=1)  # order must not matter
    return df, truth


def test_fit_traces_columns_order_and_values():
    rng = np.random.default_rng(9)
    df, truth = _traces(rng)
    out = fit_traces(df, "maturation")
    params = list(get_model("maturation").PARAMS)
    assert list(out.columns) == [
        "fov",
        "cell",
        "model",
        "success",
        "r_squared",
        *params,
        *[f"{p}_se" for p in params],
        "residual_std",
        "aic",
        "bic",
        "n_points",
        "status",
        "at_bound",
    ]
    assert list(zip(out.fov, out.cell)) == sorted(truth_key for truth_key in ((f, c + 10) for f, c in truth))
    assert 99 not in set(out.cell)
    assert out.success.all() and (out.model == "maturation").all()
    assert list(out.n_points) == [181 if c != 13 else 161 for c in out.cell]
    for _, row in out.iterrows():
        p = truth[(row.fov, row.cell - 10)]
        assert row.delta == pytest.approx(p["delta"], rel=0.05)  # time converted to hours
        assert row.r_squared > 0.99


def test_fit_traces_several_models_and_jobs(tmp_path):
    rng = np.random.default_rng(10)
    df, _ = _traces(rng, n_fov=2, n_cell=3)
    out1 = fit_traces(df, ["maturation", "trivial"], n_jobs=1, chunk_size=2)
    out2 = fit_traces(df, ["maturation", "trivial"], n_jobs=2, chunk_size=2)
    assert list(out1.model[:2]) == ["maturation", "trivial"]
    assert len(out1) == 2 * 6
    assert "best_model" in out1.columns and "km" in out1.columns
    # trivial rows have no km
    assert out1.loc[out1.model == "trivial", "km"].isna().all()
    for (f, c), g in out1.groupby(["fov", "cell"]):
        ok = g[g.success]
        assert (g.best_model == ok.loc[ok.aic.idxmin(), "model"]).all()
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    write_fits(out1, a)
    write_fits(out2, b)
    assert a.read_bytes() == b.read_bytes()
    # overrides keyed by model
    out3 = fit_traces(df, ["maturation", "trivial"], overrides={"maturation": {"km": {"value": 1.5}}})
    assert (out3.loc[out3.model == "maturation", "km"] == 1.5).all()
    with pytest.raises(ValueError, match="keyed by model"):
        fit_traces(df, ["maturation", "trivial"], overrides={"km": {"value": 1.5}})
    with pytest.raises(ValueError, match="unknown model"):
        fit_traces(df, "bogus")


def test_fit_traces_needs_columns():
    with pytest.raises(ValueError, match="missing column"):
        fit_traces(pd.DataFrame({"fov": [0], "cell": [1], "time": [0.0]}), "maturation")


def test_write_fits_atomic_and_reproducible(tmp_path):
    df = pd.DataFrame(
        {
            "fov": [0, 1],
            "cell": [3, 4],
            "model": ["maturation"] * 2,
            "success": [True, False],
            "r_squared": [0.123456789123, np.nan],
            "ktl": [1234.56789012345, 1e-7],
        }
    )
    path = tmp_path / "sub" / "fits.csv"
    write_fits(df, path)
    first = path.read_bytes()
    write_fits(df, path)
    assert path.read_bytes() == first
    assert os.listdir(path.parent) == ["fits.csv"]
    text = first.decode()
    assert "0.123456789" in text and "1234.56789" in text and "1e-07" in text
    back = pd.read_csv(path)
    assert back.success.tolist() == [True, False] and np.isnan(back.r_squared[1])
    assert back.ktl[0] == pytest.approx(1234.56789, rel=1e-9)


def test_best_models_by_aic_among_successful_fits():
    from pyama_flow.fitting.fit import best_models

    fits = pd.DataFrame({
        "fov": [0, 0, 0, 0, 1, 1],
        "cell": [1, 1, 2, 2, 5, 5],
        "model": ["maturation", "trivial"] * 3,
        "success": [True, True, False, True, False, False],
        "r_squared": [0.99, 0.98, 0.1, 0.9, 0.0, 0.0],
        "aic": [10.0, 12.0, -50.0, 3.0, 1.0, 2.0],
    })
    out = best_models(fits)
    assert out[["fov", "cell", "best_model"]].values.tolist() == [
        [0, 1, "maturation"],  # lower AIC
        [0, 2, "trivial"],  # the lower AIC failed
        [1, 5, ""],  # nothing succeeded
    ]
    assert out["aic_trivial"].tolist() == [12.0, 3.0, 2.0]


# ---------------------------------------------------------------------------
# status: fits that say when they cannot be trusted
# ---------------------------------------------------------------------------


def _maturation_cells(rng, n, t0_range, noise=0.05):
    mod = get_model("maturation")
    p = {
        "t0": rng.uniform(*t0_range, n),
        "ktl": 10 ** rng.uniform(2, 4, n),
        "km": 1.28,
        "delta": 10 ** rng.uniform(np.log10(0.02), np.log10(0.3), n),
        "beta": 5.22e-3,
        "offset": 0.0,
    }
    clean = mod.evaluate(T, {k: (v[:, None] if np.ndim(v) else v) for k, v in p.items()})
    return p, clean + rng.normal(size=clean.shape) * noise * clean.max(axis=1)[:, None]


def _as_traces(Y):
    rows = [(0, i + 1, f, 10.0 * f, True, v) for i, y in enumerate(Y) for f, v in enumerate(y)]
    return pd.DataFrame(rows, columns=["fov", "cell", "frame", "time", "good", "intensity_total_ch_1"])


@pytest.mark.parametrize("seed", [0, 1])
def test_late_onset_is_at_bound_under_reference_bounds_and_ok_under_data_bounds(seed):
    # onsets 2-6 h: beyond the reference upper bound of t0 (1 h); R^2 stays high, so
    # only the status can tell that these fits are held back by the bound
    rng = np.random.default_rng(seed)
    p, Y = _maturation_cells(rng, 12, (2.0, 6.0))
    df = _as_traces(Y)
    ref = fit_traces(df, "maturation", t0_bounds="reference")
    assert (ref.status == "at_bound").all(), ref.status.tolist()
    assert ref.at_bound.str.split(";").apply(lambda names: "t0" in names).all()
    assert (ref.t0 == 1.0).all() and ref.success.all()
    data = fit_traces(df, "maturation", t0_bounds="data")
    assert (data.status == "ok").all(), data.status.tolist()
    assert (data.at_bound == "").all()
    assert np.median(np.abs(data.ktl.to_numpy() / p["ktl"] - 1)) < 0.05
    assert np.median(np.abs(data.t0.to_numpy() - p["t0"])) < 0.15
    # the reference fit is biased: ktl far off
    assert np.median(np.abs(ref.ktl.to_numpy() / p["ktl"] - 1)) > 0.2


def test_early_onset_is_ok_under_both_bound_rules():
    rng = np.random.default_rng(3)
    p, Y = _maturation_cells(rng, 40, (-0.8, 0.8))
    df = _as_traces(Y)
    for rule in ("reference", "data"):
        out = fit_traces(df, "maturation", t0_bounds=rule)
        assert (out.status == "ok").mean() >= 0.95, (rule, out.status.value_counts().to_dict())
        assert np.median(np.abs(out.ktl.to_numpy() / p["ktl"] - 1)) < 0.05


def test_data_bounds_keep_a_bound_the_user_set():
    rng = np.random.default_rng(4)
    _, Y = _maturation_cells(rng, 4, (3.0, 5.0))
    out = fit_traces(_as_traces(Y), "maturation", overrides={"t0": {"ub": 2.0}}, t0_bounds="data")
    assert (out.t0 == 2.0).all() and (out.status == "at_bound").all()
    with pytest.raises(ValueError, match="t0_bounds"):
        fit_traces(_as_traces(Y), "maturation", t0_bounds="wide")


@pytest.mark.parametrize("name", ["maturation", "trivial"])
def test_flat_traces_are_not_identifiable(name):
    rng = np.random.default_rng(5)
    Y = 100.0 + rng.normal(0.0, 10.0, (60, T.size))
    res = fit_batch(T, Y, name)
    assert res["success"].all()
    assert (res["status"] == "not_identifiable").all(), np.unique(res["status"], return_counts=True)


def test_a_bound_the_data_do_not_push_against_is_listed_but_ok():
    # delta's lower bound at the true value: about half the fits end on it
    # (noise), but releasing it gains no more than noise, so the fit stays ok
    rng = np.random.default_rng(6)
    mod = get_model("maturation")
    p = {"t0": 0.3, "ktl": 2000.0, "km": 1.28, "delta": 0.1, "beta": 5.22e-3, "offset": 0.0}
    clean = mod.evaluate(T, p)
    Y = clean + rng.normal(0.0, 0.05 * clean.max(), (80, T.size))
    out = fit_traces(_as_traces(Y), "maturation", overrides={"delta": {"value": 0.2, "lb": 0.1}})
    listed = out.at_bound.str.contains("delta")
    assert 10 <= listed.sum() <= 70
    assert (out.status[listed] == "ok").mean() >= 0.9


def test_classify_fits_precedence_and_thresholds():
    from pyama_flow.fitting.status import StatusRule, classify_fits

    spec = resolve_params("trivial", {"beta": {"fixed": True}})  # t0 ktl delta (beta) offset
    B = 6
    success = np.array([False, True, True, True, True, True])
    r2 = np.array([np.nan, 0.9, 0.9, 0.3, 0.95, 0.2])
    params = np.tile([2.0, 50.0, 0.1, 0.0436, 5.0], (B, 1))
    se = np.tile([0.1, 2.0, 0.01, np.nan, 1.0], (B, 1))  # fixed beta: NaN SE is fine
    se[1, 2] = 0.2  # delta SE 2x its value: not identifiable
    lo = np.zeros((B, 5), dtype=bool)
    hi = np.zeros((B, 5), dtype=bool)
    chi2 = np.zeros((B, 5))
    hi[2, 0], chi2[2, 0] = True, 50.0  # t0 held at its upper bound: binding
    hi[3, 0], chi2[3, 0] = True, 50.0  # binding and a poor R^2: at_bound first
    hi[4, 0], chi2[4, 0] = True, 1.0  # at a bound that does not bind: ok
    sig = np.array([1.0, 1e-9, 1e-9, 1e-9, 1e-9, 1e-9])
    st = classify_fits(success, r2, params, se, lo, hi, chi2, sig, spec)
    assert st.tolist() == ["failed", "not_identifiable", "at_bound", "at_bound", "ok", "poor_fit"]
    loose = StatusRule(rel_se_max=3.0, r2_min=0.1, bound_p=1e-20)
    st = classify_fits(success, r2, params, se, lo, hi, chi2, sig, spec, loose)
    assert st.tolist() == ["failed", "ok", "ok", "ok", "ok", "ok"]
    sig[4] = 0.01  # no significant signal
    assert classify_fits(success, r2, params, se, lo, hi, chi2, sig, spec)[4] == "not_identifiable"


def test_bound_chi2_is_the_cost_released():
    # a cell slightly held back by t0's upper bound: the score statistic
    # predicts the drop of SS_res / s^2 when the bound is released
    rng = np.random.default_rng(7)
    mod = get_model("maturation")
    p = {"t0": 1.15, "ktl": 1500.0, "km": 1.28, "delta": 0.08, "beta": 5.22e-3, "offset": 0.0}
    clean = mod.evaluate(T, p)
    y = clean + rng.normal(0.0, 0.05 * clean.max(), T.size)
    held = fit_batch(T, y[None], "maturation")
    free = fit_batch(T, y[None], "maturation", {"t0": {"ub": 5.0}})
    assert held["at_upper"][0, 0] and not free["at_upper"][0, 0]
    s2 = held["ss_res"][0] / (T.size - 4)
    gain = (held["ss_res"][0] - free["ss_res"][0]) / s2
    assert gain > 5.0
    assert held["bound_chi2"][0, 0] == pytest.approx(gain, rel=0.3)


def test_half_rise_time_and_data_bound_hand_computed():
    from pyama_flow.fitting.starts import data_t0_upper, half_rise_time

    t = np.arange(40) * 0.5  # hours
    y = np.clip(t - 5.0, 0.0, 10.0)  # flat, then a ramp from 5 h to 15 h: half at 10 h
    assert half_rise_time(t, y) == pytest.approx(10.0)
    assert np.isnan(half_rise_time(t, np.full(t.size, 3.0)))  # no rise
    assert np.isnan(half_rise_time(t, -y))  # falling only
    Y = np.stack([y, np.full(t.size, 3.0), np.clip(t - 0.2, 0, 0.5)])
    assert data_t0_upper(t, Y, 1.0).tolist() == [16.0, 1.0, 1.0]  # 10 h, up to a power of 2
    assert data_t0_upper(t, Y[:1], 12.0).tolist() == [12.0]  # never below the reference
    assert data_t0_upper(t[:30], Y[:1, :30], 1.0).tolist() == [14.5]  # at most the last time point
    Yn = Y.copy()
    Yn[0, 3] = np.nan  # the per-cell path gives the same
    assert data_t0_upper(t, Yn, 1.0).tolist() == [16.0, 1.0, 1.0]


def test_poisson_weighting_on_shot_noise():
    # noise variance = floor + gain * signal (8 % of the maximum at the peak):
    # weighting by the fitted variance model gives smaller ktl errors and
    # calibrated standard errors (+-1 SE coverage near 68 %)
    rng = np.random.default_rng(11)
    mod = get_model("maturation")
    n = 300
    p = {"t0": rng.uniform(-0.8, 0.8, n), "ktl": 10 ** rng.uniform(2, 4, n), "km": 1.28,
         "delta": 10 ** rng.uniform(np.log10(0.02), np.log10(0.3), n), "beta": 5.22e-3, "offset": 0.0}
    clean = mod.evaluate(T, {k: (v[:, None] if np.ndim(v) else v) for k, v in p.items()})
    mx = clean.max(axis=1)[:, None]
    Y = clean + rng.normal(size=clean.shape) * np.sqrt((0.01 * mx) ** 2 + 0.0064 * mx * clean)
    plain = fit_batch(T, Y, "maturation")
    weighted = fit_batch(T, Y, "maturation", weighting="poisson")
    err = {k: np.abs(r["params"][:, 1] / p["ktl"] - 1) for k, r in (("plain", plain), ("w", weighted))}
    cover = {k: np.mean(np.abs(r["params"][:, 1] - p["ktl"]) <= r["se"][:, 1])
             for k, r in (("plain", plain), ("w", weighted))}
    assert np.median(err["w"]) < 0.93 * np.median(err["plain"])
    assert np.median(err["w"]) < 0.05
    assert 0.6 <= cover["w"] <= 0.78 and cover["plain"] > 0.78
    # R^2 is the SPEC's unweighted one in both
    assert np.median(weighted["r_squared"]) == pytest.approx(np.median(plain["r_squared"]), abs=0.01)
    with pytest.raises(ValueError, match="weighting"):
        fit_batch(T, Y[:2], "maturation", weighting="gamma")


def test_fit_script_warns_with_the_cells_per_status(tmp_path):
    from types import SimpleNamespace

    from pyama_flow.traces.features import read_traces
    from test_reliability import run_script

    rng = np.random.default_rng(12)
    _, late = _maturation_cells(rng, 3, (3.0, 5.0))
    _, early = _maturation_cells(rng, 3, (-0.5, 0.5))
    flat = 100.0 + rng.normal(0.0, 10.0, (2, T.size))
    df = _as_traces(np.concatenate([late, early, flat]))
    for c in ("position_x", "position_y", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"):
        df.insert(5, c, 0)
    traces, out = tmp_path / "traces.csv", tmp_path / "fits_maturation.csv"
    df.to_csv(traces, index=False)
    params = SimpleNamespace(overrides={}, value_col="intensity_total_ch_1", t0_bounds="reference",
                             weighting="none", status={"r2_min": 0.5})
    inputs = SimpleNamespace(traces=str(traces))
    run_script("fit", tmp_path, input=inputs, output=[str(out)], params=params,
               wildcards={"dataset": "d", "fov": "000", "model": "maturation"})
    fits = pd.read_csv(out, keep_default_na=False)
    assert fits.status.tolist() == ["at_bound"] * 3 + ["ok"] * 3 + ["not_identifiable"] * 2
    assert fits.at_bound.tolist()[:3] == ["t0"] * 3
    log = (tmp_path / "fit.log").read_text()
    assert "WARNING" in log
    assert ("maturation: 5 of 8 fits cannot be trusted: ok 3; at_bound 3 (cells 1 (t0), 2 (t0), 3 (t0)); "
            "not_identifiable 2 (cells 7 (") in log
    # with the data rule (the workflow's default) the late cells are ok
    run_script("fit", tmp_path, input=inputs, output=[str(out)],
               params=SimpleNamespace(**{**vars(params), "t0_bounds": "data"}),
               wildcards={"dataset": "d", "fov": "000", "model": "maturation"})
    assert pd.read_csv(out).status.tolist() == ["ok"] * 6 + ["not_identifiable"] * 2
    assert len(read_traces(str(traces))) == 8 * T.size


# ---------------------------------------------------------------------------
# compiled kernels of the fitter
# ---------------------------------------------------------------------------


def _box_problems(rng, L, B, G, shared):
    X = rng.normal(size=(G, 40, L))
    X[..., -1] = 1.0  # an offset column
    A = np.einsum("gni,gnj->ijg", X, X)[:, :, None, :]
    if not shared:
        A = np.ascontiguousarray(np.broadcast_to(A, (L, L, B, G)) * rng.uniform(0.5, 2.0, (1, 1, B, G)))
        A = 0.5 * (A + A.transpose(1, 0, 2, 3))
    b = rng.normal(size=(L, B, G)) * 10.0
    lo = np.array([1.0] + [-5.0] * (L - 1))
    hi = np.array([1e6] + [5.0] * (L - 1))
    return A, b, lo, hi


# the numpy version of the compiled box least squares (fitting/kernels.py), on whole arrays: the reference
def _solve_lists(A: list[list[np.ndarray]], b: list[np.ndarray], ridge: float = 1e-12) -> list[np.ndarray]:
    """Many small symmetric systems held as lists of arrays (``A[i][j]``, ``b[i]``).

    Jacobi scaling, a tiny ridge and Gaussian elimination without pivoting
    (the scaled matrices are positive definite); always finite.
    """
    n = len(b)
    with np.errstate(all="ignore"):
        s = [np.sqrt(np.where(A[i][i] > 0, A[i][i], 1.0)) for i in range(n)]
        M = [[A[i][j] / (s[i] * s[j]) + (ridge if i == j else 0.0) for j in range(n)] for i in range(n)]
        r = [b[i] / s[i] for i in range(n)]
        for c in range(n):
            for i in range(c + 1, n):
                f = M[i][c] / M[c][c]
                for j in range(c + 1, n):
                    M[i][j] = M[i][j] - f * M[c][j]
                r[i] = r[i] - f * r[c]
        x: list[np.ndarray] = [np.zeros(())] * n
        for i in range(n - 1, -1, -1):
            acc = r[i]
            for j in range(i + 1, n):
                acc = acc - M[i][j] * x[j]
            x[i] = acc / M[i][i]
        return [np.where(np.isfinite(xi / si), xi / si, 0.0) for xi, si in zip(x, s)]


def _box_lsq_lists(
    A: list[list[np.ndarray]], b: list[np.ndarray], lo, hi
) -> list[np.ndarray]:
    """Approximate ``min x^T A x - 2 b^T x`` in a box: solve, hold violators at the bound, re-solve."""
    n = len(b)
    x = _solve_lists(A, b)
    held = [np.zeros(np.shape(xi), dtype=bool) for xi in x]
    val = [np.zeros(np.shape(xi)) for xi in x]
    for _ in range(n):
        viol = [((x[i] < lo[i]) | (x[i] > hi[i])) & ~held[i] for i in range(n)]
        if not any(v.any() for v in viol):
            break
        for i in range(n):
            val[i] = np.where(viol[i], np.clip(x[i], lo[i], hi[i]), val[i])
            held[i] = held[i] | viol[i]
        Ah = [[np.where(held[i] | held[j], 1.0 if i == j else 0.0, A[i][j]) for j in range(n)] for i in range(n)]
        bh = []
        for i in range(n):
            acc = b[i]
            for j in range(n):
                if j != i:
                    acc = acc - np.where(held[j], A[i][j] * val[j], 0.0)
            bh.append(np.where(held[i], val[i], acc))
        x = _solve_lists(Ah, bh)
    return [np.clip(x[i], lo[i], hi[i]) for i in range(n)]


@pytest.mark.parametrize("L", [1, 2, 3])
def test_box_lsq_kernel_is_the_numpy_algorithm(L):
    from pyama_flow.fitting.kernels import box_lsq_cost

    rng = np.random.default_rng(L)
    for shared in (False, True):
        A, b, lo, hi = _box_problems(rng, L, 7, 300, shared)
        Al = [[np.broadcast_to(A[i, j], b.shape[1:]) for j in range(L)] for i in range(L)]
        theta0 = _box_lsq_lists(Al, list(b), lo, hi)
        cost0 = np.full(b.shape[1:], 50.0)
        for i in range(L):
            cost0 -= 2.0 * theta0[i] * b[i]
            for j in range(L):
                cost0 += theta0[i] * Al[i][j] * theta0[j]
        cost = np.full(b.shape[1:], 50.0)
        theta = box_lsq_cost(A, b, lo, hi, cost)
        if shared:  # solves by precomputed operators: roundings differ
            np.testing.assert_allclose(theta, np.stack(theta0), rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(cost, cost0, rtol=1e-9, atol=1e-9)
        else:  # operation for operation
            np.testing.assert_array_equal(theta, np.stack(theta0))
            np.testing.assert_array_equal(cost, cost0)


def test_solve_batch_matches_lapack():
    from pyama_flow.fitting.kernels import solve_batch

    rng = np.random.default_rng(2)
    A = rng.normal(size=(500, 5, 5)) + 5 * np.eye(5)
    b = rng.normal(size=(500, 5))
    np.testing.assert_allclose(solve_batch(A, b), np.linalg.solve(A, b[..., None])[..., 0], rtol=1e-12, atol=1e-12)
    assert not np.all(np.isfinite(solve_batch(np.zeros((1, 3, 3)), np.ones((1, 3)))))  # singular: no exception


def test_grid_minima_as_a_stable_argsort():
    from pyama_flow.fitting.starts import _grid_minima

    rng = np.random.default_rng(4)
    cost = np.round(rng.normal(size=(50, 9, 4, 4)), 1)  # many ties
    cost[:5] = np.inf
    cost[5:10, 3:] = np.inf
    picks = _grid_minima(cost, 3)
    B = cost.shape[0]
    flat = cost.reshape(B, -1)
    padded = np.pad(cost, [(0, 0)] + [(1, 1)] * 3, constant_values=np.inf)
    local = np.ones(cost.shape, dtype=bool)
    for ax in range(1, 4):
        lower = np.take(padded, np.arange(0, cost.shape[ax]), axis=ax)
        upper = np.take(padded, np.arange(2, cost.shape[ax] + 2), axis=ax)
        sl = [slice(1, -1)] * 4
        sl[0] = slice(None)
        sl[ax] = slice(None)
        local &= (cost <= lower[tuple(sl)]) & (cost <= upper[tuple(sl)])
    ranked = np.where(local.reshape(B, -1), flat, np.inf)
    order = np.argsort(ranked, axis=1, kind="stable")[:, :3]
    best = np.argmin(flat, axis=1)
    order = np.where(np.isfinite(np.take_along_axis(ranked, order, axis=1)), order, best[:, None])
    order[:, 0] = best
    np.testing.assert_array_equal(picks, order.T)
