"""Many small linear systems at once (one per cell or start), always finite."""

from __future__ import annotations

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
