"""``trivial`` model: mRNA decays at ``delta``, protein made at ``ktl * m``, degraded at ``beta``.

ODE (from the onset ``t0``, ``dt = t - t0``)::

    m' = -delta m,            m(t0) = 1
    p' = ktl m - beta p,      p(t0) = 0
    y  = p + offset           (y = offset for dt <= 0)

Closed form (SPEC step 6)::

    p = ktl / (delta - beta) * (1 - exp(-(delta - beta) dt)) * exp(-beta dt)
      = -ktl * f[beta, delta],     f(x) = exp(-x dt)

with ``f[., .]`` the divided difference (:func:`pyama_flow.fitting.models.exp_divdiff`),
which is regular at ``delta == beta`` (limit ``ktl * dt * exp(-beta dt)``).
The model is symmetric in ``delta`` and ``beta``: data cannot tell them apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from pyama_flow.fitting.models import ParamDefault, ParamInfo, broadcast_shape, exp_divdiff, onset

NAME = "trivial"
PARAMS = ("t0", "ktl", "delta", "beta", "offset")
DEFAULTS = {
    "t0": ParamDefault(2.0, 0.0, 30.0),
    "ktl": ParamDefault(20.0, 1.0, 1e6),
    "delta": ParamDefault(0.07, 1e-5, 10.1),
    "beta": ParamDefault(0.0436, 1e-5, 10.0),
    "offset": ParamDefault(0.0, -1e6, 1e6),
}
#: unit and meaning of every parameter (report, viewer, config/README.md)
INFO = {
    "t0": ParamInfo("h", "onset: time at which expression starts (after the first frame)"),
    "ktl": ParamInfo("a.u./h", "translation rate: protein made per hour by the mRNA present at t0"),
    "delta": ParamInfo("1/h", "mRNA degradation rate (mRNA half-life = ln 2 / delta)"),
    "beta": ParamInfo("1/h", "protein degradation rate (protein half-life = ln 2 / beta)"),
    "offset": ParamInfo("a.u.", "baseline intensity before the onset"),
}
LINEAR = ("ktl", "offset")
#: the output has a kink at t0: a local minimum of the cost between any two
#: samples (the fitter hops t0 across samples and grids it every 0.5 h; the
#: rates on 8 log-spaced values each)
ONSET = "t0"
GRID = {"t0": 61, "delta": 8, "beta": 8}
#: rugged cost (kinks, the delta == beta symmetry): start from the 3 best grid minima
GRID_STARTS = 3
#: the output is unchanged when delta and beta swap values: the grid visits delta >= beta only
SWAP = ("delta", "beta")


def _compute(t: np.ndarray, params: Mapping[str, object], names: Sequence[str] | None, value: bool):
    """Shared work of :func:`evaluate` and :func:`jacobian` (one set of exponentials).

    Parameters constant along the time axis (scalars or ``(M, 1)`` columns,
    times ``(N,)`` or ``(M, N)``, the fitter's layouts): the compiled closed
    form of :mod:`~pyama_flow.fitting.models.trivial_kernel`; other layouts:
    numpy (:func:`_compute_numpy`).
    """
    for name in names or ():
        if name not in PARAMS:
            raise ValueError(f"model {NAME!r} has no parameter {name!r}")
    rows = _as_rows(t, params)
    if rows is None:
        return _compute_numpy(t, params, names, value)
    from pyama_flow.fitting.models.trivial_kernel import value_jacobian

    shape = broadcast_shape(t, params, PARAMS)
    f, J = value_jacobian(*rows)
    y = f.reshape(shape) if value else None
    if names is None:
        return y, None
    return y, J[:, :, [PARAMS.index(p) for p in names]].reshape(shape + (len(names),))


def _compute_numpy(t: np.ndarray, params: Mapping[str, object], names: Sequence[str] | None, value: bool):
    """:func:`_compute` for any broadcasting layout, by :func:`~pyama_flow.fitting.models.exp_divdiff`."""
    t = np.asarray(t, dtype=np.float64)
    shape = broadcast_shape(t, params, PARAMS)
    dt, on = onset(t, params["t0"])
    ktl = np.asarray(params["ktl"], dtype=np.float64)
    beta = np.asarray(params["beta"], dtype=np.float64)
    delta = np.asarray(params["delta"], dtype=np.float64)
    e_b, e_d = np.exp(-beta * dt), np.exp(-delta * dt)
    f2 = exp_divdiff([beta, delta], dt, exps=[e_b, e_d])  # 0 where dt == 0
    y = None
    if value:
        y = np.broadcast_to(-ktl * f2 + np.asarray(params["offset"], dtype=np.float64), shape).copy()
    if names is None:
        return y, None
    cols = []
    for name in names:
        if name == "t0":
            col = np.where(on, -ktl * (e_d + beta * f2), 0.0)
        elif name == "ktl":
            col = -f2
        elif name == "delta":
            col = -ktl * exp_divdiff([beta, delta, delta], dt, exps=[e_b, e_d, e_d])
        elif name == "beta":
            col = -ktl * exp_divdiff([beta, beta, delta], dt, exps=[e_b, e_b, e_d])
        elif name == "offset":
            col = np.ones(())
        else:
            raise ValueError(f"model {NAME!r} has no parameter {name!r}")
        cols.append(np.broadcast_to(col, shape))
    jac = np.stack(cols, axis=-1) if cols else np.zeros(shape + (0,))
    return y, jac


def evaluate(t: np.ndarray, params: Mapping[str, object]) -> np.ndarray:
    """Model output at times ``t`` (hours); parameters broadcast with ``t``."""
    return _compute(t, params, None, True)[0]


def jacobian(t: np.ndarray, params: Mapping[str, object], names: Sequence[str]) -> np.ndarray:
    """Analytic derivatives of :func:`evaluate`, shape ``(*shape, len(names))``.

    ``d/dt0 = -ktl (exp(-delta dt) + beta f[beta, delta])`` for dt > 0,
    ``d/ddelta = -ktl f[beta, delta, delta]``, ``d/dbeta = -ktl f[beta, beta, delta]``.
    """
    return _compute(t, params, names, False)[1]


def evaluate_jacobian(t: np.ndarray, params: Mapping[str, object], names: Sequence[str]):
    """``(evaluate(t, params), jacobian(t, params, names))`` sharing the work."""
    return _compute(t, params, names, True)


def _as_rows(t: np.ndarray, params: Mapping[str, object]) -> tuple[np.ndarray, np.ndarray] | None:
    """``(T (M, N), P (M, 5))`` if the output is ``(M, N)`` rows with one parameter set each, else None."""
    t = np.asarray(t, dtype=np.float64)
    values = [np.asarray(params[p], dtype=np.float64) for p in PARAMS]
    if t.ndim not in (1, 2) or any(v.ndim > 2 or (v.ndim == 2 and v.shape[1] != 1) or v.ndim == 1 for v in values):
        return None
    M = max([t.shape[0] if t.ndim == 2 else 1] + [v.shape[0] for v in values if v.ndim == 2])
    try:
        T = np.ascontiguousarray(np.broadcast_to(t, (M, t.shape[-1])))
        P = np.column_stack([np.broadcast_to(v, (M, 1))[:, 0] for v in values])
    except ValueError:
        return None
    return T, np.ascontiguousarray(P)


def normal_equations(
    t: np.ndarray,
    Y: np.ndarray,
    W: np.ndarray,
    params: Mapping[str, object],
    names: Sequence[str],
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``Y`` (M, N): ``sum r^2``, ``J^T J`` and ``J^T r`` with ``r = W (f - Y)``, ``J`` weighted by ``W``.

    ``t`` and ``W`` broadcast to ``Y``; ``rows`` (optional) selects the rows
    of ``t, Y, W`` (default: all), and every parameter is a scalar or a
    column with one value per selected row. The closed form of
    :mod:`~pyama_flow.fitting.models.trivial_kernel` (compiled), without
    the ``(M, N, k)`` Jacobian.
    """
    from pyama_flow.fitting.models.trivial_kernel import normal_equations as kernel

    Yc = np.ascontiguousarray(Y, dtype=np.float64)
    T, Wc = (np.ascontiguousarray(np.broadcast_to(np.asarray(a, dtype=np.float64), Yc.shape)) for a in (t, W))
    rows = np.arange(Yc.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    P = np.empty((rows.size, len(PARAMS)), dtype=np.float64)
    for j, name in enumerate(PARAMS):
        P[:, j] = np.broadcast_to(np.asarray(params[name], dtype=np.float64), (rows.size, 1))[:, 0]
    cols = np.array([PARAMS.index(p) for p in names], dtype=np.int64)
    return kernel(T, Yc, Wc, rows, P, cols)
