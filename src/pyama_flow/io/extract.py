"""The extract step: an input file's metadata, and each FOV's frames as stacks.

The step streams frame by frame, writes every output atomically and checks
the input's content fingerprint before and after reading (see
:mod:`pyama_flow.io.fingerprint`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from pyama_flow.io import open_image
from pyama_flow.io.base import InputError
from pyama_flow.io.fingerprint import fingerprint, plane_bytes_of
from pyama_flow.io.folder import gap_warning
from pyama_flow.io.source import SUFFIX as SOURCE_SUFFIX
from pyama_flow.io.source import write_source
from pyama_flow.io.stacks import (
    DEFAULT_CODEC,
    Calibration,
    frame_interval_s,
    write_stack,
)

# The step imports what only it needs inside the function: a job is its own
# process, and start-up (numba, pandas, scipy) is paid per job.

log = logging.getLogger("pyama_flow")


def check_fingerprint(path: str, found: str, expected: str | None, when: str) -> None:
    """One line when the input's content is no longer what ``expected`` recorded."""
    if expected is not None and found != expected:
        raise InputError(
            f"{path}: input changed {when} (content fingerprint {found}, expected {expected}); "
            "a file replaced while the workflow runs: start the workflow again"
        )


def dataset_metadata(
    path: str,
    reader_options: Mapping[str, Any],
    frame_interval_min: float | None,
    expected_fingerprint: str | None = None,
) -> dict[str, Any]:
    """Metadata of an input file plus the time points of each of its FOVs.

    Times come from the file's own stamps; where it has none they are
    ``frame * frame_interval_min`` and ``time_source`` says ``"config"``
    (``frame_interval_min=None`` makes a FOV without stamps an error); in a
    frame folder "frame" is the number in the file name counted from the
    first file, so a missing frame leaves a gap in time (and a WARNING)
    instead of shifting every later frame.
    ``input_fingerprint`` records the input's content fingerprint
    (:mod:`pyama_flow.io.fingerprint`), which must equal
    ``expected_fingerprint`` where given (the one the workflow saw at start).
    Independent of which FOVs the config selects, so selecting another FOV
    does not change this file (nor rerun what depends on it).
    """
    with open_image(path, **reader_options) as reader:
        planes = plane_bytes_of(reader.metadata)
        before = fingerprint(path, planes)
        check_fingerprint(path, before, expected_fingerprint, "since the workflow started")
        meta = reader.metadata.to_dict()
        numbers = (reader.metadata.extra or {}).get("frame_numbers")
        warning = gap_warning(path, numbers)
        if warning:
            log.warning("%s", warning)
        times: dict[str, list[float]] = {}
        sources: dict[str, str] = {}
        for fov in range(reader.metadata.n_fovs):
            t = reader.frame_times(fov)
            if t is None or len(t) != reader.metadata.n_frames or not np.all(np.isfinite(t)):
                if frame_interval_min is None:
                    raise InputError(
                        f"{path}: FOV {fov} has no time stamps; set the dataset's frame_interval_min"
                    )
                index = (np.asarray(numbers, dtype=np.float64) - numbers[0]
                         if numbers and len(numbers) == reader.metadata.n_frames
                         else np.arange(reader.metadata.n_frames))
                t = index * float(frame_interval_min)
                sources[str(fov)] = "config"
            else:
                sources[str(fov)] = "file"
            times[str(fov)] = [round(float(v), 6) for v in t]
    no_stamps = [int(f) for f, src in sources.items() if src == "config"]
    if no_stamps:
        log.warning(
            "%s: %d of %d FOVs have no time stamps (first: FOV %d); using frame index x %g min "
            "(frame_interval_min from the config)",
            path, len(no_stamps), len(sources), no_stamps[0], frame_interval_min,
        )
    check_fingerprint(path, fingerprint(path, planes), before, "while its metadata was read")
    meta["fov_times_min"] = times
    meta["time_source"] = sources
    meta["input_fingerprint"] = before
    return meta


def extract(
    path: str,
    reader_options: Mapping[str, Any],
    fov: int,
    channel: int | str,
    z: int | str,
    out_path: str,
    stats_path: str | None = None,
    compression: str = DEFAULT_CODEC,
    expected_fingerprint: str | None = None,
) -> None:
    """Copy one FOV's channel, frame by frame and in the original dtype, into a stack.

    ``compression`` names the lossless codec (:data:`pyama_flow.io.stacks.CODECS`);
    horizontal differencing is applied first with ``zstd`` only (ImageJ < 1.53v
    misreads it with deflate). The stack carries the input's pixel size and
    frame interval (median of the FOV's time stamps) where the input has them.
    ``"none"`` writes the frames uncompressed: the fastest to write and to
    read, for a raw copy that is deleted after the run (``storage.raw: temp``).
    An ``out_path`` ending in ``.json`` gets no copy but a reference to the
    input (``storage.raw: source``, :mod:`pyama_flow.io.source`); every frame
    is still read once, for the statistics and to find unreadable frames now.

    With ``stats_path``, also write the per-frame statistics of the frames as
    they pass (mean, std, min, max, 1/50/99th percentile, saturated pixels;
    see :func:`pyama_flow.io.framestats.frame_statistics`), one row per frame.

    The input's content fingerprint (:mod:`pyama_flow.io.fingerprint`) is taken
    before and after the frames are read: it must equal ``expected_fingerprint``
    (where given) and not change meanwhile; a source reference records it.
    """
    from pyama_flow.io.framestats import frame_statistics, write_statistics_rows

    stats: list[dict[str, Any]] = []
    with open_image(path, **reader_options) as reader:
        reader.check_index(fov=fov)
        c = reader.channel_index(channel)
        m = reader.metadata
        planes = plane_bytes_of(m)
        before = fingerprint(path, planes)
        check_fingerprint(path, before, expected_fingerprint, "since the workflow started")

        def frames() -> Iterator[np.ndarray]:
            for t in range(m.n_frames):
                frame = reader.read_frame(fov, t, c, z)
                if stats_path is not None:
                    stats.append(frame_statistics(frame, t))
                yield frame

        if out_path.endswith(SOURCE_SUFFIX):
            for _frame in frames():
                pass
            check_fingerprint(path, fingerprint(path, planes), before, "during extraction")
            write_source(out_path, path, reader_options, fov, c, z,
                         (m.n_frames, m.height, m.width), m.dtype, fingerprint=before)
        else:
            write_stack(
                out_path,
                frames(),
                m.n_frames,
                (m.height, m.width),
                np.dtype(m.dtype),
                compression=compression,
                predictor=True,
                metadata={"source": os.path.basename(path), "fov": int(fov), "channel": int(c)},
                calibration=Calibration.of(m.pixel_size_um, frame_interval_s(reader.frame_times(fov))),
            )
            try:
                check_fingerprint(path, fingerprint(path, planes), before, "during extraction")
            except InputError:
                os.remove(out_path)
                raise
    if stats_path is not None:
        write_statistics_rows(stats, stats_path)
        saturated = sum(row["saturated"] for row in stats)
        if saturated:
            log.warning("FOV %d channel %d: %d frames have saturated pixels", fov, c, saturated)
    log.info("extracted FOV %d channel %d: %d frames of %dx%d %s",
             fov, c, m.n_frames, m.height, m.width, m.dtype)
