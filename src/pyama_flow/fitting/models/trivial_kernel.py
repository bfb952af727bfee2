"""Compiled (numba) closed form of the ``trivial`` model and its least-squares normal equations.

With ``m = min(delta, beta)``, ``M = max(delta, beta)``, ``dt = t - t0 > 0``,
``x = (M - m) dt >= 0`` and ``f(r) = exp(-r dt)`` the divided differences the
model needs are (``E = exp(-m dt)``)::

    f[m, M]    = -dt   E phi1(-x)
    f[m, m, M] =  dt^2 E phi2(-x)
    f[m, M, M] =  dt^2 E (phi1(-x) - phi2(-x))

with ``phi1(z) = (e^z - 1) / z`` and ``phi2(z) = (e^z - 1 - z) / z^2`` by
their Taylor series for ``x < 0.5`` (no cancellation at ``delta == beta``);
for ``x >= 0.5`` Newton's differences ``f[m, M] = (e^{-M dt} - E) / (M - m)``
and so on lose at most a few bits (``e^{-x} <= 0.61``). Every exponent is
<= 0, so nothing overflows; pointwise accurate to ~1e-14 relative.

:func:`normal_equations` evaluates the model and its Jacobian point by point
and sums the weighted cost, ``J^T J`` and ``J^T r`` of many problems
without building the ``(M, N, k)`` Jacobian (the fitter's inner loop); on a
uniform time grid the exponentials come by recurrence (one product each).
Compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import math

import numpy as np

from pyama_flow.numba_cache import announce_compile

announce_compile(__file__, "the trivial model's kernels", "~6 s")

from numba import njit  # noqa: E402

#: below this x = |delta - beta| dt, phi1 and phi2 come from their series
_SERIES_BELOW = 0.5
#: series terms: 0.5^15 / 16! < 2e-18
_TERMS = 15
_INV_FACT = np.array([1.0 / math.factorial(n) for n in range(_TERMS + 3)], dtype=np.float64)


@njit(cache=True, nogil=True)
def _phis(x: float) -> tuple[float, float]:
    """``(phi1(-x), phi2(-x))`` for ``0 <= x < 0.5`` by Horner: ``phi_j(-x) = sum_n (-x)^n / (n + j)!``."""
    p1 = 0.0
    p2 = 0.0
    for n in range(_TERMS, -1, -1):
        p1 = p1 * -x + _INV_FACT[n + 1]
        p2 = p2 * -x + _INV_FACT[n + 2]
    return p1, p2


@njit(cache=True, nogil=True)
def _point(dt: float, ktl: float, lo: float, hi: float, inv: float, e: float, e_hi: float, swap: bool):
    """``(f[beta, delta], d/dt0, d/ddelta, d/dbeta)`` of the protein ``-ktl f[beta, delta]`` at ``dt > 0``.

    ``lo, hi`` = min, max of the rates, ``inv = 1 / (hi - lo)``, ``e = exp(-lo dt)``, ``e_hi =
    exp(-hi dt)``, ``swap``: ``delta < beta``.
    """
    x = (hi - lo) * dt
    if x < _SERIES_BELOW:
        p1, p2 = _phis(x)
        f2 = -dt * e * p1
        f_llh = dt * dt * e * p2  # f[m, m, M]
        f_lhh = dt * dt * e * (p1 - p2)  # f[m, M, M]
    else:  # Newton's differences: e^{-x} <= 0.61, no cancellation
        f2 = (e_hi - e) * inv
        f_llh = (f2 + dt * e) * inv
        f_lhh = (-dt * e_hi - f2) * inv
    if swap:  # delta < beta: f[beta, delta, delta] = f[M, m, m]
        return f2, -ktl * (e + hi * f2), -ktl * f_llh, -ktl * f_lhh
    return f2, -ktl * (e + hi * f2), -ktl * f_lhh, -ktl * f_llh


@njit(cache=True, nogil=True)
def _uniform_step(t: np.ndarray) -> float:
    """The spacing ``h > 0`` if ``t`` is ``t[0] + i h`` (to 1e-14 of its range), else 0."""
    n = t.size
    if n < 3:
        return 0.0
    h = (t[n - 1] - t[0]) / (n - 1)
    tol = 1e-14 * (abs(t[0]) + abs(t[n - 1]))
    if not h > 0.0:
        return 0.0
    for i in range(n):
        if abs(t[i] - (t[0] + i * h)) > tol:
            return 0.0
    return h


@njit(cache=True, nogil=True)
def _exps(dt: float, lo: float, hi: float, h: float, e: float, e_hi: float, q: float, q_hi: float):
    """``(exp(-lo dt), exp(-hi dt))``: from the previous point's by the factors ``q, q_hi`` on a uniform grid (``h > 0``, ``e > 0``)."""
    if h > 0.0 and e > 0.0:
        return e * q, e_hi * q_hi
    return math.exp(-lo * dt), math.exp(-hi * dt)


@njit(cache=True, nogil=True)
def value_jacobian(T: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values ``(M, N)`` and Jacobians ``(M, N, 5)`` at times ``T`` (M, N) and parameters ``P`` (M, 5)."""
    n_rows, n_pts = T.shape
    f = np.empty((n_rows, n_pts), np.float64)
    J = np.zeros((n_rows, n_pts, 5), np.float64)
    for r in range(n_rows):
        t0, ktl, delta, beta, offset = P[r, 0], P[r, 1], P[r, 2], P[r, 3], P[r, 4]
        lo, hi = min(delta, beta), max(delta, beta)
        inv = 1.0 / (hi - lo) if hi > lo else 0.0
        for i in range(n_pts):
            J[r, i, 4] = 1.0
            dt = T[r, i] - t0
            if not dt > 0.0:
                f[r, i] = offset
                continue
            e, e_hi = math.exp(-lo * dt), math.exp(-hi * dt)
            f2, j_t0, j_delta, j_beta = _point(dt, ktl, lo, hi, inv, e, e_hi, delta < beta)
            f[r, i] = -ktl * f2 + offset
            J[r, i, 0] = j_t0
            J[r, i, 1] = -f2
            J[r, i, 2] = j_delta
            J[r, i, 3] = j_beta
    return f, J


@njit(cache=True, nogil=True)
def normal_equations(
    T: np.ndarray, Y: np.ndarray, W: np.ndarray, rows: np.ndarray, P: np.ndarray, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cost ``sum (w (f - y))^2``, ``J^T J`` and ``J^T r`` of the rows ``rows``, ``J`` weighted by ``w`` too.

    ``T, Y, W`` (M, N); ``P`` (len(rows), 5) in ``PARAMS`` order; ``cols`` the
    Jacobian columns wanted (indices into ``PARAMS``), in order. Per row the
    weighted residuals and Jacobian columns are computed first (``J`` of
    shape (6, N): five columns, then the residuals), then the sums as dot
    products.
    """
    n_rows, n_pts = rows.size, Y.shape[1]
    k = cols.size
    cost = np.empty(n_rows, np.float64)
    A = np.empty((n_rows, k, k), np.float64)
    g = np.empty((n_rows, k), np.float64)
    J = np.empty((6, n_pts), np.float64)
    for r in range(n_rows):
        _columns(T[rows[r]], Y[rows[r]], W[rows[r]], P[r], J)
        cost[r] = _dot(J[5], J[5])
        for a in range(k):
            g[r, a] = _dot(J[cols[a]], J[5])
            for b in range(a + 1):
                A[r, a, b] = _dot(J[cols[a]], J[cols[b]])
                A[r, b, a] = A[r, a, b]
    return cost, A, g


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """``sum a * b``, summed in any order (vectorised)."""
    acc = 0.0
    for i in range(a.size):
        acc += a[i] * b[i]
    return acc


@njit(cache=True, nogil=True)
def _columns(t: np.ndarray, y: np.ndarray, w: np.ndarray, p: np.ndarray, J: np.ndarray) -> None:
    """One row: ``J[:5]`` the weighted Jacobian columns (``PARAMS`` order), ``J[5]`` the weighted residuals."""
    t0, ktl, delta, beta, offset = p[0], p[1], p[2], p[3], p[4]
    lo, hi = min(delta, beta), max(delta, beta)
    inv = 1.0 / (hi - lo) if hi > lo else 0.0
    h = _uniform_step(t)  # exponentials by recurrence on a uniform grid
    q, q_hi = math.exp(-lo * h), math.exp(-hi * h)
    e = e_hi = 0.0
    for i in range(t.size):
        wi = w[i]
        dt = t[i] - t0
        J[4, i] = wi
        if not dt > 0.0:
            J[0, i] = J[1, i] = J[2, i] = J[3, i] = 0.0
            J[5, i] = wi * (offset - y[i])
            continue
        e, e_hi = _exps(dt, lo, hi, h, e, e_hi, q, q_hi)
        f2, j0, j2, j3 = _point(dt, ktl, lo, hi, inv, e, e_hi, delta < beta)
        J[5, i] = wi * (-ktl * f2 + offset - y[i])
        J[0, i] = j0 * wi
        J[1, i] = -f2 * wi
        J[2, i] = j2 * wi
        J[3, i] = j3 * wi
