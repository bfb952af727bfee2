"""Kinetic models: registry, closed forms against the ODEs, Jacobians, stability."""

from __future__ import annotations

from decimal import Decimal, getcontext

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from pyama_flow.fitting.models import exp_divdiff, get_model, list_models

T = np.linspace(0.0, 30.0, 181)  # 10-min frames over 30 h
EPS = (0.0, 1e-12, -1e-12, 1e-9, -1e-9, 1e-6, -1e-6)


# ---------------------------------------------------------------------------
# reference solutions
# ---------------------------------------------------------------------------


def _rhs(name: str, p: dict):
    if name == "trivial":
        return lambda _, s: [-p["delta"] * s[0], s[0] - p["beta"] * s[1]]
    if name == "maturation":
        return lambda _, s: [
            -p["delta"] * s[0],
            s[0] - (p["km"] + p["beta"]) * s[1],
            p["km"] * s[1] - p["beta"] * s[2],
        ]
    return lambda _, s: [-(p["km"] + p["beta"]) * s[0], p["km"] * s[0] - p["beta"] * s[1]]


def _fastest_rate(name: str, p: dict) -> float:
    """The largest decay rate of the ODE system (its stiffest component), per hour."""
    if name == "trivial":
        return max(p["delta"], p["beta"])
    if name == "maturation":
        return max(p["delta"], p["km"] + p["beta"], p["beta"])
    return p["km"] + p["beta"]


def ode_curve(name: str, p: dict, t: np.ndarray) -> np.ndarray:
    """Model output minus offset from the ODE (scipy DOP853, rtol 1e-10).

    Growth models are integrated with ktl = 1 (they are linear in ktl).

    Steps are bounded by ``1 / fastest rate``. Without the bound, a fast rate
    (e.g. ``km + beta = 2.2/h`` beside ``delta = 0.012/h``) lets DOP853 take
    steps at the edge of its stability region, where its error estimate
    under-reports: the "reference" was then 1.3e-6 off the exact curve (checked
    against 50-digit arithmetic, where the closed form agrees to 2.4e-16). With
    the bound every case here is within ~2e-10 of the exact curve.
    """
    y0 = {
        "trivial": [1.0, 0.0],
        "maturation": [1.0, 0.0, 0.0],
        "maturation_blocked": [p.get("Gu0", 0), p.get("G0", 0)],
    }[name]
    after = t > p["t0"]
    out = np.zeros_like(t)
    if after.any():
        sol = solve_ivp(
            _rhs(name, p),
            (p["t0"], t[after][-1]),
            y0,
            method="DOP853",
            t_eval=t[after],
            rtol=1e-10,
            atol=1e-300 + 1e-16 * max(1.0, abs(y0[-1]) + abs(y0[0])),
            max_step=1.0 / _fastest_rate(name, p),
        )
        assert sol.success
        out[after] = sol.y[-1] * (p["ktl"] if name != "maturation_blocked" else 1.0)
    return out


def _close(name: str, p: dict, t: np.ndarray = T, tol: float = 1e-6) -> None:
    model = get_model(name)
    got = model.evaluate(t, dict(p, offset=0.0))  # offset is additive (tested separately)
    want = ode_curve(name, p, t)
    scale = max(np.max(np.abs(want)), 1e-300)
    err = np.max(np.abs(got - want)) / scale
    assert np.all(np.isfinite(got)), p
    assert err < tol, (p, err)


def _loguniform(rng, lo, hi):
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _random_params(name: str, rng) -> dict:
    model = get_model(name)
    p = {}
    for k in model.PARAMS:
        d = model.DEFAULTS[k]
        if d.lb > 0 and d.ub / d.lb > 20:
            p[k] = _loguniform(rng, d.lb, d.ub)
        else:
            p[k] = float(rng.uniform(d.lb, d.ub))
    return p


# ---------------------------------------------------------------------------
# registry and definitions
# ---------------------------------------------------------------------------


def test_registry_lists_and_rejects():
    assert list_models() == ["maturation", "maturation_blocked", "trivial"]
    for name in list_models():
        mod = get_model(name)
        assert mod.NAME == name
        assert set(mod.DEFAULTS) == set(mod.PARAMS)
        for p in mod.PARAMS:
            d = mod.DEFAULTS[p]
            assert d.lb <= d.value <= d.ub
        assert set(getattr(mod, "LINEAR", ())) <= set(mod.PARAMS)
    with pytest.raises(ValueError, match="maturation, maturation_blocked, trivial"):
        get_model("nope")


def test_spec_defaults_and_bounds():
    tr = get_model("trivial").DEFAULTS
    assert tuple(tr["t0"]) == (2.0, 0.0, 30.0, False)
    assert tuple(tr["ktl"]) == (20.0, 1.0, 1e6, False)
    assert tuple(tr["delta"]) == (0.07, 1e-5, 10.1, False)
    assert tuple(tr["beta"]) == (0.0436, 1e-5, 10.0, False)
    assert tuple(tr["offset"]) == (0.0, -1e6, 1e6, False)
    ma = get_model("maturation").DEFAULTS
    assert (ma["km"].value, ma["km"].fixed) == (1.28, True)
    assert (ma["beta"].value, ma["beta"].fixed) == (5.22e-3, True)
    assert tuple(ma["t0"]) == (0.0, -1.0, 1.0, False)
    assert tuple(ma["ktl"]) == (1e3, 1.0, 5e8, False)
    assert tuple(ma["delta"]) == (0.01, 1e-5, 11.0, False)
    assert tuple(ma["offset"]) == (0.0, -1e6, 1e6, False)
    bl = get_model("maturation_blocked").DEFAULTS
    assert tuple(bl["G0"]) == (100.0, 0.0, 1e6, False)
    assert tuple(bl["Gu0"]) == (100.0, 0.0, 1e6, False)
    assert (bl["t0"].lb, bl["t0"].ub) == (0.0, 1.0)
    assert bl["km"].fixed and bl["beta"].fixed


@pytest.mark.parametrize("name", ["trivial", "maturation", "maturation_blocked"])
def test_zero_before_onset_plus_offset(name):
    mod = get_model(name)
    p = {k: d.value for k, d in mod.DEFAULTS.items()}
    p["t0"] = 0.5 if name != "trivial" else 5.0
    p["offset"] = 7.25
    y = mod.evaluate(T, p)
    assert np.all(y[T <= p["t0"]] == 7.25)
    assert np.all(y[T > p["t0"] + 0.2] != 7.25)


def test_trivial_hand_values():
    m = get_model("trivial")
    p = {"t0": 1.0, "ktl": 3.0, "delta": 0.5, "beta": 0.2, "offset": 1.0}
    t = np.array([0.5, 1.0, 3.0])
    want = 3.0 / 0.3 * (1 - np.exp(-0.3 * 2.0)) * np.exp(-0.2 * 2.0) + 1.0
    assert np.allclose(m.evaluate(t, p), [1.0, 1.0, want], rtol=1e-14)
    # the limit delta == beta: ktl * dt * exp(-beta dt)
    p.update(delta=0.2)
    assert m.evaluate(np.array([3.0]), p)[0] == pytest.approx(3.0 * 2.0 * np.exp(-0.4) + 1.0, rel=1e-14)


def test_maturation_matches_spec_closed_form():
    m = get_model("maturation")
    p = {"t0": -0.3, "ktl": 250.0, "km": 1.28, "delta": 0.2, "beta": 5.22e-3, "offset": -4.0}
    dt = T - p["t0"]
    b = p["beta"] - p["delta"]
    km = p["km"]
    spec = p["ktl"] * (
        np.exp(-(p["beta"] + km) * dt) / (b + km)
        - np.exp(-p["beta"] * dt) / b
        + km * np.exp(-p["delta"] * dt) / (b * (b + km))
    )
    assert np.allclose(m.evaluate(T, p), spec + p["offset"], rtol=1e-12, atol=1e-9)


def test_blocked_matches_spec_closed_form():
    m = get_model("maturation_blocked")
    p = {"t0": 0.4, "G0": 900.0, "Gu0": 300.0, "km": 1.28, "beta": 5.22e-3, "offset": 2.0}
    dt = T - p["t0"]
    spec = p["G0"] * np.exp(-p["beta"] * dt) + p["Gu0"] * (
        np.exp(-p["beta"] * dt) - np.exp(-(p["beta"] + p["km"]) * dt)
    )
    spec = np.where(dt > 0, spec, 0.0) + p["offset"]
    assert np.allclose(m.evaluate(T, p), spec, rtol=1e-13)


# ---------------------------------------------------------------------------
# closed forms against the ODEs over the whole bound box
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["trivial", "maturation", "maturation_blocked"])
def test_random_parameters_match_ode(name):
    rng = np.random.default_rng({"trivial": 1, "maturation": 2, "maturation_blocked": 3}[name])
    for _ in range(25):
        _close(name, _random_params(name, rng))


def test_trivial_singular_point_matches_ode():
    rng = np.random.default_rng(11)
    for beta in (1e-5, 3e-3, 0.0436, 0.7, 9.9):
        for eps in EPS:
            p = _random_params("trivial", rng)
            p.update(t0=float(rng.uniform(0, 3)), beta=beta, delta=beta * (1 + eps))
            _close("trivial", p)


def test_maturation_singular_points_match_ode():
    rng = np.random.default_rng(12)
    for beta, km in ((5.22e-3, 1.28), (1e-5, 1.28), (0.3, 0.05), (2.0, 30.0), (1e-4, 1e-5), (9.0, 1e-5)):
        for target in ("beta", "beta+km"):
            s = beta if target == "beta" else beta + km
            for eps in EPS:
                delta = s * (1 + eps)
                if not 1e-5 <= delta <= 11:
                    continue
                p = _random_params("maturation", rng)
                p.update(beta=beta, km=km, delta=delta)
                _close("maturation", p)


def test_maturation_triple_near_coincidence():
    # km at its lower bound: beta and beta + km differ by 1e-5 and delta sits between
    for beta in (1e-5, 5.22e-3, 1.0):
        for delta in (beta, beta + 5e-6, beta + 1e-5):
            p = {"t0": 0.25, "ktl": 1e3, "km": 1e-5, "delta": delta, "beta": beta, "offset": 0.0}
            _close("maturation", p)


def test_stability_no_nan_on_dense_singular_grid():
    m = get_model("maturation")
    beta = np.array([1e-5, 5.22e-3, 1.0, 10.0])[:, None]
    km = 1.28
    for base in (beta, beta + km):
        for eps in (0.0, 1e-15, 1e-13, 1e-11, 1e-9, 1e-7):
            delta = np.minimum(base * (1 + eps), 11.0)
            p = {"t0": 0.0, "ktl": 1.0, "km": km, "delta": delta, "beta": beta, "offset": 0.0}
            y = m.evaluate(T, p)
            J = m.jacobian(T, p, list(m.PARAMS))
            assert np.all(np.isfinite(y)) and np.all(np.isfinite(J))
            # continuity across the singular point
            p0 = dict(p, delta=base.clip(max=11.0))
            assert np.allclose(y, m.evaluate(T, p0), rtol=1e-6, atol=1e-12)


# ---------------------------------------------------------------------------
# divided differences
# ---------------------------------------------------------------------------


def _dd_decimal(nodes, t):
    getcontext().prec = 500
    xs = [Decimal(repr(float(x))) for x in nodes]
    seen: dict = {}
    for i, x in enumerate(xs):  # split repeated nodes by 1e-40 (error ~1e-40)
        k = seen.get(x, 0)
        seen[x] = k + 1
        xs[i] = x + Decimal(k) * Decimal("1e-40")
    tt = Decimal(repr(float(t)))
    total = Decimal(0)
    for i, xi in enumerate(xs):
        den = Decimal(1)
        for j, xj in enumerate(xs):
            if j != i:
                den *= xi - xj
        total += (-xi * tt).exp() / den
    return float(total)


@pytest.mark.parametrize(
    "nodes",
    [
        (0.3, 0.3),
        (0.2, 0.2 + 1e-13),
        (5.22e-3, 0.01, 1.285),
        (0.05, 0.05, 0.05),
        (1e-5, 1e-5 + 1e-12, 1.28001),
        (0.7, 0.7, 0.2, 1.98),
        (1e-5, 1e-5, 1e-5, 1e-5),
        (2.0, 2.0 + 1e-9, 2.0 - 1e-9, 2.0 + 2e-9),
        (11.0, 0.001, 3.0, 11.0),
    ],
)
def test_exp_divdiff_against_high_precision(nodes):
    for t in (1e-4, 0.05, 1.0, 7.3, 30.0):
        got = float(exp_divdiff([np.float64(x) for x in nodes], np.array(t)))
        want = _dd_decimal(nodes, t)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-300), (nodes, t)


# ---------------------------------------------------------------------------
# Jacobians
# ---------------------------------------------------------------------------


def _fd_jacobian(model, t, p, names):
    cols = []
    for name in names:
        h = 1e-6 * max(abs(p[name]), 1e-2 if name != "t0" else 1.0)
        lo, hi = dict(p), dict(p)
        lo[name] -= h
        hi[name] += h
        cols.append((model.evaluate(t, hi) - model.evaluate(t, lo)) / (2 * h))
    return np.stack(cols, axis=-1)


def _check_jacobian(name, p, t=T):
    model = get_model(name)
    names = list(model.PARAMS)
    J = model.jacobian(t, p, names)
    assert J.shape == (t.size, len(names))
    F = _fd_jacobian(model, t, p, names)
    ymax = np.max(np.abs(model.evaluate(t, p)))
    for j, n in enumerate(names):
        h = 1e-6 * max(abs(p[n]), 1e-2 if n != "t0" else 1.0)
        scale = max(np.max(np.abs(F[:, j])), np.max(np.abs(J[:, j])), 1e-300)
        noise = 100 * np.finfo(float).eps * ymax / h  # rounding floor of the central difference
        assert np.max(np.abs(J[:, j] - F[:, j])) < 2e-5 * scale + noise, (name, n, p)
    y, J2 = model.evaluate_jacobian(t, p, names)
    assert np.array_equal(J2, J) and np.allclose(y, model.evaluate(t, p), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["trivial", "maturation", "maturation_blocked"])
def test_jacobian_matches_finite_differences(name):
    rng = np.random.default_rng(21)
    for _ in range(12):
        p = _random_params(name, rng)
        # keep the onset away from sample times (kink) and rates moderate for FD
        p["t0"] = float(np.floor(p["t0"] * 6) / 6 + 1 / 12)
        p["offset"] = 0.5  # large outputs would drown the finite differences
        for a in ("ktl", "G0", "Gu0"):
            if a in p:
                p[a] = min(p[a], 1e3)
        for r in ("delta", "beta", "km"):
            if r in p:
                p[r] = min(p[r], 3.0)
        _check_jacobian(name, p)


def test_jacobian_at_singular_points():
    for beta in (5.22e-3, 0.3):
        for eps in (0.0, 1e-10, -1e-7):
            _check_jacobian(
                "trivial", {"t0": 1.25, "ktl": 40.0, "delta": beta * (1 + eps), "beta": beta, "offset": 3.0}
            )
            _check_jacobian(
                "maturation",
                {"t0": 0.083, "ktl": 900.0, "km": 1.28, "delta": beta * (1 + eps), "beta": beta, "offset": 3.0},
            )
            _check_jacobian(
                "maturation",
                {
                    "t0": 0.083,
                    "ktl": 900.0,
                    "km": 1.28,
                    "delta": (beta + 1.28) * (1 + eps),
                    "beta": beta,
                    "offset": 3.0,
                },
            )


def test_broadcasting_shapes():
    m = get_model("maturation")
    B = 5
    p = {
        "t0": np.linspace(-0.5, 0.5, B)[:, None],
        "ktl": np.full((B, 1), 100.0),
        "km": 1.28,
        "delta": np.linspace(0.01, 2, B)[:, None],
        "beta": 5.22e-3,
        "offset": 0.0,
    }
    y = m.evaluate(T, p)
    J = m.jacobian(T, p, ["t0", "delta"])
    assert y.shape == (B, T.size) and J.shape == (B, T.size, 2)
    for i in range(B):
        pi = {k: (v[i, 0] if np.ndim(v) else v) for k, v in p.items()}
        assert np.allclose(y[i], m.evaluate(T, pi), rtol=1e-13, atol=1e-12)
        assert np.allclose(J[i], m.jacobian(T, pi, ["t0", "delta"]), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# trivial: compiled closed form
# ---------------------------------------------------------------------------


def _trivial_rows(rng, n):
    """Random ``trivial`` parameter rows (M, 5), a quarter with delta == beta or nearly."""
    P = np.column_stack(
        [
            rng.uniform(0.0, 10.0, n),
            rng.uniform(1.0, 100.0, n),
            10 ** rng.uniform(-5, 1, n),
            10 ** rng.uniform(-5, 1, n),
            rng.normal(size=n),
        ]
    )
    q = n // 8
    P[:q, 3] = P[:q, 2] * (1 + 10 ** rng.uniform(-12, -1, q))
    P[q : 2 * q, 3] = P[q : 2 * q, 2]
    return P


def test_trivial_kernel_matches_divided_differences():
    from pyama_flow.fitting.models import trivial

    rng = np.random.default_rng(3)
    P = _trivial_rows(rng, 400)
    Tm = np.broadcast_to(T, (400, T.size))
    params = {p: P[:, j : j + 1] for j, p in enumerate(trivial.PARAMS)}
    f, J = trivial.evaluate_jacobian(Tm, params, trivial.PARAMS)
    f0, J0 = trivial._compute_numpy(Tm, params, trivial.PARAMS, True)
    assert np.max(np.abs(f - f0)) <= 1e-13 * np.max(np.abs(f0))
    scale = np.max(np.abs(J0), axis=1, keepdims=True) + 1e-300
    assert np.max(np.abs(J - J0) / scale) < 1e-11  # the divided differences lose ~4e-12 near delta == beta


def test_trivial_kernel_hand_values_at_coincident_rates():
    from pyama_flow.fitting.models import trivial

    # delta == beta: p = ktl dt e^{-beta dt}, d/ddelta = d/dbeta = -ktl dt^2 / 2 e^{-beta dt}
    t = np.array([0.5, 1.0, 3.0, 12.0, 29.0])
    p = {"t0": 0.5, "ktl": 7.0, "delta": 0.3, "beta": 0.3, "offset": 2.0}
    y, J = trivial.evaluate_jacobian(t, p, ["delta", "beta"])
    dt = t - 0.5
    np.testing.assert_allclose(y, 2.0 + 7.0 * dt * np.exp(-0.3 * dt), rtol=1e-15)
    np.testing.assert_allclose(J[:, 0], -7.0 * dt**2 / 2 * np.exp(-0.3 * dt), rtol=1e-15)
    np.testing.assert_array_equal(J[:, 0], J[:, 1])


@pytest.mark.parametrize("uniform", [True, False])
def test_trivial_normal_equations_match_jacobian(uniform):
    from pyama_flow.fitting.models import trivial

    rng = np.random.default_rng(5)
    n = 200
    P = _trivial_rows(rng, n)
    t = T if uniform else np.sort(rng.uniform(0, 30, T.size))
    params = {p: P[:, j : j + 1] for j, p in enumerate(trivial.PARAMS)}
    f, J = trivial._compute_numpy(t, params, trivial.PARAMS, True)
    Y = f + rng.normal(size=f.shape)
    W = (rng.random(f.shape) > 0.1).astype(np.float64) * rng.uniform(0.5, 2.0, f.shape)
    names = ["t0", "delta", "beta", "offset"]  # ktl held fixed: a subset of the columns
    rows = rng.permutation(n)[:150]
    sub = {p: (v[rows] if np.ndim(v) else v) for p, v in params.items()}
    cost, A, g = trivial.normal_equations(t, Y, W, sub, names, rows)
    r = (f[rows] - Y[rows]) * W[rows]
    Jw = J[rows][:, :, [trivial.PARAMS.index(p) for p in names]] * W[rows][:, :, None]
    np.testing.assert_allclose(cost, np.einsum("mn,mn->m", r, r), rtol=1e-11)
    d = np.sqrt(np.einsum("mii->mi", Jw.transpose(0, 2, 1) @ Jw))
    scale = d[:, :, None] * d[:, None, :] + 1e-300
    assert np.max(np.abs(A - Jw.transpose(0, 2, 1) @ Jw) / scale) < 1e-11
    gs = d * np.sqrt(cost)[:, None] + 1e-300
    assert np.max(np.abs(g - np.einsum("mnk,mn->mk", Jw, r)) / gs) < 1e-11
