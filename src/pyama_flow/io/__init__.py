"""Input readers (one per format, one metadata model) and result-stack I/O."""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from typing import Any

from pyama_flow.io.base import ImageMetadata, ImageReader, InputError, require_file


@dataclass(frozen=True)
class FormatInfo:
    """One supported input format and the library that reads it."""

    name: str
    suffixes: tuple[str, ...]
    library: str  # importable module name
    pip: str  # pip requirement that provides it
    reader: str  # "module:Class" inside pyama_flow.io

    @property
    def installed(self) -> bool:
        return importlib.util.find_spec(self.library) is not None


#: Formats in the order they are tried by file name ending (a folder is a frame folder).
FORMATS: list[FormatInfo] = [
    FormatInfo(
        "OME-TIFF / ImageJ / multi-page TIFF",
        (".ome.tif", ".ome.tiff", ".tif", ".tiff", ".btf"),
        "tifffile",
        "tifffile",
        "tiff:TiffReader",
    ),
    FormatInfo("Nikon ND2", (".nd2",), "nd2", "nd2", "nd2:ND2Reader"),
    FormatInfo("Zeiss CZI", (".czi",), "aicspylibczi", "aicspylibczi", "czi:CziReader"),
    FormatInfo("Leica LIF", (".lif",), "liffile", "liffile", "lif:LifReader"),
    FormatInfo(
        "folder of one-TIFF-per-frame",
        (),
        "tifffile",
        "tifffile",
        "folder:FolderReader",
    ),
]


def _find_format(path: str) -> FormatInfo:
    """The format that reads ``path``: by name ending, or the folder reader for a folder."""
    if os.path.isdir(path):
        for fmt in FORMATS:
            if fmt.name.startswith("folder"):
                return fmt
    lower = path.lower()
    for fmt in FORMATS:
        if any(lower.endswith(s) for s in fmt.suffixes):
            return fmt
    supported = ", ".join(s for f in FORMATS for s in f.suffixes)
    raise InputError(
        f"{path}: unsupported format (supported: {supported}, or a folder of TIFF frames)"
    )


def open_image(path: str | os.PathLike, **options: Any) -> ImageReader:
    """Open a microscopy file with the reader for its format.

    Parameters
    ----------
    path : path-like
        The file, or for frame folders the folder (or ``folder/pattern``,
        e.g. ``"frames/*.tif"``).
    **options
        Reader options from the config (e.g. ``axes`` for a plain TIFF).

    Raises
    ------
    InputError
        Unsupported format, missing reader library, missing or corrupt file.
    """
    path = os.fspath(path)
    folder, name = os.path.split(path)
    if (
        not os.path.exists(path)
        and any(ch in name for ch in "*?[")
        and os.path.isdir(folder or ".")
    ):
        # "frames/*.tif": a frame folder with its pattern
        if options.get("pattern") is None:
            options = {**options, "pattern": name}
        path = folder or "."
    fmt = _find_format(path)
    require_file(path)
    if not fmt.installed:
        raise InputError(
            f"{path}: reading {fmt.name} needs the '{fmt.library}' package: "
            f"pip install {fmt.pip}"
        )
    module_name, cls_name = fmt.reader.split(":")
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, cls_name)(path, **options)


def read_metadata(path: str | os.PathLike, **options: Any) -> ImageMetadata:
    """Metadata of a file without reading any pixels."""
    with open_image(path, **options) as reader:
        return reader.metadata


__all__ = [
    "FORMATS",
    "FormatInfo",
    "ImageMetadata",
    "ImageReader",
    "InputError",
    "open_image",
    "read_metadata",
]
