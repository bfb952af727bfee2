"""Tracking accuracy (SPEC, Metrics): link precision / recall / F1, division recall.

Definitions used by :func:`link_scores`:

- **Link**: object ``a`` in frame t and object ``b`` in frame t+1 such that
  they are the same cell (same id in both frames) or ``b`` is a daughter of
  ``a`` (``parent[b] == a`` in the lineage table, ``a`` present at t, ``b``
  present at t+1 and not at t). Links are formed the same way from the
  predicted track ids + predicted lineage and from the true ids + true
  lineage.
- **Matching**: in every frame, predicted objects are mapped one-to-one to
  true objects by mask IoU >= ``min_iou`` (0.5; Hungarian,
  :func:`pyama_flow.devtools.metrics.match_instances`). A predicted link (a, b) is
  correct when a and b are both matched and their true objects form a true
  link. Precision = correct / predicted links, recall = correct / true links.
- **Gaps**: a cell missing from frames t+1 .. t+k-1 has no link across the
  gap in this metric (neither in the truth nor in the prediction), so gap
  closing does not change link precision or recall. Gap links are scored
  separately: a *gap link* joins the same id at its last frame before a gap
  and its first frame after it; ``gap_link_recall`` is the fraction of true
  gap links whose two ends are matched to objects carrying the same
  predicted id, ``gap_link_precision`` the converse for predicted gap links.
- **Division**: a mother present at frame t with two or more daughters
  present at t+1 (daughters appearing later are not scorable and not
  counted). It is found when every mother -> daughter link of it is a
  correct predicted link (``division_recall``). ``division_precision`` is
  the same for predicted divisions against the truth.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pyama_flow.devtools.metrics import f1_score, match_instances
from pyama_flow.tracking.lineage import parent_of


def frame_links(
    ids_t: np.ndarray, ids_t1: np.ndarray, parent: dict[int, int]
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Links between two consecutive frames from ids and a parent map.

    Parameters
    ----------
    ids_t, ids_t1 : sorted arrays of the ids present in frames t and t+1
    parent : cell id -> parent id (0 = none)

    Returns
    -------
    same : (a, a) pairs for ids present in both frames
    division : (mother, daughter) pairs, daughter present at t+1 but not at
        t, mother present at t
    """
    same_ids = np.intersect1d(ids_t, ids_t1, assume_unique=True)
    same = [(int(a), int(a)) for a in same_ids]
    present_t = set(ids_t.tolist())
    division = []
    for b in np.setdiff1d(ids_t1, ids_t, assume_unique=True).tolist():
        a = parent.get(int(b), 0)
        if a and a in present_t:
            division.append((a, int(b)))
    return same, division


def _ids(frame: np.ndarray) -> np.ndarray:
    """Sorted nonzero ids present in a label image."""
    frame = np.asarray(frame)
    counts = np.bincount(frame.ravel().astype(np.int64))
    ids = np.flatnonzero(counts)
    return ids[ids > 0]


def link_scores(
    pred_frames: Iterable[np.ndarray],
    pred_lineage: pd.DataFrame,
    true_frames: Iterable[np.ndarray],
    true_lineage: pd.DataFrame,
    min_iou: float = 0.5,
) -> dict[str, float]:
    """Link precision, recall, F1, division recall (and gap-link scores).

    Parameters
    ----------
    pred_frames, true_frames : equal-length iterables of (Y, X) label images
        (predicted track ids; true cell ids). Consumed one frame at a time.
    pred_lineage, true_lineage : tables with columns ``cell, parent`` (0 = no
        parent), e.g. from :meth:`pyama_flow.tracking.tracker.Tracker.lineage`.
    min_iou : IoU threshold of the per-frame one-to-one object matching.

    Returns
    -------
    dict with ``n_frames, n_true_links, n_pred_links, n_correct_links,
    link_precision, link_recall, link_f1, n_true_divisions,
    n_divisions_found, division_recall, n_pred_divisions,
    division_precision, n_true_gap_links, gap_link_recall, n_pred_gap_links,
    gap_link_precision``. Ratios with an empty denominator are NaN.
    See the module docstring for the definitions.
    """
    parent_p = parent_of(pred_lineage)
    parent_t = parent_of(true_lineage)
    counts = dict.fromkeys(("true", "pred", "correct", "div_true", "div_found", "div_pred", "div_pred_ok"), 0)
    gaps_true, gaps_pred = _GapLinks(), _GapLinks()
    prev = None
    n_frames = 0
    for t, (p, g) in enumerate(zip(pred_frames, true_frames, strict=True)):
        n_frames += 1
        cur = _MatchedFrame.of(p, g, min_iou)
        if prev is not None:
            for key, n in _link_counts(prev, cur, parent_p, parent_t).items():
                counts[key] += n
        gaps_true.update(t, cur.ids_g, cur.t2p)
        gaps_pred.update(t, cur.ids_p, cur.p2t)
        prev = cur

    precision = _ratio(counts["correct"], counts["pred"])
    recall = _ratio(counts["correct"], counts["true"])
    return {
        "n_frames": n_frames,
        "n_true_links": counts["true"],
        "n_pred_links": counts["pred"],
        "n_correct_links": counts["correct"],
        "link_precision": precision,
        "link_recall": recall,
        "link_f1": f1_score(precision, recall),
        "n_true_divisions": counts["div_true"],
        "n_divisions_found": counts["div_found"],
        "division_recall": _ratio(counts["div_found"], counts["div_true"]),
        "n_pred_divisions": counts["div_pred"],
        "division_precision": _ratio(counts["div_pred_ok"], counts["div_pred"]),
        "n_true_gap_links": gaps_true.n,
        "gap_link_recall": _ratio(gaps_true.n_ok, gaps_true.n),
        "n_pred_gap_links": gaps_pred.n,
        "gap_link_precision": _ratio(gaps_pred.n_ok, gaps_pred.n),
    }


@dataclass
class _MatchedFrame:
    """One frame's ids and its one-to-one matching of predicted to true objects."""

    ids_p: np.ndarray  # predicted ids present, sorted
    ids_g: np.ndarray  # true ids present, sorted
    p2t: dict[int, int]  # matched predicted id -> true id
    t2p: dict[int, int]  # matched true id -> predicted id

    @classmethod
    def of(cls, pred: np.ndarray, true: np.ndarray, min_iou: float) -> _MatchedFrame:
        """Match the label images ``pred`` and ``true`` (IoU >= ``min_iou``, one-to-one)."""
        mp, mt, _ = match_instances(pred, true, min_iou)
        p2t = dict(zip(mp.tolist(), mt.tolist(), strict=True))
        t2p = dict(zip(mt.tolist(), mp.tolist(), strict=True))
        return cls(_ids(pred), _ids(true), p2t, t2p)


def _link_counts(
    prev: _MatchedFrame, cur: _MatchedFrame, parent_p: dict[int, int], parent_t: dict[int, int]
) -> dict[str, int]:
    """Links and divisions between two consecutive frames, true and predicted.

    Returns
    -------
    dict with ``true``, ``pred``, ``correct`` (links), ``div_true``,
    ``div_found`` (true divisions, and those whose every link was
    predicted), ``div_pred``, ``div_pred_ok`` (predicted divisions, and
    those whose every link is correct).
    """
    same_p, div_p = frame_links(prev.ids_p, cur.ids_p, parent_p)
    same_g, div_g = frame_links(prev.ids_g, cur.ids_g, parent_t)
    true_set = set(same_g) | set(div_g)
    pred_set = set(same_p) | set(div_p)
    correct = {
        (a, b) for a, b in pred_set
        if a in prev.p2t and b in cur.p2t and (prev.p2t[a], cur.p2t[b]) in true_set
    }
    out = {"true": len(true_set), "pred": len(pred_set), "correct": len(correct),
           "div_true": 0, "div_found": 0, "div_pred": 0, "div_pred_ok": 0}
    # divisions: group mother -> daughters links
    for mother, daughters in _group(div_g).items():
        if len(daughters) < 2:
            continue
        out["div_true"] += 1
        pm = prev.t2p.get(mother)
        if pm is not None and all(d in cur.t2p and (pm, cur.t2p[d]) in correct for d in daughters):
            out["div_found"] += 1
    for mother, daughters in _group(div_p).items():
        if len(daughters) < 2:
            continue
        out["div_pred"] += 1
        if all((mother, d) in correct for d in daughters):
            out["div_pred_ok"] += 1
    return out


class _GapLinks:
    """Gap links of one side (true or predicted ids): an id seen again after missing >= 1 frame.

    ``n`` counts them; ``n_ok`` those whose two ends are matched to the same
    id of the other side.
    """

    def __init__(self) -> None:
        self.last_seen: dict[int, tuple[int, int]] = {}  # id -> (frame, matched other id or 0)
        self.n = 0
        self.n_ok = 0

    def update(self, t: int, ids: np.ndarray, to_other: dict[int, int]) -> None:
        """Count the gap links ending at frame ``t`` (``ids`` present, matched by ``to_other``)."""
        for i in ids.tolist():
            seen = self.last_seen.get(i)
            if seen is not None and seen[0] < t - 1:
                self.n += 1
                if seen[1] and to_other.get(i) == seen[1]:
                    self.n_ok += 1
            self.last_seen[i] = (t, to_other.get(i, 0))


def _group(links: list[tuple[int, int]]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for a, b in links:
        out.setdefault(a, []).append(b)
    return out


def _ratio(num: int, den: int) -> float:
    return num / den if den else float("nan")


def lineage_graph(frames: np.ndarray, lineage: pd.DataFrame):
    """Tracking graph (``networkx.DiGraph``) of a labelled movie, for ``traccuracy``.

    Parameters
    ----------
    frames : (T, Y, X) integer array of track ids (0 = background)
    lineage : table with columns ``cell, parent`` (0 = no parent)

    Returns
    -------
    DiGraph with one node ``"{id}_{t}"`` per id and frame where it has
    pixels (attributes ``t``, ``segmentation_id``, ``y``, ``x``), an edge
    between consecutive appearances of an id (also across a gap, as the CTC
    represents gaps) and an edge from a mother's last appearance to each
    daughter's first one.
    """
    import networkx as nx

    graph = nx.DiGraph()
    seen: dict[int, list[int]] = {}
    for t in range(frames.shape[0]):
        f = np.asarray(frames[t]).astype(np.int64)
        objs = frame_objects_centroids(f)
        for cid, (cy, cx) in objs.items():
            graph.add_node(f"{cid}_{t}", t=t, segmentation_id=cid, y=cy, x=cx)
            seen.setdefault(cid, []).append(t)
    for cid, ts in seen.items():
        for a, b in zip(ts[:-1], ts[1:]):
            graph.add_edge(f"{cid}_{a}", f"{cid}_{b}")
    parent = parent_of(lineage)
    for cid, ts in seen.items():
        p = parent.get(cid, 0)
        if p and p in seen:
            before = [s for s in seen[p] if s < ts[0]]
            if before:
                graph.add_edge(f"{p}_{before[-1]}", f"{cid}_{ts[0]}")
    return graph


def frame_objects_centroids(frame: np.ndarray) -> dict[int, tuple[float, float]]:
    """Centroid (row, column) of every id of a label frame."""
    idx = np.flatnonzero(frame.ravel())
    ids = frame.ravel()[idx]
    if ids.size == 0:
        return {}
    uniq, inv = np.unique(ids, return_inverse=True)
    n = np.bincount(inv).astype(np.float64)
    y, x = np.divmod(idx, frame.shape[1])
    cy = np.bincount(inv, weights=y) / n
    cx = np.bincount(inv, weights=x) / n
    return {int(u): (float(a), float(b)) for u, a, b in zip(uniq, cy, cx, strict=True)}


def ctc_scores(
    pred_frames: np.ndarray,
    pred_lineage: pd.DataFrame,
    true_frames: np.ndarray,
    true_lineage: pd.DataFrame,
    frame_buffer: int = 2,
) -> dict[str, float]:
    """The Cell Tracking Challenge's scores, computed by ``traccuracy``.

    Parameters
    ----------
    pred_frames, true_frames : (T, Y, X) integer arrays of track ids (held
        in memory: for benchmarks and tests, not for the workflow's jobs)
    pred_lineage, true_lineage : tables with columns ``cell, parent``

    Returns
    -------
    dict with ``DET``, ``TRA``, ``LNK`` (CTC matching: a predicted object
    matches a true one covering more than half of the true object's
    pixels) and ``division_precision``, ``division_recall``,
    ``division_f1``, ``n_true_divisions``, ``n_pred_divisions`` (one-to-one
    IoU >= 0.5 matching, divisions in the same frame) and
    ``division_precision_shifted``, ``division_recall_shifted`` (a division
    found up to ``frame_buffer`` frames early or late also counts, as
    traccuracy's frame buffer: e.g. daughters the segmentation keeps merged
    for a frame after the division; NaN where traccuracy 0.3.0's
    correction of shifted divisions raises). Requires the
    ``traccuracy`` package (the ``test`` extra).
    """
    from traccuracy import TrackingGraph, run_metrics
    from traccuracy.matchers import CTCMatcher, IOUMatcher
    from traccuracy.metrics import CTCMetrics, DivisionMetrics

    pred_frames = np.asarray(pred_frames)
    true_frames = np.asarray(true_frames)
    gt = TrackingGraph(lineage_graph(true_frames, true_lineage), segmentation=true_frames)
    pred = TrackingGraph(lineage_graph(pred_frames, pred_lineage), segmentation=pred_frames)
    ctc, _ = run_metrics(gt, pred, CTCMatcher(), [CTCMetrics()])

    def divisions(buffer: int) -> dict[str, float]:
        g = TrackingGraph(lineage_graph(true_frames, true_lineage), segmentation=true_frames)
        p = TrackingGraph(lineage_graph(pred_frames, pred_lineage), segmentation=pred_frames)
        res, _ = run_metrics(g, p, IOUMatcher(iou_threshold=0.5, one_to_one=True), [DivisionMetrics(buffer)])
        return res[0]["results"][f"Frame Buffer {buffer}"]

    c = ctc[0]["results"]
    d = divisions(0)
    try:
        late = divisions(frame_buffer)
    except KeyError:  # traccuracy 0.3.0's shifted-division correction fails on some graphs
        late = {"Division Precision": float("nan"), "Division Recall": float("nan")}
    return {
        "DET": float(c["DET"]),
        "TRA": float(c["TRA"]),
        "LNK": float(c["LNK"]),
        "division_precision": float(d["Division Precision"]),
        "division_recall": float(d["Division Recall"]),
        "division_f1": float(d["Division F1"]),
        "n_true_divisions": int(d["True Positive Divisions"] + d["False Negative Divisions"]),
        "n_pred_divisions": int(d["True Positive Divisions"] + d["False Positive Divisions"]),
        "division_precision_shifted": float(late["Division Precision"]),
        "division_recall_shifted": float(late["Division Recall"]),
    }
