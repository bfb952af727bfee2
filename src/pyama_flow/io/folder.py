"""A folder of one-TIFF-per-frame, read through ``tifffile``.

Files are picked with a glob pattern (one pattern per channel) and put in time
order by the number in their name: the last number that differs between the
files (so ``t2`` comes before ``t10``, and ``..--T00012--Z000--C.tif`` is
ordered by ``T``; the last number when names differ in layout), or the first
group of a ``frame_regex``.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Any

import numpy as np
import tifffile

from pyama_flow.io.base import (
    ImageMetadata,
    ImageReader,
    InputError,
    check_options,
    default_channel_names,
    unreadable_plane,
)

_NUMBER = re.compile(r"\d+")


def _name_numbers(name: str) -> list[int]:
    """All integers in a file name (extension dropped)."""
    stem = name.split(".", 1)[0]
    return [int(v) for v in _NUMBER.findall(stem)]


def _natural_key(name: str) -> list[Any]:
    """Natural sort key: digit runs compare as numbers."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", name)]


def order_frames(
    folder: str, names: list[str], frame_regex: str | None = None
) -> list[tuple[int, str]]:
    """Frame number and name of each file, sorted by frame number.

    Parameters
    ----------
    folder : str
        Folder (for error messages).
    names : list of str
        File names (no directory).
    frame_regex : str, optional
        Regular expression whose first group is the frame number.

    Returns
    -------
    list of (int, str)
        Sorted by frame number.

    Raises
    ------
    InputError
        A name without a frame number, or two files with the same number.
    """
    if frame_regex is not None:
        rx = re.compile(frame_regex)
        numbered = []
        for name in names:
            found = rx.search(name)
            if not found:
                raise InputError(
                    f"{folder}: file {name!r} does not match frame_regex {frame_regex!r}"
                )
            numbered.append((int(found.group(1)), name))
    else:
        numbers = [_name_numbers(n) for n in names]
        if len(names) > 1:
            for name, values in zip(names, numbers):
                if not values:
                    raise InputError(
                        f"{folder}: file {name!r} has no frame number in its name; "
                        "narrow 'pattern' or give 'frame_regex'"
                    )
        counts = {len(v) for v in numbers}
        if len(names) == 1:
            numbered = [(numbers[0][-1] if numbers[0] else 0, names[0])]
        elif len(counts) == 1:
            columns = list(zip(*numbers))
            varying = [i for i, col in enumerate(columns) if len(set(col)) > 1]
            pick = varying[-1] if varying else len(columns) - 1
            numbered = [(v[pick], n) for v, n in zip(numbers, names)]
        else:  # names differ in layout: the last number of each
            numbered = [(v[-1], n) for v, n in zip(numbers, names)]
    numbered.sort(key=lambda item: (item[0], _natural_key(item[1])))
    seen: dict[int, str] = {}
    for number, name in numbered:
        if number in seen:
            raise InputError(
                f"{folder}: files {seen[number]!r} and {name!r} have the same frame "
                "number; narrow 'pattern' or give 'frame_regex'"
            )
        seen[number] = name
    return numbered


def frame_gaps(numbers: list[int] | None) -> list[int]:
    """Frame numbers missing between the first and the last of ``numbers`` (sorted)."""
    if not numbers:
        return []
    present = set(int(n) for n in numbers)
    return [n for n in range(int(numbers[0]), int(numbers[-1]) + 1) if n not in present]


def gap_warning(path: str, numbers: list[int] | None) -> str | None:
    """One line about missing frame numbers of a frame folder, or ``None``."""
    gaps = frame_gaps(numbers)
    if not gaps:
        return None
    return (f"{path}: {len(gaps)} frame numbers missing between {numbers[0]} and {numbers[-1]} "  # type: ignore[index]
            f"(first: {gaps[0]}): frame k is at k x frame_interval_min, so later frames keep their time")


class FolderReader(ImageReader):
    """Folder with one single-plane TIFF per frame (and channel).

    Options
    -------
    pattern : str or list of str
        Glob pattern of the frame files inside the folder (default ``"*.tif*"``);
        a list gives one pattern per channel, e.g. ``["*_ph_*.tif", "*_gfp_*.tif"]``.
    channel_names : list of str, optional
        One name per pattern (default: ``C0``, ``C1``, ...).
    frame_regex : str, optional
        Regular expression whose first group is the frame number
        (default: the last number that differs between file names).
    """

    format_name = "tiff-folder"
    suffixes = ()

    def __init__(
        self,
        path: str | os.PathLike,
        pattern: str | list[str] | None = None,
        channel_names: list[str] | None = None,
        frame_regex: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(path, **options)
        check_options(
            self.path, "TIFF folder", options, ("pattern", "channel_names", "frame_regex")
        )
        if not os.path.isdir(self.path):
            raise InputError(f"{self.path}: not a folder")
        patterns = [pattern] if isinstance(pattern, str) else list(pattern or ["*.tif*"])
        self._files: list[list[str]] = []
        frame_numbers: list[int] = []
        for pat in patterns:
            names = sorted(
                os.path.basename(p)
                for p in glob.glob(os.path.join(glob.escape(self.path), pat))
                if os.path.isfile(p)
            )
            if not names:
                raise InputError(
                    f"{self.path}: no file matches pattern {pat!r}; check the folder and the "
                    "reader's 'pattern'"
                )
            numbered = order_frames(self.path, names, frame_regex)
            if self._files and len(numbered) != len(self._files[0]):
                raise InputError(
                    f"{self.path}: pattern {pat!r} matches {len(numbered)} files but "
                    f"{patterns[0]!r} matches {len(self._files[0])}"
                )
            self._files.append([os.path.join(self.path, n) for _num, n in numbered])
            frame_numbers = [num for num, _n in numbered]
        if channel_names is not None and len(channel_names) != len(patterns):
            raise InputError(
                f"{self.path}: {len(channel_names)} channel_names for {len(patterns)} patterns"
            )
        names_out = list(channel_names) if channel_names else default_channel_names(len(patterns))
        first = self._files[0][0]
        shape, dtype, pixel_size = self._probe(first)
        self._shape = shape
        self._dtype = dtype
        self.metadata = ImageMetadata(
            path=self.path,
            format="tiff-folder",
            n_fovs=1,
            n_frames=len(self._files[0]),
            n_channels=len(patterns),
            n_z=1,
            height=shape[0],
            width=shape[1],
            dtype=str(dtype),
            channel_names=names_out,
            time_min=None,
            pixel_size_um=pixel_size,
            file_size=sum(os.path.getsize(p) for files in self._files for p in files),
            extra={
                "patterns": patterns,
                "first_file": os.path.basename(first),
                "last_file": os.path.basename(self._files[0][-1]),
                "frame_numbers": frame_numbers,
                "time_source": None,
            },
        )

    def _probe(self, path: str) -> tuple[tuple[int, int], np.dtype, float | None]:
        """Plane shape, dtype and pixel size of one frame file."""
        from pyama_flow.io.tiff import TiffReader

        with TiffReader(path) as reader:
            m = reader.metadata
            planes = m.n_fovs * m.n_frames * m.n_channels * m.n_z
            if planes != 1:
                raise InputError(
                    f"{path}: holds {planes} planes; a frame folder needs one plane per file"
                )
            return (m.height, m.width), np.dtype(m.dtype), m.pixel_size_um

    def frame_file(self, t: int, c: int = 0) -> str:
        """Path of the file holding frame ``t`` of channel ``c``."""
        self.check_index(t=t, c=c)
        return self._files[c][t]

    def read_plane(self, fov: int, t: int, c: int, z: int = 0) -> np.ndarray:
        self.check_index(fov=fov, t=t, c=c, z=z)
        path = self._files[c][t]
        try:
            plane = tifffile.imread(path, key=0)
        except FileNotFoundError:
            raise InputError(f"{path}: frame file disappeared; restore it or narrow 'pattern'") from None
        except Exception as exc:
            raise unreadable_plane(path, f"frame {t}", exc) from None
        if plane.shape != self._shape or plane.dtype != self._dtype:
            raise InputError(
                f"{path}: frame is {plane.shape} {plane.dtype}, expected "
                f"{self._shape} {self._dtype} like the first frame; every frame of a "
                "folder must have one size and type: remove or fix it, or narrow 'pattern'"
            )
        return plane
