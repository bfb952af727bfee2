"""The correct step: background tile models of each fluorescence frame."""

from __future__ import annotations

import logging

from pyama_flow.io.source import open_frames
from pyama_flow.io.atomic import atomic_path
from pyama_flow.io.stacks import StackReader

# The step imports what only it needs inside the function: a job is its own
# process, and start-up (numba, pandas, scipy) is paid per job.

log = logging.getLogger("pyama_flow")

from pyama_flow.io.stacks import check_same_shape


def correct(
    raw_path: str, seg_path: str, out_path: str, tile_size: int, dilation: int, expand_px: float = 0.0
) -> None:
    """Background tile models of one fluorescence channel (see ``background``).

    The pixels excluded from the tile medians are the cells grown by
    ``expand_px`` (:func:`pyama_flow.traces.features.expand_labels`, as the traces step
    measures them), dilated by a square of side ``dilation``: the background
    is estimated outside every grown cell.
    """
    from pyama_flow.background import model as bgmod
    from pyama_flow.traces.features import expand_labels

    models = []
    with open_frames(raw_path) as raw, StackReader(seg_path) as seg:
        check_same_shape(raw, seg)
        for t in range(len(raw)):
            cells = expand_labels(seg[t], expand_px)
            models.append(bgmod.fit_tiles(raw[t], cells, tile_size=tile_size, dilation=dilation))
    with atomic_path(out_path) as tmp:
        bgmod.save_models(str(tmp), models, tile_size, dilation)
    log.info("background models for %d frames (tile %d px, dilation %d px, cells grown by %g px)",
             len(models), tile_size, dilation, expand_px)
