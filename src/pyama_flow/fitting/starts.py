"""Where the solver starts: the grid of data-driven starts, and ``t0`` bounds read off the data.

:func:`_grid_start` gives the starts of step 2 of
:mod:`~pyama_flow.fitting.batch` (on a time vector shared by the batch,
:func:`_common_grid`); :func:`data_t0_upper` gives the per-cell upper bound
of ``t0`` under ``fit.t0_bounds: data`` and :func:`_t0_groups` the cells
that share one.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import numpy as np

from pyama_flow.fitting.kernels import box_lsq_cost
from pyama_flow.fitting.params import ParamSpec
from pyama_flow.fitting.solver import _value_jacobian


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
    fewer), as ``(n_starts, B, k)`` in ``free`` order. For a model with
    ``SWAP = (p, q)`` (output unchanged when p and q swap values) only the
    grid points with ``p >= q`` are visited.
    """
    by_name = {s.name: s for s in spec}
    lin = [p for p in free if p in set(getattr(model, "LINEAR", ()))]
    nl = [p for p in free if p not in lin]
    mesh, shape, keep = _grid_mesh(model, spec, nl, budget)
    terms = _grid_terms(model, spec, t, mesh[keep], nl, lin)
    lo = np.array([by_name[p].lb for p in lin], dtype=np.float64)
    hi = np.array([by_name[p].ub for p in lin], dtype=np.float64)
    G, B = int(np.count_nonzero(keep)), Y.shape[0]
    kept_index = np.cumsum(keep) - 1  # full grid index -> visited grid index
    starts = np.empty((n_starts, B, len(free)))
    block = max(1, min(B, (1 << 21) // max(G, 1)))
    shared = B > 0 and bool(np.all(W == W[:1]))
    for c0 in range(0, B, block):
        Wb, Yb = W[c0 : c0 + block], Y[c0 : c0 + block]
        nb = Wb.shape[0]
        cost, theta = _block_cost(terms, Wb, Yb, lo, hi, shared)
        full = np.full((nb, keep.size), np.inf)
        full[:, keep] = cost
        picks = _grid_minima(full.reshape((nb,) + shape), n_starts)  # (n_starts, nb)
        rows = np.arange(nb)
        for s_i in range(n_starts):
            gi = picks[s_i]
            for j, p in enumerate(free):
                if p in lin:
                    starts[s_i, c0 : c0 + nb, j] = theta[lin.index(p)][rows, kept_index[gi]]
                else:
                    starts[s_i, c0 : c0 + nb, j] = mesh[gi, nl.index(p)]
    return starts


def _grid_mesh(model: ModuleType, spec: Sequence[ParamSpec], nl: Sequence[str], budget: int):
    """``(mesh, shape, keep)``: the grid points ``(G, len(nl))``, the grid's shape, the points to visit.

    Every point is visited, except for a model with ``SWAP = (p, q)`` (both
    in ``nl``) the points with ``p < q``: they repeat a point with the two
    swapped (up to the grid spacing).
    """
    if not nl:
        return np.zeros((1, 0)), (1,), np.ones(1, dtype=bool)
    axes = _grid_axes(model, spec, nl, budget)
    shape = tuple(a.size for a in axes)
    mesh = np.stack([m.ravel() for m in np.meshgrid(*axes, indexing="ij")], axis=-1)
    keep = np.ones(mesh.shape[0], dtype=bool)
    swap = tuple(getattr(model, "SWAP", ()))
    if len(swap) == 2 and all(p in nl for p in swap):
        keep = mesh[:, list(nl).index(swap[0])] >= mesh[:, list(nl).index(swap[1])]
    return mesh, shape, keep


def _grid_terms(model, spec, t, mesh, nl, lin) -> dict:
    """The model at the grid points ``mesh``: columns of the affine parameters, fixed part, their products."""
    G, N, L = mesh.shape[0], t.size, len(lin)
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
        constant = [bool(np.all(c == c[:, :1])) for c in cols]
        terms = {"G": G, "cols": cols, "constant": constant, "r0": None, "prods": {(i, j): cols[i] * cols[j] for i in range(L) for j in range(i, L)}}
        if np.any(r0):
            terms.update(r0=r0, r0sq=r0 * r0, r0cols=[r0 * c for c in cols])
    return terms


def _block_cost(terms: dict, Wb: np.ndarray, Yb: np.ndarray, lo: np.ndarray, hi: np.ndarray, shared: bool):
    """Grid cost ``(nb, G)`` of a block of cells and the affine parameters ``(L, nb, G)`` at each point."""
    cols, r0 = terms["cols"], terms["r0"]
    L, nb = len(cols), Wb.shape[0]
    G = terms["G"]
    with np.errstate(all="ignore"):
        WY = Wb * Yb
        cost = np.sum(WY * Yb, axis=1)[:, None] + np.zeros((1, G))
        if r0 is not None:
            cost += Wb @ terms["r0sq"] - 2.0 * (WY @ r0)
        theta = np.zeros((0, nb, G))
        if L:
            b = np.empty((L, nb, G))
            for i in range(L):
                if terms["constant"][i]:  # the same column at every grid point (e.g. an offset)
                    b[i] = (WY @ cols[i][:, :1])
                else:
                    np.matmul(WY, cols[i], out=b[i])
                if r0 is not None:
                    b[i] -= Wb @ terms["r0cols"][i]
            Wa = Wb[:1] if shared else Wb  # the same weights in every cell: one row
            A = np.empty((L, L, Wa.shape[0], G))
            for (i, j), pp in terms["prods"].items():
                A[i, j] = Wa @ pp
                A[j, i] = A[i, j]
            theta = box_lsq_cost(A, b, lo, hi, cost)
        cost = np.where(np.isfinite(cost), cost, np.inf)
    return cost, theta


def _grid_minima(cost: np.ndarray, n: int) -> np.ndarray:
    """Flat indices of the ``n`` lowest local minima per row of ``cost`` (B, *grid)."""
    B = cost.shape[0]
    flat = cost.reshape(B, -1)
    best = np.argmin(flat, axis=1)
    if n == 1:
        return best[None]
    local = np.ones(cost.shape, dtype=bool)
    for ax in range(1, cost.ndim):  # not above a neighbour along any axis
        n_ax = cost.shape[ax]
        if n_ax < 2:
            continue
        lead = [slice(None)] * cost.ndim
        lead[ax] = slice(0, n_ax - 1)
        tail = list(lead)
        tail[ax] = slice(1, n_ax)
        lead, tail = tuple(lead), tuple(tail)
        local[tail] &= cost[tail] <= cost[lead]
        local[lead] &= cost[lead] <= cost[tail]
    order = _lowest(flat, local.reshape(B, -1), n)
    found = order >= 0
    order = np.where(found, order, best[:, None])
    order[:, 0] = best
    return order.T


def _lowest(flat: np.ndarray, local: np.ndarray, n: int) -> np.ndarray:
    """Per row, the flat indices of the ``n`` lowest finite ``flat`` values where ``local`` (ties: lower index), -1 if fewer.

    The first ``n`` columns of a stable argsort of ``where(local, flat, inf)``,
    sorting only the (few) local minima.
    """
    rows, cols = np.nonzero(local & np.isfinite(flat))
    order = np.lexsort((cols, flat[rows, cols], rows))
    rows, cols = rows[order], cols[order]
    start = np.searchsorted(rows, np.arange(flat.shape[0]))
    rank = np.arange(rows.size) - start[rows]
    out = np.full((flat.shape[0], n), -1, dtype=np.int64)
    keep = rank < n
    out[rows[keep], rank[keep]] = cols[keep]
    return out


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


__all__ = ["data_t0_upper", "half_rise_time"]
