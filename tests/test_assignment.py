"""The numpy assignment solver gives scipy's pairs, ties included."""

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment as scipy_lsa

from pyama_flow.tracking.assignment import SCIPY_ABOVE, linear_sum_assignment


def cost_matrices(seed, n):
    rng = np.random.default_rng(seed)
    for k in range(n):
        nr, nc = (int(s) for s in rng.integers(1, 13, 2))
        kind = k % 4
        if kind == 0:  # small integers: many ties
            yield rng.integers(0, 3, (nr, nc)).astype(float)
        elif kind == 1:
            yield rng.random((nr, nc))
        elif kind == 2:  # the tracker's matrices: candidate costs in a "no match" fill
            yield np.where(rng.random((nr, nc)) < 0.6, 2.0, rng.random((nr, nc)))
        else:
            yield np.round(rng.random((nr, nc)) * 10) / 10 + 0.1


@pytest.mark.parametrize("seed", range(3))
def test_same_pairs_as_scipy(seed):
    for cost in cost_matrices(seed, 1000):
        got, want = linear_sum_assignment(cost), scipy_lsa(cost)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), cost


def test_edge_cases():
    for shape in ((0, 3), (3, 0), (0, 0)):
        r, c = linear_sum_assignment(np.zeros(shape))
        assert r.size == c.size == 0
    r, c = linear_sum_assignment(np.ones((4, 4)))  # constant: the identity, as scipy
    assert r.tolist() == c.tolist() == [0, 1, 2, 3]
    r, c = linear_sum_assignment(np.array([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]]))
    assert c.tolist() == [1, 0, 2]  # total 5, the known optimum
    big = np.random.default_rng(0).random((40, 40))
    assert big.size > SCIPY_ABOVE and np.array_equal(linear_sum_assignment(big)[1], scipy_lsa(big)[1])
    with pytest.raises(ValueError, match="non-finite"):
        linear_sum_assignment(np.array([[1.0, np.nan]]))
