"""Accuracy metrics (SPEC, Metrics): instance matching and segmentation scores."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment


def overlap_counts(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sparse label-pair overlaps of two label images.

    Returns
    -------
    ids_a, ids_b : arrays of the nonzero label ids present in ``a`` and ``b``
    pair_a, pair_b, inter : for every overlapping nonzero pair, the two ids and
        the number of shared pixels. Linear in the number of pixels.
    """
    a = np.asarray(a).ravel()
    b = np.asarray(b).ravel()
    ids_a = np.unique(a[a > 0])
    ids_b = np.unique(b[b > 0])
    both = (a > 0) & (b > 0)
    if not both.any():
        empty = np.zeros(0, dtype=np.int64)
        return ids_a, ids_b, empty, empty, empty
    key = a[both].astype(np.int64) * (int(b.max()) + 1) + b[both].astype(np.int64)
    uniq, inter = np.unique(key, return_counts=True)
    pair_a, pair_b = np.divmod(uniq, int(b.max()) + 1)
    return ids_a, ids_b, pair_a, pair_b, inter


def iou_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids in a, ids in b, IoU) for every overlapping pair of objects."""
    _, _, pa, pb, inter = overlap_counts(a, b)
    area_a = np.bincount(np.asarray(a).ravel().astype(np.int64))
    area_b = np.bincount(np.asarray(b).ravel().astype(np.int64))
    union = area_a[pa] + area_b[pb] - inter
    return pa, pb, inter / np.maximum(union, 1)


def match_instances(
    pred: np.ndarray, true: np.ndarray, min_iou: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matching of predicted to true objects by IoU (Hungarian).

    Returns the matched predicted ids, true ids and their IoU (pairs with
    IoU >= ``min_iou`` only).
    """
    pa, pb, iou = iou_pairs(pred, true)
    keep = iou >= min_iou
    pa, pb, iou = pa[keep], pb[keep], iou[keep]
    if pa.size == 0:
        return pa, pb, iou
    ua, ia = np.unique(pa, return_inverse=True)
    ub, ib = np.unique(pb, return_inverse=True)
    cost = np.ones((ua.size, ub.size))
    cost[ia, ib] = 1.0 - iou
    rows, cols = linear_sum_assignment(cost)
    ok = cost[rows, cols] <= 1.0 - min_iou
    rows, cols = rows[ok], cols[ok]
    return ua[rows], ub[cols], 1.0 - cost[rows, cols]


def f1_score(precision: float, recall: float) -> float:
    """Harmonic mean of precision and recall; 0 when both are 0 (or one is NaN)."""
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


@dataclass
class SegmentationScores:
    """Instance and pixel scores of one or more frames."""

    n_pred: int
    n_true: int
    n_matched: int
    precision: float
    recall: float
    f1: float
    mean_matched_iou: float
    foreground_iou: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def segmentation_scores(
    pred: np.ndarray | list[np.ndarray],
    true: np.ndarray | list[np.ndarray],
    min_iou: float = 0.5,
) -> SegmentationScores:
    """Precision, recall, F1 (IoU >= ``min_iou``), mean matched IoU, foreground IoU.

    ``pred`` and ``true`` are label images, or equal-length lists of them
    (counts are pooled over frames).
    """
    preds = [pred] if isinstance(pred, np.ndarray) and pred.ndim == 2 else list(pred)
    trues = [true] if isinstance(true, np.ndarray) and true.ndim == 2 else list(true)
    n_pred = n_true = n_match = 0
    ious: list[float] = []
    inter = union = 0
    for p, t in zip(preds, trues, strict=True):
        n_pred += int(np.unique(p[p > 0]).size)
        n_true += int(np.unique(t[t > 0]).size)
        _, _, iou = match_instances(p, t, min_iou)
        n_match += iou.size
        ious.extend(iou.tolist())
        inter += int(np.count_nonzero((p > 0) & (t > 0)))
        union += int(np.count_nonzero((p > 0) | (t > 0)))
    precision = n_match / n_pred if n_pred else 0.0
    recall = n_match / n_true if n_true else 0.0
    return SegmentationScores(
        n_pred=n_pred,
        n_true=n_true,
        n_matched=n_match,
        precision=precision,
        recall=recall,
        f1=f1_score(precision, recall),
        mean_matched_iou=float(np.mean(ious)) if ious else 0.0,
        foreground_iou=inter / union if union else 1.0,
    )
