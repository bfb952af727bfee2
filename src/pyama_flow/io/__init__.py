"""Input readers (one per format, one metadata model) and result-stack I/O."""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from typing import Any

from .base import ImageMetadata, ImageReader, InputError


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


#: Formats in the order they are tried by file name ending.
FORMATS: list[FormatInfo] = [
    FormatInfo(
        "OME-TIFF / ImageJ / multi-page TIFF",
        (".ome.tif", ".ome.tiff", ".tif", ".tiff", ".btf"),
        "tifffile",
        "tifffile",
        "tiff:TiffReader",
    ),
]


def _find_format(path: str) -> FormatInfo:
    lower = path.lower()
    for fmt in FORMATS:
        if fmt.name.startswith("folder") and os.path.isdir(path):
            return fmt
        if any(lower.endswith(s) for s in fmt.suffixes):
            return fmt
    supported = ", ".join(s for f in FORMATS for s in f.suffixes)
    raise InputError(f"{path}: unsupported format (supported: {supported})")


def open_image(path: str | os.PathLike, **options: Any) -> ImageReader:
    """Open a microscopy file with the reader for its format.

    Parameters
    ----------
    path : path-like
        The file (or, for frame folders, the folder).
    **options
        Reader options from the config (e.g. ``axes`` for a plain TIFF).

    Raises
    ------
    InputError
        Unsupported format, missing reader library, missing or corrupt file.
    """
    path = os.fspath(path)
    fmt = _find_format(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: file not found")
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
