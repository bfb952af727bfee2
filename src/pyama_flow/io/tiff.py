"""TIFF family through tifffile: OME-TIFF, ImageJ hyperstacks, plain multi-page TIFF.

Axes come from the OME or ImageJ metadata; a plain TIFF needs ``axes`` from the
config (e.g. ``"TCYX"``). Several OME images (series) of the same shape are
read as FOVs; so is a ``P`` (position) axis inside one series.

Planes stored uncompressed in one piece (the usual case for microscope
exports) are read with one positioned read of exactly the plane's bytes;
everything else goes through ``tifffile``'s page decoder. Large ImageJ
hyperstacks that keep a single IFD (ImageJ's > 4 GB layout) are read from
their contiguous data block.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import numpy as np
import tifffile

from pyama_flow.io.base import (
    DAMAGED_HINT,
    ImageMetadata,
    ImageReader,
    InputError,
    channel_names_or_default,
    check_options,
    objective_label,
    one_line,
    unreadable_plane,
)

# tifffile axis letters that mean "position / FOV"
_FOV_AXES = "PRVM"
_TIME_UNITS_MIN = {
    "s": 1 / 60,
    "sec": 1 / 60,
    "second": 1 / 60,
    "seconds": 1 / 60,
    "ms": 1 / 60000,
    "min": 1.0,
    "minute": 1.0,
    "minutes": 1.0,
    "h": 60.0,
    "hour": 60.0,
    "hours": 60.0,
    "µs": 1 / 6e7,
    "us": 1 / 6e7,
}
_LENGTH_UNITS_UM = {"µm": 1.0, "um": 1.0, "micron": 1.0, "nm": 1e-3, "mm": 1e3, "m": 1e6}
#: tifffile log messages that mean the IFD chain or the header is broken
_CORRUPT_LOG = ("invalid page offset", "corrupted", "truncated")
#: tags whose unreadable value means the layout or the metadata is lost:
#: ImageDescription (OME/ImageJ), strip and tile offsets / byte counts
_ESSENTIAL_TAGS = {270, 273, 279, 324, 325}
_BAD_TAG = re.compile(r"TiffTag (\d+).*invalid value offset")


def _is_corruption(message: str) -> bool:
    """Whether a tifffile log message means the file is truncated or corrupt."""
    low = message.lower()
    if any(k in low for k in _CORRUPT_LOG):
        return True
    found = _BAD_TAG.search(message)
    return bool(found and int(found.group(1)) in _ESSENTIAL_TAGS)


@contextlib.contextmanager
def _tifffile_warnings() -> Iterator[list[str]]:
    """Collect tifffile's log warnings (it logs, not raises, on broken IFD chains)."""
    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = _Collect(level=logging.WARNING)
    log = logging.getLogger("tifffile")
    log.addHandler(handler)
    try:
        yield messages
    finally:
        log.removeHandler(handler)


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
            "name": image.get("Name"),
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


def _ome_instrument(xml: str) -> tuple[str | None, str | None]:
    """Objective and microscope names from the first OME Instrument."""
    root = ET.fromstring(xml)
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    inst = root.find(f"{ns}Instrument")
    if inst is None:
        return None, None
    objective = microscope = None
    obj = inst.find(f"{ns}Objective")
    if obj is not None:
        objective = obj.get("Model")
        mag, na = obj.get("NominalMagnification"), obj.get("LensNA")
        if not objective and mag:
            objective = objective_label(mag, na)
    mic = inst.find(f"{ns}Microscope")
    if mic is not None:
        parts = [mic.get("Manufacturer"), mic.get("Model")]
        microscope = " ".join(p for p in parts if p) or None
    return objective, microscope


def _infer_sizes(
    path: str, axes: str, n_planes: int, sizes: dict[str, int] | None
) -> tuple[int, ...]:
    """Leading-axis sizes of a flat page sequence from ``sizes`` (one may be left out)."""
    lead = axes[:-2]
    given = {str(k).upper(): int(v) for k, v in (sizes or {}).items()}
    missing = [a for a in lead if a not in given]
    if len(missing) > 1:
        raise InputError(
            f"{path}: axes {axes!r} on {n_planes} pages need 'sizes' for all but one of "
            f"{', '.join(missing)} (e.g. sizes: {{{missing[0]}: 2}})"
        )
    known = int(np.prod([given[a] for a in lead if a in given] or [1]))
    if missing:
        if known <= 0 or n_planes % known:
            raise InputError(f"{path}: {n_planes} pages do not divide into sizes {given}")
        given[missing[0]] = n_planes // known
    shape = tuple(given[a] for a in lead)
    if int(np.prod(shape)) != n_planes:
        raise InputError(
            f"{path}: sizes {given} give {int(np.prod(shape))} planes, file has {n_planes}"
        )
    return shape


class TiffReader(ImageReader):
    """OME-TIFF, ImageJ hyperstack or plain multi-page TIFF.

    Options
    -------
    axes : str, optional
        Axis order of a plain TIFF's leading dimensions plus ``YX``, e.g.
        ``"TCYX"``; overrides what tifffile infers. Letters: P (FOV), T, C, Z, Y, X.
    sizes : dict, optional
        Sizes of the ``axes`` letters when the file is a flat sequence of pages,
        e.g. ``{"C": 2}`` with ``axes: "TCYX"`` (one letter may be left out).
    """

    format_name = "tiff"
    suffixes = (".tif", ".tiff", ".ome.tif", ".ome.tiff", ".btf", ".tf8")

    def __init__(
        self,
        path: str | os.PathLike,
        axes: str | None = None,
        sizes: dict[str, int] | None = None,
        **options: Any,
    ):
        super().__init__(path, **options)
        check_options(self.path, "TIFF", options, ("axes", "sizes"))
        if sizes and not axes:
            raise InputError(f"{self.path}: option 'sizes' needs 'axes' (e.g. axes: TCYX)")
        self._fd: int | None = None
        self._lock = threading.Lock()
        tif = None
        try:
            with _tifffile_warnings() as warnings:
                tif = self._tif = tifffile.TiffFile(self.path)
                series = list(self._tif.series)
        except FileNotFoundError:
            raise InputError(f"{self.path}: file not found") from None
        except Exception as exc:  # tifffile raises many types on corrupt data
            if tif is not None:  # opened, but the series are unreadable: release the handle
                tif.close()
            raise InputError(
                f"{self.path}: not a readable TIFF ({one_line(exc)}); {DAMAGED_HINT}"
            ) from None
        try:
            self._setup(series, axes, sizes, warnings)
        except Exception as exc:
            self._tif.close()
            if isinstance(exc, InputError):
                raise
            raise InputError(
                f"{self.path}: cannot read the TIFF layout (corrupt file? {one_line(exc)}); "
                f"{DAMAGED_HINT}"
            ) from None

    # -- setup ------------------------------------------------------------------
    def _setup(
        self,
        series: list[Any],
        axes: str | None,
        sizes: dict[str, int] | None,
        warnings: list[str],
    ) -> None:
        bad = [w for w in warnings if _is_corruption(w)]
        if bad:
            detail = re.sub(r"<[^>]*>\s*", "", bad[0])  # drop tifffile's object reprs
            raise InputError(
                f"{self.path}: truncated or corrupt TIFF ({one_line(Exception(detail))}); "
                f"{DAMAGED_HINT}"
            )
        if not series:
            raise InputError(f"{self.path}: TIFF holds no image series")
        tif = self._tif
        if tif.is_ome:
            fmt = "ome-tiff"
        elif tif.is_imagej:
            fmt = "imagej-tiff"
        else:
            fmt = "tiff"
        base_axes, shape = self._layout(series, fmt, axes, sizes)
        size = {a: n for a, n in zip(base_axes, shape)}
        n_fovs = len(self._series_idx) * self._per_series
        n_c = size.get("C", 1)
        names, pixel_size, objective, microscope = self._ome_facts(fmt)
        if len(names) != n_c:
            names = channel_names_or_default(self._imagej_channel_names(n_c), n_c)
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
            dtype=str(self._dtype),
            channel_names=names,
            time_min=None,
            pixel_size_um=pixel_size,
            objective=objective,
            microscope=microscope,
            file_size=os.path.getsize(self.path),
            extra={"axes": base_axes, "series": len(series)},
        )
        self._check_extent()
        self._locs: dict[tuple[int, int], tuple[int, int] | None] = {}
        self._time_source: str | None = None
        times = self.frame_times(0)
        self.metadata.set_times(times, self._time_source)

    def _layout(
        self, series: list[Any], fmt: str, axes: str | None, sizes: dict[str, int] | None
    ) -> tuple[str, tuple[int, ...]]:
        """Axes and shape of a FOV's series; sets where each plane lives.

        Sets the series serving FOVs (several OME series of one shape), the
        leading axes, shape and page strides, the FOVs per series, the plane
        shape and dtype and, for ImageJ's one-IFD layout, the data offset.
        """
        first = series[0]
        base_axes = (axes or first.axes).upper()
        shape = tuple(first.shape)
        n_planes = int(np.prod(shape[:-2], dtype=np.int64)) if len(shape) > 2 else 1
        if axes is not None and len(base_axes) != len(shape) and len(base_axes) > 2:
            lead = _infer_sizes(self.path, base_axes, n_planes, sizes)
            shape = lead + tuple(shape[-2:])
        self._check_axes(base_axes, shape, given=axes is not None)
        # FOVs: one series per FOV when several series share a shape
        same = [
            i for i, s in enumerate(series) if s.shape == first.shape and s.dtype == first.dtype
        ]
        self._series_idx = same if fmt == "ome-tiff" else [0]
        self._series = series
        self._axes = base_axes
        self._lead_axes = base_axes[:-2]
        self._lead_shape = tuple(int(v) for v in shape[:-2])
        self._plane_shape = (int(shape[-2]), int(shape[-1]))
        self._contiguous_offset = self._contiguous_data(first, n_planes)
        self._dtype = np.dtype(first.dtype)
        self._file_dtype = self._dtype.newbyteorder(self._tif.byteorder)
        self._plane_nbytes = self._plane_shape[0] * self._plane_shape[1] * self._dtype.itemsize
        self._fov_sizes = [n for a, n in zip(self._lead_axes, self._lead_shape) if a in _FOV_AXES]
        self._per_series = int(np.prod(self._fov_sizes or [1]))
        self._strides = self._lead_strides()
        return base_axes, shape

    def _contiguous_data(self, first: Any, n_planes: int) -> int | None:
        """Data offset of ImageJ's > 4 GB layout (one IFD, raw planes), else ``None``.

        Raises when the pages do not map one to one onto the planes.
        """
        n_pages = len(first.pages)
        if n_pages == n_planes:
            return None
        offset = getattr(first, "dataoffset", None)
        if n_pages < n_planes and offset is not None:
            return int(offset)
        if not self._tif.is_imagej:
            raise InputError(
                f"{self.path}: series layout {first.axes} {first.shape} does not map "
                "to one page per plane; give 'axes' in the config"
            )
        if n_pages < n_planes:
            raise InputError(
                f"{self.path}: truncated or corrupt ImageJ TIFF "
                f"({n_pages} pages for {n_planes} planes); {DAMAGED_HINT}"
            )
        return None

    def _ome_facts(self, fmt: str) -> tuple[list[str], float | None, str | None, str | None]:
        """Channel names, pixel size, objective and microscope from the OME XML.

        Sets ``self._ome`` (one dict per OME Image, :func:`_ome_images`);
        empty values where the file is not OME or its XML does not parse.
        """
        tif = self._tif
        names: list[str] = []
        pixel_size = objective = microscope = None
        self._ome: list[dict[str, Any]] = []
        if fmt == "ome-tiff" and tif.ome_metadata:
            try:
                self._ome = _ome_images(tif.ome_metadata)
                objective, microscope = _ome_instrument(tif.ome_metadata)
            except ET.ParseError:
                self._ome = []
            if self._ome:
                names = self._ome[0]["channels"]
                pixel_size = self._ome[0]["pixel_size_um"]
        return names, pixel_size, objective, microscope

    def _check_axes(self, axes: str, shape: tuple[int, ...], given: bool) -> None:
        if len(axes) != len(shape):
            raise InputError(f"{self.path}: axes {axes!r} do not match the image shape {shape}")
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
        repeated = {a for a in axes if axes.count(a) > 1}
        if repeated:
            raise InputError(
                f"{self.path}: axis {''.join(sorted(repeated))!r} repeats in {axes!r}"
            )

    def _lead_strides(self) -> dict[str, int]:
        """Page stride of each leading axis (C order)."""
        strides: dict[str, int] = {}
        step = 1
        for a, n in zip(reversed(self._lead_axes), reversed(self._lead_shape)):
            strides[a] = step
            step *= n
        return strides

    def _check_extent(self) -> None:
        """Raise if the last plane of a series lies beyond the end of the file."""
        size = self.metadata.file_size
        if self._contiguous_offset is not None:
            n_planes = int(np.prod(self._lead_shape or (1,)))
            end = self._contiguous_offset + n_planes * self._plane_nbytes
            if end > size:
                raise InputError(
                    f"{self.path}: truncated TIFF (data ends at byte {end}, file has {size}); "
                    f"{DAMAGED_HINT}"
                )
            return
        for s in (self._series_idx[0], self._series_idx[-1]):
            pages = self._series[s].pages
            last = pages[len(pages) - 1] if len(pages) else None
            offsets = getattr(last, "dataoffsets", None)
            counts = getattr(last, "databytecounts", None)
            if last is None or not offsets:
                raise InputError(
                    f"{self.path}: truncated or corrupt TIFF (last plane missing); {DAMAGED_HINT}"
                )
            end = max(int(o) + int(n) for o, n in zip(offsets, counts))
            if end > size:
                raise InputError(
                    f"{self.path}: truncated TIFF (plane data ends at byte {end}, file has {size}); "
                    f"{DAMAGED_HINT}"
                )

    def _imagej_channel_names(self, n_c: int) -> list[str] | None:
        meta = self._tif.imagej_metadata or {}
        labels = meta.get("Labels")
        if isinstance(labels, (list, tuple)) and len(labels) == n_c:
            return [str(v) for v in labels]
        info = meta.get("Info")
        if isinstance(info, str):
            found = dict(re.findall(r"^Channel name #(\d+)\s*=\s*(.+?)\s*$", info, re.M))
            names = [found.get(str(i + 1)) for i in range(n_c)]
            if all(names):
                return [str(v) for v in names]
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
        if meta.get("unit") in ("micron", "um", "µm", "\\u00B5m"):
            return float(per_unit)
        if unit is not None and int(unit.value) == 3:  # centimetre
            return float(per_unit * 1e4)
        return None

    def _locate(self, fov: int, t: int, c: int, z: int) -> tuple[int, int]:
        """(series index, page index within the series) of one plane."""
        s_pos, within = divmod(fov, self._per_series)
        st = self._strides
        page = 0
        if within:
            for a, n in zip(reversed(self._lead_axes), reversed(self._lead_shape)):
                if a in _FOV_AXES:
                    within, idx = divmod(within, n)
                    page += idx * st[a]
        page += t * st.get("T", 0) + c * st.get("C", 0) + z * st.get("Z", 0)
        return self._series_idx[s_pos], page

    def _plane_location(self, s: int, page: int) -> tuple[int, int] | None:
        """(byte offset, byte count) of a plane stored raw in one piece, else ``None``."""
        if self._contiguous_offset is not None:
            return self._contiguous_offset + page * self._plane_nbytes, self._plane_nbytes
        tpage = self._series[s].pages[page]
        if tpage is None:
            return None
        key = tpage.keyframe
        if (
            not tpage.is_final
            or key.shape != self._plane_shape
            or np.dtype(key.dtype) != self._dtype
            or key.samplesperpixel != 1
        ):
            return None
        offset = int(tpage.dataoffsets[0])
        return offset, self._plane_nbytes

    def _read_raw(self, offset: int, nbytes: int) -> np.ndarray:
        """Read ``nbytes`` at ``offset`` into a new plane array (positioned read)."""
        out = np.empty(self._plane_shape, dtype=self._file_dtype)
        buf = out.reshape(-1).view(np.uint8)
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        if hasattr(os, "preadv"):
            got = os.preadv(self._fd, [buf], offset)
        else:  # pragma: no cover - platforms without preadv
            with self._lock:
                os.lseek(self._fd, offset, os.SEEK_SET)
                got = os.readv(self._fd, [buf])
        if got != nbytes:
            raise InputError(
                f"{self.path}: truncated TIFF (plane at byte {offset} needs {nbytes} bytes, "
                f"got {got}); {DAMAGED_HINT}"
            )
        if not self._file_dtype.isnative:
            out = out.astype(self._dtype.newbyteorder("="))
        return out

    # -- interface --------------------------------------------------------------
    def read_plane(self, fov: int, t: int, c: int, z: int = 0) -> np.ndarray:
        self.check_plane(fov, t, c, z)
        s, page = self._locate(fov, t, c, z)
        try:
            loc = self._locs[(s, page)]
        except KeyError:
            try:
                loc = self._locs[(s, page)] = self._plane_location(s, page)
            except Exception:
                loc = None
        try:
            if loc is not None:
                return self._read_raw(*loc)
            plane = self._tif.asarray(key=page, series=s)
        except InputError:
            raise
        except Exception as exc:
            raise unreadable_plane(self.path, f"FOV {fov} frame {t} channel {c}", exc) from None
        return np.asarray(plane).reshape(self._plane_shape)

    def frame_times(self, fov: int, c: int = 0) -> np.ndarray | None:
        """Minutes since the FOV's first frame.

        From the OME ``Plane/@DeltaT`` of channel ``c`` (any channel when
        ``c`` has none) at Z 0, else from an ImageJ ``finterval``; ``None``
        when the file has neither.
        """
        n_t = self.metadata.n_frames
        if self._ome:
            s = self._series_idx[fov // self._per_series]
            image = (
                self._ome[s]
                if len(self._ome) == len(self._series)
                else self._ome[min(fov // self._per_series, len(self._ome) - 1)]
            )
            dts = image["delta_t_min"]
            times = np.full(n_t, np.nan)
            for t in range(n_t):
                if (t, c, 0) in dts:
                    times[t] = dts[(t, c, 0)]
            if np.isnan(times).any():
                for (t, _c, _z), value in sorted(dts.items()):
                    if t < n_t and np.isnan(times[t]):
                        times[t] = value
            if not np.isnan(times).any():
                self._time_source = "OME plane DeltaT"
                return times - times[0]
            return None
        meta = self._tif.imagej_metadata or {}
        interval = meta.get("finterval")
        if interval:
            unit = str(meta.get("tunit", "sec")).strip().lower()
            scale = _TIME_UNITS_MIN.get(unit, 1 / 60)
            self._time_source = "ImageJ finterval"
            return np.arange(n_t, dtype=np.float64) * float(interval) * scale
        return None

    def close(self) -> None:
        self._tif.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
