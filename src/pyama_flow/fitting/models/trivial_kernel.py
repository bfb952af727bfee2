"""Compiled (numba) closed form of the ``trivial`` model and its least-squares normal equations.

With ``m = min(delta, beta)``, ``M = max(delta, beta)``, ``dt = t - t0 > 0``,
``x = (M - m) dt >= 0`` and ``f(r) = exp(-r dt)`` the divided differences the
model needs are (``E = exp(-m dt)``)::

    f[m, M]    = -dt   E phi1(-x)
    f[m, m, M] =  dt^2 E phi2(-x)
    f[m, M, M] =  dt^2 E (phi1(-x) - phi2(-x))

with ``phi1(z) = (e^z - 1) / z`` and ``phi2(z) = (e^z - 1 - z) / z^2``: by
``expm1`` for ``x >= 0.5`` and by their Taylor series below (no cancellation
at ``delta == beta``). Every exponent is <= 0, so nothing overflows.

:func:`normal_equations` evaluates the model and its Jacobian point by point
and accumulates the weighted cost, ``J^T J`` and ``J^T r`` of many problems
without building the ``(M, N, k)`` Jacobian (the fitter's inner loop).
Compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: below this x = |delta - beta| dt, phi1 and phi2 come from their series
_SERIES_BELOW = 0.5
#: series terms: 0.5^15 / 16! < 2e-18
_TERMS = 15
_INV_FACT = np.array([1.0 / math.factorial(n) for n in range(_TERMS + 3)], dtype=np.float64)


@njit(cache=True, nogil=True)
def _phis(x: float) -> tuple[float, float]:
    """``(phi1(-x), phi2(-x))`` for ``x >= 0``."""
    if x < _SERIES_BELOW:  # Horner: phi_j(-x) = sum_n (-x)^n / (n + j)!
        p1 = 0.0
        p2 = 0.0
        for n in range(_TERMS, -1, -1):
            p1 = p1 * -x + _INV_FACT[n + 1]
            p2 = p2 * -x + _INV_FACT[n + 2]
        return p1, p2
    p1 = -math.expm1(-x) / x
    return p1, (1.0 - p1) / x


@njit(cache=True, nogil=True)
def _point(dt: float, ktl: float, delta: float, beta: float) -> tuple[float, float, float, float]:
    """``(f[beta, delta], d/dt0, d/ddelta, d/dbeta)`` of the protein ``-ktl f[beta, delta]`` at ``dt > 0``."""
    lo = min(delta, beta)
    hi = max(delta, beta)
    e = math.exp(-lo * dt)
    if (hi - lo) * dt < _SERIES_BELOW:
        p1, p2 = _phis((hi - lo) * dt)
        f2 = -dt * e * p1
        f_llh = dt * dt * e * p2  # f[m, m, M]
        f_lhh = dt * dt * e * (p1 - p2)  # f[m, M, M]
    else:  # Newton's differences: e^{-x} <= 0.61, no cancellation
        inv = 1.0 / (hi - lo)
        e_hi = math.exp(-hi * dt)
        f2 = (e_hi - e) * inv
        f_llh = (f2 + dt * e) * inv
        f_lhh = (-dt * e_hi - f2) * inv
    if delta >= beta:  # f[beta, delta, delta] = f[m, M, M]
        return f2, -ktl * (e + hi * f2), -ktl * f_lhh, -ktl * f_llh
    return f2, -ktl * (e + hi * f2), -ktl * f_llh, -ktl * f_lhh


@njit(cache=True, nogil=True)
def value_jacobian(T: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values ``(M, N)`` and Jacobians ``(M, N, 5)`` at times ``T`` (M, N) and parameters ``P`` (M, 5)."""
    n_rows, n_pts = T.shape
    f = np.empty((n_rows, n_pts), np.float64)
    J = np.zeros((n_rows, n_pts, 5), np.float64)
    for r in range(n_rows):
        t0, ktl, delta, beta, offset = P[r, 0], P[r, 1], P[r, 2], P[r, 3], P[r, 4]
        for i in range(n_pts):
            J[r, i, 4] = 1.0
            dt = T[r, i] - t0
            if not dt > 0.0:
                f[r, i] = offset
                continue
            f2, j_t0, j_delta, j_beta = _point(dt, ktl, delta, beta)
            f[r, i] = -ktl * f2 + offset
            J[r, i, 0] = j_t0
            J[r, i, 1] = -f2
            J[r, i, 2] = j_delta
            J[r, i, 3] = j_beta
    return f, J


@njit(cache=True, nogil=True)
def normal_equations(
    T: np.ndarray, Y: np.ndarray, W: np.ndarray, P: np.ndarray, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cost ``sum (w (f - y))^2``, ``J^T J`` and ``J^T r`` per row, ``J`` weighted by ``w`` too.

    ``T, Y, W`` (M, N); ``P`` (M, 5) in ``PARAMS`` order; ``cols`` the
    Jacobian columns wanted (indices into ``PARAMS``), in order.
    """
    n_rows, n_pts = Y.shape
    k = cols.size
    cost = np.empty(n_rows, np.float64)
    A = np.empty((n_rows, k, k), np.float64)
    g = np.empty((n_rows, k), np.float64)
    full_a = np.empty((5, 5), np.float64)
    full_g = np.empty(5, np.float64)
    for r in range(n_rows):
        cost[r] = _accumulate(T[r], Y[r], W[r], P[r], full_a, full_g)
        for a in range(k):
            g[r, a] = full_g[cols[a]]
            for b in range(k):
                A[r, a, b] = full_a[cols[a], cols[b]]
    return cost, A, g


@njit(cache=True, nogil=True)
def _accumulate(t: np.ndarray, y: np.ndarray, w: np.ndarray, p: np.ndarray, A: np.ndarray, g: np.ndarray) -> float:
    """One row of :func:`normal_equations`, all five columns: ``A``, ``g`` filled, the cost returned."""
    t0, ktl, delta, beta, offset = p[0], p[1], p[2], p[3], p[4]
    c = s_w2 = 0.0  # cost; sum w^2 (the offset column)
    g4 = 0.0
    a00 = a01 = a02 = a03 = a04 = a11 = a12 = a13 = a14 = a22 = a23 = a24 = a33 = a34 = 0.0
    g0 = g1 = g2 = g3 = 0.0
    for i in range(t.size):
        wi = w[i]
        dt = t[i] - t0
        if not dt > 0.0:
            res = wi * (offset - y[i])
            c += res * res
            g4 += wi * res
            s_w2 += wi * wi
            continue
        f2, j0, j2, j3 = _point(dt, ktl, delta, beta)
        res = wi * (-ktl * f2 + offset - y[i])
        c += res * res
        j0 *= wi
        j1 = -f2 * wi
        j2 *= wi
        j3 *= wi
        g0 += j0 * res
        g1 += j1 * res
        g2 += j2 * res
        g3 += j3 * res
        g4 += wi * res
        s_w2 += wi * wi
        a00 += j0 * j0
        a01 += j0 * j1
        a02 += j0 * j2
        a03 += j0 * j3
        a04 += j0 * wi
        a11 += j1 * j1
        a12 += j1 * j2
        a13 += j1 * j3
        a14 += j1 * wi
        a22 += j2 * j2
        a23 += j2 * j3
        a24 += j2 * wi
        a33 += j3 * j3
        a34 += j3 * wi
    _fill_symmetric(A, (a00, a01, a02, a03, a04, a11, a12, a13, a14, a22, a23, a24, a33, a34, s_w2))
    g[0], g[1], g[2], g[3], g[4] = g0, g1, g2, g3, g4
    return c


@njit(cache=True, nogil=True)
def _fill_symmetric(A: np.ndarray, upper: tuple) -> None:
    """``A`` (5, 5) from its upper triangle, row by row."""
    n = 0
    for a in range(5):
        for b in range(a, 5):
            A[a, b] = upper[n]
            A[b, a] = upper[n]
            n += 1
