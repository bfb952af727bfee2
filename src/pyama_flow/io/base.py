"""Reader interface and the one metadata model shared by every input format.

A reader opens one microscopy file and serves single 2-D planes on demand, so a
job's memory stays at a few frames whatever the file size. Every format
(TIFF family, ND2, CZI, frame folders) implements :class:`ImageReader`.
"""

from __future__ import annotations

import json
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


class InputError(ValueError):
    """Bad input: the message is one line naming the file and what is wrong."""


#: What to do about a damaged input file (appended to the readers' messages).
DAMAGED_HINT = "re-copy the file (compare its size with the original) or re-export it"


@dataclass
class ImageMetadata:
    """Metadata of one microscopy file, the same for every format.

    Attributes
    ----------
    path : str
        File (or folder) the metadata was read from.
    format : str
        Short format name (``"ome-tiff"``, ``"imagej-tiff"``, ``"tiff"``, ``"nd2"``, ...).
    n_fovs, n_frames, n_channels, n_z, height, width : int
        Dimensions (FOV, T, C, Z, Y, X).
    dtype : str
        NumPy dtype name of a plane as stored (``"uint16"``).
    channel_names : list of str
        One name per channel; ``"C0"``, ``"C1"``... where the file has none.
    time_min : list of float or None
        Time of each frame of FOV 0 in minutes since its first frame, from the
        file's own time stamps; ``None`` when the file has none.
    pixel_size_um : float or None
        Pixel size in micrometres where the file records it.
    objective, microscope : str or None
        Where the file records them.
    file_size : int
        Size on disk in bytes (sum over files for a folder).
    extra : dict
        Format-specific facts (axes string, series count, ...).
    """

    path: str
    format: str
    n_fovs: int
    n_frames: int
    n_channels: int
    n_z: int
    height: int
    width: int
    dtype: str
    channel_names: list[str]
    time_min: list[float] | None = None
    pixel_size_um: float | None = None
    objective: str | None = None
    microscope: str | None = None
    file_size: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def dims(self) -> dict[str, int]:
        """Dimension sizes keyed by axis letter (P = FOV)."""
        return {
            "P": self.n_fovs,
            "T": self.n_frames,
            "C": self.n_channels,
            "Z": self.n_z,
            "Y": self.height,
            "X": self.width,
        }

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["dims"] = self.dims
        return out

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def set_times(self, times: Sequence[float] | None, source: str | None) -> None:
        """Record FOV 0's frame times (minutes) and where they come from.

        ``extra["time_source"]`` is ``None`` when there are no times.
        """
        self.time_min = None if times is None else [float(v) for v in times]
        self.extra["time_source"] = None if times is None else source


class ImageReader(ABC):
    """Lazy reader of one microscopy file.

    Subclasses set :attr:`format_name`, fill ``self.metadata`` in ``__init__``
    and implement :meth:`read_plane`. Each instance owns its file handle, so
    several processes can read the same file at once.
    """

    format_name: str = ""
    #: File name endings this reader claims (lower case, with the dot).
    suffixes: tuple[str, ...] = ()

    def __init__(self, path: str | os.PathLike, **options: Any) -> None:
        self.path = os.fspath(path)
        self.options = options
        self.metadata: ImageMetadata

    # -- to implement -------------------------------------------------------
    @abstractmethod
    def read_plane(self, fov: int, t: int, c: int, z: int = 0) -> np.ndarray:
        """Return one 2-D plane ``(Y, X)`` in the file's dtype."""

    def frame_times(self, fov: int) -> np.ndarray | None:
        """Minutes since the FOV's first frame for each frame, or ``None``."""
        if self.metadata.time_min is None:
            return None
        return np.asarray(self.metadata.time_min, dtype=np.float64)

    def close(self) -> None:  # pragma: no cover - trivial default
        """Release the file handle."""

    # -- shared -------------------------------------------------------------
    def read_frame(self, fov: int, t: int, c: int, z: int | str = 0) -> np.ndarray:
        """One frame of ``(fov, t, c)``: a chosen Z plane or the max projection.

        Parameters
        ----------
        z : int or ``"max"``
            Z plane index, or ``"max"`` for a maximum-intensity projection
            (read one plane at a time).
        """
        self.check_index(fov=fov, t=t, c=c)
        m = self.metadata
        if z == "max":
            out = self.read_plane(fov, t, c, 0)
            for zi in range(1, m.n_z):
                np.maximum(out, self.read_plane(fov, t, c, zi), out=out)
            return out
        zi = int(z)
        self.check_index(z=zi)
        return self.read_plane(fov, t, c, zi)

    def check_plane(self, fov: int, t: int, c: int, z: int) -> None:
        """:meth:`check_index` of a plane read, cheap when every index is in range."""
        m = self.metadata
        if not (
            0 <= fov < m.n_fovs
            and 0 <= t < m.n_frames
            and 0 <= c < m.n_channels
            and 0 <= z < m.n_z
        ):
            self.check_index(fov=fov, t=t, c=c, z=z)

    def check_index(self, **idx: int) -> None:
        """Raise :class:`InputError` naming the valid range for an out-of-range index."""
        m = self.metadata
        sizes = {"fov": m.n_fovs, "t": m.n_frames, "c": m.n_channels, "z": m.n_z}
        names = {"fov": "FOV", "t": "frame", "c": "channel", "z": "Z plane"}
        for key, value in idx.items():
            n = sizes[key]
            if not 0 <= int(value) < n:
                raise InputError(
                    f"{self.path}: {names[key]} {value} is out of range "
                    f"(valid: 0-{n - 1})"
                )

    def channel_index(self, channel: int | str) -> int:
        """Resolve a channel given by index or by name."""
        names = self.metadata.channel_names
        if isinstance(channel, str) and not channel.lstrip("-").isdigit():
            if channel in names:
                return names.index(channel)
            lowered = [n.lower() for n in names]
            if channel.lower() in lowered:
                return lowered.index(channel.lower())
            raise InputError(
                f"{self.path}: no channel named {channel!r} (channels: {names})"
            )
        ci = int(channel)
        self.check_index(c=ci)
        return ci

    def __enter__(self) -> "ImageReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def one_line(exc: BaseException, limit: int = 160) -> str:
    """Short printable one-line text of an exception (for :class:`InputError`).

    Library errors on corrupt files can carry several lines or raw bytes; this
    keeps the first line, drops unprintable characters and cuts it at ``limit``.
    """
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    text = re.sub(r"""b(['"]).*?(?<!\\)\1""", "<bytes>", lines[0])  # raw bytes from parsers
    text = "".join(ch for ch in text if ch.isprintable())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def require_file(path: str) -> None:
    """Raise :class:`InputError` when ``path`` does not exist."""
    if not os.path.exists(path):
        raise InputError(f"{path}: file not found")


def unreadable_file(path: str, kind: str, exc: BaseException) -> InputError:
    """The error for a file its library cannot open or parse (``kind``: "ND2", ...)."""
    return InputError(
        f"{path}: not a readable {kind} file (truncated or corrupt? {one_line(exc)}); "
        f"{DAMAGED_HINT}"
    )


def unreadable_plane(path: str, where: str, exc: BaseException) -> InputError:
    """The error for a plane that cannot be read (``where``: "FOV 0 frame 3", ...)."""
    return InputError(
        f"{path}: cannot read {where} (truncated or corrupt file? {one_line(exc)}); "
        f"{DAMAGED_HINT}"
    )


def default_channel_names(n: int) -> list[str]:
    """``["C0", "C1", ...]``: the names of ``n`` channels a file leaves unnamed."""
    return [f"C{i}" for i in range(n)]


def channel_names_or_default(names: Sequence[str] | None, n: int) -> list[str]:
    """``names`` when there is one per channel, else :func:`default_channel_names`."""
    if names is not None and len(names) == n:
        return list(names)
    return default_channel_names(n)


def objective_label(magnification: str | float, na: str | float | None) -> str:
    """``"50x/1.2"`` (``"50x"`` without an NA) for an objective the file names
    only by its numbers."""
    return f"{float(magnification):g}x" + (f"/{float(na):g}" if na else "")


def check_options(
    path: str, fmt: str, options: dict[str, Any], allowed: tuple[str, ...] = ()
) -> None:
    """Raise :class:`InputError` for a reader option the format does not take.

    Options whose value is ``None`` are ignored, so a caller may pass every
    option it knows and let each reader pick its own.
    """
    unknown = sorted(k for k, v in options.items() if v is not None and k not in allowed)
    if unknown:
        takes = ", ".join(allowed) if allowed else "none"
        raise InputError(
            f"{path}: option(s) {', '.join(unknown)} do not apply to {fmt} input "
            f"(options: {takes}); remove them from the dataset's reader options"
        )
