"""One FOV channel read straight from the input file, in place of a raw copy.

With ``storage.raw: source`` the extract step writes no copy of the frames:
its ``raw_ch{c}.json`` names the input file, the reader options, the FOV,
channel and Z plane, and the stack's shape and dtype. The steps that read
raw frames open it with :func:`open_frames`, which gives the same interface
as :class:`~pyama_flow.io.stacks.StackReader` (``shape``, ``dtype``,
``len``, ``[t]``, ``close``) for either kind of file. Nothing of the FOV's
1.5 GB per channel (2048^2 x 180 frames) is written again; each step reads
the frames it needs from the input, which must stay where it is until the
run is over.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pyama_flow.io import open_image
from pyama_flow.io.base import InputError
from pyama_flow.io.fingerprint import fingerprint as content_fingerprint
from pyama_flow.io.fingerprint import plane_bytes_of
from pyama_flow.io.atomic import write_json
from pyama_flow.io.stacks import Calibration, FrameStack, StackReader, frame_interval_s

#: file name ending of a source reference (a raw extract that is no copy)
SUFFIX = ".json"


def write_source(
    path: str | os.PathLike,
    input_path: str,
    reader_options: Mapping[str, Any],
    fov: int,
    channel: int,
    z: int | str,
    shape: tuple[int, int, int],
    dtype: Any,
    fingerprint: str | None = None,
) -> None:
    """Write the reference to one FOV channel of ``input_path`` (JSON, sorted keys).

    ``fingerprint``: the input's content fingerprint as extracted
    (:func:`pyama_flow.io.fingerprint.fingerprint` with
    :func:`~pyama_flow.io.fingerprint.plane_bytes_of` its metadata); computed
    now where not given.
    """
    if fingerprint is None and os.path.exists(input_path):
        with open_image(input_path, **reader_options) as reader:
            fingerprint = content_fingerprint(input_path, plane_bytes_of(reader.metadata))
    ref = {
        "source": os.fspath(input_path),
        "reader": dict(reader_options),
        "fov": int(fov),
        "channel": int(channel),
        "z": z if z == "max" else int(z),
        "shape": [int(s) for s in shape],
        "dtype": np.dtype(dtype).str,
        "fingerprint": fingerprint,
    }
    write_json(path, ref)


def _locate(source: str, ref_path: str, search_cwd: bool = True) -> str:
    """The input file of a reference: as written when absolute; a relative one
    (as the workflow writes it, relative to its working directory) relative to
    the working directory when ``search_cwd`` (the workflow's jobs), else
    relative to the nearest folder above the reference that has it: the
    results' own experiment (the viewer, whatever its working directory)."""
    if os.path.isabs(source) or (search_cwd and os.path.exists(source)):
        return source
    for folder in Path(ref_path).resolve().parents:
        candidate = folder / source
        if candidate.exists():
            return str(candidate)
    return source


class SourceFrames(FrameStack):
    """Frames of one FOV channel of an input file, as a :class:`StackReader` gives them
    (the same :class:`~pyama_flow.io.stacks.FrameStack` interface).

    Raises :class:`InputError` where the reference cannot be read or the input
    no longer has the recorded shape and dtype (it changed after extraction).
    """

    def __init__(self, path: str | os.PathLike, search_cwd: bool = True) -> None:
        self.path = os.fspath(path)
        try:
            with open(self.path) as fh:
                ref = json.load(fh)
            self.source = ref["source"]
            self.fov, self.channel, self.z = int(ref["fov"]), int(ref["channel"]), ref["z"]
            self.shape: tuple[int, int, int] = tuple(int(s) for s in ref["shape"])  # type: ignore[assignment]
            self.dtype = np.dtype(ref["dtype"])
            options = dict(ref["reader"])
            self.fingerprint = ref.get("fingerprint")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{self.path}: not a raw source reference ({exc}); "
                             "delete it and rerun its extract job") from None
        located = _locate(self.source, self.path, search_cwd)
        self._reader = open_image(located, **options)
        now = content_fingerprint(located, plane_bytes_of(self._reader.metadata))
        if self.fingerprint is None or now != self.fingerprint:
            self._reader.close()
            if self.fingerprint is None:
                raise InputError(
                    f"{self.path}: records no content fingerprint of {self.source} (written by an "
                    "older pyama-flow): rerun the extract jobs of this FOV"
                )
            raise InputError(
                f"{self.path}: {self.source} changed since extraction (content fingerprint "
                f"{now} != {self.fingerprint} recorded): rerun the extract jobs of this FOV "
                "(snakemake reruns them on its next start)"
            )
        m = self._reader.metadata
        found = (m.n_frames, m.height, m.width)
        if found != self.shape or np.dtype(m.dtype) != self.dtype or not (
                0 <= self.fov < m.n_fovs and 0 <= self.channel < m.n_channels):
            self._reader.close()
            raise InputError(
                f"{self.path}: {self.source} changed since extraction (now {found} {np.dtype(m.dtype)}, "
                f"{m.n_fovs} FOVs, {m.n_channels} channels; recorded {self.shape} {self.dtype}, "
                f"FOV {self.fov}, channel {self.channel}): rerun the extract jobs of this FOV"
            )
        self.calibration = Calibration.of(m.pixel_size_um, frame_interval_s(self._reader.frame_times(self.fov)))

    def _read(self, t: int) -> np.ndarray:
        return self._reader.read_frame(self.fov, t, self.channel, self.z)

    def close(self) -> None:
        self._reader.close()


def open_frames(path: str | os.PathLike, search_cwd: bool = True) -> FrameStack:
    """The raw frames of a FOV channel: a result stack (``.tif``), or the input
    file itself through a source reference (``.json``, :func:`write_source`);
    ``search_cwd=False`` never resolves a relative input from the working
    directory (see :func:`_locate`)."""
    if os.fspath(path).endswith(SUFFIX):
        return SourceFrames(path, search_cwd)
    return StackReader(path)
