"""``fit.weighting: poisson``: residual weights from a shot-noise variance model, and the refit."""

from __future__ import annotations

import numpy as np

from pyama_flow.fitting.params import _params
from pyama_flow.fitting.solver import _lm


def _poisson_weights(signal: np.ndarray, res: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Residual weights ``1 / sd`` from a shot-noise variance model, ``(m, N)``.

    Per cell, ``var = a + b * max(signal, 0)`` with ``a, b >= 0`` fitted by
    least squares to the squared residuals ``res^2`` of the valid points (one
    of the two set to 0 where the unconstrained solution is negative), floored
    at 1 % of its mean; the weights are normalised so that the mean of
    ``1 / var`` over the valid points is 1 (0 at invalid points).
    """
    mu = np.where(valid, np.maximum(signal, 0.0), 0.0)
    r2 = np.where(valid, res * res, 0.0)
    n = np.maximum(valid.sum(axis=1), 1).astype(np.float64)
    s_mu, s_mumu = mu.sum(axis=1), (mu * mu).sum(axis=1)
    s_r, s_mur = r2.sum(axis=1), (mu * r2).sum(axis=1)
    det = n * s_mumu - s_mu * s_mu
    with np.errstate(all="ignore"):
        a = np.where(det > 0, (s_mumu * s_r - s_mu * s_mur) / det, s_r / n)
        b = np.where(det > 0, (n * s_mur - s_mu * s_r) / det, 0.0)
        b_only = np.where(s_mumu > 0, s_mur / s_mumu, 0.0)
    neg_a, neg_b = a < 0, b < 0
    a, b = np.where(neg_a, 0.0, np.where(neg_b, s_r / n, a)), np.where(neg_a, b_only, np.where(neg_b, 0.0, b))
    var = a[:, None] + b[:, None] * mu
    mean_var = np.sum(np.where(valid, var, 0.0), axis=1) / n
    var = np.maximum(var, 0.01 * mean_var[:, None])
    with np.errstate(all="ignore"):
        inv = np.where(valid & (var > 0), 1.0 / var, 0.0)
        inv = inv / (inv.sum(axis=1) / n)[:, None]
    return np.sqrt(np.where(np.isfinite(inv), inv, 0.0)) * valid


def _poisson_refit(mod, spec, free, T, Y, W, P, cost, conv, max_iter, ftol):
    """Refit every cell from its unweighted optimum with :func:`_poisson_weights`.

    Returns ``(W, P, cost, converged)`` of the weighted fit (cells whose
    weights cannot be formed keep unit weights).
    """
    valid = W > 0
    with np.errstate(all="ignore"):
        f = np.broadcast_to(mod.evaluate(T, _params(spec, free, P)), Y.shape)
    names = [s.name for s in spec]
    if "offset" in free:
        off = P[:, list(free).index("offset")][:, None]
    else:
        off = spec[names.index("offset")].value if "offset" in names else 0.0
    Wn = _poisson_weights(f - off, np.where(valid, f - Y, 0.0), valid)
    bad = ~np.all(np.isfinite(Wn), axis=1) | ~np.isfinite(cost)
    Wn[bad] = W[bad]
    P2, c2, v2, _, _ = _lm(mod, spec, free, T, Y, Wn, P, max_iter, ftol, fallback="held")
    return Wn, P2, c2, v2
