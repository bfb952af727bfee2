"""The batched, projected Levenberg-Marquardt solver (step 3 of :mod:`~pyama_flow.fitting.batch`).

:func:`_lm` minimises the (weighted) sum of squared residuals of many
problems at once -- one per cell and start -- inside the parameter box;
after repeated rejections :func:`_fallback_steps` tries steps with one
variable held and Newton steps, and :func:`_merge_starts` stops starts that
have reached a better start's optimum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from types import ModuleType

import numpy as np

from pyama_flow.fitting.linalg import _TINY, _scaled_solve
from pyama_flow.fitting.params import ParamSpec, _params

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
    pb = _Problems(model, spec, free, t, Y, W, M, k, bounds)
    P = np.clip(P0, pb.LB, pb.UB)
    if init is None:
        cost, A, g = pb.evaluate(np.arange(M), P)
    else:
        cost, A, g = (np.array(a, dtype=np.float64) for a in init)
    if k == 0:
        return P, cost, np.isfinite(cost), A, g
    st = _State(
        P=P,
        cost=cost,
        A=A,
        g=g,
        converged=np.zeros(M, dtype=bool),
        done=~np.isfinite(cost),
        lam=np.full(M, _LAM0),
        nu=np.full(M, 2.0),
        # rounding floor of the cost: residuals of 1e-14 of the data are noise
        floor=1e-28 * np.einsum("mn,mn->m", W * Y, Y) + _TINY,
        ref_cost=cost.copy(),
        ref_iter=np.zeros(M, dtype=np.int64),
    )
    for it in range(max_iter):
        act = np.flatnonzero(~st.done)
        if act.size == 0:
            break
        _lm_iteration(pb, st, act, it, ftol, group, fallback)
    return st.P, st.cost, st.converged, st.A, st.g


class _Problems:
    """The problems of one :func:`_lm` call: data, weights, bounds, and their evaluation."""

    def __init__(self, model, spec, free, t, Y, W, M: int, k: int, bounds) -> None:
        self.model, self.spec, self.free = model, spec, free
        self.Y, self.W, self.M, self.N, self.k = Y, W, M, Y.shape[1], k
        self.T = np.broadcast_to(t, Y.shape)
        if getattr(model, "normal_equations", None) is not None:  # compiled: contiguous rows
            self.T, self.Y, self.W = (np.ascontiguousarray(a, dtype=np.float64) for a in (self.T, Y, W))
        by_name = {s.name: s for s in spec}
        if bounds is None:
            self.LB = np.broadcast_to(np.array([by_name[p].lb for p in free]), (M, k))
            self.UB = np.broadcast_to(np.array([by_name[p].ub for p in free]), (M, k))
        else:
            self.LB, self.UB = (np.broadcast_to(np.asarray(b, dtype=np.float64), (M, k)) for b in bounds)
        self.eye = np.eye(k)
        self.unit = bool(np.all(W == 1.0))  # no missing points: skip the weighting
        self.everyone = np.arange(M)

    def take(self, a: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return a if rows.size == self.M and np.array_equal(rows, self.everyone) else a[rows]

    def evaluate(self, rows: np.ndarray, Pr: np.ndarray):
        """Costs, J^T J and J^T r of the problems ``rows`` at ``Pr``."""
        N, k = self.N, self.k
        fused = getattr(self.model, "normal_equations", None)
        if fused is not None:
            with np.errstate(all="ignore"):
                return fused(self.T, self.Y, self.W, _params(self.spec, self.free, Pr), self.free, rows)
        with np.errstate(all="ignore"):
            f, J = _value_jacobian(self.model, self.take(self.T, rows), _params(self.spec, self.free, Pr), self.free)
            res = np.subtract(np.broadcast_to(f, (rows.size, N)), self.take(self.Y, rows))
            J = np.broadcast_to(J, (rows.size, N, k))
            if not self.unit:
                w = self.take(self.W, rows)
                res *= w
                J = J * w[:, :, None]
            Jt = J.transpose(0, 2, 1)
            c = np.einsum("mn,mn->m", res, res)
            AA = Jt @ J
            gg = (Jt @ res[:, :, None])[..., 0]
        return c, AA, gg


@dataclass
class _State:
    """Per problem of :func:`_lm`: the point with its cost, ``J^T J``, ``J^T r``; damping; stopping."""

    P: np.ndarray
    cost: np.ndarray
    A: np.ndarray
    g: np.ndarray
    converged: np.ndarray
    done: np.ndarray
    lam: np.ndarray
    nu: np.ndarray
    floor: np.ndarray
    ref_cost: np.ndarray
    ref_iter: np.ndarray


@dataclass
class _Active:
    """The problems ``act`` that take a step in this iteration, their values and free system."""

    act: np.ndarray
    P: np.ndarray
    g: np.ndarray
    A: np.ndarray
    cost: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    fr: np.ndarray
    Af: np.ndarray
    gf: np.ndarray

    def select(self, keep: np.ndarray) -> "_Active":
        return _Active(*(getattr(self, f.name)[keep] for f in fields(self)))


def _lm_iteration(pb: _Problems, st: _State, act: np.ndarray, it: int, ftol: float, group, fallback: str) -> None:
    """One iteration for the running problems ``act`` (``st`` updated in place)."""
    cur = _free_system(pb, st, act, ftol)
    if cur is None:
        return
    accept, dscale = _lm_step(pb, st, cur, ftol)
    # repeated rejections: try other kinds of steps (see _fallback_steps)
    rej = cur.act[~accept]
    again = np.flatnonzero(~accept)[st.nu[rej] >= 16.0]
    if fallback != "none" and again.size:
        _fallback_steps(again, cur, cur.cost - st.floor[cur.act], dscale, st, pb.evaluate, newton=fallback == "all")
    _stop_stalled(st, cur, accept, it, ftol)
    if group is not None:
        _merge_starts(group, st.P, st.cost, st.A, st.done, st.converged)


def _free_system(pb: _Problems, st: _State, act: np.ndarray, ftol: float) -> _Active | None:
    """Stop the problems ``act`` that have converged; the others with their free system.

    A variable at a bound whose gradient points outwards (or with ``lb ==
    ub``) is held: its row and column of ``J^T J`` become the identity, its
    gradient 0. Converged: the Gauss-Newton decrement is <= ``ftol * cost``
    (plus the rounding floor). Problems with a non-finite ``J^T J`` or
    gradient stop unconverged. None when no problem goes on.
    """
    Pa, ga, Aa, ca = st.P[act], st.g[act], st.A[act], st.cost[act]
    lb, ub = pb.LB[act], pb.UB[act]
    held = ((Pa <= lb) & (ga > 0)) | ((Pa >= ub) & (ga < 0)) | (lb == ub)
    fr = (~held).astype(np.float64)
    Af = Aa * (fr[:, :, None] * fr[:, None, :]) + pb.eye * (1.0 - fr)[:, None, :]
    gf = ga * fr
    # Gauss-Newton decrement: what an undamped step could still gain
    decrement = -np.sum(gf * _scaled_solve(Af, -gf), axis=1)
    finite = np.all(np.isfinite(Aa), axis=(1, 2)) & np.all(np.isfinite(ga), axis=1)
    stop = finite & (decrement <= ftol * ca + st.floor[act])
    st.converged[act[stop]] = True
    st.done[act[stop | ~finite]] = True
    keep = ~stop & finite
    if not keep.any():
        return None
    return _Active(act, Pa, ga, Aa, ca, lb, ub, fr, Af, gf).select(keep)


def _lm_step(pb: _Problems, st: _State, cur: _Active, ftol: float) -> tuple[np.ndarray, np.ndarray]:
    """The damped Gauss-Newton step of ``cur``, taken where it lowers the cost; the damping updated.

    Marquardt scaling ``diag(J^T J)``, Nielsen's damping update. Returns
    ``(accept, dscale)``: which steps were taken, and the scaling.
    """
    act = cur.act
    dg = np.diagonal(cur.A, axis1=1, axis2=2)
    dscale = np.maximum(dg, 1e-12 * np.max(dg, axis=1, keepdims=True))
    dscale = np.where(dscale > 0, dscale, 1.0) * cur.fr
    H = cur.Af + st.lam[act][:, None, None] * dscale[:, None, :] * pb.eye
    Pn = np.clip(cur.P + _scaled_solve(H, -cur.gf), cur.lb, cur.ub)
    s = Pn - cur.P
    pred = -(2.0 * np.sum(cur.g * s, axis=1) + np.einsum("mi,mij,mj->m", s, cur.A, s))
    cn, An, gn = pb.evaluate(act, Pn)
    actual = cur.cost - cn
    accept = np.isfinite(cn) & (actual > 0)
    with np.errstate(all="ignore"):
        rho = np.where(pred > 0, actual / pred, 0.0)
    acc = act[accept]
    st.P[acc] = Pn[accept]
    st.cost[acc] = cn[accept]
    st.A[acc] = An[accept]
    st.g[acc] = gn[accept]
    # stagnation: a well-modelled (rho > 0.25), lightly damped step that
    # gains less than ftol -- the Gauss-Newton decrement can overstate the
    # possible gain in strongly curved, ill-conditioned valleys
    flat = accept & (actual <= ftol * cn) & (rho > 0.25) & (st.lam[act] <= 1.0)
    st.converged[act[flat]] = True
    st.done[act[flat]] = True
    st.lam[acc] *= np.maximum(_LAM_DOWN, 1.0 - (2.0 * np.clip(rho[accept], 0.0, 1.0) - 1.0) ** 3)
    st.nu[acc] = 2.0
    rej = act[~accept]
    st.lam[rej] *= st.nu[rej]
    st.nu[rej] *= 2.0
    return accept, dscale


def _stop_stalled(st: _State, cur: _Active, accept: np.ndarray, it: int, ftol: float) -> None:
    """Stop (as converged) the problems of ``cur`` that cannot, or barely, improve any more."""
    act, ca = cur.act, cur.cost
    # no step can lower the cost any more: at the precision limit
    rej = act[~accept]
    rej = rej[st.cost[rej] >= ca[~accept] - st.floor[rej]]
    stuck = rej[st.lam[rej] > 1e16]
    st.converged[stuck] = True
    st.done[stuck] = True
    # slow crawl along a curved valley: negligible gain over a window
    due = act[it + 1 - st.ref_iter[act] >= _WINDOW]
    slow = due[st.ref_cost[due] - st.cost[due] <= _WINDOW * max(ftol, 1e-8) * st.cost[due]]
    st.converged[slow] = True
    st.done[slow] = True
    st.ref_cost[due] = st.cost[due]
    st.ref_iter[due] = it + 1


def _fallback_steps(
    pos: np.ndarray,
    cur: _Active,
    ca: np.ndarray,
    dscale: np.ndarray,
    st: _State,
    evaluate,
    newton: bool = True,
) -> None:
    """Other candidate steps after repeated rejections, for the problems ``cur.act[pos]``.

    1. The damped Gauss-Newton step with one more variable held, for each
       variable (a kink in one variable, e.g. an onset on a sample time,
       then no longer blocks the others).
    2. Newton steps with the full Hessian of the cost from finite
       differences of ``J^T r`` (Gauss-Newton fails where large residuals
       curve the valley), shifted to be positive definite, three dampings.

    Per problem the trial with the lowest cost is taken if it is lower than
    ``ca`` (the cost before the step less the rounding floor).
    """
    r, k = pos.size, cur.P.shape[1]
    rows = cur.act[pos]
    eye = np.eye(k)
    P0, g0, f0 = cur.P[pos], cur.g[pos], cur.fr[pos]
    # 1. held steps
    fr_j = f0[:, None, :] * (1.0 - eye)[None, :, :]  # (r, k held, k)
    H = cur.A[pos][:, None] * (fr_j[..., :, None] * fr_j[..., None, :]) + eye * (1.0 - fr_j)[..., None, :]
    H = H + (st.lam[rows][:, None, None, None] * dscale[pos][:, None, None, :] * fr_j[..., None, :]) * eye
    lb, ub = cur.lb[pos], cur.ub[pos]
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
    st.P[dst] = trial.reshape(r * n_t, k)[src]
    st.cost[dst] = c_t[np.arange(r), best][ok]
    st.A[dst] = A_t[src]
    st.g[dst] = g_t[src]
    st.lam[dst] /= 3.0
    st.nu[dst] = 2.0


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
