"""Zeiss CZI through ``aicspylibczi``, one plane (sub-block) at a time.

Scenes (S) are FOVs. Mosaic files (tiles, M) are stitched plane by plane with
libCZI's own compositor (``read_mosaic`` at full resolution, tiles placed at
their stage positions, later tiles on top; no blending), or read tile by tile
as FOVs, or rejected, as the ``mosaic`` option says.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Any

import numpy as np

from pyama_flow.io.base import (
    ImageMetadata,
    ImageReader,
    InputError,
    channel_names_or_default,
    check_options,
    objective_label,
    require_file,
    unreadable_file,
    unreadable_plane,
)

_PIXEL_TYPES = {
    "gray8": "uint8",
    "gray16": "uint16",
    "gray32": "uint32",
    "gray32float": "float32",
    "gray64float": "float64",
}
#: dimensions we map; every other one must have size 1
_MAPPED = set("STCZMYXB")
_MOSAIC_MODES = ("stitch", "tiles", "reject")
_ACQ_TIME = re.compile(r"<AcquisitionTime>([^<]+)</AcquisitionTime>")


def _parse_time(text: str) -> float | None:
    """Seconds since the epoch of an ISO time stamp, or ``None``."""
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        return None


def _meta_text(meta: ET.Element, path: str) -> str | None:
    el = meta.find(path)
    return None if el is None or el.text is None else el.text.strip() or None


def _objective(meta: ET.Element) -> tuple[str | None, dict[str, Any]]:
    """Objective name (or ``"50x/1.2"``) and its magnification / NA."""
    el = meta.find(".//Instrument/Objectives/Objective")
    if el is None:
        return None, {}
    mag = _meta_text(el, "NominalMagnification")
    na = _meta_text(el, "LensNA")
    extra: dict[str, Any] = {}
    if mag is not None:
        extra["magnification"] = float(mag)
    if na is not None:
        extra["numerical_aperture"] = float(na)
    name = el.get("Name")
    if not name and mag is not None:
        name = objective_label(mag, na)
    return name or None, extra


def _microscope(meta: ET.Element) -> str | None:
    el = meta.find(".//Instrument/Microscopes/Microscope")
    if el is None:
        return None
    return el.get("Name") or _meta_text(el, "System")


class CziReader(ImageReader):
    """Zeiss CZI file: scenes as FOVs, T, C, Z.

    Options
    -------
    mosaic : {"stitch", "tiles", "reject"}
        What to do with a tiled (mosaic) acquisition: stitch the tiles of each
        scene into one plane (default), serve each tile as its own FOV, or
        raise :class:`InputError`.
    """

    format_name = "czi"
    suffixes = (".czi",)

    def __init__(self, path: str | os.PathLike, mosaic: str | None = None, **options: Any) -> None:
        super().__init__(path, **options)
        check_options(self.path, "CZI", options, ("mosaic",))
        mosaic = mosaic or "stitch"
        if mosaic not in _MOSAIC_MODES:
            raise InputError(
                f"{self.path}: mosaic must be one of {', '.join(_MOSAIC_MODES)}, got {mosaic!r}"
            )
        import aicspylibczi  # optional dependency; open_image checks it is installed

        require_file(self.path)
        try:
            self._czi = aicspylibczi.CziFile(self.path)
            self._setup(mosaic)
        except InputError:
            raise
        except Exception as exc:  # libCZI raises RuntimeError / ParseError ...
            raise unreadable_file(self.path, "CZI", exc) from None

    # -- setup ----------------------------------------------------------------
    def _setup(self, mosaic: str) -> None:
        czi = self._czi
        ptype = self._pixel_type()
        size = self._sizes()
        n_fovs, height, width = self._layout(mosaic, size)
        meta = czi.meta
        names = [
            ch.get("Name") or ch.get("Id") or f"C{i}"
            for i, ch in enumerate(
                meta.findall(".//Information/Image/Dimensions/Channels/Channel")
            )
        ]
        n_c = size.get("C", 1)
        pixel_size = None
        dist = _meta_text(meta, ".//Scaling/Items/Distance[@Id='X']/Value")
        if dist is not None:
            pixel_size = float(dist) * 1e6  # metres -> micrometres
        objective, extra = _objective(meta)
        extra.update(self._layout_facts(size))
        z_step = _meta_text(meta, ".//Scaling/Items/Distance[@Id='Z']/Value")
        if z_step is not None and size.get("Z", 1) > 1:
            extra["z_step_um"] = float(z_step) * 1e6
        self.metadata = ImageMetadata(
            path=self.path,
            format="czi",
            n_fovs=n_fovs,
            n_frames=size.get("T", 1),
            n_channels=n_c,
            n_z=size.get("Z", 1),
            height=int(height),
            width=int(width),
            dtype=_PIXEL_TYPES[ptype],
            channel_names=channel_names_or_default(names, n_c),
            pixel_size_um=pixel_size,
            objective=objective,
            microscope=_microscope(meta),
            file_size=os.path.getsize(self.path),
            extra=extra,
        )
        self._times: dict[tuple[int, int], tuple[np.ndarray | None, str | None]] = {}
        self.metadata.set_times(*self._frame_times(0, 0))

    def _pixel_type(self) -> str:
        """The CZI pixel type (``"gray16"``...); raises for RGB and unknown types."""
        ptype = str(self._czi.pixel_type).lower()
        if ptype.startswith("bgr"):
            raise InputError(
                f"{self.path}: RGB images ({ptype}) are not supported; "
                "convert to one channel per plane"
            )
        if ptype not in _PIXEL_TYPES:
            raise InputError(f"{self.path}: unsupported CZI pixel type {ptype!r}")
        return ptype

    def _sizes(self) -> dict[str, int]:
        """Size of each CZI dimension; sets ``self._start`` (each one's first index).

        Raises when scenes differ in size or a dimension we do not map has
        more than one index.
        """
        groups = self._czi.get_dims_shape()
        if len(groups) != 1:
            raise InputError(
                f"{self.path}: scenes differ in size ({len(groups)} shapes); "
                "one size for all scenes is needed"
            )
        ranges = groups[0]
        for dim, (lo, hi) in ranges.items():
            if dim not in _MAPPED and hi - lo > 1:
                raise InputError(
                    f"{self.path}: CZI dimension {dim} (size {hi - lo}) is not supported"
                )
        self._start = {d: int(lo) for d, (lo, _hi) in ranges.items()}
        return {d: int(hi - lo) for d, (lo, hi) in ranges.items()}

    def _layout(self, mosaic: str, size: dict[str, int]) -> tuple[int, int, int]:
        """FOV count and plane height / width under the ``mosaic`` option.

        Sets the mosaic mode, the stitched regions, the tiles per scene and
        the dimensions each plane read names.
        """
        n_s = size.get("S", 1)
        n_m = size.get("M", 1)
        self._mosaic = self._czi.is_mosaic()
        if self._mosaic and mosaic == "reject":
            raise InputError(
                f"{self.path}: mosaic CZI ({n_m} tiles) is not supported with mosaic: "
                "reject; use mosaic: stitch or tiles"
            )
        self._mode = mosaic if self._mosaic else "plain"
        height, width = size["Y"], size["X"]
        self._regions: list[tuple[int, int, int, int]] = []
        if self._mode == "stitch":
            height, width = self._stitch_regions(size)
            n_fovs = n_s
        elif self._mode == "tiles":
            n_fovs = n_s * n_m
        else:
            n_fovs = n_s
        self._n_m = n_m if self._mode == "tiles" else 1
        # (dimension, first index) of each dimension a plane read must name
        dims = [d for d in "STCZ" if d in self._start]
        if self._mode == "tiles" or (self._mode == "plain" and "M" in self._start):
            dims.append("M")
        self._selectors = [(d, self._start.get(d, 0)) for d in dims]
        return n_fovs, height, width

    def _stitch_regions(self, size: dict[str, int]) -> tuple[int, int]:
        """Mosaic bounding box of each scene (``self._regions``); their common height, width."""
        czi = self._czi
        for s in range(size.get("S", 1)):
            bb = (
                czi.get_mosaic_scene_bounding_box(index=self._start.get("S", 0) + s)
                if "S" in size
                else czi.get_mosaic_bounding_box()
            )
            self._regions.append((bb.x, bb.y, bb.w, bb.h))
        shapes = {(r[3], r[2]) for r in self._regions}
        if len(shapes) != 1:
            raise InputError(f"{self.path}: stitched scenes differ in size {sorted(shapes)}")
        return shapes.pop()

    def _layout_facts(self, size: dict[str, int]) -> dict[str, Any]:
        """``extra`` entries of the layout: dimensions, scenes, mosaic tiles and mode."""
        return {
            "dims": self._czi.dims,
            "scenes": size.get("S", 1),
            "mosaic_tiles": size.get("M", 1) if self._mosaic else 0,
            "mosaic": self._mode if self._mosaic else None,
        }

    # -- helpers ----------------------------------------------------------------
    def _plane_kwargs(self, fov: int, t: int, c: int, z: int) -> dict[str, int]:
        """libCZI plane selection of one (fov, t, c, z)."""
        scene, tile = divmod(fov, self._n_m) if self._n_m > 1 else (fov, 0)
        values = {"S": scene, "T": t, "C": c, "Z": z, "M": tile}
        return {dim: start + values[dim] for dim, start in self._selectors}

    def _frame_times(self, fov: int, c: int) -> tuple[np.ndarray | None, str | None]:
        key = (int(fov), int(c))
        if key in self._times:
            return self._times[key]
        n_t = self.metadata.n_frames
        stamps = np.full(n_t, np.nan, dtype=np.float64)
        for t in range(n_t):
            kw = self._plane_kwargs(fov, t, c, 0)
            if self._mosaic and "M" not in kw:
                kw["M"] = self._start.get("M", 0)
            try:
                blocks = self._czi.read_subblock_metadata(**kw)
            except Exception:
                break
            found = _ACQ_TIME.search(blocks[0][1]) if blocks else None
            value = _parse_time(found.group(1)) if found else None
            if value is None:
                break
            stamps[t] = value
        result: tuple[np.ndarray | None, str | None]
        if not np.isnan(stamps).any() and (n_t == 1 or np.ptp(stamps) > 0):
            result = ((stamps - stamps[0]) / 60.0, "sub-block acquisition times")
        else:
            result = self._offsets_times(n_t)
        self._times[key] = result
        return result

    def _offsets_times(self, n_t: int) -> tuple[np.ndarray | None, str | None]:
        """Times from the document's ``Dimensions/T/Positions/List/Offsets`` (s)."""
        text = _meta_text(
            self._czi.meta, ".//Information/Image/Dimensions/T/Positions/List/Offsets"
        )
        if text is None:
            return None, None
        try:
            offsets = np.array([float(v) for v in text.split()], dtype=np.float64)
        except ValueError:
            return None, None
        if len(offsets) != n_t:
            return None, None
        return (offsets - offsets[0]) / 60.0, "T offsets"

    # -- interface --------------------------------------------------------------
    def read_plane(self, fov: int, t: int, c: int, z: int = 0) -> np.ndarray:
        self.check_plane(fov, t, c, z)
        m = self.metadata
        kw = self._plane_kwargs(fov, t, c, z)
        try:
            if self._mode == "stitch":
                region = self._regions[fov]
                img = self._czi.read_mosaic(region=region, scale_factor=1.0, **kw)
            else:
                img, _dims = self._czi.read_image(**kw)
            plane = np.asarray(img).reshape(m.height, m.width)
        except Exception as exc:
            raise unreadable_plane(self.path, f"FOV {fov} frame {t} channel {c} Z {z}", exc) from None
        return plane

    def frame_times(self, fov: int, c: int = 0) -> np.ndarray | None:
        """Minutes since the FOV's first frame, from each sub-block's acquisition time.

        Falls back to the document's T offsets; ``None`` when neither exists.
        """
        self.check_index(fov=fov, c=c)
        return self._frame_times(fov, c)[0]

    def close(self) -> None:
        # aicspylibczi closes its file handle when the object is released
        self._czi = None  # type: ignore[assignment]
