"""``maturation`` model: as ``trivial`` plus an immature protein maturing at ``km``.

ODE (from the onset ``t0``, ``dt = t - t0``; the mature protein is observed)::

    m'   = -delta m,                      m(t0)   = 1
    g_u' = ktl m - (km + beta) g_u,       g_u(t0) = 0
    g'   = km g_u - beta g,               g(t0)   = 0
    y    = g + offset                     (y = offset for dt <= 0)

Closed form (SPEC step 6, with b = beta - delta)::

    g = ktl [ e^{-(beta+km) dt}/(b+km) - e^{-beta dt}/b + km e^{-delta dt}/(b (b+km)) ]
      = ktl * km * f[delta, beta, beta + km],     f(x) = exp(-x dt)

i.e. the second divided difference of ``exp(-x dt)`` over the three rates
(expanding the divided difference gives exactly the SPEC's three terms).
:func:`pyama_flow.fitting.models.exp_divdiff` evaluates it stably, so the singular
points ``delta == beta`` and ``delta == beta + km`` are regular.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from pyama_flow.fitting.models import ParamDefault, ParamInfo, broadcast_shape, exp_divdiff, onset

NAME = "maturation"
PARAMS = ("t0", "ktl", "km", "delta", "beta", "offset")
DEFAULTS = {
    "t0": ParamDefault(0.0, -1.0, 1.0),
    "ktl": ParamDefault(1e3, 1.0, 5e8),
    "km": ParamDefault(1.28, 1e-5, 30.0, True),
    "delta": ParamDefault(0.01, 1e-5, 11.0),
    "beta": ParamDefault(5.22e-3, 1e-5, 10.0, True),
    "offset": ParamDefault(0.0, -1e6, 1e6),
}
#: unit and meaning of every parameter (report, viewer, config/README.md)
INFO = {
    "t0": ParamInfo("h", "onset: time at which expression starts (after the first frame)"),
    "ktl": ParamInfo("a.u./h", "translation rate: protein made per hour by the mRNA present at t0"),
    "km": ParamInfo("1/h", "maturation rate of the fluorescent protein (maturation half-time = ln 2 / km)"),
    "delta": ParamInfo("1/h", "mRNA degradation rate (mRNA half-life = ln 2 / delta)"),
    "beta": ParamInfo("1/h", "protein degradation rate (protein half-life = ln 2 / beta)"),
    "offset": ParamInfo("a.u.", "baseline intensity before the onset"),
}
LINEAR = ("ktl", "offset")
#: two grid starts: the onset / offset trade-off can leave two separate minima
GRID_STARTS = 2


def _exp_neg(rate: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """``exp(-rate * dt)`` with one temporary."""
    e = np.asarray(np.multiply(rate, dt), dtype=np.float64)
    np.negative(e, out=e)
    return np.exp(e, out=e)


def _compute(t: np.ndarray, params: Mapping[str, object], names: Sequence[str] | None, value: bool):
    """Shared work of :func:`evaluate` and :func:`jacobian` (one set of exponentials)."""
    t = np.asarray(t, dtype=np.float64)
    shape = broadcast_shape(t, params, PARAMS)
    dt, _ = onset(t, params["t0"])
    ktl = np.asarray(params["ktl"], dtype=np.float64)
    km = np.asarray(params["km"], dtype=np.float64)
    beta = np.asarray(params["beta"], dtype=np.float64)
    delta = np.asarray(params["delta"], dtype=np.float64)
    c = beta + km
    exps = {id(delta): _exp_neg(delta, dt), id(beta): _exp_neg(beta, dt), id(c): _exp_neg(c, dt)}
    shared: dict = {}
    cache: dict[str, np.ndarray] = {}

    def dd(key: str, nodes: list) -> np.ndarray:
        if key not in cache:
            cache[key] = exp_divdiff(nodes, dt, exps=[exps[id(x)] for x in nodes], cache=shared)
        return cache[key]

    def f3() -> np.ndarray:  # 0 where dt == 0
        return dd("dbc", [delta, beta, c])

    scale = ktl * km
    y = None
    if value:
        y = np.multiply(f3(), scale)
        y += np.asarray(params["offset"], dtype=np.float64)
        if y.shape != shape:
            y = np.array(np.broadcast_to(y, shape))
    if names is None:
        return y, None
    jac = np.empty(shape + (len(names),))
    for j, name in enumerate(names):
        if name == "t0":
            col = np.multiply(f3(), delta)
            col += dd("bc", [beta, c])
            col *= scale
        elif name == "ktl":
            col = np.multiply(f3(), km)
        elif name == "km":
            col = np.multiply(dd("dbcc", [delta, beta, c, c]), km)
            col += f3()
            col *= ktl
        elif name == "delta":
            col = np.multiply(dd("ddbc", [delta, delta, beta, c]), scale)
        elif name == "beta":
            col = np.add(dd("dbbc", [delta, beta, beta, c]), dd("dbcc", [delta, beta, c, c]))
            col *= scale
        elif name == "offset":
            col = 1.0
        else:
            raise ValueError(f"model {NAME!r} has no parameter {name!r}")
        jac[..., j] = col
    return y, jac


def evaluate(t: np.ndarray, params: Mapping[str, object]) -> np.ndarray:
    """Model output at times ``t`` (hours); parameters broadcast with ``t``."""
    return _compute(t, params, None, True)[0]


def jacobian(t: np.ndarray, params: Mapping[str, object], names: Sequence[str]) -> np.ndarray:
    """Analytic derivatives of :func:`evaluate`, shape ``(*shape, len(names))``.

    With ``F = f[delta, beta, c]``, ``c = beta + km`` and the rule
    ``d/dx_i f[..x_i..] = f[..x_i, x_i..]``::

        d/dt0    = ktl km (delta F + f[beta, c])      (= -dg/d(dt))
        d/dktl   = km F
        d/dkm    = ktl (F + km f[delta, beta, c, c])
        d/ddelta = ktl km f[delta, delta, beta, c]
        d/dbeta  = ktl km (f[delta, beta, beta, c] + f[delta, beta, c, c])
    """
    return _compute(t, params, names, False)[1]


def evaluate_jacobian(t: np.ndarray, params: Mapping[str, object], names: Sequence[str]):
    """``(evaluate(t, params), jacobian(t, params, names))`` sharing the work."""
    return _compute(t, params, names, True)
