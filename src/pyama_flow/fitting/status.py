"""Standard errors, parameters at a bound, and the per-cell fit status.

:func:`_diagnostics` computes, at the optimum, R^2, the signal test, the
standard errors and which bounds bind; :func:`classify_fits` turns them into
one of :data:`STATUSES` per cell (thresholds: :class:`StatusRule`).
:func:`cramer_rao_se` is the Cramér-Rao bound of a design.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from pyama_flow.fitting.linalg import _TINY
from pyama_flow.fitting.models import get_model
from pyama_flow.fitting.params import ParamSpec, _check_spec, _model_name, _params
from pyama_flow.fitting.solver import _value_jacobian


def _covariance_se(J: np.ndarray, cost: np.ndarray, dof: np.ndarray) -> np.ndarray:
    """``sqrt(diag((J^T J)^-1) * cost / dof)``; NaN where singular or dof <= 0."""
    A = J.transpose(0, 2, 1) @ J
    dg = np.diagonal(A, axis1=1, axis2=2)
    s = np.sqrt(np.where(dg > 0, dg, 1.0))
    As = A / (s[:, :, None] * s[:, None, :])
    w, V = np.linalg.eigh(As)
    good = (w[:, 0] > 1e-13 * np.maximum(w[:, -1], _TINY)) & np.all(dg > 0, axis=1)
    with np.errstate(all="ignore"):
        inv_diag = np.einsum("mij,mj,mij->mi", V, 1.0 / np.where(good[:, None], w, 1.0), V) / (s * s)
        var = inv_diag * (cost / np.where(dof > 0, dof, np.nan))[:, None]
        se = np.sqrt(var)
    se[~good] = np.nan
    return se


#: Fit statuses (see :func:`classify_fits` for the order in which they are decided).
STATUSES = ("failed", "not_identifiable", "at_bound", "poor_fit", "ok")


@dataclass(frozen=True)
class StatusRule:
    """Thresholds of :func:`classify_fits` (config ``fit.status``).

    Attributes
    ----------
    signal_p : float
        ``not_identifiable`` when the fitted curve does not explain the data
        better than a constant at this significance (F test of SS_tot against
        SS_res with ``k - 1`` and ``n - k`` degrees of freedom): a flat or
        pure-noise trace.
    rel_se_max : float
        ``not_identifiable`` when a free non-negative parameter (lower bound
        >= 0: rates, amplitudes) that is not at a bound has a standard error
        above this multiple of its value, or any free parameter has no finite
        standard error (singular ``J^T J``).
    bound_p : float
        ``at_bound`` when a free parameter sits at a bound that holds it
        back: the score (Lagrange multiplier) test of releasing that bound,
        ``chi2 = g_j^2 se_j^2 / s^4`` (``g = J^T r``, ``s^2 = SS_res / (n -
        k)``), exceeds the chi-square(1) quantile of ``1 - bound_p``. A
        parameter at a bound the data do not push against (releasing it would
        gain no more than noise) is listed in ``at_bound`` but the fit can
        still be ``ok``.
    r2_min : float
        ``poor_fit`` when ``r_squared`` is below this.
    """

    signal_p: float = 1e-3
    rel_se_max: float = 1.0
    bound_p: float = 0.01
    r2_min: float = 0.5

    @classmethod
    def from_config(cls, cfg: "Mapping[str, object] | StatusRule | None") -> "StatusRule":
        """From a mapping with any of the attribute names (other keys are ignored)."""
        if cfg is None:
            return cls()
        if isinstance(cfg, StatusRule):
            return cfg
        keys = ("signal_p", "rel_se_max", "bound_p", "r2_min")
        return cls(**{k: float(cfg[k]) for k in keys if k in cfg})


def _at_bounds(spec: Sequence[ParamSpec], free: Sequence[str], P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which free parameters sit at their lower / upper bound, ``(m, k)`` bool each.

    Within ``1e-6`` of the bound range (of its logarithm for a positive range
    spanning > 20x, as the grid is spaced); infinite bounds are never reached.
    """
    by_name = {s.name: s for s in spec}
    lo = np.zeros(P.shape, dtype=bool)
    hi = np.zeros(P.shape, dtype=bool)
    for j, name in enumerate(free):
        s, v = by_name[name], P[:, j]
        with np.errstate(all="ignore"):
            if s.lb > 0 and s.ub / s.lb > 20.0 and np.isfinite(s.ub):
                tol = 1e-6 * np.log(s.ub / s.lb)
                lv = np.log(np.maximum(v, _TINY))
                lo[:, j] = lv - np.log(s.lb) <= tol
                hi[:, j] = np.log(s.ub) - lv <= tol
            else:
                tol = 1e-6 * (s.ub - s.lb) if np.isfinite(s.ub - s.lb) else 0.0
                lo[:, j] = np.isfinite(s.lb) & (v - s.lb <= tol)
                hi[:, j] = np.isfinite(s.ub) & (s.ub - v <= tol)
    return lo, hi


def _bound_chi2(
    J: np.ndarray, res: np.ndarray, se: np.ndarray, cost: np.ndarray, dof: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """Score test statistic of releasing each bound a parameter sits at, ``(m, k)``.

    ``g = J^T r`` (``r`` = model - data, weighted) is half the gradient of the
    cost; at the optimum it vanishes for free interior parameters. Releasing
    a parameter held at a bound (the others re-fitted) lowers the cost by
    ``g_j^2 (J^T J)^-1_jj = g_j^2 se_j^2 / s^2`` to second order, which in
    units of ``s^2 = cost / dof`` is ``chi2 = g_j^2 se_j^2 / s^4``
    (chi-square(1) under the hypothesis that the bound does not bind). 0
    where the gradient points into the box or the parameter is not at a
    bound; NaN where ``se`` is not finite.
    """
    g = np.einsum("mnk,mn->mk", J, res)
    with np.errstate(all="ignore"):
        s2 = cost / np.where(dof > 0, dof, np.nan)
        chi2 = (g * se) ** 2 / (s2 * s2)[:, None]
    pushing = (lo & (g > 0)) | (hi & (g < 0))
    return np.where(pushing, chi2, 0.0)


def _signal_p(ss_tot: np.ndarray, ss_res: np.ndarray, n: np.ndarray, k: int) -> np.ndarray:
    """p-value of the F test "the curve explains no more than a constant" (1 where undefined)."""
    from scipy.special import fdtrc

    df1 = max(k - 1, 1)
    df2 = n - k
    with np.errstate(all="ignore"):
        F = ((ss_tot - ss_res) / df1) / (ss_res / np.where(df2 > 0, df2, np.nan))
        F = np.where(ss_res > 0, F, np.where(ss_tot > 0, np.inf, 0.0))
        p = fdtrc(df1, np.where(df2 > 0, df2, 1), np.where(np.isnan(F), 0.0, np.maximum(F, 0.0)))
    return np.where((df2 > 0) & np.isfinite(p), p, 1.0)


def classify_fits(
    success: np.ndarray,
    r_squared: np.ndarray,
    params: np.ndarray,
    se: np.ndarray,
    at_lower: np.ndarray,
    at_upper: np.ndarray,
    bound_chi2: np.ndarray,
    signal_p: np.ndarray,
    spec: Sequence[ParamSpec],
    rule: StatusRule | None = None,
) -> np.ndarray:
    """One status per cell, the first of these that applies.

    1. ``failed``: ``success`` false;
    2. ``not_identifiable``: no significant signal (``signal_p``);
    3. ``at_bound``: a bound that binds (see :class:`StatusRule`); it comes
       before the standard-error checks, as the SEs of a fit held back by a
       bound describe a wrong optimum;
    4. ``not_identifiable``: a free parameter without a finite SE, or a free
       non-negative parameter off its bounds with SE > ``rel_se_max`` x its
       value;
    5. ``poor_fit``: R^2 < ``r2_min``;
    6. ``ok``.
 Arrays are ``(B,)`` or ``(B, P)`` in
    ``PARAMS`` order (fixed parameters are ignored).
    """
    rule = rule or StatusRule()
    from scipy.special import chdtri

    free = np.array([not s.fixed for s in spec], dtype=bool)
    nonneg = np.array([s.lb >= 0 for s in spec], dtype=bool) & free
    at = (at_lower | at_upper) & free
    with np.errstate(all="ignore"):
        rel = np.abs(se) / np.abs(params)
    no_se = np.any(free & ~np.isfinite(se), axis=1)
    vague = np.any(nonneg & ~at & ~(rel <= rule.rel_se_max), axis=1)
    binding = np.any(free & (bound_chi2 > chdtri(1, rule.bound_p)), axis=1)
    status = np.full(success.shape, "ok", dtype=object)
    status[r_squared < rule.r2_min] = "poor_fit"
    status[no_se | vague] = "not_identifiable"
    status[binding] = "at_bound"  # the SEs of a fit held back by a bound mean little
    status[signal_p > rule.signal_p] = "not_identifiable"
    status[~success] = "failed"
    return status


def cramer_rao_se(
    t_hours: np.ndarray,
    params: Mapping[str, object] | np.ndarray,
    model: str | ModuleType,
    spec: Sequence[ParamSpec] | Mapping | None = None,
    sigma: float | np.ndarray = 1.0,
) -> np.ndarray:
    """Cramér-Rao bound on the standard error of every free parameter.

    For Gaussian noise of known standard deviation ``sigma`` the covariance
    of any unbiased estimator is at least ``sigma^2 (J^T J)^-1``, with ``J``
    the model's Jacobian (free parameters) at the *true* parameters; the
    result is ``sqrt(diag(sigma^2 (J^T J)^-1))``. It tells how precisely a
    design (time points, noise, parameter values, which parameters are free)
    can determine the parameters at all: a fitter whose errors match it
    cannot be beaten by any unbiased method on that design. (For a model
    affine in its free parameters, least squares attains it exactly.)

    Parameters
    ----------
    t_hours : (N,) or (B, N) array
        Times in hours; NaN times are dropped, per cell.
    params : mapping or (B, P) array
        True parameters: ``{name: scalar or (B,) array}`` (missing ones take
        the spec's value) or an array in ``PARAMS`` order (as ``fit_batch``'s
        ``params``).
    model : str or module
    spec : resolved parameters, an overrides mapping, or None (defaults)
        Decides which parameters are free.
    sigma : float or (B,) array
        Noise standard deviation per cell.

    Returns
    -------
    (B, P) array in ``PARAMS`` order; NaN for fixed parameters and where
    ``J^T J`` is singular (parameters not identifiable).
    """
    mod = get_model(model)
    spec = _check_spec(mod, spec)
    names = [s.name for s in spec]
    free = [s.name for s in spec if not s.fixed]
    t = np.atleast_2d(np.asarray(t_hours, dtype=np.float64))
    if isinstance(params, Mapping):
        unknown = [p for p in params if p not in names]
        if unknown:
            raise ValueError(f"model {_model_name(mod)!r}: unknown parameter {unknown[0]!r}")
        cols = {s.name: np.atleast_1d(np.asarray(params.get(s.name, s.value), dtype=np.float64)) for s in spec}
    else:
        arr = np.atleast_2d(np.asarray(params, dtype=np.float64))
        if arr.shape[1] != len(names):
            raise ValueError(f"params of shape {arr.shape} do not match PARAMS {tuple(names)}")
        cols = {p: arr[:, j] for j, p in enumerate(names)}
    sig = np.atleast_1d(np.asarray(sigma, dtype=np.float64))
    B = int(np.broadcast_shapes(t.shape[:1], sig.shape, *(c.shape for c in cols.values()))[0])
    T = np.broadcast_to(t, (B, t.shape[1]))
    valid = np.isfinite(T)
    out = np.full((B, len(names)), np.nan)
    if not free:
        return out
    p = {name: np.broadcast_to(c, (B,))[:, None] for name, c in cols.items()}
    with np.errstate(all="ignore"):
        J = np.broadcast_to(mod.jacobian(np.where(valid, T, 0.0), p, free), (B, T.shape[1], len(free)))
    J = np.where(valid[:, :, None] & np.isfinite(J), J, 0.0)
    var = np.broadcast_to(sig, (B,)) ** 2
    se = _covariance_se(J, var, np.ones(B))
    for j, name in enumerate(free):
        out[:, names.index(name)] = se[:, j]
    return out


def _diagnostics(mod, spec, free, T, Y, W, valid, P, cost, n, weighting):
    """R^2, the signal test, SEs and the bound diagnostics of fitted cells.

    ``W`` are the fit's residual weights (the validity mask unless
    ``weighting`` is ``"poisson"``), ``cost`` the weighted SS_res. Returns
    ``(r2, signal_p, {"se", "lo", "hi", "chi2"})``, the last ``(m, k)`` in
    ``free`` order. R^2 is the SPEC's, unweighted, whatever the weights.
    """
    m, N = Y.shape
    k = len(free)
    with np.errstate(all="ignore"):
        f, J = _value_jacobian(mod, T, _params(spec, free, P), free)
        f = np.broadcast_to(f, (m, N))
    res = np.where(valid, f - Y, 0.0)
    mean = np.sum(np.where(valid, Y, 0.0), axis=1) / n
    ss_tot = np.sum(np.where(valid, Y - mean[:, None], 0.0) ** 2, axis=1)
    ss_plain = cost if weighting == "none" else np.sum(res * res, axis=1)
    with np.errstate(all="ignore"):
        r2 = np.where(ss_tot > 0, np.clip(1.0 - ss_plain / ss_tot, 0.0, 1.0), 0.0)
    if weighting == "none":
        signal_p = _signal_p(ss_tot, cost, n, k)
    else:  # the same test on the weighted sums of squares
        with np.errstate(all="ignore"):
            wmean = np.sum(W * W * Y, axis=1) / np.sum(W * W, axis=1)
        signal_p = _signal_p(np.sum((W * (Y - wmean[:, None])) ** 2, axis=1), cost, n, k)
    diag = {key: np.zeros((m, k), dtype=bool) for key in ("lo", "hi")}
    diag["se"], diag["chi2"] = np.full((m, k), np.nan), np.zeros((m, k))
    if k:
        J = np.broadcast_to(J, (m, N, k)) * W[:, :, None]
        J = np.where(np.isfinite(J), J, 0.0)
        diag["se"] = _covariance_se(J, cost, n - k)
        diag["lo"], diag["hi"] = _at_bounds(spec, free, P)
        diag["chi2"] = _bound_chi2(J, res * W, diag["se"], cost, n - k, diag["lo"], diag["hi"])
    return r2, signal_p, diag


__all__ = ["STATUSES", "StatusRule", "classify_fits", "cramer_rao_se"]
