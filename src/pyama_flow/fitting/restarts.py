"""Restarts from a solution: off a singular direction of ``J^T J``, and across the onset's sample intervals.

Step 3 of :mod:`~pyama_flow.fitting.batch` after the multi-start solve
(:func:`_escape_saddles`, :func:`_hop_onset`).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import numpy as np

from pyama_flow.fitting.linalg import _TINY
from pyama_flow.fitting.params import ParamSpec
from pyama_flow.fitting.solver import _lm


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
    reach: int = 1,
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
    ``reach = 1`` (3 held and 2 free starts per round; 2 reaches farther in
    one round at 9 starts): on 3072 simulated ``trivial`` cells no fit had
    a higher SS_res than with ``reach = 2``, at 3/4 of the model evaluations.
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
