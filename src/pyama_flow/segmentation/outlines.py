"""Where an object's outline goes once the objects are split.

:func:`refine_outlines` moves outlines onto the ridge of the phase halo
(texture foreground); :func:`grow_labels` grows objects into a looser mask
(learned foreground); :func:`_keep_largest_piece` keeps each object one
connected piece.
"""

from __future__ import annotations

import numpy as np
from skimage.segmentation import watershed

from pyama_flow.segmentation.masks import distance_map


def refine_outlines(labels: np.ndarray, brightness: np.ndarray, band: float) -> np.ndarray:
    """Move object outlines onto the bright phase halo, within ``band`` px.

    Each object's core (farther than ``band`` from its outline; at least its
    innermost pixel) and the background farther than ``band`` from any object
    are seeds of a watershed flooding ``brightness`` (bright = ridge) in the
    band between them, so every outline settles on the ridge of the halo
    between the object and the background (or between two touching
    objects). Objects stay one connected piece (smaller stray pieces are
    dropped). Returns int32 labels 1..n.
    """
    labels = np.asarray(labels, dtype=np.int32)
    n = int(labels.max())
    if n == 0 or band <= 0:
        return labels
    fg = labels > 0
    din = distance_map(fg)
    dout = distance_map(~fg)
    markers = np.where(din > band, labels, 0)
    present = np.bincount(labels.ravel(), minlength=n + 1) > 0
    for t in (band / 2, band / 4, -1.0):  # thin objects: seed their inner part
        missing = present & (np.bincount(markers.ravel(), minlength=n + 1) == 0)
        missing[0] = False
        if not missing.any():
            break
        add = missing[labels] & (din > t)
        markers[add] = labels[add]
    markers[dout > band] = n + 1
    # flood only the band (plus a rim of seeds on either side)
    region = ((din <= band + 1.5) & (dout <= band + 1.5)) | (markers > 0) & (markers <= n) & (din <= band)
    out = watershed(brightness, np.where(region, markers, 0), mask=region)
    out = np.where(region, out, markers)
    out[out == n + 1] = 0
    return _keep_largest_piece(out)


def grow_labels(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Grow labelled objects into the ``mask`` pixels connected to them.

    Breadth-first, one 8-connected ring per step (each new pixel takes the
    largest label among its already labelled neighbours), so a pixel goes to
    the object nearest to it along ``mask``. Pixels of ``mask`` not connected
    to any object stay 0; labelled pixels outside ``mask`` are kept. Returns
    int32 labels with the same ids.
    """
    labels = np.asarray(labels, dtype=np.int32)
    out = np.pad(labels, 1)
    nx = out.shape[1]
    flat = out.ravel()
    todo = np.flatnonzero(np.pad(np.asarray(mask, dtype=bool) & (labels == 0), 1))
    offsets = np.array([-nx - 1, -nx, -nx + 1, -1, 1, nx - 1, nx, nx + 1], dtype=np.intp)
    while todo.size:
        new = flat[todo[:, None] + offsets].max(axis=1)
        got = new > 0
        if not got.any():
            break
        flat[todo[got]] = new[got]
        todo = todo[~got]
    return out[1:-1, 1:-1]


def _keep_largest_piece(labels: np.ndarray) -> np.ndarray:
    """Keep each label's largest 4-connected piece, renumber 1..n (int32)."""
    from skimage.measure import label as cc_label

    pieces = cc_label(labels, background=0, connectivity=1)
    m = int(pieces.max())
    if m == 0:
        return np.zeros(labels.shape, dtype=np.int32)
    owner = np.zeros(m + 1, dtype=np.int64)
    owner[pieces.ravel()] = labels.ravel()
    size = np.bincount(pieces.ravel(), minlength=m + 1)
    order = np.lexsort((-size, owner))  # by owner, largest piece first
    first = np.r_[True, owner[order][1:] != owner[order][:-1]]
    keep = np.zeros(m + 1, dtype=bool)
    keep[order[first]] = True
    keep[0] = False
    lut = np.zeros(m + 1, dtype=np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut[pieces]
