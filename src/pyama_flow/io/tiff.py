"""TIFF family through tifffile: OME-TIFF, ImageJ hyperstacks, plain multi-page TIFF.

Axes come from the OME or ImageJ metadata; a plain TIFF needs ``axes`` from the
config (e.g. ``"TCYX"``). Several OME images (series) of the same shape are
read as FOVs; so is a ``P`` (position) axis inside one series.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np
import tifffile

from .base import ImageMetadata, ImageReader, InputError

# tifffile axis letters that mean "position / FOV"
_FOV_AXES = "PRVM"
_TIME_UNITS_MIN = {"s": 1 / 60, "ms": 1 / 60000, "min": 1.0, "h": 60.0, "µs": 1 / 6e7}
_LENGTH_UNITS_UM = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "m": 1e6}


def _ome_images(xml: str) -> list[dict[str, Any]]:
    """Channel names, pixel size and per-(T, C, Z) DeltaT for each OME Image."""
    root = ET.fromstring(xml)
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    images = []
    for image in root.findall(f"{ns}Image"):
        pixels = image.find(f"{ns}Pixels")
        if pixels is None:
            continue
        info: dict[str, Any] = {
            "channels": [
                ch.get("Name") or ch.get("ID") or f"C{i}"
                for i, ch in enumerate(pixels.findall(f"{ns}Channel"))
            ],
            "pixel_size_um": None,
            "delta_t_min": {},
        }
        psx = pixels.get("PhysicalSizeX")
        if psx is not None:
            unit = pixels.get("PhysicalSizeXUnit", "µm")
            info["pixel_size_um"] = float(psx) * _LENGTH_UNITS_UM.get(unit, 1.0)
        for plane in pixels.findall(f"{ns}Plane"):
            dt = plane.get("DeltaT")
            if dt is None:
                continue
            scale = _TIME_UNITS_MIN.get(plane.get("DeltaTUnit", "s"), 1 / 60)
            key = (
                int(plane.get("TheT", 0)),
                int(plane.get("TheC", 0)),
                int(plane.get("TheZ", 0)),
            )
            info["delta_t_min"][key] = float(dt) * scale
        images.append(info)
    return images


class TiffReader(ImageReader):
    """OME-TIFF, ImageJ hyperstack or plain multi-page TIFF.

    Options
    -------
    axes : str, optional
        Axis order of a plain TIFF's leading dimensions plus ``YX``, e.g.
        ``"TCYX"``; overrides what tifffile infers. Letters: P (FOV), T, C, Z, Y, X.
    """

    format_name = "tiff"
    suffixes = (".tif", ".tiff", ".ome.tif", ".ome.tiff", ".btf", ".tf8")

    def __init__(self, path: str | os.PathLike, axes: str | None = None, **options: Any):
        super().__init__(path, **options)
        try:
            self._tif = tifffile.TiffFile(self.path)
            series = list(self._tif.series)
        except FileNotFoundError:
            raise InputError(f"{self.path}: file not found") from None
        except Exception as exc:  # tifffile raises many types on corrupt data
            raise InputError(f"{self.path}: not a readable TIFF ({exc})") from None
        if not series:
            raise InputError(f"{self.path}: TIFF holds no image series")
        if self._tif.is_ome:
            fmt = "ome-tiff"
        elif self._tif.is_imagej:
            fmt = "imagej-tiff"
        else:
            fmt = "tiff"
        first = series[0]
        base_axes = (axes or first.axes).upper()
        self._check_axes(base_axes, first.shape, given=axes is not None)
        # FOVs: one series per FOV when several series share a shape
        same = [s for s in series if s.shape == first.shape and s.dtype == first.dtype]
        self._series_idx = [series.index(s) for s in same] if fmt == "ome-tiff" else [0]
        self._axes = base_axes
        self._lead_axes = base_axes[:-2]
        self._lead_shape = tuple(first.shape[:-2])
        if len(first.pages) != int(np.prod(self._lead_shape, dtype=np.int64)) and not (
            self._tif.is_imagej
        ):
            raise InputError(
                f"{self.path}: series layout {first.axes} {first.shape} does not map "
                "to one page per plane; give 'axes' in the config"
            )
        size = {a: n for a, n in zip(base_axes, first.shape)}
        n_fov_axis = int(np.prod([size[a] for a in self._lead_axes if a in _FOV_AXES] or [1]))
        n_fovs = len(self._series_idx) * n_fov_axis
        names: list[str] = []
        pixel_size = None
        self._ome: list[dict[str, Any]] = []
        if fmt == "ome-tiff" and self._tif.ome_metadata:
            try:
                self._ome = _ome_images(self._tif.ome_metadata)
            except ET.ParseError:
                self._ome = []
            if self._ome:
                names = self._ome[0]["channels"]
                pixel_size = self._ome[0]["pixel_size_um"]
        n_c = size.get("C", 1)
        if len(names) != n_c:
            names = self._imagej_channel_names(n_c) or [f"C{i}" for i in range(n_c)]
        if pixel_size is None:
            pixel_size = self._resolution_um()
        self.metadata = ImageMetadata(
            path=self.path,
            format=fmt,
            n_fovs=n_fovs,
            n_frames=size.get("T", 1),
            n_channels=n_c,
            n_z=size.get("Z", 1),
            height=size["Y"],
            width=size["X"],
            dtype=str(first.dtype),
            channel_names=names,
            time_min=None,
            pixel_size_um=pixel_size,
            file_size=os.path.getsize(self.path),
            extra={"axes": base_axes, "series": len(series)},
        )
        times = self.frame_times(0)
        self.metadata.time_min = None if times is None else [float(v) for v in times]

    # -- helpers --------------------------------------------------------------
    def _check_axes(self, axes: str, shape: tuple[int, ...], given: bool) -> None:
        if len(axes) != len(shape):
            raise InputError(
                f"{self.path}: axes {axes!r} do not match the image shape {shape}"
            )
        if axes[-2:] != "YX":
            if "S" in axes and shape[axes.index("S")] in (3, 4):
                raise InputError(
                    f"{self.path}: RGB images are not supported (axes {axes}); "
                    "convert to one channel per plane"
                )
            raise InputError(f"{self.path}: last two axes must be YX, got {axes!r}")
        unknown = set(axes[:-2]) - set("TCZ" + _FOV_AXES)
        if unknown:
            hint = "" if given else "; give 'axes' (e.g. \"TCYX\") in the config"
            raise InputError(
                f"{self.path}: cannot tell what axis {''.join(sorted(unknown))!r} of "
                f"{axes} {shape} means{hint}"
            )

    def _imagej_channel_names(self, n_c: int) -> list[str] | None:
        meta = self._tif.imagej_metadata or {}
        labels = meta.get("Labels")
        if isinstance(labels, (list, tuple)) and len(labels) == n_c:
            return [str(v) for v in labels]
        return None

    def _resolution_um(self) -> float | None:
        page = self._tif.pages[0]
        tag = page.tags.get("XResolution")
        unit = page.tags.get("ResolutionUnit")
        meta = self._tif.imagej_metadata or {}
        if tag is None:
            return None
        num, den = tag.value
        if not num:
            return None
        per_unit = den / num  # size of a pixel in the resolution unit
        if meta.get("unit") in ("micron", "um", "µm"):
            return float(per_unit)
        if unit is not None and int(unit.value) == 3:  # centimetre
            return float(per_unit * 1e4)
        return None

    def _locate(self, fov: int, t: int, c: int, z: int) -> tuple[int, int]:
        """(series index, page index within the series) of one plane."""
        per_series = self.metadata.n_fovs // len(self._series_idx)
        s = self._series_idx[fov // per_series]
        within = fov % per_series
        idx = []
        fov_sizes = [n for a, n in zip(self._lead_axes, self._lead_shape) if a in _FOV_AXES]
        fov_idx = list(np.unravel_index(within, fov_sizes)) if fov_sizes else []
        for a in self._lead_axes:
            if a in _FOV_AXES:
                idx.append(int(fov_idx.pop(0)))
            else:
                idx.append({"T": t, "C": c, "Z": z}[a])
        page = int(np.ravel_multi_index(idx, self._lead_shape)) if idx else 0
        return s, page

    # -- interface ------------------------------------------------------------
    def read_plane(self, fov: int, t: int, c: int, z: int = 0) -> np.ndarray:
        self.check_index(fov=fov, t=t, c=c, z=z)
        s, page = self._locate(fov, t, c, z)
        try:
            plane = self._tif.asarray(key=page, series=s)
        except Exception as exc:
            raise InputError(
                f"{self.path}: cannot read FOV {fov} frame {t} channel {c} "
                f"(truncated or corrupt file? {exc})"
            ) from None
        return np.asarray(plane).reshape(self.metadata.height, self.metadata.width)

    def frame_times(self, fov: int) -> np.ndarray | None:
        if not self._ome:
            return None
        per_series = self.metadata.n_fovs // len(self._series_idx)
        image = self._ome[min(fov // per_series, len(self._ome) - 1)]
        dts = image["delta_t_min"]
        n_t = self.metadata.n_frames
        times = np.full(n_t, np.nan)
        for (t, _c, _z), value in sorted(dts.items()):
            if t < n_t and np.isnan(times[t]):
                times[t] = value
        if np.isnan(times).any():
            return None
        return times - times[0]

    def close(self) -> None:
        self._tif.close()
