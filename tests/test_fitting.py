"""Per-cell fitter: configuration, accuracy, statistics, multi-start, tables, CSV."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import least_squares

from pyama_flow.fitting import cramer_rao_se, fit_batch, fit_cell, fit_traces, resolve_params, write_fits
from pyama_flow.models import get_model

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
    from pyama_flow.fitting import best_models

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
