"""One function per workflow step, from input files to output files.

Each function streams frame by frame (memory independent of the number of
frames), writes every output atomically (temporary name, then rename) and
raises :class:`~pyama_flow.io.base.InputError` with a one-line message naming
the file or FOV on bad input. The Snakemake scripts only call these.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .io import open_image
from .io.base import InputError
from .io.fingerprint import fingerprint, plane_bytes_of
from .io.folder import gap_warning
from .io.source import SUFFIX as SOURCE_SUFFIX
from .io.source import open_frames, write_source
from .io.stacks import (
    DEFAULT_CODEC,
    Calibration,
    StackReader,
    atomic_path,
    frame_interval_s,
    label_dtype,
    write_json,
    write_stack,
)

if TYPE_CHECKING:
    import pandas as pd

# Each step imports what only it needs inside the function: a job is its own
# process, and start-up (numba, pandas, scipy.interpolate) is paid per job.

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
    see :func:`pyama_flow.framestats.frame_statistics`), one row per frame.

    The input's content fingerprint (:mod:`pyama_flow.io.fingerprint`) is taken
    before and after the frames are read: it must equal ``expected_fingerprint``
    (where given) and not change meanwhile; a source reference records it.
    """
    from .framestats import frame_statistics, write_statistics_rows

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
    from .segmentation import segment_frame

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
                            frame = _fill_nearest(frame, bad)
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


def correct(
    raw_path: str, seg_path: str, out_path: str, tile_size: int, dilation: int, expand_px: float = 0.0
) -> None:
    """Background tile models of one fluorescence channel (see ``background``).

    The pixels excluded from the tile medians are the cells grown by
    ``expand_px`` (:func:`pyama_flow.traces.expand_labels`, as the traces step
    measures them), dilated by a square of side ``dilation``: the background
    is estimated outside every grown cell.
    """
    from . import background as bgmod
    from .traces import expand_labels

    models = []
    with open_frames(raw_path) as raw, StackReader(seg_path) as seg:
        _check_same_shape(raw, seg)
        for t in range(len(raw)):
            cells = expand_labels(seg[t], expand_px)
            models.append(bgmod.fit_tiles(raw[t], cells, tile_size=tile_size, dilation=dilation))
    with atomic_path(out_path) as tmp:
        bgmod.save_models(str(tmp), models, tile_size, dilation)
    log.info("background models for %d frames (tile %d px, dilation %d px, cells grown by %g px)",
             len(models), tile_size, dilation, expand_px)


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

    The label stack is uint16 while every track id fits (:func:`label_dtype`);
    a movie with more than 65535 tracks is tracked again and written as uint32
    (tracking is deterministic, so the ids are the same).
    """
    from .tracking import Tracker, write_lineage

    for dtype in (np.dtype(np.uint16), np.dtype(np.uint32)):
        tracker = Tracker(**params)
        try:
            with StackReader(seg_path) as seg:
                n, h, w = seg.shape
                frames = (_fits(tracker.update(seg[t]), dtype) for t in range(n))
                write_stack(labels_path, frames, n, (h, w), dtype, compression=compression,
                            calibration=seg.calibration)
                lut = tracker.relabel_lut()
                if lut is not None:  # revoked divisions: track again (deterministic) and rename their ids
                    again = Tracker(**params)
                    frames = (_fits(lut[again.update(seg[t])], dtype) for t in range(n))
                    write_stack(labels_path, frames, n, (h, w), dtype, compression=compression,
                                calibration=seg.calibration)
            break
        except _IdsOverflow:
            log.info("%s: more than 65535 track ids; writing uint32 labels", labels_path)
    lineage = tracker.lineage_columns()
    write_lineage(lineage, lineage_path)
    log.info("tracked %d frames: %d tracks", n, len(lineage["cell"]))


def traces(
    labels_path: str,
    raw_paths: Mapping[int, str],
    background_paths: Mapping[int, str],
    metadata_path: str,
    out_path: str,
    fov: int,
    pc_channel: int,
    background_weight: float,
    min_frames: int,
    border: int,
    lineage_path: str | None = None,
    stats_path: str | None = None,
    expand_px: float = 0.0,
) -> pd.DataFrame:
    """Per-cell features of every frame, filtered as the reference, sorted by cell, frame.

    ``expand_px`` > 0 (``traces.measure: expanded``) sums ``intensity_total``
    over each cell's mask grown by that margin into its own territory
    (:func:`pyama_flow.traces.expand_labels`); 0 is PyAMA's in-mask sum.
    """
    from . import background as bgmod
    from .traces import TraceBuilder, TraceFilter, write_traces

    with open(metadata_path) as fh:
        meta = json.load(fh)
    try:
        times = meta["fov_times_min"][str(fov)]
    except KeyError:
        raise InputError(f"{metadata_path}: no time points for FOV {fov}") from None
    channels = sorted(raw_paths)
    builder = TraceBuilder(fov, pc_channel, channels, background_weight, expand_px)
    labels = StackReader(labels_path)
    raws = {c: open_frames(raw_paths[c]) for c in channels}
    bgs = {c: bgmod.BackgroundModels(background_paths[c]) for c in channels}
    try:
        for c in channels:
            _check_same_shape(labels, raws[c])
        if len(times) != len(labels):
            raise InputError(
                f"{metadata_path}: FOV {fov} has {len(times)} time points but "
                f"{labels_path} has {len(labels)} frames; they come from different inputs: "
                "delete this FOV's results and rerun"
            )
        for t in range(len(labels)):
            builder.add_frame(
                t,
                times[t],
                labels[t],
                {c: raws[c][t] for c in channels},
                {c: bgs[c].spline(t) for c in channels},
            )
    finally:
        labels.close()
        for r in raws.values():
            r.close()
    raw_table = builder.table(None)
    df = builder.table(TraceFilter(min_frames=min_frames, border=border))
    if builder.invalid_rows:
        log.warning(
            "FOV %d: %d cell rows in %d frames (first: frame %d) cover NaN/inf pixels of the "
            "input or background; their intensity_total leaves those pixels out and they "
            "are marked good=False (not fitted, not merged)",
            fov, builder.invalid_rows, len(builder.invalid_frames), builder.invalid_frames[0],
        )
    if builder.saturated_rows:
        log.warning(
            "FOV %d: %d cell rows in %d frames (first: frame %d) have fluorescence pixels at the "
            "dtype's maximum (saturated): their intensity_total is only a lower bound",
            fov, builder.saturated_rows, len(builder.saturated_frames), builder.saturated_frames[0],
        )
    if raw_table.empty:
        log.warning("FOV %d: no cells in any frame (blank or unsegmentable phase channel?); "
                    "%s has the columns and no rows", fov, out_path)
    elif df.empty:
        log.warning("FOV %d: all %d cells removed by the filters (min_frames=%d, border=%d); "
                    "%s has the columns and no rows",
                    fov, raw_table["cell"].nunique(), min_frames, border, out_path)
    if lineage_path is not None:
        import pandas as pd

        from .tracking import join_lineage

        df = join_lineage(df, pd.read_csv(lineage_path))
    write_traces(df, out_path)
    if stats_path is not None:
        per_frame = raw_table.groupby("frame")["cell"].nunique()
        write_json(
            stats_path,
            {
                "fov": int(fov),
                "cells_detected": int(raw_table["cell"].nunique()),
                "cells_kept": int(df["cell"].nunique()),
                "rows_kept": int(len(df)),
                "cells_per_frame": [int(per_frame.get(t, 0)) for t in range(len(times))],
                "filters": {"min_frames": int(min_frames), "border": int(border)},
                "measure": {"mode": "expanded" if expand_px > 0 else "mask",
                            "expand_px": float(expand_px)},
            },
        )
    log.info("FOV %d: %d of %d cells kept by the filters (min_frames=%d, border=%d)",
             fov, df["cell"].nunique(), raw_table["cell"].nunique(), min_frames, border)
    return df


def _fill_nearest(frame: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """``frame`` with every ``bad`` pixel set to its nearest good pixel (zeros if none)."""
    if bad.all():
        return np.zeros_like(frame)
    from scipy import ndimage as ndi

    idx = ndi.distance_transform_edt(bad, return_distances=False, return_indices=True)
    return frame[tuple(idx)]


def _check_same_shape(a: StackReader, b: StackReader) -> None:
    if a.shape != b.shape:
        raise InputError(
            f"{b.path}: shape {b.shape} does not match {a.path} {a.shape}; they come from "
            "different inputs: delete this FOV's results and rerun"
        )
