"""Kinetic models of single-cell expression traces (SPEC step 6) and their registry.

Every model is one module of this package defining

``NAME``
    registry name (str);
``PARAMS``
    ordered tuple of parameter names;
``DEFAULTS``
    ``{name: ParamDefault(value, lb, ub, fixed)}`` for every name in ``PARAMS``;
``INFO``
    ``{name: ParamInfo(unit, meaning)}`` for every name in ``PARAMS``: what the
    report, the viewer and ``config/README.md`` say about the parameter;
``LINEAR``
    (optional) the parameters in which the model output is jointly affine:
    ``evaluate(t, p) == evaluate(t, p with LINEAR set to 0)
    + sum_j p[j] * jacobian(t, p, LINEAR)[..., j]``. The fitter uses it only
    to build a cheap initial guess; it never looks at model names;
``evaluate(t, params) -> ndarray``
    model output at times ``t`` (hours);
``jacobian(t, params, names) -> ndarray``
    analytic derivatives, shape ``(*shape, len(names))``;
``evaluate_jacobian(t, params, names) -> (ndarray, ndarray)``
    (optional) both at once, sharing the work; the fitter uses it if present;
``normal_equations(t, Y, W, params, names) -> (cost, JtJ, Jtr)``
    (optional) for rows of data ``Y`` (M, N) with weights ``W``: ``sum r^2``,
    ``J^T J`` and ``J^T r`` with ``r = W (evaluate - Y)`` and ``J`` the
    Jacobian (columns ``names``) times ``W``, without building the
    ``(M, N, k)`` Jacobian; the fitter's inner loop uses it if present;
``GRID``, ``GRID_STARTS``, ``ONSET``
    (optional) hints for the fitter's search: grid points per parameter,
    number of grid starts, and the parameter at which the output has a kink
    (the fitter then visits neighbouring sample intervals);
``SWAP``
    (optional) two parameters whose values can be swapped without changing
    the output (a symmetric model): the grid visits only the points with the
    first >= the second.

``t`` and the parameter values broadcast against each other (numpy rules), so
the fitter can evaluate many cells or parameter sets at once: ``t`` of shape
``(n_points,)`` and parameters of shape ``(n_sets, 1)`` give ``(n_sets,
n_points)``. For scalars and a 1-D ``t`` the Jacobian is ``(n_points, k)``.

A new model plugs in by adding a module and one line in ``_REGISTRY``.

This module also holds the numerics shared by the exponential-chain models:
:func:`exp_divdiff`, a numerically stable divided difference of ``exp(-x t)``
over its rate nodes, which is what makes the closed forms regular where two
rates coincide (SPEC: delta = beta, delta = beta + km).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from math import factorial
from types import ModuleType
from typing import NamedTuple

import numpy as np

#: name -> module path. One line per model.
_REGISTRY: dict[str, str] = {
    "trivial": "pyama_flow.fitting.models.trivial",
    "maturation": "pyama_flow.fitting.models.maturation",
    "maturation_blocked": "pyama_flow.fitting.models.maturation_blocked",
}


class ParamDefault(NamedTuple):
    """Default value, bounds and fixed flag of one model parameter."""

    value: float
    lb: float
    ub: float
    fixed: bool = False


class ParamInfo(NamedTuple):
    """Unit and plain-language meaning of one model parameter (report, viewer, docs)."""

    unit: str
    meaning: str


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_REGISTRY)


def get_model(name: str | ModuleType) -> ModuleType:
    """The model module registered under ``name``.

    A module (already a model) is returned unchanged.

    Raises
    ------
    ValueError
        Unknown name; the message lists the valid names.
    """
    if isinstance(name, ModuleType):
        return name
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(list_models())}")
    return importlib.import_module(_REGISTRY[name])


def param_info(model: str | ModuleType, name: str) -> ParamInfo:
    """Unit and meaning of parameter ``name`` of ``model`` (its module's ``INFO``).

    Intensities are in the traces' arbitrary units (a.u.), times in hours
    (the fits run in hours). Unknown names give ``ParamInfo("", "")``.
    """
    return get_model(model).INFO.get(name, ParamInfo("", ""))


# ---------------------------------------------------------------------------
# shared numerics: divided differences of f(x) = exp(-x t)
# ---------------------------------------------------------------------------

#: Newton's recursion for an order-n difference over a spread s loses about
#: log10(n / (s t)) digits. Below this value of s * t the first order uses
#: expm1 and higher orders the Taylor series (whose length adapts to s * t),
#: bounding the loss to ~100x per order (observed worst case over random
#: confluent and near-confluent nodes: 5e-10 relative, typically 1e-14).
_SERIES_BELOW = 0.01
_MAX_TERMS = 24
_INV_FACT = np.array([1.0 / factorial(k) for k in range(_MAX_TERMS + 8)], dtype=np.float64)


def _n_terms(u_max: float) -> int:
    """Series terms so that the truncation ``u^K / K!`` is below 1e-17."""
    k, term = 1, u_max
    while term > 1e-17 and k < _MAX_TERMS:
        k += 1
        term *= u_max / k
    return k


def _dd_series(e0: np.ndarray, gaps: list[np.ndarray], t: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """``f[x0, x0+g1, ..., x0+gn]`` by its Taylor series (every ``|g| t < 1``).

    ``f[x0..xn] = e^{-x0 t} (-t)^n sum_k (-1)^k h_k(g1 t, ..., gn t) / (n+k)!``
    with ``h_k`` the complete homogeneous symmetric polynomial of degree k and
    ``e0 = e^{-x0 t}``. Only the entries selected by ``where`` (default: all)
    need to satisfy ``|g| t < 1``; the others are garbage.
    """
    n = len(gaps)
    u = [g * t for g in gaps]
    u_max = 0.0
    for v in u:
        if v.size:
            u_max = max(u_max, float(np.max(v if where is None else np.where(where, v, 0.0))))
    n_terms = _n_terms(u_max)
    h = [np.ones_like(t)] + [np.zeros_like(t) for _ in range(n_terms - 1)]
    for uj in u:  # h_k(u1..uj) = h_k(u1..u(j-1)) + uj * h_(k-1)(u1..uj)
        for k in range(1, n_terms):
            h[k] += uj * h[k - 1]
    acc = h[n_terms - 1] * ((-1.0) ** (n_terms - 1) * _INV_FACT[n + n_terms - 1])
    for k in range(n_terms - 2, -1, -1):
        acc += ((-1.0) ** k * _INV_FACT[n + k]) * h[k]
    return e0 * (-t) ** n * acc


def _gather(exps: list[np.ndarray], idx: np.ndarray) -> np.ndarray:
    """``exps[idx]`` elementwise, ``idx`` broadcasting with the arrays."""
    first = int(idx.flat[0]) if idx.size else 0
    if np.all(idx == first):
        return exps[first]
    out = exps[0]
    for j in range(1, len(exps)):
        if exps[j] is not exps[0]:
            out = np.where(idx == j, exps[j], out)
    return out


def _take(arr: np.ndarray, flat_idx: np.ndarray, where: tuple) -> np.ndarray:
    """Elements of a (possibly broadcast) array at given flat / nd indices."""
    if arr.flags.c_contiguous:
        return arr.reshape(-1)[flat_idx]
    return arr[where]


def exp_divdiff(
    nodes: Sequence[np.ndarray | float],
    t: np.ndarray,
    exps: Sequence[np.ndarray] | None = None,
    cache: dict | None = None,
) -> np.ndarray:
    """Divided difference ``f[x_0, ..., x_n]`` of ``f(x) = exp(-x t)``.

    ``f[a, b] = (e^{-bt} - e^{-at}) / (b - a)`` and so on; repeated or nearly
    equal nodes give the confluent limit (derivatives in x) without loss of
    accuracy. With rates as nodes these solve linear decay chains, e.g.
    ``-f[delta, beta]`` is protein made from decaying mRNA.

    Parameters
    ----------
    nodes : sequence of arrays or floats
        Rates (>= 0), broadcastable with each other and with ``t``.
    t : array
        Times (>= 0).
    exps : sequence of arrays, optional
        ``exp(-nodes[i] * t)`` if already computed (saves the exponentials).
    cache : dict, optional
        Shared between calls with the same ``t`` and the same node objects
        (kept alive by the caller): lower-order differences already computed
        are reused when every row sorts its nodes the same way.

    Returns
    -------
    array of the broadcast shape of ``t`` and the nodes (float64).

    Notes
    -----
    Per element, the nodes are sorted; Newton's recursion
    ``f[x_i..x_j] = (f[x_(i+1)..x_j] - f[x_i..x_(j-1)]) / (x_j - x_i)`` is
    used where ``(x_j - x_i) t >= 0.01``, elsewhere ``expm1`` (first order)
    or the Taylor series around the smallest node (higher orders), so every
    exponent is <= 0 and the result is accurate to ~1e-14 relative
    typically, 1e-9 in the worst case (checked against 300-digit arithmetic,
    including coincident and nearly coincident nodes).
    """
    t = np.asarray(t, dtype=np.float64)
    xin = [np.asarray(x, dtype=np.float64) for x in nodes]
    m = len(xin)
    if exps is None:
        exps = _node_exps(nodes, xin, t)
    if m == 1:
        return np.array(np.broadcast_to(exps[0], np.broadcast_shapes(t.shape, xin[0].shape)))
    stacked = np.stack(np.broadcast_arrays(*xin), axis=-1)
    order = np.argsort(stacked, axis=-1, kind="stable")
    xs = np.take_along_axis(stacked, order, axis=-1)
    x = [xs[..., i] for i in range(m)]
    # the same sorted order in every row: sub-differences can be cached
    uniform = order.size == m or bool(np.all(order == order.reshape(-1, m)[0]))
    ids = [id(nodes[int(j)]) for j in order.reshape(-1, m)[0]] if uniform and cache is not None else None
    ecol = [_gather(list(exps), order[..., i]) for i in range(m)]
    shape = np.broadcast_shapes(t.shape, *(e.shape for e in ecol))
    positive = t > 0
    table = ecol
    for level in range(1, m):
        new = []
        for i in range(m - level):
            key = None
            if ids is not None:
                key = ("dd", tuple(sorted(ids[i : i + level + 1])))
                if key in cache:
                    new.append(cache[key])
                    continue
            val = _dd_entry(table[i], table[i + 1], ecol[i], x, i, level, t, positive, shape)
            if key is not None:
                cache[key] = val
            new.append(val)
        table = new
    return table[0] if table[0].shape == shape else np.array(np.broadcast_to(table[0], shape))


def _node_exps(nodes: Sequence[object], xin: Sequence[np.ndarray], t: np.ndarray) -> list[np.ndarray]:
    """``exp(-x t)`` of every node ``xin[i]`` (float64 of ``nodes[i]``), once per node object."""
    by_id: dict[int, np.ndarray] = {}
    exps = []
    for raw, x in zip(nodes, xin):
        key = id(raw)
        if key not in by_id:
            e = np.asarray(np.multiply(x, t), dtype=np.float64)
            np.negative(e, out=e)
            by_id[key] = np.exp(e, out=e)
        exps.append(by_id[key])
    return exps


def _dd_entry(lo, hi, e0, x, i, level, t, positive, shape) -> np.ndarray:
    """One Newton-table entry ``f[x_i .. x_(i+level)]`` from its two parents."""
    spread = x[i + level] - x[i]
    safe = np.where(spread > 0, spread, 1.0)
    inv = np.where(spread > 0, 1.0 / safe, 0.0)
    limit = np.where(spread > 0, _SERIES_BELOW / safe, np.inf)
    val = np.subtract(hi, lo)
    if not isinstance(val, np.ndarray) or val.shape != shape:
        val = np.array(np.broadcast_to(val, shape))
    np.multiply(val, inv, out=val)
    small = np.less(t, limit)
    if isinstance(small, np.ndarray) and small.shape == np.shape(positive):
        np.logical_and(small, positive, out=small)
    else:
        small = np.logical_and(small, positive)
    if small.shape != shape:
        small = np.broadcast_to(small, shape)
    idx = np.flatnonzero(small)
    if idx.size == 0:
        return val
    e0 = np.broadcast_to(e0, shape)
    tt = np.broadcast_to(t, shape)
    if level == 1 and np.all(spread == 0):
        return np.where(small, -tt * e0, val)
    if idx.size * 3 > small.size:  # mostly small: whole arrays, no gathers
        if level == 1:  # f[x0, x1] = e^{-x0 t} expm1(-d t) / d
            with np.errstate(invalid="ignore"):
                q = np.where(spread > 0, np.expm1(-spread * tt) * inv, -tt)
            return np.where(small, e0 * q, val)
        gaps = [np.broadcast_to(x[i + j] - x[i], shape) for j in range(1, level + 1)]
        return np.where(small, _dd_series(e0, gaps, tt, small), val)
    where = np.unravel_index(idx, shape)
    ts = _take(tt, idx, where)
    flat = val.reshape(-1)
    if level == 1:
        d = np.broadcast_to(spread, shape)[where]
        with np.errstate(invalid="ignore", divide="ignore"):
            q = np.where(d > 0, np.expm1(-d * ts) / np.where(d > 0, d, 1.0), -ts)
        flat[idx] = _take(e0, idx, where) * q
    else:
        gaps = [np.broadcast_to(x[i + j] - x[i], shape)[where] for j in range(1, level + 1)]
        flat[idx] = _dd_series(_take(e0, idx, where), gaps, ts)
    return val


def broadcast_shape(t: np.ndarray, params: Mapping[str, object], names: Sequence[str]) -> tuple[int, ...]:
    """Shape of a model's output: ``t`` broadcast with every parameter in ``names``."""
    return np.broadcast_shapes(np.shape(t), *(np.shape(params[p]) for p in names))


def onset(t: np.ndarray, t0: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """``(dt, on)``: ``dt = max(t - t0, 0)`` and the mask ``t - t0 > 0``."""
    dt = np.asarray(t, dtype=np.float64) - np.asarray(t0, dtype=np.float64)
    on = dt > 0
    return np.where(on, dt, 0.0), on


__all__ = ["ParamDefault", "exp_divdiff", "get_model", "list_models", "onset"]
