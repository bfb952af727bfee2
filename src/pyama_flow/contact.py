"""Where two regions touch: the contact line and its direction.

Both the segmentation (:func:`pyama_flow.segmentation.split.notch_depths`:
do two basins meet at a notch of their outline?) and the tracker
(:func:`pyama_flow.tracking.backdate.neck_ratio`: is a merged object two
daughters touching?) measure the line along which two regions meet. numpy
only, so neither side pays for the other's imports.
"""

from __future__ import annotations

import numpy as np


def contact_line(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The pixels of ``a`` with a 4-neighbour in ``b`` (bool, same shape).

    Parameters
    ----------
    a, b : (Y, X) bool
        Disjoint regions on the same image.
    """
    line = np.zeros_like(a, dtype=bool)
    line[:, :-1] |= a[:, :-1] & b[:, 1:]
    line[:, 1:] |= a[:, 1:] & b[:, :-1]
    line[:-1, :] |= a[:-1, :] & b[1:, :]
    line[1:, :] |= a[1:, :] & b[:-1, :]
    return line


def main_axis(centred: np.ndarray) -> np.ndarray:
    """Unit vector along which (N, 2) points, already centred on their mean, spread most."""
    return np.linalg.eigh(centred.T @ centred)[1][:, -1]
