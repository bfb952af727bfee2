"""Compiled (numba) grid cost of the data-driven starts: a small box-constrained least squares per cell and grid point.

:func:`box_lsq_cost` does, element by element and operation for operation,
what :func:`pyama_flow.fitting.linalg._box_lsq_lists` and the cost update of
:func:`pyama_flow.fitting.starts._grid_start` do on whole arrays (same
roundings, same order), so the results are bit-identical; it only avoids the
many ``(cells, grid points)`` temporaries. Compiled on first use and cached
on disk (``cache=True``); ``error_model="numpy"`` gives IEEE division
(``x / 0 = inf``) as in numpy.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_jit = njit(cache=True, nogil=True, error_model="numpy")


@_jit
def _solve(A: np.ndarray, b: np.ndarray, ridge: float, M: np.ndarray, r: np.ndarray, s: np.ndarray, x: np.ndarray) -> None:
    """``x`` = :func:`~pyama_flow.fitting.linalg._solve_lists` of one system (``M, r, s`` scratch)."""
    n = b.size
    for i in range(n):
        s[i] = math.sqrt(A[i, i] if A[i, i] > 0 else 1.0)
    for i in range(n):
        for j in range(n):
            M[i, j] = A[i, j] / (s[i] * s[j]) + (ridge if i == j else 0.0)
        r[i] = b[i] / s[i]
    for c in range(n):
        for i in range(c + 1, n):
            f = M[i, c] / M[c, c]
            for j in range(c + 1, n):
                M[i, j] = M[i, j] - f * M[c, j]
            r[i] = r[i] - f * r[c]
    for i in range(n - 1, -1, -1):
        acc = r[i]
        for j in range(i + 1, n):
            acc = acc - M[i, j] * x[j]
        x[i] = acc / M[i, i]
    for i in range(n):
        v = x[i] / s[i]
        x[i] = v if math.isfinite(v) else 0.0


@_jit
def _box_lsq(A, b, lo, hi, held, val, Ah, bh, M, r, s, x) -> None:
    """``x`` = :func:`~pyama_flow.fitting.linalg._box_lsq_lists` of one system (the rest scratch)."""
    n = b.size
    _solve(A, b, 1e-12, M, r, s, x)
    held[:] = False
    val[:] = 0.0
    for _ in range(n):
        new = False
        for i in range(n):
            if (x[i] < lo[i] or x[i] > hi[i]) and not held[i]:
                val[i] = min(max(x[i], lo[i]), hi[i])
                held[i] = True
                new = True
        if not new:  # re-solving would repeat the last solution
            break
        for i in range(n):
            for j in range(n):
                Ah[i, j] = (1.0 if i == j else 0.0) if held[i] or held[j] else A[i, j]
            acc = b[i]
            for j in range(n):
                if j != i:
                    acc = acc - (A[i, j] * val[j] if held[j] else 0.0)
            bh[i] = val[i] if held[i] else acc
        _solve(Ah, bh, 1e-12, M, r, s, x)
    for i in range(n):
        x[i] = min(max(x[i], lo[i]), hi[i])


@_jit
def box_lsq_cost(A: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Box least squares per cell and grid point; ``cost`` (B, G) lowered by its gain in place.

    Parameters
    ----------
    A : (L, L, Ba, G) float64
        ``sum w col_i col_j`` per cell (``Ba == B``) or shared by all cells (``Ba == 1``).
    b : (L, B, G) float64
        ``sum w y col_i`` (less the fixed part of the model).
    lo, hi : (L,) float64
        Bounds of the affine parameters.
    cost : (B, G) float64
        ``sum w y^2`` (less the fixed part) on entry; on return the cost at
        the solution, ``cost - 2 theta.b + theta.A.theta`` in that order.

    Returns
    -------
    theta : (L, B, G) float64
    """
    L, B, G = b.shape
    shared = A.shape[2] == 1
    theta = np.empty((L, B, G), np.float64)
    Ae = np.empty((L, L), np.float64)
    be = np.empty(L, np.float64)
    held = np.zeros(L, np.bool_)
    val = np.empty(L, np.float64)
    bh = np.empty(L, np.float64)
    r = np.empty(L, np.float64)
    s = np.empty(L, np.float64)
    x = np.empty(L, np.float64)
    Ah = np.empty((L, L), np.float64)
    M = np.empty((L, L), np.float64)
    for c in range(B):
        ca = 0 if shared else c
        for g in range(G):
            for i in range(L):
                be[i] = b[i, c, g]
                for j in range(L):
                    Ae[i, j] = A[i, j, ca, g]
            _box_lsq(Ae, be, lo, hi, held, val, Ah, bh, M, r, s, x)
            v = cost[c, g]
            for i in range(L):
                theta[i, c, g] = x[i]
                v = v - 2.0 * x[i] * be[i]
                for j in range(L):
                    v = v + x[i] * Ae[i, j] * x[j]
            cost[c, g] = v
    return theta
