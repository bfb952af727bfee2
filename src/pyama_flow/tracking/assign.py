"""Minimum-cost one-to-one assignment on sparse candidate pairs.

The tracker's candidate pairs (previous objects or open tracks x objects of
the current frame) are few per row; :func:`assign` matches pairs without
competitors directly and hands the rest to
``scipy.optimize.linear_sum_assignment``, block by block.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def assign(rows: np.ndarray, cols: np.ndarray, cost: np.ndarray, no_match: float) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost one-to-one assignment on a sparse set of candidate pairs.

    Parameters
    ----------
    rows, cols : int arrays
        Candidate pairs (each pair at most once).
    cost : float array
        Cost of each pair; pairs must cost less than ``no_match``.
    no_match : float
        Cost of leaving a row or column unmatched (the fill value of the dense
        matrix handed to the Hungarian solver).

    Returns
    -------
    rows, cols of the chosen pairs. Pairs whose row and column have no other
    candidate are matched directly; the rest go to
    ``scipy.optimize.linear_sum_assignment`` (one dense matrix when small,
    else one per connected block of the candidate graph).
    """
    rows = np.asarray(rows, np.int64)
    cols = np.asarray(cols, np.int64)
    cost = np.asarray(cost, np.float64)
    if rows.size == 0:
        return rows, cols
    # fast path: a pair whose row and column have no other candidate
    deg_r = np.bincount(rows)
    deg_c = np.bincount(cols)
    single = (deg_r[rows] == 1) & (deg_c[cols] == 1)
    out_r = [rows[single]]
    out_c = [cols[single]]
    rest = np.flatnonzero(~single)
    if rest.size:
        rows, cols, cost = rows[rest], cols[rest], cost[rest]
        ur, ri = np.unique(rows, return_inverse=True)
        uc, ci = np.unique(cols, return_inverse=True)
        for block in _blocks(ri, ci, ur.size, uc.size):
            br, bri = np.unique(ri[block], return_inverse=True)
            bc, bci = np.unique(ci[block], return_inverse=True)
            mat = np.full((br.size, bc.size), float(no_match))
            mat[bri, bci] = cost[block]
            r, c = linear_sum_assignment(mat)
            ok = mat[r, c] < no_match
            out_r.append(ur[br[r[ok]]])
            out_c.append(uc[bc[c[ok]]])
    return np.concatenate(out_r), np.concatenate(out_c)


def _blocks(ri: np.ndarray, ci: np.ndarray, nr: int, nc: int) -> list[np.ndarray]:
    """The candidate pairs split into blocks solved separately.

    Parameters
    ----------
    ri, ci : row and column of each pair, numbered 0..nr-1 and 0..nc-1
    nr, nc : numbers of rows and columns

    Returns
    -------
    Indices of the pairs of each block: all pairs in one block when the
    dense matrix is small (nr * nc <= 4096), else one block per connected
    component of the bipartite candidate graph, in component order.
    """
    if nr * nc <= 4096:
        return [np.arange(ri.size)]
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(ri.size), (ri, ci + nr)), shape=(nr + nc, nr + nc))
    _, comp = connected_components(graph, directed=False)
    edge_comp = comp[ri]
    order = np.argsort(edge_comp, kind="stable")
    bounds = np.flatnonzero(np.diff(edge_comp[order])) + 1
    return np.split(order, bounds)
