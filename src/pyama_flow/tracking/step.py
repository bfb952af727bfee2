"""The track step: labels with one id per cell over time, and the lineage table."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from pyama_flow.io.atomic import scratch_path
from pyama_flow.io.stacks import (
    DEFAULT_CODEC,
    StackReader,
    label_dtype,
    write_stack,
)

# The step imports what only it needs inside the function: a job is its own
# process, and start-up (numba, pandas, scipy) is paid per job.

log = logging.getLogger("pyama_flow")


class _IdsOverflow(Exception):
    """A track id does not fit the label stack's dtype."""


def _fits(labels: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``labels`` unchanged, or :class:`_IdsOverflow` when its largest id needs a wider dtype."""
    if labels.size and label_dtype(int(labels.max())).itemsize > dtype.itemsize:
        raise _IdsOverflow
    return labels


def track(
    seg_path: str,
    labels_path: str,
    lineage_path: str,
    params: Mapping[str, Any],
    compression: str = DEFAULT_CODEC,
) -> None:
    """Link per-frame labels into tracks; write the label stack and the lineage table.

    The frames are tracked once, streaming, into a scratch stack beside
    ``labels_path`` (Zstandard, fast); its frames are then renamed to the
    final ids (:meth:`Tracker.relabel_lut`: revoked divisions, the division
    review) and written once with ``compression``. The label stack is uint16
    while every track id fits (:func:`label_dtype`); a movie with more than
    65535 tracks is tracked again and written as uint32 (tracking is
    deterministic, so the ids are the same).
    """
    from pyama_flow.tracking.lineage import write_lineage
    from pyama_flow.tracking.tracker import Tracker

    for dtype in (np.dtype(np.uint16), np.dtype(np.uint32)):
        tracker = Tracker(**params)
        try:
            with StackReader(seg_path) as seg, scratch_path(labels_path) as scratch:
                n, h, w = seg.shape
                frames = (_fits(f, dtype) for f in tracker.stream(seg[t] for t in range(n)))
                write_stack(scratch, frames, n, (h, w), dtype, compression="zstd")
                lut = tracker.relabel_lut()
                if lut is not None and label_dtype(int(lut.max())).itemsize <= dtype.itemsize:
                    lut = lut.astype(dtype)  # every final id fits: rename in the stack's dtype
                with StackReader(scratch) as tracked:
                    frames = (tracked[t] if lut is None else _fits(lut[tracked[t]], dtype) for t in range(n))
                    write_stack(labels_path, frames, n, (h, w), dtype, compression=compression,
                                calibration=seg.calibration)
            break
        except _IdsOverflow:
            log.info("%s: more than 65535 track ids; writing uint32 labels", labels_path)
    lineage = tracker.lineage_columns()
    write_lineage(lineage, lineage_path)
    log.info("tracked %d frames: %d tracks", n, len(lineage["cell"]))
    _log_divisions(tracker.division_counts(), labels_path)


def _log_divisions(counts: Mapping[str, int], labels_path: str) -> None:
    """Log how many divisions were recorded and undone; WARNING when more were
    undone than recorded (the segmentation often cuts or merges cells)."""
    recorded, undone = counts["recorded"], counts["reviewed"] + counts["revoked"]
    log.info("divisions: %d recorded; undone: %d by the review, %d revoked (pieces that joined again)",
             recorded, counts["reviewed"], counts["revoked"])
    if undone >= 3 and undone > recorded:
        log.warning("%s: %d divisions seen frame by frame were undone against %d recorded: the segmentation "
                    "often cuts or merges cells here, so parent, lineage_root and generation are unreliable; "
                    "check the divisions in the viewer", labels_path, undone, recorded)
