"""Per-cell kinetic fits (SPEC step 6): bounded least squares, batched over cells.

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

import os
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import pandas as pd

from pyama_flow.fitting.models import get_model, list_models

#: cells per batch in :func:`fit_traces` (larger batches amortise numpy's
#: per-call overhead); the batches do not depend on ``n_jobs``, which is why
#: the results are identical for any ``n_jobs``.
CHUNK_SIZE = 1024
#: CSV float format of :func:`write_fits`.
FLOAT_FORMAT = "%.9g"
#: Columns of a fit table before the parameters and after their standard errors:
#: ``fov, cell, model, success, r_squared, <params>, <params>_se, residual_std, aic, bic, n_points``.
ID_COLUMNS = ("fov", "cell", "model", "success", "r_squared")
STAT_COLUMNS = ("residual_std", "aic", "bic", "n_points")
#: Last columns of a fit table (after ``best_model`` when there is one): the
#: per-cell status (:data:`STATUSES`) and the free parameters at a bound,
#: ``;``-separated.
STATUS_COLUMNS = ("status", "at_bound")
#: ``fit.t0_bounds``: the model's (reference) bounds, or an upper bound that follows the data
T0_BOUNDS = ("data", "reference")

_OVERRIDE_KEYS = ("value", "lb", "ub", "fixed")
#: Levenberg-Marquardt damping: initial value (relative to diag(J^T J)) and
#: the smallest factor it is multiplied by after a very good step.
_LAM0 = 1e-3
_LAM_DOWN = 1.0 / 3.0
#: stagnation window: stop when 10 iterations gained less than 10 * max(ftol, 1e-8)
_WINDOW = 10
#: two solutions closer than this fraction of the cost (squared distance in the
#: J^T J metric, i.e. change of the model curve) count as the same optimum: a
#: start this close to a better one is stopped, and is not polished
_MERGE = 1e-4
_TINY = np.finfo(np.float64).tiny


@dataclass(frozen=True)
class ParamSpec:
    """Resolved configuration of one parameter."""

    name: str
    value: float
    lb: float
    ub: float
    fixed: bool


def tune_malloc() -> bool:
    """Let glibc recycle large freed blocks instead of returning them to the OS.

    The batched fitter allocates many short-lived arrays of a few MB; by
    default glibc maps each from fresh (page-faulting) memory, which costs
    ~30 % of the fitting time on some machines. This raises the mmap and trim
    thresholds of the current process (``mallopt``); memory is reused, the
    results are unchanged. Process-wide, so the library never calls it: the
    workflow's fit script and the benchmark do. A no-op (returning False)
    where glibc's ``mallopt`` is unavailable.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 64 << 20) == 1 and libc.mallopt(m_trim_threshold, 512 << 20) == 1
    except (OSError, AttributeError, TypeError):
        ok = False
    _MALLOC_TUNED = bool(ok)
    return _MALLOC_TUNED


_MALLOC_TUNED = False


# ---------------------------------------------------------------------------
# parameter configuration
# ---------------------------------------------------------------------------


def _model_name(model: ModuleType) -> str:
    return str(getattr(model, "NAME", getattr(model, "__name__", "model")))


def resolve_params(model: str | ModuleType, overrides: Mapping[str, object] | None = None) -> tuple[ParamSpec, ...]:
    """The model's parameters in ``PARAMS`` order with user overrides applied.

    Parameters
    ----------
    model : str or module
        Registered model name (or a model module).
    overrides : mapping, optional
        ``{param: {"value": v, "lb": lo, "ub": hi, "fixed": bool}}``; every
        key is optional. A bare number means ``{"value": number}``.

    Returns
    -------
    tuple of ParamSpec

    Raises
    ------
    ValueError
        Unknown parameter or key, non-numeric or non-finite value, ``lb > ub``
        or value outside ``[lb, ub]``; one line naming model and parameter.
    """
    mod = get_model(model)
    name = _model_name(mod)
    overrides = dict(overrides or {})
    unknown = [p for p in overrides if p not in mod.PARAMS]
    if unknown:
        raise ValueError(f"model {name!r}: unknown parameter {unknown[0]!r} (parameters: {', '.join(mod.PARAMS)})")
    out = []
    for p in mod.PARAMS:
        d = mod.DEFAULTS[p]
        cfg = overrides.get(p, {})
        if cfg is None:
            cfg = {}
        if not isinstance(cfg, Mapping):
            cfg = {"value": cfg}
        bad = [k for k in cfg if k not in _OVERRIDE_KEYS]
        if bad:
            raise ValueError(
                f"model {name!r}, parameter {p!r}: unknown key {bad[0]!r} (use {', '.join(_OVERRIDE_KEYS)})"
            )
        try:
            value = float(cfg.get("value", d.value))
            lb = float(cfg.get("lb", d.lb))
            ub = float(cfg.get("ub", d.ub))
        except (TypeError, ValueError):
            raise ValueError(f"model {name!r}, parameter {p!r}: value and bounds must be numbers") from None
        fixed = cfg.get("fixed", d.fixed)
        if not isinstance(fixed, (bool, np.bool_)):
            raise ValueError(f"model {name!r}, parameter {p!r}: 'fixed' must be true or false")
        if not np.isfinite(value) or np.isnan(lb) or np.isnan(ub):
            raise ValueError(f"model {name!r}, parameter {p!r}: value must be finite and bounds not NaN")
        if lb > ub:
            raise ValueError(f"model {name!r}, parameter {p!r}: lower bound {lb:g} > upper bound {ub:g}")
        if not lb <= value <= ub:
            raise ValueError(f"model {name!r}, parameter {p!r}: value {value:g} outside bounds [{lb:g}, {ub:g}]")
        out.append(ParamSpec(p, value, lb, ub, bool(fixed)))
    return tuple(out)


def _check_spec(model: ModuleType, spec: Sequence[ParamSpec] | Mapping | None) -> tuple[ParamSpec, ...]:
    if spec is None:
        return resolve_params(model)
    if isinstance(spec, Mapping):
        return resolve_params(model, spec)
    spec = tuple(spec)
    if tuple(s.name for s in spec) != tuple(model.PARAMS):
        raise ValueError(f"model {_model_name(model)!r}: spec does not match PARAMS {model.PARAMS}")
    return spec


# ---------------------------------------------------------------------------
# numerics
# ---------------------------------------------------------------------------


def _params(spec: Sequence[ParamSpec], free: Sequence[str], P: np.ndarray) -> dict[str, object]:
    """Parameter dict with the free ones as ``(m, 1)`` columns of ``P``."""
    d: dict[str, object] = {s.name: s.value for s in spec}
    for j, name in enumerate(free):
        d[name] = P[:, j : j + 1]
    return d


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
    return np.linalg.solve(A, b[..., None])[..., 0]


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


def _grid_axis(s: ParamSpec, n: int) -> np.ndarray:
    if s.lb == s.ub:
        return np.array([s.lb])
    if s.lb > 0 and s.ub / s.lb > 20.0:
        return np.geomspace(s.lb, s.ub, n)
    return np.linspace(s.lb, s.ub, n)


def _grid_axes(model: ModuleType, spec: Sequence[ParamSpec], nl: Sequence[str], budget: int) -> list[np.ndarray]:
    """Grid values per nonlinear free parameter.

    A model may suggest the number of points per parameter (``GRID``); the
    others share ``budget`` evenly (2..128 points each).
    """
    by_name = {s.name: s for s in spec}
    hints = dict(getattr(model, "GRID", {}))
    fixed_size = int(np.prod([hints[p] for p in nl if p in hints])) if any(p in hints for p in nl) else 1
    rest = [p for p in nl if p not in hints]
    per_dim = 0
    if rest:
        per_dim = int(min(128, max(2, np.floor(max(budget / fixed_size, 1.0) ** (1.0 / len(rest)) + 1e-9))))
    return [_grid_axis(by_name[p], int(hints.get(p, per_dim))) for p in nl]


def _grid_start(
    model: ModuleType,
    spec: Sequence[ParamSpec],
    free: Sequence[str],
    t: np.ndarray,
    Y: np.ndarray,
    W: np.ndarray,
    budget: int,
    n_starts: int = 1,
) -> np.ndarray:
    """Starts from a grid over the nonlinear free parameters.

    At every grid point the free affine parameters (``LINEAR``) are solved by
    box-constrained linear least squares, which gives the grid cost. The
    ``n_starts`` lowest local minima of the grid cost (neighbours along each
    axis) are returned per cell, best first (repeating the best if there are
    fewer), as ``(n_starts, B, k)`` in ``free`` order.
    """
    by_name = {s.name: s for s in spec}
    linear = set(getattr(model, "LINEAR", ()))
    lin = [p for p in free if p in linear]
    nl = [p for p in free if p not in linear]
    if nl:
        axes = _grid_axes(model, spec, nl, budget)
        shape = tuple(a.size for a in axes)
        mesh = np.stack([m.ravel() for m in np.meshgrid(*axes, indexing="ij")], axis=-1)
    else:
        shape = (1,)
        mesh = np.zeros((1, 0))
    G, N, L, B = mesh.shape[0], t.size, len(lin), Y.shape[0]
    base: dict[str, object] = {s.name: s.value for s in spec}
    for j, p in enumerate(nl):
        base[p] = mesh[:, j : j + 1]
    for p in lin:
        base[p] = np.zeros((G, 1))
    with np.errstate(all="ignore"):
        if L:
            r0, Phi = _value_jacobian(model, t, base, lin)
            Phi = np.broadcast_to(Phi, (G, N, L))
            cols = [np.ascontiguousarray(np.where(np.isfinite(Phi[:, :, i]), Phi[:, :, i], 0.0).T) for i in range(L)]
        else:
            r0, cols = model.evaluate(t, base), []
        r0 = np.broadcast_to(r0, (G, N))
        r0 = np.ascontiguousarray(np.where(np.isfinite(r0), r0, 0.0).T)  # (N, G)
        has_r0 = bool(np.any(r0))
        if has_r0:
            r0sq = r0 * r0
            r0cols = [r0 * c for c in cols]
        prods = {(i, j): cols[i] * cols[j] for i in range(L) for j in range(i, L)}
    lo = [by_name[p].lb for p in lin]
    hi = [by_name[p].ub for p in lin]
    starts = np.empty((n_starts, B, len(free)))
    block = max(1, min(B, (1 << 21) // max(G, 1)))
    for c0 in range(0, B, block):
        Wb, Yb = W[c0 : c0 + block], Y[c0 : c0 + block]
        nb = Wb.shape[0]
        with np.errstate(all="ignore"):
            WY = Wb * Yb
            cost = np.sum(WY * Yb, axis=1)[:, None] + np.zeros((1, G))
            if has_r0:
                cost += W[c0 : c0 + block] @ r0sq - 2.0 * (WY @ r0)
            theta: list[np.ndarray] = []
            if L:
                b = [WY @ cols[i] - (Wb @ r0cols[i] if has_r0 else 0.0) for i in range(L)]
                A = [[None] * L for _ in range(L)]
                for (i, j), pp in prods.items():
                    A[i][j] = A[j][i] = Wb @ pp
                theta = _box_lsq_lists(A, b, lo, hi)
                for i in range(L):
                    cost -= 2.0 * theta[i] * b[i]
                    for j in range(L):
                        cost += theta[i] * A[i][j] * theta[j]
            cost = np.where(np.isfinite(cost), cost, np.inf)
        picks = _grid_minima(cost.reshape((nb,) + shape), n_starts)  # (n_starts, nb)
        rows = np.arange(nb)
        for s_i in range(n_starts):
            gi = picks[s_i]
            for j, p in enumerate(free):
                starts[s_i, c0 : c0 + nb, j] = theta[lin.index(p)][rows, gi] if p in linear else mesh[gi, nl.index(p)]
    return starts


def _grid_minima(cost: np.ndarray, n: int) -> np.ndarray:
    """Flat indices of the ``n`` lowest local minima per row of ``cost`` (B, *grid)."""
    B = cost.shape[0]
    flat = cost.reshape(B, -1)
    best = np.argmin(flat, axis=1)
    if n == 1:
        return best[None]
    local = np.ones(cost.shape, dtype=bool)
    for ax in range(1, cost.ndim):
        if cost.shape[ax] < 2:
            continue
        pad = [(0, 0)] * cost.ndim
        pad[ax] = (1, 1)
        padded = np.pad(cost, pad, constant_values=np.inf)
        lower = np.take(padded, np.arange(0, cost.shape[ax]), axis=ax)
        upper = np.take(padded, np.arange(2, cost.shape[ax] + 2), axis=ax)
        local &= (cost <= lower) & (cost <= upper)
    ranked = np.where(local.reshape(B, -1), flat, np.inf)
    order = np.argsort(ranked, axis=1, kind="stable")[:, :n]
    found = np.isfinite(np.take_along_axis(ranked, order, axis=1))
    order = np.where(found, order, best[:, None])
    order[:, 0] = best
    if order.shape[1] < n:  # fewer grid points than starts
        order = np.concatenate([order, np.repeat(best[:, None], n - order.shape[1], axis=1)], axis=1)
    return order.T


def _value_jacobian(model: ModuleType, t: np.ndarray, params: Mapping, names: Sequence[str]):
    fused = getattr(model, "evaluate_jacobian", None)
    if fused is not None:
        return fused(t, params, names)
    return model.evaluate(t, params), model.jacobian(t, params, names)


def _lm(
    model: ModuleType,
    spec: Sequence[ParamSpec],
    free: Sequence[str],
    t: np.ndarray,
    Y: np.ndarray,
    W: np.ndarray,
    P0: np.ndarray,
    max_iter: int,
    ftol: float,
    group: np.ndarray | None = None,
    init: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    fallback: str = "all",
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Projected Levenberg-Marquardt over a batch of problems (one per row of ``t``/``Y``).

    Every trial point is evaluated with its Jacobian (one shared pass), so an
    accepted step needs no further model call. Stops per problem when the
    Gauss-Newton decrement is <= ``ftol * cost``, when a lightly damped,
    well-predicted step gains < ``ftol``, when 10 iterations gained <
    ``10 * max(ftol, 1e-8)``, or when no step lowers the cost any more.

    ``group`` (optional) labels problems that fit the same data from different
    starts: a problem that comes within ``_MERGE * cost`` (squared distance
    in the ``J^T J`` metric) of its group's best problem, once that one has
    converged, is stopped: it has reached the same optimum.
    ``init = (cost, JtJ, Jtr)`` at ``P0`` (from an earlier call) saves the
    first evaluation. ``fallback`` selects the steps of :func:`_fallback_steps`
    tried after repeated rejections: ``"all"``, ``"held"`` (no Newton steps,
    used in the exploratory first phase so that each start stays near its
    own Levenberg-Marquardt path) or ``"none"``. ``bounds = (lb, ub)`` of
    shape ``(M, k)`` replaces the spec's bounds per problem (``lb == ub``
    holds a variable).

    Returns ``(P, cost, converged, JtJ, Jtr)``.
    """
    M, k = P0.shape
    N = Y.shape[1]
    T = np.broadcast_to(t, Y.shape)
    by_name = {s.name: s for s in spec}
    if bounds is None:
        LB = np.broadcast_to(np.array([by_name[p].lb for p in free]), (M, k))
        UB = np.broadcast_to(np.array([by_name[p].ub for p in free]), (M, k))
    else:
        LB, UB = (np.broadcast_to(np.asarray(b, dtype=np.float64), (M, k)) for b in bounds)
    P = np.clip(P0, LB, UB)
    eye = np.eye(k)

    unit = bool(np.all(W == 1.0))  # no missing points: skip the weighting
    everyone = np.arange(M)

    def take(a: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return a if rows.size == M and np.array_equal(rows, everyone) else a[rows]

    def evaluate(rows: np.ndarray, Pr: np.ndarray):
        """Costs, J^T J and J^T r of the problems ``rows`` at ``Pr``."""
        with np.errstate(all="ignore"):
            f, J = _value_jacobian(model, take(T, rows), _params(spec, free, Pr), free)
            res = np.subtract(np.broadcast_to(f, (rows.size, N)), take(Y, rows))
            J = np.broadcast_to(J, (rows.size, N, k))
            if not unit:
                w = take(W, rows)
                res *= w
                J = J * w[:, :, None]
            Jt = J.transpose(0, 2, 1)
            c = np.einsum("mn,mn->m", res, res)
            AA = Jt @ J
            gg = (Jt @ res[:, :, None])[..., 0]
        return c, AA, gg

    if init is None:
        cost, A, g = evaluate(np.arange(M), P)
    else:
        cost, A, g = (np.array(a, dtype=np.float64) for a in init)
    converged = np.zeros(M, dtype=bool)
    done = ~np.isfinite(cost)
    if k == 0:
        return P, cost, np.isfinite(cost), A, g
    lam = np.full(M, _LAM0)
    nu = np.full(M, 2.0)
    # rounding floor of the cost: residuals of 1e-14 of the data are noise
    floor = 1e-28 * np.einsum("mn,mn->m", W * Y, Y) + _TINY
    ref_cost = cost.copy()
    ref_iter = np.zeros(M, dtype=np.int64)
    for it in range(max_iter):
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        Pa, ga, Aa, ca = P[act], g[act], A[act], cost[act]
        lb, ub = LB[act], UB[act]
        held = ((Pa <= lb) & (ga > 0)) | ((Pa >= ub) & (ga < 0)) | (lb == ub)
        fr = (~held).astype(np.float64)
        Af = Aa * (fr[:, :, None] * fr[:, None, :]) + eye * (1.0 - fr)[:, None, :]
        gf = ga * fr
        # Gauss-Newton decrement: what an undamped step could still gain
        decrement = -np.sum(gf * _scaled_solve(Af, -gf), axis=1)
        finite = np.all(np.isfinite(Aa), axis=(1, 2)) & np.all(np.isfinite(ga), axis=1)
        stop = finite & (decrement <= ftol * ca + floor[act])
        converged[act[stop]] = True
        done[act[stop | ~finite]] = True
        keep = ~stop & finite
        if not keep.any():
            continue
        act = act[keep]
        Pa, ga, Aa, ca, Af, gf, fr = Pa[keep], ga[keep], Aa[keep], ca[keep], Af[keep], gf[keep], fr[keep]
        lb, ub = lb[keep], ub[keep]
        dg = np.diagonal(Aa, axis1=1, axis2=2)
        dscale = np.maximum(dg, 1e-12 * np.max(dg, axis=1, keepdims=True))
        dscale = np.where(dscale > 0, dscale, 1.0) * fr
        H = Af + lam[act][:, None, None] * dscale[:, None, :] * eye
        Pn = np.clip(Pa + _scaled_solve(H, -gf), lb, ub)
        s = Pn - Pa
        pred = -(2.0 * np.sum(ga * s, axis=1) + np.einsum("mi,mij,mj->m", s, Aa, s))
        cn, An, gn = evaluate(act, Pn)
        actual = ca - cn
        accept = np.isfinite(cn) & (actual > 0)
        with np.errstate(all="ignore"):
            rho = np.where(pred > 0, actual / pred, 0.0)
        acc = act[accept]
        P[acc] = Pn[accept]
        cost[acc] = cn[accept]
        A[acc] = An[accept]
        g[acc] = gn[accept]
        # stagnation: a well-modelled (rho > 0.25), lightly damped step that
        # gains less than ftol -- the Gauss-Newton decrement can overstate the
        # possible gain in strongly curved, ill-conditioned valleys
        flat = accept & (actual <= ftol * cn) & (rho > 0.25) & (lam[act] <= 1.0)
        converged[act[flat]] = True
        done[act[flat]] = True
        lam[acc] *= np.maximum(_LAM_DOWN, 1.0 - (2.0 * np.clip(rho[accept], 0.0, 1.0) - 1.0) ** 3)
        nu[acc] = 2.0
        rej = act[~accept]
        lam[rej] *= nu[rej]
        nu[rej] *= 2.0
        # repeated rejections: try other kinds of steps (see _fallback_steps)
        again = np.flatnonzero(~accept)[nu[rej] >= 8.0]
        if fallback != "none" and again.size:
            _fallback_steps(
                again,
                act,
                Pa,
                Aa,
                ga,
                ca - floor[act],
                fr,
                dscale,
                lam,
                nu,
                P,
                cost,
                A,
                g,
                lb,
                ub,
                evaluate,
                newton=fallback == "all",
            )
        # no step can lower the cost any more: at the precision limit
        rej = act[~accept]
        rej = rej[cost[rej] >= ca[~accept] - floor[rej]]
        stuck = rej[lam[rej] > 1e16]
        converged[stuck] = True
        done[stuck] = True
        # slow crawl along a curved valley: negligible gain over a window
        due = act[it + 1 - ref_iter[act] >= _WINDOW]
        slow = due[ref_cost[due] - cost[due] <= _WINDOW * max(ftol, 1e-8) * cost[due]]
        converged[slow] = True
        done[slow] = True
        ref_cost[due] = cost[due]
        ref_iter[due] = it + 1
        if group is not None:
            _merge_starts(group, P, cost, A, done, converged)
    return P, cost, converged, A, g


def _fallback_steps(
    pos, act, Pa, Aa, ga, ca, fr, dscale, lam, nu, P, cost, A, g, lb, ub, evaluate, newton=True
) -> None:
    """Other candidate steps after repeated rejections, for the problems ``act[pos]``.

    1. The damped Gauss-Newton step with one more variable held, for each
       variable (a kink in one variable, e.g. an onset on a sample time,
       then no longer blocks the others).
    2. Newton steps with the full Hessian of the cost from finite
       differences of ``J^T r`` (Gauss-Newton fails where large residuals
       curve the valley), shifted to be positive definite, three dampings.

    Per problem the trial with the lowest cost is taken if it is lower.
    """
    r, k = pos.size, Pa.shape[1]
    rows = act[pos]
    eye = np.eye(k)
    P0, g0, f0 = Pa[pos], ga[pos], fr[pos]
    # 1. held steps
    fr_j = f0[:, None, :] * (1.0 - eye)[None, :, :]  # (r, k held, k)
    H = Aa[pos][:, None] * (fr_j[..., :, None] * fr_j[..., None, :]) + eye * (1.0 - fr_j)[..., None, :]
    H = H + (lam[rows][:, None, None, None] * dscale[pos][:, None, None, :] * fr_j[..., None, :]) * eye
    lb, ub = lb[pos], ub[pos]
    held = np.clip(P0[:, None, :] + _scaled_solve(H, -(g0[:, None, :] * fr_j)), lb[:, None, :], ub[:, None, :])
    trial = held
    if newton:
        # 2. Newton steps, Hessian of 0.5 * cost by differences of the gradient J^T r
        h = 1e-5 * np.maximum(np.maximum(np.abs(P0), 1e-3 * (ub - lb)), 1e-8)
        h = np.where(P0 + h > ub, -h, h)
        probe = P0[:, None, :] + eye[None] * h[:, None, :]
        _, _, g_p = evaluate(np.repeat(rows, k), probe.reshape(r * k, k))
        Hf = (g_p.reshape(r, k, k) - g0[:, None, :]) / h[:, :, None]  # row j: d g / d p_j
        Hf = 0.5 * (Hf + Hf.transpose(0, 2, 1))
        Hf = Hf * (f0[:, :, None] * f0[:, None, :]) + eye * (1.0 - f0)[:, None, :]
        d = np.sqrt(np.where(dscale[pos] > 0, dscale[pos], 1.0))
        with np.errstate(all="ignore"):
            e_min = np.linalg.eigvalsh(Hf / (d[:, :, None] * d[:, None, :]))[:, 0]
        mu0 = np.maximum(1e-6, 2.0 * np.maximum(0.0, -np.where(np.isfinite(e_min), e_min, 0.0)))
        steps = []
        for factor in (1.0, 10.0, 100.0):
            Hm = Hf + (factor * mu0)[:, None, None] * (d * d * f0)[:, None, :] * eye
            steps.append(np.clip(P0 + _scaled_solve(Hm, -g0 * f0), lb, ub))
        trial = np.concatenate([held, np.stack(steps, axis=1)], axis=1)  # (r, k + 3, k)
    n_t = trial.shape[1]
    c_t, A_t, g_t = evaluate(np.repeat(rows, n_t), trial.reshape(r * n_t, k))
    c_t = np.where(np.isfinite(c_t), c_t, np.inf).reshape(r, n_t)
    best = np.argmin(c_t, axis=1)
    ok = c_t[np.arange(r), best] < ca[pos]
    src = np.arange(r)[ok] * n_t + best[ok]
    dst = rows[ok]
    P[dst] = trial.reshape(r * n_t, k)[src]
    cost[dst] = c_t[np.arange(r), best][ok]
    A[dst] = A_t[src]
    g[dst] = g_t[src]
    lam[dst] /= 3.0
    nu[dst] = 2.0


def _merge_starts(
    group: np.ndarray, P: np.ndarray, cost: np.ndarray, A: np.ndarray, done: np.ndarray, converged: np.ndarray
) -> None:
    """Stop running problems that have reached a better, converged optimum of their group."""
    c = np.where(np.isfinite(cost), cost, np.inf)
    order = np.lexsort((np.arange(c.size), c, group))
    g_sorted = group[order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = g_sorted[1:] != g_sorted[:-1]
    lead_of_sorted = order[np.maximum.accumulate(np.where(first, np.arange(order.size), 0))]
    lead = np.empty_like(order)
    lead[order] = lead_of_sorted
    cand = np.flatnonzero(~done & (lead != np.arange(c.size)) & np.isfinite(c[lead]) & converged[lead])
    if cand.size == 0:
        return
    dP = P[cand] - P[lead[cand]]
    dist = np.einsum("mi,mij,mj->m", dP, A[lead[cand]], dP)
    done[cand[dist <= _MERGE * c[lead[cand]]]] = True


def _escape_saddles(
    model: ModuleType,
    spec: Sequence[ParamSpec],
    free: Sequence[str],
    T: np.ndarray,
    Y: np.ndarray,
    W: np.ndarray,
    P: np.ndarray,
    cost: np.ndarray,
    conv: np.ndarray,
    A: np.ndarray,
    max_iter: int,
    ftol: float,
    rounds: int = 2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Restart from both sides of a (nearly) singular direction of ``J^T J``.

    Gauss-Newton is blind along a null direction of ``J^T J``: e.g. on the
    line ``delta == beta`` of a model symmetric in the two rates the columns
    of J coincide, and Levenberg-Marquardt can settle there although a lower
    optimum lies just off the line. For such solutions Levenberg-Marquardt is
    restarted from the points displaced by +-5 % and +-20 % (relative change
    of the most affected parameter) along the weakest direction; the lowest
    result replaces the solution if it is lower.
    """
    by_name = {s.name: s for s in spec}
    lb = np.array([by_name[p].lb for p in free])
    ub = np.array([by_name[p].ub for p in free])
    k = len(free)
    P, cost, conv = P.copy(), cost.copy(), conv.copy()
    for _ in range(rounds):
        dg = np.diagonal(A, axis1=1, axis2=2)
        sc = np.sqrt(np.where(dg > 0, dg, 1.0))
        with np.errstate(all="ignore"):
            w, V = np.linalg.eigh(A / (sc[:, :, None] * sc[:, None, :]))
        ok = np.isfinite(cost) & (cost > 0) & np.all(np.isfinite(A), axis=(1, 2)) & np.all(dg > 0, axis=1)
        cand = np.flatnonzero(ok & (w[:, 0] <= 1e-8 * w[:, -1]))
        if cand.size == 0:
            break
        u = V[cand, :, 0] / sc[cand]
        size = np.maximum(np.abs(P[cand]), 1e-3 * (ub - lb))
        amax = 1.0 / np.maximum(np.max(np.abs(u) / size, axis=1), _TINY)
        steps = np.array([0.05, -0.05, 0.2, -0.2])
        trial = np.clip(P[cand][None] + (steps[:, None] * amax[None, :])[:, :, None] * u[None], lb, ub).reshape(-1, k)
        rows = np.tile(cand, steps.size)
        P2, c2, v2, A2, _ = _lm(model, spec, free, T[rows], Y[rows], W[rows], trial, max_iter, ftol, group=rows)
        c2 = np.where(np.isfinite(c2), c2, np.inf).reshape(steps.size, -1)
        pick = np.argmin(c2, axis=0)
        j = np.arange(cand.size)
        lower = c2[pick, j] < cost[cand] * (1.0 - 1e-12)
        if not lower.any():
            break
        src = pick[lower] * cand.size + j[lower]
        dst = cand[lower]
        P[dst], cost[dst], conv[dst], A[dst] = P2[src], c2[pick[lower], j[lower]], v2[src], A2[src]
    return P, cost, conv


def _hop_onset(
    model: ModuleType,
    spec: Sequence[ParamSpec],
    free: Sequence[str],
    T: np.ndarray,
    Y: np.ndarray,
    W: np.ndarray,
    P: np.ndarray,
    cost: np.ndarray,
    conv: np.ndarray,
    max_iter: int,
    ftol: float,
    reach: int = 2,
    rounds: int = 2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Visit the neighbouring sample intervals of the onset (models with ``ONSET``).

    A model whose output has a kink or jump at its onset parameter (declared
    as ``ONSET``) has a cost with a local minimum inside nearly every
    interval between two samples and V-shaped minima at the samples, which
    Levenberg-Marquardt cannot cross. Around the nearest sample time ``s``
    (median interval ``h`` of the cell) the other parameters are re-fitted
    with the onset held at ``s + i h`` and with the onset free from
    ``s + (i + 1/2) h``, ``|i| <= reach``; the lowest result is kept if it is
    lower, and the search repeated from there (``rounds`` times at most).
    """
    P, cost, conv = P.copy(), cost.copy(), conv.copy()
    todo = np.arange(P.shape[0])
    for _ in range(rounds):
        if todo.size == 0:
            break
        improved = _hop_once(model, spec, free, T, Y, W, P, cost, conv, max_iter, ftol, reach, todo)
        todo = todo[improved]
    return P, cost, conv


def _hop_once(model, spec, free, T, Y, W, P, cost, conv, max_iter, ftol, reach, todo) -> np.ndarray:
    """One round of :func:`_hop_onset` for the cells ``todo`` (in place); returns which improved."""
    onset = getattr(model, "ONSET", None)
    if onset not in free or todo.size == 0:
        return np.zeros(todo.size, dtype=bool)
    j = list(free).index(onset)
    by_name = {s.name: s for s in spec}
    lb = np.array([by_name[p].lb for p in free])
    ub = np.array([by_name[p].ub for p in free])
    m, k = todo.size, P.shape[1]
    spacing = np.zeros(m)
    nearest = P[todo, j].copy()
    for i, c in enumerate(todo):
        ti = np.sort(T[c, W[c] > 0])
        if ti.size > 1:
            spacing[i] = np.median(np.diff(ti))
            nearest[i] = ti[np.argmin(np.abs(ti - P[c, j]))]
    offs = np.arange(-reach, reach + 1, dtype=np.float64)
    held_t = nearest[None, :] + offs[:, None] * spacing[None, :]  # onset held at samples
    free_t = held_t[:-1] + 0.5 * spacing[None, :]  # onset free, from interval middles
    n_h, n_f = held_t.shape[0], free_t.shape[0]
    starts = np.repeat(P[todo][None], n_h + n_f, axis=0)
    starts[:n_h, :, j] = held_t
    starts[n_h:, :, j] = free_t
    LB = np.broadcast_to(lb, starts.shape).copy()
    UB = np.broadcast_to(ub, starts.shape).copy()
    LB[:n_h, :, j] = UB[:n_h, :, j] = np.clip(held_t, lb[j], ub[j])
    starts = np.clip(starts, LB, UB).reshape(-1, k)
    local = np.tile(np.arange(m), n_h + n_f)
    keep = np.isfinite(cost[todo[local]]) & (spacing[local] > 0)
    if not keep.any():
        return np.zeros(m, dtype=bool)
    starts, local = starts[keep], local[keep]
    rows = todo[local]
    LB, UB = LB.reshape(-1, k)[keep], UB.reshape(-1, k)[keep]
    # explore at a coarse tolerance, then polish the best of each cell
    coarse = max(ftol, 1e-6)
    P2, c2, v2, A2, g2 = _lm(
        model, spec, free, T[rows], Y[rows], W[rows], starts, max_iter, coarse, bounds=(LB, UB), fallback="held"
    )
    c2 = np.where(np.isfinite(c2), c2, np.inf)
    order = np.lexsort((c2, local))
    first = np.ones(order.size, dtype=bool)
    first[1:] = local[order][1:] != local[order][:-1]
    best = order[first]
    best = best[c2[best] < cost[rows[best]] * (1.0 + 10.0 * coarse)]
    if best.size == 0:
        return np.zeros(m, dtype=bool)
    P2[best], c2[best], v2[best], _, _ = _lm(
        model,
        spec,
        free,
        T[rows[best]],
        Y[rows[best]],
        W[rows[best]],
        P2[best],
        max_iter,
        ftol,
        init=(c2[best], A2[best], g2[best]),
        bounds=(LB[best], UB[best]),
    )
    better = best[c2[best] < cost[rows[best]] * (1.0 - 1e-12)]
    # a result with the onset held at a sample is a valid point of the free
    # problem (the cost has a V-shaped minimum there)
    P[rows[better]], cost[rows[better]], conv[rows[better]] = P2[better], c2[better], v2[better]
    improved = np.zeros(m, dtype=bool)
    improved[local[better]] = True
    return improved


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


# ---------------------------------------------------------------------------
# public fitting API
# ---------------------------------------------------------------------------


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


def _common_grid(T: np.ndarray, Y: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One time vector for the grid start: exact if the cells share their times.

    Otherwise the union of time points (if small) or a uniform grid with each
    cell linearly interpolated inside its own time range (used only to find
    a starting point).
    """
    B, N = T.shape
    if B == 1 or np.all(T == T[0]):
        return T[0], Y, W
    times = np.unique(T[W > 0])
    if times.size <= 2 * N:
        Yc = np.zeros((B, times.size))
        Wc = np.zeros((B, times.size))
        rows, cols = np.nonzero(W > 0)
        pos = np.searchsorted(times, T[rows, cols])
        Yc[rows, pos] = Y[rows, cols]
        Wc[rows, pos] = 1.0
        return times, Yc, Wc
    grid = np.linspace(times[0], times[-1], N)
    Yc = np.zeros((B, N))
    Wc = np.zeros((B, N))
    for i in range(B):
        sel = W[i] > 0
        if not sel.any():
            continue
        ti, yi = T[i, sel], Y[i, sel]
        order = np.argsort(ti, kind="stable")
        ti, yi = ti[order], yi[order]
        Yc[i] = np.interp(grid, ti, yi)
        Wc[i] = (grid >= ti[0]) & (grid <= ti[-1])
    return grid, Yc, Wc


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
    Y = np.atleast_2d(np.asarray(Y, dtype=np.float64))
    B, N = Y.shape
    t = np.asarray(t_hours, dtype=np.float64)
    if t.ndim == 1:
        t = t[None, :]
    if t.shape[-1] != N or t.shape[0] not in (1, B):
        raise ValueError(f"t_hours of shape {np.shape(t_hours)} does not match Y of shape {Y.shape}")
    T = np.broadcast_to(t, (B, N))
    names = [s.name for s in spec]
    free = [s.name for s in spec if not s.fixed]
    k = len(free)
    valid = np.isfinite(Y) & np.isfinite(T)
    W = valid.astype(np.float64)
    Y0 = np.where(valid, Y, 0.0)
    T0 = np.where(valid, T, 0.0)
    n = valid.sum(axis=1).astype(np.int64)
    ok = n >= max(k, 1)

    out_params = np.full((B, len(names)), np.nan)
    out_se = np.full((B, len(names)), np.nan)
    success = np.zeros(B, dtype=bool)
    r2 = np.full(B, np.nan)
    ss_res = np.full(B, np.nan)
    start = np.full(B, -1, dtype=np.int64)
    at_lower = np.zeros((B, len(names)), dtype=bool)
    at_upper = np.zeros((B, len(names)), dtype=bool)
    bound_chi2 = np.zeros((B, len(names)))
    signal_p = np.ones(B)
    idx = np.flatnonzero(ok)
    if idx.size:
        m = idx.size
        Tc, Yc, Wc = T0[idx], Y0[idx], W[idx]
        p_def = np.array([s.value for s in spec if not s.fixed], dtype=np.float64)
        starts = [np.broadcast_to(p_def, (m, k))]
        if multistart and k:
            tg, Yg, Wg = _common_grid(Tc, Yc, Wc)
            n_grid = grid_starts if grid_starts is not None else int(getattr(mod, "GRID_STARTS", 1))
            starts.extend(_grid_start(mod, spec, free, tg, Yg, Wg, grid_points, max(1, n_grid)))
        S = len(starts)
        P0 = np.concatenate(starts, axis=0)
        rows = np.tile(np.arange(m), S)
        if S == 1:
            P, cost, conv, A, _ = _lm(mod, spec, free, Tc, Yc, Wc, P0, max_iter, ftol)
        else:
            coarse = max(ftol, coarse_ftol)
            P, cost, conv, A, g = _lm(
                mod,
                spec,
                free,
                Tc[rows],
                Yc[rows],
                Wc[rows],
                P0,
                max_iter,
                coarse,
                group=rows,
                fallback="held" if getattr(mod, "ONSET", None) in free else "none",
            )
            # Polish only the starts that can still win: within the coarse
            # tolerance of the best cost and not the same optimum as the best
            # (squared distance in the J^T J metric below _MERGE * cost).
            cs = np.where(np.isfinite(cost), cost, np.inf).reshape(S, m)
            lead = np.argmin(cs, axis=0)
            c_lead = cs[lead, np.arange(m)]
            dP = P.reshape(S, m, k) - P.reshape(S, m, k)[lead, np.arange(m)]
            A_lead = A.reshape(S, m, k, k)[lead, np.arange(m)]
            dist = np.einsum("smi,mij,smj->sm", dP, A_lead, dP)
            is_lead = np.arange(S)[:, None] == lead
            polish = is_lead | ((cs <= c_lead * (1.0 + 10.0 * coarse) + _TINY) & ~(dist <= _MERGE * c_lead))
            polish &= np.isfinite(cs)
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
                    max_iter,
                    ftol,
                    init=(cost[sel], A[sel], g[sel]),
                )
                P[sel], cost[sel], conv[sel], A[sel] = Pp, cp, vp, Ap
            cost = np.where(polish.ravel(), cost, np.inf)
        cost_s = np.where(np.isfinite(cost), cost, np.inf).reshape(S, m)
        best = np.argmin(cost_s, axis=0)  # first minimum: the configured start wins ties
        pick = best * m + np.arange(m)
        Pb, cb, convb, Ab = P[pick], cost[pick], conv[pick], A[pick]
        if multistart and k:
            Pb, cb, convb = _escape_saddles(mod, spec, free, Tc, Yc, Wc, Pb, cb, convb, Ab, max_iter, ftol)
            Pb, cb, convb = _hop_onset(mod, spec, free, Tc, Yc, Wc, Pb, cb, convb, max_iter, ftol)
        valid_c = Wc > 0
        if weighting == "poisson" and k:
            Wc, Pb, cb, convb = _poisson_refit(mod, spec, free, Tc, Yc, Wc, Pb, cb, convb, max_iter, ftol)
        fin = np.isfinite(cb) & np.all(np.isfinite(Pb), axis=1)
        success[idx] = fin & convb
        start[idx] = best
        full = np.tile(np.array([s.value for s in spec], dtype=np.float64), (m, 1))
        for j, p in enumerate(free):
            full[:, names.index(p)] = Pb[:, j]
        out_params[idx] = full
        ss_res[idx] = cb
        r2[idx], signal_p[idx], diag = _diagnostics(mod, spec, free, Tc, Yc, Wc, valid_c, Pb, cb, n[idx], weighting)
        for j, p in enumerate(free):
            col = names.index(p)
            out_se[idx, col] = diag["se"][:, j]
            at_lower[idx, col], at_upper[idx, col] = diag["lo"][:, j], diag["hi"][:, j]
            bound_chi2[idx, col] = diag["chi2"][:, j]
        failed = idx[~fin]
        out_params[failed] = np.nan
        out_se[failed] = np.nan
        r2[failed] = np.nan
        ss_res[failed] = np.nan
    dof = n - k
    with np.errstate(all="ignore"):
        residual_std = np.where(dof > 0, np.sqrt(ss_res / np.where(dof > 0, dof, 1)), np.nan)
        nn = np.where(n > 0, n, np.nan)
        loglik = -0.5 * nn * (np.log(2.0 * np.pi * np.maximum(ss_res, _TINY) / nn) + 1.0)
        aic = 2.0 * (k + 1) - 2.0 * loglik
        bic = (k + 1) * np.log(nn) - 2.0 * loglik
    return {
        "success": success,
        "r_squared": r2,
        "params": out_params,
        "se": out_se,
        "residual_std": residual_std,
        "aic": aic,
        "bic": bic,
        "n_points": n,
        "ss_res": ss_res,
        "start": start,
        "at_lower": at_lower,
        "at_upper": at_upper,
        "bound_chi2": bound_chi2,
        "signal_p": signal_p,
        "status": classify_fits(
            success, r2, out_params, out_se, at_lower, at_upper, bound_chi2, signal_p, spec, rule
        ),
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


def half_rise_time(t_hours: np.ndarray, y: np.ndarray, window: int = 5) -> float:
    """Time (hours) at which a trace first reaches half its rise; NaN without a rise.

    The trace (NaNs dropped, sorted by time) is smoothed by a running median of
    ``window`` points; ``start`` is the median of the first three smoothed
    values and the rise is ``max - start``. The result is the first smoothed
    time point at or above ``start + rise / 2``. The onset of expression comes
    before it, so it is a data-driven upper limit for ``t0``.
    """
    t = np.asarray(t_hours, dtype=np.float64)
    v = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(v)
    if ok.sum() < window + 2:
        return float("nan")
    order = np.argsort(t[ok], kind="stable")
    t, v = t[ok][order], v[ok][order]
    sm = np.median(np.lib.stride_tricks.sliding_window_view(v, window), axis=1)
    ts = t[window // 2 : window // 2 + sm.size]
    start = float(np.median(sm[:3]))
    rise = float(sm.max()) - start
    if not rise > 0:
        return float("nan")
    return float(ts[np.argmax(sm >= start + 0.5 * rise)])


def _half_rise_rows(t: np.ndarray, Y: np.ndarray, window: int = 5) -> np.ndarray:
    """:func:`half_rise_time` of every row of ``Y`` (all finite) on one sorted time vector ``t``."""
    out = np.full(Y.shape[0], np.nan)
    if t.size < window + 2 or Y.shape[0] == 0:
        return out
    sm = np.median(np.lib.stride_tricks.sliding_window_view(Y, window, axis=1), axis=2)
    ts = t[window // 2 : window // 2 + sm.shape[1]]
    start = np.median(sm[:, :3], axis=1)
    rise = sm.max(axis=1) - start
    first = np.argmax(sm >= (start + 0.5 * rise)[:, None], axis=1)
    return np.where(rise > 0, ts[first], np.nan)


def data_t0_upper(T: np.ndarray, Y: np.ndarray, reference_ub: float) -> np.ndarray:
    """Per cell, the upper bound of ``t0`` under ``fit.t0_bounds: data``.

    The half-rise time (:func:`half_rise_time`) rounded up to a power of two
    hours (1, 2, 4, 8, ... h, so that cells share a few bounds and are fitted
    in a few batches), at most the cell's last time point, and never below
    ``reference_ub`` (which is kept where the trace has no rise). It only
    widens the reference bound: a cell whose expression starts after it is
    no longer held at it.
    """
    Y = np.asarray(Y, dtype=np.float64)
    T = np.broadcast_to(np.asarray(T, dtype=np.float64), Y.shape)
    th = np.full(Y.shape[0], np.nan)
    t0 = T[0] if Y.shape[0] else np.zeros(0)
    simple = np.all(np.isfinite(Y), axis=1) & np.all(T == t0, axis=1)
    if simple.any() and np.all(np.diff(t0) > 0):
        th[simple] = _half_rise_rows(t0, Y[simple])
    else:
        simple[:] = False
    for i in np.flatnonzero(~simple):
        th[i] = half_rise_time(T[i], Y[i])
    out = np.full(Y.shape[0], float(reference_ub))
    late = np.isfinite(th) & (th > reference_ub)
    if late.any():
        last = np.nanmax(np.where(np.isfinite(Y[late]), T[late], np.nan), axis=1)
        up = 2.0 ** np.ceil(np.log2(np.maximum(th[late], 1e-9)))
        out[late] = np.maximum(float(reference_ub), np.minimum(up, last))
    return out


def _t0_groups(
    spec: tuple[ParamSpec, ...], T: np.ndarray, Y: np.ndarray, rule: str, user_bounded: bool
) -> list[tuple[np.ndarray, tuple[ParamSpec, ...]]]:
    """``(rows, spec)`` pairs: the cells that share one ``t0`` upper bound and their spec.

    One group with the spec unchanged for ``rule == "reference"``, a model
    without a free ``t0``, or bounds of ``t0`` set by the user.
    """
    names = [p.name for p in spec]
    rows = np.arange(Y.shape[0])
    if rule == "reference" or "t0" not in names or spec[names.index("t0")].fixed or user_bounded:
        return [(rows, spec)]
    j = names.index("t0")
    ub = data_t0_upper(T, Y, spec[j].ub)
    groups = []
    for value in np.unique(ub):
        new = list(spec)
        new[j] = ParamSpec("t0", spec[j].value, spec[j].lb, float(value), False)
        groups.append((rows[ub == value], tuple(new)))
    return groups


def _bounds_set(overrides: Mapping | None, model: str, param: str) -> bool:
    """Whether the user's overrides set a bound of ``param`` (flat or keyed by model)."""
    overrides = dict(overrides or {})
    nested = bool(overrides) and all(key in set(list_models()) for key in overrides)
    ov = (overrides.get(model) if nested else overrides) or {}
    cfg = ov.get(param)
    return isinstance(cfg, Mapping) and ("lb" in cfg or "ub" in cfg)


def _fit_task(task: tuple) -> dict[str, np.ndarray]:
    model_name, spec, t, Y, options = task
    return fit_batch(t, Y, model_name, spec, **options)


def _good_mask(good: pd.Series) -> np.ndarray:
    if good.dtype == bool:
        return good.to_numpy()
    if pd.api.types.is_numeric_dtype(good):
        return good.fillna(0).to_numpy() != 0
    return good.astype(str).str.strip().str.lower().isin(["true", "1", "yes"]).to_numpy()


def _normalise_models(models: str | Sequence[str], overrides: Mapping | None) -> dict[str, tuple[ParamSpec, ...]]:
    names = [models] if isinstance(models, str) else list(models)
    if not names:
        raise ValueError("fit_traces: no model given")
    if len(set(names)) != len(names):
        raise ValueError(f"fit_traces: model listed twice in {names}")
    overrides = dict(overrides or {})
    registered = set(list_models())
    nested = bool(overrides) and all(key in registered for key in overrides)
    if overrides and not nested and len(names) > 1:
        raise ValueError("fit_traces: with several models, overrides must be keyed by model name")
    specs = {}
    for name in names:
        get_model(name)
        ov = overrides.get(name) if nested else overrides
        specs[name] = resolve_params(name, ov)
    return specs


def fit_traces(
    df: pd.DataFrame,
    models: str | Sequence[str],
    overrides: Mapping | None = None,
    value_col: str = "intensity_total_ch_1",
    n_jobs: int | None = 1,
    chunk_size: int = CHUNK_SIZE,
    t0_bounds: str = "reference",
    weighting: str = "none",
    status: StatusRule | Mapping | None = None,
    **options: object,
) -> pd.DataFrame:
    """Fit every cell of a traces table with one or more models.

    Parameters
    ----------
    df : DataFrame
        At least ``fov, cell, time`` (minutes), ``good`` and ``value_col``.
        Only rows with ``good`` true are used; a cell without any is not
        fitted (no output row).
    models : str or list of str
        Registered model names.
    overrides : mapping, optional
        Parameter overrides (see :func:`resolve_params`). With one model,
        ``{param: {...}}``; with several, ``{model: {param: {...}}}`` (also
        accepted for one model).
    value_col : str
        Column to fit.
    n_jobs : int or None
        Worker processes (None or <= 0: all cores). The cells, in (fov, cell)
        order, are cut into fixed batches of ``chunk_size`` (each cell keeps
        its own time points), independent of ``n_jobs``, so the output is
        identical for any ``n_jobs``.
    t0_bounds : {"reference", "data"}
        ``"data"``: the upper bound of a free ``t0`` follows each cell's
        data (:func:`data_t0_upper`; not where the overrides set a bound of
        ``t0``); cells that share a bound are fitted together.
    weighting : {"none", "poisson"}
        See :func:`fit_batch`.
    status : StatusRule or mapping, optional
        Thresholds of the ``status`` column (:func:`classify_fits`).
    **options
        Passed to :func:`fit_batch`.

    Returns
    -------
    DataFrame with columns ``fov, cell, model, success, r_squared``, the
    parameters (of all given models, in ``PARAMS`` order, first model first;
    NaN where a model lacks one), ``{p}_se`` in the same order,
    ``residual_std, aic, bic, n_points`` and, when several models are given,
    ``best_model``: per cell the model with the lowest AIC among its
    successful fits (empty if none succeeded; ties go to the model name that
    sorts first), then ``status`` (:data:`STATUSES`) and ``at_bound`` (the
    free parameters at a bound, ``;``-separated; empty for a failed fit).
    Rows sorted by fov, cell, model. Time is converted to hours.
    """
    if t0_bounds not in T0_BOUNDS:
        raise ValueError(f"t0_bounds must be one of {', '.join(T0_BOUNDS)}, not {t0_bounds!r}")
    options = {**options, "weighting": weighting, "status": StatusRule.from_config(status)}
    specs = _normalise_models(models, overrides)
    missing = [c for c in ("fov", "cell", "time", "good", value_col) if c not in df.columns]
    if missing:
        raise ValueError(f"fit_traces: missing column(s) {', '.join(missing)}")
    param_cols: list[str] = []
    for name in specs:
        for p in get_model(name).PARAMS:
            if p not in param_cols:
                param_cols.append(p)
    columns = [*ID_COLUMNS, *param_cols, *[f"{p}_se" for p in param_cols], *STAT_COLUMNS]
    if len(specs) > 1:
        columns.append("best_model")
    columns.extend(STATUS_COLUMNS)

    sub = df.loc[_good_mask(df["good"]), ["fov", "cell", "time", value_col]]
    if sub.duplicated(["fov", "cell", "time"]).any():
        raise ValueError("fit_traces: a cell has two rows with the same time")
    sub = sub.sort_values(["fov", "cell", "time"], kind="mergesort")
    fov_a = sub["fov"].to_numpy()
    cell_a = sub["cell"].to_numpy()
    new_cell = np.ones(len(sub), dtype=bool)
    new_cell[1:] = (fov_a[1:] != fov_a[:-1]) | (cell_a[1:] != cell_a[:-1])
    starts = np.flatnonzero(new_cell)
    lengths = np.diff(np.append(starts, len(sub)))
    cell_of_row = np.cumsum(new_cell) - 1
    pos = np.arange(len(sub)) - starts[cell_of_row]
    n_cells = starts.size
    width = int(lengths.max()) if n_cells else 0
    # one row per cell, its own times (hours) and values, NaN-padded
    T_all = np.full((n_cells, width), np.nan)
    Y_all = np.full((n_cells, width), np.nan)
    T_all[cell_of_row, pos] = sub["time"].to_numpy(dtype=np.float64) / 60.0
    Y_all[cell_of_row, pos] = sub[value_col].to_numpy(dtype=np.float64)
    fovs, cells = fov_a[starts], cell_a[starts]
    tasks = []
    keys = []
    for lo in range(0, n_cells, chunk_size):
        hi = min(lo + chunk_size, n_cells)
        w = int(lengths[lo:hi].max())
        Tc, Yc = T_all[lo:hi, :w], Y_all[lo:hi, :w]
        if np.all(Tc == Tc[0]):  # shared time vector: pass it once
            Tc = Tc[0]
        for name, spec in specs.items():
            user = _bounds_set(overrides, name, "t0")
            for rows, spec_g in _t0_groups(spec, Tc, Yc, t0_bounds, user):
                Tg = Tc if Tc.ndim == 1 else Tc[rows]
                tasks.append((name, spec_g, Tg, Yc[rows], dict(options)))
                keys.append((fovs[lo:hi][rows], cells[lo:hi][rows], name))
    workers = (os.cpu_count() or 1) if (n_jobs is None or n_jobs <= 0) else int(n_jobs)
    if workers == 1 or len(tasks) <= 1:
        results = [_fit_task(task) for task in tasks]
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as ex:
            results = list(ex.map(_fit_task, tasks))

    frames = []
    for (fov_k, cells, name), res in zip(keys, results):
        pnames = list(get_model(name).PARAMS)
        data: dict[str, object] = {
            "fov": fov_k,
            "cell": cells,
            "model": np.full(cells.size, name, dtype=object),
            "success": res["success"],
            "r_squared": res["r_squared"],
        }
        for p in param_cols:
            data[p] = res["params"][:, pnames.index(p)] if p in pnames else np.full(cells.size, np.nan)
        for p in param_cols:
            data[f"{p}_se"] = res["se"][:, pnames.index(p)] if p in pnames else np.full(cells.size, np.nan)
        for c in STAT_COLUMNS:
            data[c] = res[c]
        data["status"] = res["status"]
        data["at_bound"] = _at_bound_names(pnames, res)
        frames.append(pd.DataFrame(data))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    out = pd.concat(frames, ignore_index=True)
    out = out.sort_values(["fov", "cell", "model"], kind="mergesort").reset_index(drop=True)
    out["success"] = out["success"].astype(bool)
    out["n_points"] = out["n_points"].astype(np.int64)
    if len(specs) > 1:
        best = best_models(out)
        lookup = {(f, c): m for f, c, m in zip(best["fov"], best["cell"], best["best_model"])}
        out["best_model"] = [lookup.get((f, c), "") for f, c in zip(out["fov"], out["cell"])]
    return out[columns]


def _at_bound_names(names: Sequence[str], res: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per cell, the parameters at a bound, ``;``-separated (empty for failed fits)."""
    at = (res["at_lower"] | res["at_upper"]) & res["success"][:, None]
    return np.array([";".join(n for n, a in zip(names, row) if a) for row in at], dtype=object)


def best_models(fits: pd.DataFrame) -> pd.DataFrame:
    """Per cell, the model with the lowest AIC among its successful fits.

    Parameters
    ----------
    fits : rows of one or more models (``fov, cell, model, success, r_squared, aic``),
        e.g. several ``fits_{model}.csv`` concatenated.

    Returns
    -------
    ``fov, cell, best_model`` (empty when no fit of the cell succeeded; ties
    go to the model name that sorts first), then ``aic_{model}`` and
    ``r_squared_{model}`` for every model, sorted by fov, cell.
    """
    fits = fits.copy()
    fits["success"] = fits["success"].astype(str).str.lower().isin(["true", "1"])
    cand = fits[fits["success"] & np.isfinite(fits["aic"].astype(float))]
    best = cand.sort_values(["fov", "cell", "aic", "model"], kind="mergesort").drop_duplicates(["fov", "cell"])
    cells = fits[["fov", "cell"]].drop_duplicates().sort_values(["fov", "cell"], kind="mergesort")
    out = cells.merge(best[["fov", "cell", "model"]].rename(columns={"model": "best_model"}),
                      on=["fov", "cell"], how="left")
    out["best_model"] = out["best_model"].fillna("")
    for model in sorted(fits["model"].unique()):
        part = fits.loc[fits["model"] == model, ["fov", "cell", "aic", "r_squared"]]
        out = out.merge(part.rename(columns={"aic": f"aic_{model}", "r_squared": f"r_squared_{model}"}),
                        on=["fov", "cell"], how="left")
    return out.reset_index(drop=True)


def failure_reasons(fits: pd.DataFrame, overrides: Mapping | None = None) -> pd.Series:
    """Why each row of a fits table did not succeed ("" where it did).

    ``"too few points: n < k free parameters"`` (the cell is in fewer good
    frames than the model has free parameters), ``"no finite optimum"`` or
    ``"did not converge"``. ``overrides`` as for :func:`fit_traces` (keyed by
    model, or flat for a table of one model).
    """
    overrides = dict(overrides or {})
    nested = bool(overrides) and all(key in set(list_models()) for key in overrides)
    n_free: dict[str, int] = {}
    for name in fits["model"].unique() if len(fits) else []:
        ov = overrides.get(name) if nested else overrides
        n_free[name] = sum(not s.fixed for s in resolve_params(name, ov))
    success = fits["success"].astype(str).str.lower().isin(["true", "1"]) if len(fits) else []
    out = []
    for i, (model, ok) in enumerate(zip(fits["model"], success)):
        if ok:
            out.append("")
            continue
        n, k = int(fits["n_points"].iloc[i]), n_free[model]
        if n < max(k, 1):
            out.append(f"too few points: {n} < {k} free parameters")
        elif not np.isfinite(float(fits["r_squared"].iloc[i])):
            out.append("no finite optimum")
        else:
            out.append("did not converge")
    return pd.Series(out, index=fits.index, dtype=object)


def write_fits(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a fits table as CSV, atomically, with floats as ``%.9g``.

    The table goes to a temporary file in the target directory that then
    replaces ``path`` (``os.replace``), so readers never see a partial file.
    The same table always gives the same bytes.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            df.to_csv(fh, index=False, float_format=FLOAT_FORMAT, lineterminator="\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


__all__ = [
    "CHUNK_SIZE",
    "STATUSES",
    "STATUS_COLUMNS",
    "ParamSpec",
    "StatusRule",
    "classify_fits",
    "data_t0_upper",
    "half_rise_time",
    "fit_batch",
    "fit_cell",
    "fit_traces",
    "resolve_params",
    "tune_malloc",
    "best_models",
    "cramer_rao_se",
    "failure_reasons",
    "write_fits",
]
