"""Per-cell kinetic fits (SPEC step 6): bounded least squares, batched over cells (:func:`fit_batch`).

The fitter knows nothing about particular models: it talks to a model module
through ``PARAMS``, ``DEFAULTS``, ``evaluate``, ``jacobian`` and the optional
hints ``evaluate_jacobian``, ``LINEAR``, ``GRID``, ``GRID_STARTS`` and
``ONSET`` (see :mod:`pyama_flow.fitting.models`).

Algorithm (per cell; all cells of a batch at once in numpy)
-----------------------------------------------------------
1. Points with a non-finite value or time are dropped (weight 0). Fewer
   points than free parameters -> ``success = False``.
2. Starts. (a) The configured values (the SPEC defaults unless overridden):
   exactly what a single-start fitter uses. (b) Data-driven starts: a grid
   over the free parameters in which the model is nonlinear (log-spaced for
   positive ranges spanning > 20x, else linear), and at every grid point the
   best values of the free parameters in which it is affine (``LINEAR``:
   amplitude such as ``ktl``, and ``offset``) by box-constrained linear least
   squares -- i.e. the onset from the first rise, the baseline and the
   amplitude read off the data. The ``GRID_STARTS`` lowest local minima of
   this grid cost are the starts.
3. From every start, projected Levenberg-Marquardt with the analytic
   Jacobian (Marquardt scaling ``diag(J^T J)``, Nielsen damping; variables
   at a bound whose gradient points outwards are held; steps clipped to the
   box), first to a coarse tolerance (starts that reach a better start's
   converged optimum are stopped), then the best start per distinct optimum
   is polished to ``ftol``. After repeated rejections it also tries steps
   with one variable held (kinks) and Newton steps with a finite-difference
   Hessian (large residuals). Solutions with a singular ``J^T J`` (e.g.
   ``delta == beta`` in a model symmetric in them) are restarted from both
   sides of the null direction; for models with an ``ONSET`` kink the
   neighbouring sample intervals are visited.
4. Per cell the lowest SS_res wins (ties: the configured start). In tests and
   the benchmark the result is never worse than scipy's ``least_squares``
   from the defaults (R^2 within 1e-9).

Step 2 is :mod:`~pyama_flow.fitting.starts`, step 3
:mod:`~pyama_flow.fitting.solver` and :mod:`~pyama_flow.fitting.restarts`
(``fit.weighting: poisson`` then refits: :mod:`~pyama_flow.fitting.weighting`);
the standard errors and the status are :mod:`~pyama_flow.fitting.status`'s.

Outputs (per cell)
------------------
``success`` (enough points, finite, converged), ``r_squared = clip(1 -
SS_res / SS_tot, 0, 1)`` (0 when ``SS_tot == 0``), every parameter (fixed
ones too), ``{p}_se`` the standard error ``sqrt(diag((J^T J)^-1) * SS_res /
(n - k))`` of every free parameter at the optimum (NaN for fixed ones, for
``n <= k`` and for a singular ``J^T J``), ``residual_std = sqrt(SS_res / (n -
k))``, and with the Gaussian maximum-likelihood ``sigma^2 = SS_res / n`` and
``k + 1`` estimated quantities (the k free parameters and sigma)::

    log L = -n/2 * (ln(2 pi sigma^2) + 1)
    aic   = 2 (k + 1) - 2 log L
    bic   = (k + 1) ln(n) - 2 log L

(``SS_res`` is floored at the smallest positive double so both stay finite),
``n_points`` = n. A failed cell has NaN for every fitted number.
"""

from __future__ import annotations

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from pyama_flow.fitting.linalg import _TINY
from pyama_flow.fitting.models import get_model
from pyama_flow.fitting.params import ParamSpec, _check_spec
from pyama_flow.fitting.restarts import _escape_saddles, _hop_onset
from pyama_flow.fitting.solver import _MERGE, _lm
from pyama_flow.fitting.starts import _common_grid, _grid_start
from pyama_flow.fitting.status import StatusRule, _diagnostics, classify_fits
from pyama_flow.fitting.weighting import _poisson_refit


def fit_batch(
    t_hours: np.ndarray,
    Y: np.ndarray,
    model: str | ModuleType,
    spec: Sequence[ParamSpec] | Mapping | None = None,
    *,
    multistart: bool = True,
    grid_points: int = 256,
    max_iter: int = 200,
    ftol: float = 1e-10,
    coarse_ftol: float = 1e-6,
    grid_starts: int | None = None,
    weighting: str = "none",
    status: StatusRule | Mapping | None = None,
) -> dict[str, np.ndarray]:
    """Fit many cells at once.

    Parameters
    ----------
    t_hours : (N,) or (B, N) array
        Times in hours, shared by all cells or one row per cell.
    Y : (B, N) array
        One row per cell; NaN where a cell has no value.
    model : str or module
    spec : resolved parameters (:func:`resolve_params`), an overrides mapping, or None (defaults)
    multistart : bool
        Add the grid start to the configured start (False: single start).
    grid_points : int
        Size of the initial grid over the nonlinear free parameters (a model's
        ``GRID`` hints take precedence for their parameters).
    grid_starts : int, optional
        Number of grid starts: the lowest local minima of the grid cost
        (default: the model's ``GRID_STARTS``, else 1).
    max_iter : int
        Levenberg-Marquardt iterations per start and phase.
    ftol : float
        Final tolerance: stop when the cost can drop by at most this fraction.
    coarse_ftol : float
        Tolerance of the first phase, after which only the starts that can
        still win (cost within ``10 * coarse_ftol`` of the best, at a distinct
        optimum) are polished to ``ftol``.

    weighting : {"none", "poisson"}
        ``"poisson"``: after the unweighted fit, each cell's noise variance is
        modelled as ``a + b * max(signal, 0)`` (shot noise on top of a
        constant floor; ``signal`` = fitted curve minus offset, ``a, b >= 0``
        by least squares on the squared residuals) and the cell is refitted
        with weights ``1 / variance`` (normalised to mean 1), see
        :func:`_poisson_weights`. ``r_squared`` stays the SPEC's unweighted
        one; SEs, ``residual_std``, AIC and BIC are those of the weighted fit.
    status : StatusRule or mapping, optional
        Thresholds of the per-cell status (:func:`classify_fits`).

    Returns
    -------
    dict of arrays: ``success`` (B,), ``r_squared``, ``params`` (B, P) and
    ``se`` (B, P) in ``PARAMS`` order, ``residual_std``, ``aic``, ``bic``,
    ``n_points``, ``ss_res``, ``start`` (0 = configured, 1... = grid starts),
    ``at_lower``, ``at_upper`` (B, P) bool (free parameters at a bound),
    ``bound_chi2`` (B, P), ``signal_p`` (B,) and ``status`` (B,) object
    (:data:`STATUSES`).
    """
    if weighting not in ("none", "poisson"):
        raise ValueError(f"weighting must be 'none' or 'poisson', not {weighting!r}")
    rule = StatusRule.from_config(status)
    mod = get_model(model)
    spec = _check_spec(mod, spec)
    T, Y, W, n = _batch_data(t_hours, Y)
    free = [s.name for s in spec if not s.fixed]
    out = _empty_outputs(Y.shape[0], len(spec))
    idx = np.flatnonzero(n >= max(len(free), 1))
    if idx.size:
        opts = _Options(multistart, grid_points, grid_starts, max_iter, ftol, coarse_ftol)
        _fit_cells(mod, spec, free, T[idx], Y[idx], W[idx], n[idx], opts, weighting, out, idx)
    return _outputs(out, n, len(free), spec, rule)


@dataclass(frozen=True)
class _Options:
    """The solver options of :func:`fit_batch`."""

    multistart: bool
    grid_points: int
    grid_starts: int | None
    max_iter: int
    ftol: float
    coarse_ftol: float


def _batch_data(t_hours, Y) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(T, Y, W, n)``: times and values ``(B, N)`` with 0 at invalid points, the validity as weights, points per cell."""
    Y = np.atleast_2d(np.asarray(Y, dtype=np.float64))
    B, N = Y.shape
    t = np.asarray(t_hours, dtype=np.float64)
    if t.ndim == 1:
        t = t[None, :]
    if t.shape[-1] != N or t.shape[0] not in (1, B):
        raise ValueError(f"t_hours of shape {np.shape(t_hours)} does not match Y of shape {Y.shape}")
    T = np.broadcast_to(t, (B, N))
    valid = np.isfinite(Y) & np.isfinite(T)
    W = valid.astype(np.float64)
    return np.where(valid, T, 0.0), np.where(valid, Y, 0.0), W, valid.sum(axis=1).astype(np.int64)


def _empty_outputs(B: int, P: int) -> dict[str, np.ndarray]:
    """The per-cell outputs of :func:`fit_batch` for ``B`` cells not fitted (yet), ``P`` parameters."""
    return {
        "success": np.zeros(B, dtype=bool),
        "r_squared": np.full(B, np.nan),
        "params": np.full((B, P), np.nan),
        "se": np.full((B, P), np.nan),
        "ss_res": np.full(B, np.nan),
        "start": np.full(B, -1, dtype=np.int64),
        "at_lower": np.zeros((B, P), dtype=bool),
        "at_upper": np.zeros((B, P), dtype=bool),
        "bound_chi2": np.zeros((B, P)),
        "signal_p": np.ones(B),
    }


def _fit_cells(mod, spec, free, Tc, Yc, Wc, n, opts: _Options, weighting: str, out: dict, idx: np.ndarray) -> None:
    """Fit the cells ``idx`` (enough points; their data ``Tc, Yc, Wc``, ``n`` points) into ``out``."""
    names = [s.name for s in spec]
    k, m = len(free), idx.size
    Pb, cb, convb, best = _solve(mod, spec, free, Tc, Yc, Wc, opts)
    valid_c = Wc > 0
    if weighting == "poisson" and k:
        Wc, Pb, cb, convb = _poisson_refit(mod, spec, free, Tc, Yc, Wc, Pb, cb, convb, opts.max_iter, opts.ftol)
    fin = np.isfinite(cb) & np.all(np.isfinite(Pb), axis=1)
    out["success"][idx] = fin & convb
    out["start"][idx] = best
    full = np.tile(np.array([s.value for s in spec], dtype=np.float64), (m, 1))
    for j, p in enumerate(free):
        full[:, names.index(p)] = Pb[:, j]
    out["params"][idx] = full
    out["ss_res"][idx] = cb
    out["r_squared"][idx], out["signal_p"][idx], diag = _diagnostics(
        mod, spec, free, Tc, Yc, Wc, valid_c, Pb, cb, n, weighting
    )
    for j, p in enumerate(free):
        col = names.index(p)
        out["se"][idx, col] = diag["se"][:, j]
        out["at_lower"][idx, col], out["at_upper"][idx, col] = diag["lo"][:, j], diag["hi"][:, j]
        out["bound_chi2"][idx, col] = diag["chi2"][:, j]
    failed = idx[~fin]
    for key in ("params", "se", "r_squared", "ss_res"):
        out[key][failed] = np.nan


def _solve(mod, spec, free, Tc, Yc, Wc, opts: _Options) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Steps 2-4 of the algorithm: ``(P, cost, converged, start)`` per cell, the best over the starts."""
    m, k = Tc.shape[0], len(free)
    p_def = np.array([s.value for s in spec if not s.fixed], dtype=np.float64)
    starts = [np.broadcast_to(p_def, (m, k))]
    if opts.multistart and k:
        tg, Yg, Wg = _common_grid(Tc, Yc, Wc)
        n_grid = opts.grid_starts if opts.grid_starts is not None else int(getattr(mod, "GRID_STARTS", 1))
        starts.extend(_grid_start(mod, spec, free, tg, Yg, Wg, opts.grid_points, max(1, n_grid)))
    S = len(starts)
    P0 = np.concatenate(starts, axis=0)
    if S == 1:
        P, cost, conv, A, _ = _lm(mod, spec, free, Tc, Yc, Wc, P0, opts.max_iter, opts.ftol)
    else:
        P, cost, conv, A = _multistart_lm(mod, spec, free, Tc, Yc, Wc, P0, S, opts)
    cost_s = np.where(np.isfinite(cost), cost, np.inf).reshape(S, m)
    best = np.argmin(cost_s, axis=0)  # first minimum: the configured start wins ties
    pick = best * m + np.arange(m)
    Pb, cb, convb, Ab = P[pick], cost[pick], conv[pick], A[pick]
    if opts.multistart and k:
        Pb, cb, convb = _escape_saddles(mod, spec, free, Tc, Yc, Wc, Pb, cb, convb, Ab, opts.max_iter, opts.ftol)
        Pb, cb, convb = _hop_onset(mod, spec, free, Tc, Yc, Wc, Pb, cb, convb, opts.max_iter, opts.ftol)
    return Pb, cb, convb, best


def _multistart_lm(mod, spec, free, Tc, Yc, Wc, P0, S: int, opts: _Options):
    """``S`` starts per cell (``P0``, start-major): all to the coarse tolerance, the contenders polished.

    Returns ``(P, cost, converged, JtJ)`` of every start; the cost of a start
    that was not polished is ``inf``.
    """
    m = Tc.shape[0]
    rows = np.tile(np.arange(m), S)
    coarse = max(opts.ftol, opts.coarse_ftol)
    P, cost, conv, A, g = _lm(
        mod,
        spec,
        free,
        Tc[rows],
        Yc[rows],
        Wc[rows],
        P0,
        opts.max_iter,
        coarse,
        group=rows,
        fallback="held" if getattr(mod, "ONSET", None) in free else "none",
    )
    polish = _contenders(P, cost, A, S, coarse)
    sel = np.flatnonzero(polish.ravel())
    if sel.size:
        Pp, cp, vp, Ap, _ = _lm(
            mod,
            spec,
            free,
            Tc[rows[sel]],
            Yc[rows[sel]],
            Wc[rows[sel]],
            P[sel],
            opts.max_iter,
            opts.ftol,
            init=(cost[sel], A[sel], g[sel]),
        )
        P[sel], cost[sel], conv[sel], A[sel] = Pp, cp, vp, Ap
    cost = np.where(polish.ravel(), cost, np.inf)
    return P, cost, conv, A


def _contenders(P: np.ndarray, cost: np.ndarray, A: np.ndarray, S: int, coarse: float) -> np.ndarray:
    """The starts worth polishing, ``(S, m)`` bool.

    Only the starts that can still win: within the coarse tolerance of the
    best cost and not the same optimum as the best (squared distance in the
    ``J^T J`` metric below ``_MERGE * cost``); the best always.
    """
    m, k = P.shape[0] // S, P.shape[1]
    cs = np.where(np.isfinite(cost), cost, np.inf).reshape(S, m)
    lead = np.argmin(cs, axis=0)
    c_lead = cs[lead, np.arange(m)]
    dP = P.reshape(S, m, k) - P.reshape(S, m, k)[lead, np.arange(m)]
    A_lead = A.reshape(S, m, k, k)[lead, np.arange(m)]
    dist = np.einsum("smi,mij,smj->sm", dP, A_lead, dP)
    is_lead = np.arange(S)[:, None] == lead
    polish = is_lead | ((cs <= c_lead * (1.0 + 10.0 * coarse) + _TINY) & ~(dist <= _MERGE * c_lead))
    polish &= np.isfinite(cs)
    return polish


def _outputs(out: dict, n: np.ndarray, k: int, spec, rule: StatusRule) -> dict[str, np.ndarray]:
    """The result of :func:`fit_batch`: ``out`` with the residual SD, AIC, BIC, point counts and status."""
    ss_res = out["ss_res"]
    dof = n - k
    with np.errstate(all="ignore"):
        residual_std = np.where(dof > 0, np.sqrt(ss_res / np.where(dof > 0, dof, 1)), np.nan)
        nn = np.where(n > 0, n, np.nan)
        loglik = -0.5 * nn * (np.log(2.0 * np.pi * np.maximum(ss_res, _TINY) / nn) + 1.0)
        aic = 2.0 * (k + 1) - 2.0 * loglik
        bic = (k + 1) * np.log(nn) - 2.0 * loglik
    keys = ("success", "r_squared", "params", "se", "at_lower", "at_upper", "bound_chi2", "signal_p")
    status = classify_fits(*(out[key] for key in keys), spec, rule)
    return {
        "success": out["success"],
        "r_squared": out["r_squared"],
        "params": out["params"],
        "se": out["se"],
        "residual_std": residual_std,
        "aic": aic,
        "bic": bic,
        "n_points": n,
        "ss_res": ss_res,
        "start": out["start"],
        "at_lower": out["at_lower"],
        "at_upper": out["at_upper"],
        "bound_chi2": out["bound_chi2"],
        "signal_p": out["signal_p"],
        "status": status,
    }


def fit_cell(
    t_hours: np.ndarray,
    y: np.ndarray,
    model: str | ModuleType,
    spec: Sequence[ParamSpec] | Mapping | None = None,
    **options: object,
) -> dict[str, object]:
    """Fit one cell.

    Parameters
    ----------
    t_hours, y : (N,) arrays
        Times (hours) and values; NaNs are dropped.
    model : str or module
    spec : resolved parameters, an overrides mapping, or None (defaults)
    **options
        Passed to :func:`fit_batch` (``multistart``, ``grid_points``, ...).

    Returns
    -------
    dict with ``success, r_squared``, every parameter, ``{p}_se`` for every
    parameter, ``residual_std, aic, bic, n_points``.
    """
    mod = get_model(model)
    spec = _check_spec(mod, spec)
    res = fit_batch(t_hours, np.asarray(y, dtype=np.float64)[None, :], mod, spec, **options)
    return _records(mod, res)[0]


def _records(model: ModuleType, res: Mapping[str, np.ndarray]) -> list[dict[str, object]]:
    names = list(model.PARAMS)
    out = []
    for i in range(res["success"].shape[0]):
        row: dict[str, object] = {"success": bool(res["success"][i]), "r_squared": float(res["r_squared"][i])}
        for j, p in enumerate(names):
            row[p] = float(res["params"][i, j])
        for j, p in enumerate(names):
            row[f"{p}_se"] = float(res["se"][i, j])
        row["residual_std"] = float(res["residual_std"][i])
        row["aic"] = float(res["aic"][i])
        row["bic"] = float(res["bic"][i])
        row["n_points"] = int(res["n_points"][i])
        out.append(row)
    return out


__all__ = ["fit_batch", "fit_cell"]
