"""Nikon ND2 through the ``nd2`` package, one plane at a time.

ND2 stores one *sequence frame* per (position, time, Z) loop index; all
channels of that index live in the same frame. A plane is read with
``ND2File.read_frame(seq_index)`` (a memory map of the frame for uncompressed
files, never the whole file) and the requested channel is copied out.

Positions (XY loop) are FOVs. Time points are the per-frame
``time.relativeTimeMs`` stamps of the given position and channel.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from pyama_flow.io.base import (
    DAMAGED_HINT,
    ImageMetadata,
    ImageReader,
    InputError,
    channel_names_or_default,
    check_options,
    require_file,
    unreadable_file,
    unreadable_plane,
)

#: nd2 experiment loop type -> our axis letter
_LOOP_AXIS = {
    "XYPosLoop": "P",
    "TimeLoop": "T",
    "NETimeLoop": "T",
    "ZStackLoop": "Z",
}
_EXPOSURE_UNITS_S = {"ms": 1e-3, "s": 1.0, "us": 1e-6, "µs": 1e-6, "min": 60.0}


def _loop_layout(path: str, experiment: list[Any]) -> tuple[dict[str, int], dict[str, int]]:
    """Sizes and sequence-index strides of the P, T and Z loops.

    Returns
    -------
    sizes, strides : dict
        Keyed by ``"P"``, ``"T"``, ``"Z"``; a missing loop has size 1, stride 0.
    """
    axes: list[str] = []
    counts: list[int] = []
    for loop in experiment:
        axis = _LOOP_AXIS.get(loop.type)
        if axis is None:
            raise InputError(f"{path}: unsupported ND2 loop {loop.type!r}")
        if axis in axes:
            raise InputError(f"{path}: ND2 has two {axis} loops; not supported")
        axes.append(axis)
        counts.append(int(loop.count))
    sizes = {"P": 1, "T": 1, "Z": 1}
    strides = {"P": 0, "T": 0, "Z": 0}
    stride = 1
    for axis, count in zip(reversed(axes), reversed(counts)):
        sizes[axis] = count
        strides[axis] = stride
        stride *= count
    return sizes, strides


def _plane_settings(description: str, n_channels: int) -> tuple[list[float], list[str]]:
    """Exposure (s) and binning of each channel from the ND2 description text.

    NIS-Elements writes one ``Plane #k:`` block per channel (or a single block
    for one channel) with ``Exposure: 20 ms`` and ``Binning: 1x1`` lines.
    Returns empty lists when the text does not give one value per channel.
    """
    blocks = re.split(r"Plane #\d+:", description)
    blocks = blocks[1:] if len(blocks) > 1 else blocks
    exposures: list[float] = []
    binnings: list[str] = []
    for block in blocks:
        exp = re.search(r"Exposure:\s*([\d.]+)\s*(ms|s|us|µs|min)\b", block)
        binning = re.search(r"Binning:\s*(\d+x\d+)", block)
        if exp:
            exposures.append(float(exp.group(1)) * _EXPOSURE_UNITS_S[exp.group(2)])
        if binning:
            binnings.append(binning.group(1))
    return (
        exposures if len(exposures) == n_channels else [],
        binnings if len(binnings) == n_channels else [],
    )


def _optics(channels: list[Any], n_z: int, extra: dict[str, Any]) -> tuple[float | None, str | None]:
    """Pixel size (um) and objective name from the first channel's metadata.

    Adds the Z step (from the volume calibration), magnification, numerical
    aperture and zoom to ``extra``.
    """
    pixel_size = objective = None
    if channels:
        ch0 = channels[0]
        vol, mic = ch0.volume, ch0.microscope
        if vol is not None and vol.axesCalibrated and vol.axesCalibrated[0]:
            pixel_size = float(vol.axesCalibration[0])
        if vol is not None and len(vol.axesCalibrated) > 2 and n_z > 1:
            extra["z_step_um"] = float(vol.axesCalibration[2])
        if mic is not None:
            objective = mic.objectiveName or None
            extra["magnification"] = mic.objectiveMagnification
            extra["numerical_aperture"] = mic.objectiveNumericalAperture
            extra["zoom"] = mic.zoomMagnification
    return pixel_size, objective


def _loop_facts(experiment: list[Any], extra: dict[str, Any]) -> None:
    """Add the Z loop's step and the XY loop's position names to ``extra``."""
    for loop in experiment:
        if loop.type == "ZStackLoop":
            extra["z_step_um"] = float(loop.parameters.stepUm)
        if loop.type == "XYPosLoop":
            points = getattr(loop.parameters, "points", None) or []
            extra["position_names"] = [getattr(p, "name", None) or "" for p in points]


def _description_facts(text: dict[str, Any], n_channels: int, extra: dict[str, Any]) -> str | None:
    """Microscope name from the ND2 text info; adds camera, exposure and
    binning per channel and the date to ``extra``."""
    description = str(text.get("description", ""))
    microscope = None
    found = re.search(r"Microscope:\s*([^\r\n]+)", description)
    if found:
        microscope = found.group(1).strip()
    camera = re.search(r"Camera Name:\s*([^\r\n]+)", description)
    if camera:
        extra["camera"] = camera.group(1).strip()
    exposures, binnings = _plane_settings(description, n_channels)
    if exposures:
        extra["exposure_s"] = exposures
    if binnings:
        extra["binning"] = binnings
    if text.get("date"):
        extra["date"] = str(text["date"])
    return microscope


class ND2Reader(ImageReader):
    """Nikon ND2 file: positions as FOVs, T, C, Z.

    Takes no options. Metadata: channel names, pixel size (when calibrated),
    objective, microscope, per-frame time stamps; ``extra`` holds the
    magnification, numerical aperture, zoom, Z step, exposure and binning per
    channel and the position names.
    """

    format_name = "nd2"
    suffixes = (".nd2",)

    def __init__(self, path: str | os.PathLike, **options: Any) -> None:
        super().__init__(path, **options)
        check_options(self.path, "ND2", options)
        import nd2  # optional dependency; open_image checks it is installed

        require_file(self.path)
        try:
            self._nd2 = nd2.ND2File(self.path)
        except Exception as exc:  # nd2 raises ValueError/OSError/... on bad files
            raise unreadable_file(self.path, "ND2", exc) from None
        try:
            self._setup()
        except InputError:
            self._nd2.close()
            raise
        except Exception as exc:
            self._nd2.close()
            raise unreadable_file(self.path, "ND2", exc) from None

    # -- setup ------------------------------------------------------------------
    def _setup(self) -> None:
        f = self._nd2
        if f.is_rgb:
            raise InputError(
                f"{self.path}: RGB images are not supported; convert to one channel per plane"
            )
        attrs = f.attributes
        sizes, self._strides = _loop_layout(self.path, f.experiment)
        self._n_seq = int(attrs.sequenceCount)
        n_c = int(attrs.channelCount or attrs.componentCount or 1)
        self._n_c = n_c
        self._shape = (int(attrs.heightPx), int(attrs.widthPx or 0))
        channels = list(getattr(f.metadata, "channels", None) or [])
        names = channel_names_or_default([ch.channel.name for ch in channels], n_c)
        loop_axes = [_LOOP_AXIS[loop.type] for loop in f.experiment if loop.count > 1]
        extra: dict[str, Any] = {"axes": "".join(loop_axes) + "CYX"}
        pixel_size, objective = _optics(channels, sizes["Z"], extra)
        _loop_facts(f.experiment, extra)
        microscope = _description_facts(f.text_info or {}, n_c, extra)
        self.metadata = ImageMetadata(
            path=self.path,
            format="nd2",
            n_fovs=sizes["P"],
            n_frames=sizes["T"],
            n_channels=n_c,
            n_z=sizes["Z"],
            height=self._shape[0],
            width=self._shape[1],
            dtype=str(f.dtype),
            channel_names=names,
            pixel_size_um=pixel_size,
            objective=objective,
            microscope=microscope,
            file_size=os.path.getsize(self.path),
            extra=extra,
        )
        # plain attributes for the per-plane fast path
        self._sp, self._st, self._sz = self._strides["P"], self._strides["T"], self._strides["Z"]
        self._read_frame = f.read_frame
        # frame index -> file offset map of uncompressed modern files (None: unknown)
        try:
            self._offsets = getattr(f._rdr, "_frame_offsets", None)
        except Exception:
            self._offsets = None
        self._times: dict[tuple[int, int], np.ndarray | None] = {}
        self.metadata.set_times(self.frame_times(0), "frame time stamps")

    # -- helpers ----------------------------------------------------------------
    def seq_index(self, fov: int, t: int, z: int = 0) -> int:
        """Sequence (frame) index of ``(fov, t, z)`` in the file."""
        s = self._strides
        return fov * s["P"] + t * s["T"] + z * s["Z"]

    # -- interface --------------------------------------------------------------
    def read_plane(self, fov: int, t: int, c: int, z: int = 0) -> np.ndarray:
        self.check_plane(fov, t, c, z)
        seq = fov * self._sp + t * self._st + z * self._sz
        if seq >= self._n_seq or (self._offsets is not None and seq not in self._offsets):
            raise InputError(
                f"{self.path}: FOV {fov} frame {t} Z {z} is not in the file "
                "(acquisition stopped early or file truncated); leave the FOV out of the "
                "dataset's fovs, or " + DAMAGED_HINT
            )
        try:
            frame = self._read_frame(seq)
        except Exception as exc:
            raise unreadable_plane(self.path, f"FOV {fov} frame {t}", exc) from None
        # copy: the frame is a view of the file's memory map
        return (frame[c] if self._n_c > 1 else frame).copy()

    def frame_times(self, fov: int, c: int = 0) -> np.ndarray | None:
        """Minutes since the FOV's first frame from each frame's own time stamp.

        Parameters
        ----------
        fov : int
            Position.
        c : int
            Channel whose acquisition time is used (channels of one frame are
            exposed one after another).

        Returns
        -------
        ndarray of float64 or None
            ``None`` when the file records no per-frame time.
        """
        key = (int(fov), int(c))
        if key in self._times:
            return self._times[key]
        self.check_index(fov=fov, c=c)
        stamps = np.full(self.metadata.n_frames, np.nan, dtype=np.float64)
        for t in range(self.metadata.n_frames):
            seq = self.seq_index(fov, t, 0)
            if seq >= self._n_seq:
                break
            try:
                fm = self._nd2.frame_metadata(seq)
                stamps[t] = float(fm.channels[c].time.relativeTimeMs)
            except Exception:  # legacy files give dicts; missing stamps
                break
        times: np.ndarray | None
        if np.isnan(stamps).any() or (len(stamps) > 1 and np.all(stamps == stamps[0])):
            times = None
        else:
            times = (stamps - stamps[0]) / 60000.0
        self._times[key] = times
        return times

    def close(self) -> None:
        self._nd2.close()
