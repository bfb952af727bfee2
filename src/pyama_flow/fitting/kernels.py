"""Compiled (numba) kernels of the fitter: many small linear systems, and the grid cost of the data-driven starts.

:func:`solve_batch` solves stacked small systems (Gaussian elimination with
partial pivoting; what ``numpy.linalg.solve`` does, without its per-matrix
overhead). :func:`box_lsq_cost` solves a small box-constrained least
squares per cell and grid point, ``min x^T A x - 2 b^T x`` in a box,
approximately: Jacobi scaling, a tiny ridge and Gaussian elimination
without pivoting (the scaled matrices are positive definite); then the
variables outside their bounds are held there and the rest re-solved, until
none leaves its box (the numpy version of this algorithm, on whole arrays,
is the reference of ``tests/test_fitting.py``: the results are
bit-identical). It avoids the many ``(cells, grid points)`` temporaries. When all cells share their
weights, the systems depend on the grid point only: each solve becomes a
product with a precomputed matrix (same algorithm, roundings ~1e-16 apart). Compiled on first use and cached
on disk (``cache=True``); ``error_model="numpy"`` gives IEEE division
(``x / 0 = inf``) as in numpy.
"""

from __future__ import annotations

import math

import numpy as np

from pyama_flow.numba_cache import announce_compile

announce_compile(__file__, "the fitter's kernels", "~6 s")

from numba import njit  # noqa: E402

_jit = njit(cache=True, nogil=True, error_model="numpy")
#: helpers inlined into the kernel (no call or array reference counting per element)
_inline = njit(cache=True, nogil=True, error_model="numpy", inline="always")


@_inline
def _solve(A: np.ndarray, b: np.ndarray, ridge: float, M: np.ndarray, r: np.ndarray, s: np.ndarray, x: np.ndarray) -> None:
    """``A x = b`` for one small symmetric system: Jacobi scaling, ridge, elimination (``M, r, s`` scratch).

    Non-finite entries of the solution are 0.
    """
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


@_inline
def _hold_violators(x, lo, hi, held, val) -> int:
    """Hold at its bound every variable of ``x`` outside ``[lo, hi]`` not held yet; the bit mask of those."""
    new = 0
    for i in range(x.size):
        if (x[i] < lo[i] or x[i] > hi[i]) and not held[i]:
            val[i] = min(max(x[i], lo[i]), hi[i])
            held[i] = True
            new |= 1 << i
    return new


@_inline
def _box_lsq(A, b, lo, hi, held, val, Ah, bh, M, r, s, x) -> None:
    """``x`` = box least squares of one system (module docstring; the rest scratch)."""
    n = b.size
    _solve(A, b, 1e-12, M, r, s, x)
    held[:] = False
    val[:] = 0.0
    for _ in range(n):
        if not _hold_violators(x, lo, hi, held, val):  # re-solving would repeat the last solution
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
def _operators(A: np.ndarray) -> np.ndarray:
    """Per grid point and set of held variables, the matrix of the linear map ``bh -> x`` of :func:`_solve`.

    ``A`` (L, L, G) is shared by all cells; entry ``[g, h]`` (``h`` a bit
    mask of held variables) is :func:`_solve` of the held system of
    :func:`_box_lsq` applied to the unit vectors, so one solve costs a
    matrix-vector product (rounded differently from :func:`_solve`, ~1e-16).
    """
    L, G = A.shape[0], A.shape[2]
    K = np.empty((G, 1 << L, L, L), np.float64)
    Ah = np.empty((L, L), np.float64)
    e = np.empty(L, np.float64)
    M = np.empty((L, L), np.float64)
    r = np.empty(L, np.float64)
    s = np.empty(L, np.float64)
    x = np.empty(L, np.float64)
    for g in range(G):
        for h in range(1 << L):
            for i in range(L):
                for j in range(L):
                    held = (h >> i) & 1 or (h >> j) & 1
                    Ah[i, j] = (1.0 if i == j else 0.0) if held else A[i, j, g]
            for j in range(L):
                e[:] = 0.0
                e[j] = 1.0
                _solve(Ah, e, 1e-12, M, r, s, x)
                K[g, h, :, j] = x
    return K


@_inline
def _box_lsq_shared(A, b, lo, hi, K, g, held, val, bh, x) -> None:
    """:func:`_box_lsq` with the solves by the operators ``K`` of :func:`_operators` (grid point ``g``)."""
    n = b.size
    _apply(K, g, 0, b, x)
    for i in range(n):
        held[i] = False
        val[i] = 0.0
    mask = 0
    for _ in range(n):
        new = _hold_violators(x, lo, hi, held, val)
        if not new:
            break
        mask |= new
        for i in range(n):
            acc = b[i]
            for j in range(n):
                if j != i and held[j]:
                    acc = acc - A[i, j] * val[j]
            bh[i] = val[i] if held[i] else acc
        _apply(K, g, mask, bh, x)
    for i in range(n):
        x[i] = min(max(x[i], lo[i]), hi[i])


@_inline
def _apply(K: np.ndarray, g: int, h: int, b: np.ndarray, x: np.ndarray) -> None:
    """``x = K[g, h] @ b`` (0 where not finite, as :func:`_solve`)."""
    n = b.size
    for i in range(n):
        v = 0.0
        for j in range(n):
            v += K[g, h, i, j] * b[j]
        x[i] = v if math.isfinite(v) else 0.0


@_inline
def _apply2(K: np.ndarray, g: int, h: int, b0: float, b1: float) -> tuple[float, float]:
    """:func:`_apply` for two variables, in scalars."""
    x0 = K[g, h, 0, 0] * b0 + K[g, h, 0, 1] * b1
    x1 = K[g, h, 1, 0] * b0 + K[g, h, 1, 1] * b1
    return (x0 if math.isfinite(x0) else 0.0), (x1 if math.isfinite(x1) else 0.0)


@_inline
def _box_lsq2(K, g, a01, b0, b1, lo, hi) -> tuple[float, float]:
    """:func:`_box_lsq_shared` for two variables, in scalars (the amplitude and offset of most models)."""
    x0, x1 = _apply2(K, g, 0, b0, b1)
    h0 = h1 = False
    v0 = v1 = 0.0
    for _ in range(2):
        new0 = (x0 < lo[0] or x0 > hi[0]) and not h0
        new1 = (x1 < lo[1] or x1 > hi[1]) and not h1
        if not (new0 or new1):
            break
        if new0:
            v0, h0 = min(max(x0, lo[0]), hi[0]), True
        if new1:
            v1, h1 = min(max(x1, lo[1]), hi[1]), True
        c0 = v0 if h0 else (b0 - a01 * v1 if h1 else b0)
        c1 = v1 if h1 else (b1 - a01 * v0 if h0 else b1)
        x0, x1 = _apply2(K, g, int(h0) + 2 * int(h1), c0, c1)
    return min(max(x0, lo[0]), hi[0]), min(max(x1, lo[1]), hi[1])


@_jit
def _box_lsq_cost2(A: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """:func:`box_lsq_cost` for two variables and ``A`` shared by all cells, in scalars."""
    B, G = b.shape[1], b.shape[2]
    theta = np.empty((2, B, G), np.float64)
    K = _operators(A[:, :, 0, :])
    for g0 in range(0, G, 64):  # blocks of grid points: their operators stay in the L1 cache
        for c in range(B):
            for g in range(g0, min(g0 + 64, G)):
                a00, a01, a10, a11 = A[0, 0, 0, g], A[0, 1, 0, g], A[1, 0, 0, g], A[1, 1, 0, g]
                b0, b1 = b[0, c, g], b[1, c, g]
                x0, x1 = _box_lsq2(K, g, a01, b0, b1, lo, hi)
                theta[0, c, g], theta[1, c, g] = x0, x1
                v = cost[c, g] - 2.0 * x0 * b0
                v = v + x0 * a00 * x0
                v = v + x0 * a01 * x1
                v = v - 2.0 * x1 * b1
                v = v + x1 * a10 * x0
                cost[c, g] = v + x1 * a11 * x1
    return theta


@_jit
def box_lsq_cost(A: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Box least squares per cell and grid point; ``cost`` (B, G) lowered by its gain in place.

    Parameters
    ----------
    A : (L, L, Ba, G) float64
        ``sum w col_i col_j`` per cell (``Ba == B``) or shared by all cells
        (``Ba == 1``: the solves are then matrix-vector products with
        operators built once per grid point, :func:`_operators`).
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
    if shared and L == 2:
        return _box_lsq_cost2(A, b, lo, hi, cost)
    theta = np.empty((L, B, G), np.float64)
    K = _operators(A[:, :, 0, :]) if shared else np.empty((0, 1, L, L), np.float64)
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
            if shared:
                _box_lsq_shared(Ae, be, lo, hi, K, g, held, val, bh, x)
            else:
                _box_lsq(Ae, be, lo, hi, held, val, Ah, bh, M, r, s, x)
            v = cost[c, g]
            for i in range(L):
                theta[i, c, g] = x[i]
                v = v - 2.0 * x[i] * be[i]
                for j in range(L):
                    v = v + x[i] * Ae[i, j] * x[j]
            cost[c, g] = v
    return theta


@_jit
def solve_batch(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``x`` with ``A[m] x[m] = b[m]`` for stacked ``A`` (M, n, n), ``b`` (M, n).

    Gaussian elimination with partial pivoting per system; a singular
    system gives non-finite entries (no exception).
    """
    M, n = b.shape
    x = np.empty((M, n), np.float64)
    U = np.empty((n, n), np.float64)
    r = np.empty(n, np.float64)
    for m in range(M):
        U[:, :] = A[m]
        r[:] = b[m]
        for c in range(n):
            p = c
            for i in range(c + 1, n):
                if abs(U[i, c]) > abs(U[p, c]):
                    p = i
            if p != c:
                for j in range(n):
                    U[c, j], U[p, j] = U[p, j], U[c, j]
                r[c], r[p] = r[p], r[c]
            for i in range(c + 1, n):
                f = U[i, c] / U[c, c]
                for j in range(c + 1, n):
                    U[i, j] -= f * U[c, j]
                r[i] -= f * r[c]
        for i in range(n - 1, -1, -1):
            acc = r[i]
            for j in range(i + 1, n):
                acc -= U[i, j] * x[m, j]
            x[m, i] = acc / U[i, i]
    return x
