"""Many small linear systems at once (one per cell or start), always finite."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: the smallest positive double (floors of costs and scales)
_TINY = np.finfo(np.float64).tiny


def _solve_small(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve stacked small systems ``A x = b`` (``(..., n, n)``, ``(..., n)``)."""
    n = b.shape[-1]
    if n == 1:
        return b / A[..., 0, :]
    if n == 2:
        det = A[..., 0, 0] * A[..., 1, 1] - A[..., 0, 1] * A[..., 1, 0]
        x0 = (A[..., 1, 1] * b[..., 0] - A[..., 0, 1] * b[..., 1]) / det
        x1 = (A[..., 0, 0] * b[..., 1] - A[..., 1, 0] * b[..., 0]) / det
        return np.stack([x0, x1], axis=-1)
    from pyama_flow.fitting.kernels import solve_batch

    shape = b.shape
    A = np.ascontiguousarray(np.broadcast_to(A, shape[:-1] + (n, n)), dtype=np.float64).reshape(-1, n, n)
    return solve_batch(A, np.ascontiguousarray(b, dtype=np.float64).reshape(-1, n)).reshape(shape)


def _scaled_solve(A: np.ndarray, b: np.ndarray, ridge: float = 1e-12) -> np.ndarray:
    """``A x = b`` for stacked SPD-ish ``A``: Jacobi scaling plus a tiny ridge.

    Zero rows/columns give 0; the result is always finite.
    """
    n = b.shape[-1]
    dg = np.diagonal(A, axis1=-2, axis2=-1)
    s = np.sqrt(np.where(dg > 0, dg, 1.0))
    As = A / (s[..., :, None] * s[..., None, :]) + ridge * np.eye(n)
    with np.errstate(all="ignore"):
        x = _solve_small(As, b / s) / s
    return np.where(np.isfinite(x), x, 0.0)


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
    A: list[list[np.ndarray]], b: list[np.ndarray], lo: Sequence[float], hi: Sequence[float]
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
