"""The segment step: every phase-contrast frame of a FOV into instance labels."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from pyama_flow.io.base import InputError
from pyama_flow.io.source import open_frames
from pyama_flow.io.stacks import (
    DEFAULT_CODEC,
    StackReader,
    write_stack,
)

# The step imports what only it needs inside the function: a job is its own
# process, and start-up (numba, pandas, scipy) is paid per job.

log = logging.getLogger("pyama_flow")


def segment(
    raw_path: str, out_path: str, method: str, params: Mapping[str, Any], compression: str = DEFAULT_CODEC
) -> None:
    """Segment every frame of the phase-contrast stack into instance labels (uint16).

    Non-finite pixels (NaN / inf in float input) are background: LOG-STD
    handles them itself; for other methods each takes the value of the
    nearest finite pixel before segmenting (a constant fill would look like
    texture-free background and shift the methods' thresholds). They are
    never labelled.
    Frames without objects (blank, constant, saturated) give empty labels.
    """
    from pyama_flow.segmentation import segment_frame

    with open_frames(raw_path) as raw:
        n, h, w = raw.shape
        nonfinite: list[int] = []
        empty: list[int] = []

        def frames() -> Iterator[np.ndarray]:
            for t in range(n):
                frame = raw[t]
                bad = None
                if frame.dtype.kind == "f":
                    bad = ~np.isfinite(frame)
                    if bad.any():
                        nonfinite.append(t)
                        if method != "logstd":
                            frame = fill_nearest(frame, bad)
                    else:
                        bad = None
                labels = segment_frame(frame, method=method, **params)
                if bad is not None:
                    labels[bad] = 0
                if not labels.any():
                    empty.append(t)
                log.debug("frame %d: %d objects", t, int(labels.max()))
                yield labels

        write_stack(out_path, frames(), n, (h, w), np.uint16, compression=compression,
                    calibration=raw.calibration)
    if nonfinite:
        log.warning("%s: %d of %d frames have NaN/inf pixels (first: frame %d); "
                    "they are segmented as background", raw_path, len(nonfinite), n, nonfinite[0])
    if empty:
        log.warning("%s: no objects in %d of %d frames (first: frame %d)",
                    raw_path, len(empty), n, empty[0])
    log.info("segmented %d frames with %s %s", n, method, dict(params))


def external_labels_path(pattern: str, dataset: str, fov: int) -> str:
    """The label stack of a FOV from ``segmentation.external.path``.

    ``pattern`` is a Python format string with ``{dataset}`` and ``{fov}``
    (an integer: ``{fov:03d}`` gives ``000``); an unknown placeholder is an
    :class:`InputError` naming it.
    """
    try:
        return pattern.format(dataset=dataset, fov=int(fov))
    except (KeyError, IndexError, ValueError) as exc:
        raise InputError(
            f"segmentation.external.path: {pattern!r} is not a valid pattern ({exc!r}); "
            "placeholders are {dataset} and {fov} (e.g. {fov:03d})"
        ) from None


class _ExternalLabels(StackReader):
    """A label TIFF written by another program, frame by frame.

    Most writers put one frame per page (ImageJ, Cellpose, ``tifffile.imwrite``
    of a (T, Y, X) array with T > 4); tifffile's default writes a stack of 3 or 4
    frames as one page of colour planes, which is read whole (4 frames at most).
    """

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._whole: np.ndarray | None = None
        if len(self.shape) == 3 and len(self._pages) != self.shape[0]:
            self._whole = self._tif.series[0].asarray().reshape(self.shape)

    def _read(self, t: int) -> np.ndarray:
        return self._whole[t] if self._whole is not None else super()._read(t)


def _open_external(path: str, fov: int, n: int, shape: tuple[int, int]) -> StackReader:
    """Open an external label stack and check it against the FOV's phase stack."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: external segmentation of FOV {fov} not found")
    try:
        labels = _ExternalLabels(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one line
        raise InputError(f"{path}: external segmentation of FOV {fov} is not a readable TIFF ({exc})") from None
    problem = None
    if labels.dtype.kind not in "ui" or labels.dtype.itemsize > 4:
        problem = (f"dtype {labels.dtype} is not an integer label type "
                   "(uint8/16/32 or int8/16/32; a float or probability map is not labels)")
    elif len(labels.shape) != 3 or labels.shape[1:] != tuple(shape):
        problem = f"frame shape {labels.shape[1:]} differs from the phase channel's {tuple(shape)}"
    elif labels.shape[0] != n:
        problem = f"{labels.shape[0]} frames, the phase channel has {n}"
    if problem is not None:
        labels.close()
        raise InputError(f"{path}: external segmentation of FOV {fov}: {problem}")
    return labels


def segment_external(
    raw_path: str, labels_path: str, out_path: str, fov: int, compression: str = DEFAULT_CODEC
) -> None:
    """Take a FOV's segmentation from a label stack made elsewhere (Cellpose, StarDist, ilastik).

    ``labels_path`` is a (T, Y, X) TIFF of integer instance labels (0 =
    background; ids need not be linked over time). Its frame count and frame
    shape must equal the phase channel's (``raw_path``) and its dtype must be
    an integer one; negative ids and ids above 65535 (the segmentation stack
    is uint16) are refused. Every refusal is an :class:`InputError` naming
    the file and the FOV, raised before anything is written or, for a bad
    frame, with the partial output removed (:func:`write_stack` is atomic).
    """
    with open_frames(raw_path) as raw:
        n, h, w = raw.shape
    with _open_external(labels_path, fov, n, (h, w)) as ext:

        def frames() -> Iterator[np.ndarray]:
            for t in range(n):
                frame = ext[t]
                if frame.size and (int(frame.min()) < 0 or int(frame.max()) > 65535):
                    raise InputError(
                        f"{labels_path}: external segmentation of FOV {fov}: frame {t} has ids outside "
                        f"0-65535 ({int(frame.min())}..{int(frame.max())}); renumber the labels per frame"
                    )
                yield frame.astype(np.uint16, copy=False)

        write_stack(out_path, frames(), n, (h, w), np.uint16, compression=compression)
    log.info("FOV %d: %d frames of labels taken from %s", fov, n, labels_path)



def fill_nearest(frame: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """``frame`` with every ``bad`` pixel set to its nearest good pixel (zeros if none)."""
    if bad.all():
        return np.zeros_like(frame)
    from scipy import ndimage as ndi

    idx = ndi.distance_transform_edt(bad, return_distances=False, return_indices=True)
    return frame[tuple(idx)]
