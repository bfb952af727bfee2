"""Minimum-cost assignment of the rows of a cost matrix to its columns.

:func:`linear_sum_assignment` gives the same pairs as
``scipy.optimize.linear_sum_assignment`` (the shortest augmenting path
algorithm, Crouse 2016, with the same tie-breaking), in numpy, so that the
track job does not import ``scipy.optimize`` (~0.4 s) for the small blocks it
solves per frame; large ones go to scipy, which is faster there.
"""

from __future__ import annotations

import numpy as np

#: matrices with more elements than this are solved by scipy (the same result, faster)
SCIPY_ABOVE = 1024


def linear_sum_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of a minimum-cost assignment, as scipy returns them.

    Parameters
    ----------
    cost : (R, C) array of finite costs

    Returns
    -------
    row_ind, col_ind : int arrays of ``min(R, C)`` pairs, sorted by row.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError("cost must be a 2-D array")
    if cost.size > SCIPY_ABOVE:
        from scipy.optimize import linear_sum_assignment as scipy_lsa

        return scipy_lsa(cost)
    if not np.isfinite(cost).all():
        raise ValueError("cost matrix contains non-finite values")
    nr, nc = cost.shape
    if nr == 0 or nc == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    transpose = nc < nr
    if transpose:
        cost = cost.T
        nr, nc = nc, nr
    u = np.zeros(nr)
    v = np.zeros(nc)
    path = np.full(nc, -1, np.intp)
    col4row = np.full(nr, -1, np.intp)
    row4col = np.full(nc, -1, np.intp)
    for row in range(nr):
        sink, min_val, costs, in_rows, in_cols = _augmenting_path(cost, u, v, path, row4col, row)
        # dual variables
        u[row] += min_val
        others = in_rows.copy()
        others[row] = False
        u[others] += min_val - costs[col4row[others]]
        v[in_cols] -= min_val - costs[in_cols]
        # augment along the path
        j = sink
        while True:
            i = path[j]
            row4col[j] = i
            col4row[i], j = j, col4row[i]
            if i == row:
                break
    if transpose:
        order = np.argsort(col4row, kind="stable")
        return col4row[order], order
    return np.arange(nr), col4row


def _augmenting_path(cost, u, v, path, row4col, i):
    """Shortest augmenting path from row ``i``: (sink column, its cost, path costs,
    rows and columns visited). Where several columns have the lowest cost, an
    unassigned one is taken (the last such in the scan order), else the first."""
    nr, nc = cost.shape
    costs = np.full(nc, np.inf)
    in_rows = np.zeros(nr, bool)
    in_cols = np.zeros(nc, bool)
    remaining = np.arange(nc - 1, -1, -1)  # reverse order: a constant matrix gives the identity
    n_rem = nc
    min_val = 0.0
    while True:
        in_rows[i] = True
        rem = remaining[:n_rem]
        r = min_val + cost[i, rem] - u[i] - v[rem]
        better = r < costs[rem]
        path[rem[better]] = i
        costs[rem[better]] = r[better]
        scan = costs[rem]
        lowest = scan.min()
        ties = np.flatnonzero(scan == lowest)
        free = ties[row4col[rem[ties]] == -1]
        index = int(free[-1]) if free.size else int(ties[0])
        min_val = float(lowest)
        j = int(rem[index])
        in_cols[j] = True
        n_rem -= 1
        remaining[index] = remaining[n_rem]
        if row4col[j] == -1:
            return j, min_val, costs, in_rows, in_cols
        i = int(row4col[j])
