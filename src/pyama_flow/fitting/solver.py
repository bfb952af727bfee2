"""The batched, projected Levenberg-Marquardt solver (step 3 of :mod:`~pyama_flow.fitting.batch`).

:func:`_lm` minimises the (weighted) sum of squared residuals of many
problems at once -- one per cell and start -- inside the parameter box;
after repeated rejections :func:`_fallback_steps` tries steps with one
variable held and Newton steps, and :func:`_merge_starts` stops starts that
have reached a better start's optimum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
