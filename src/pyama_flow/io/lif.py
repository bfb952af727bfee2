"""Leica LIF containers through ``liffile``, one plane at a time.

A LIF file written by LAS X holds several images (one per acquisition; a
multi-position experiment stores one image per position). The images chosen
with the reader option ``image`` (default: every image of the file) are the
FOVs; they must share their dimensions and dtype.

``liffile`` was chosen over ``readlif`` on the real LAS X files of
``../shared/data/lif``: ``readlif`` reports an emission sweep
(λ: 20, Y, X) as a single 64x64 image (``Dims(z=1, t=1)``), dropping the λ
dimension, while ``liffile`` reports every dimension as stored.

Only X-Y time-lapse images are read: the innermost two dimensions must be
Y and X, and besides them an image may have T, C, Z, and a wavelength sweep
(λ emission or Λ excitation) *together with T*, whose bands are then the
channels (named ``"λ 550 nm"``). Everything else is refused with one line
naming the image and why: a λ / Λ sweep without time, an X-Z line scan (no Y,
or X-Z planes stacked along Y), a tile scan (M), an RGB image, other dimensions.
"""

from __future__ import annotations

import fnmatch
import os
from typing import Any

import numpy as np

from pyama_flow.io.base import (
    ImageMetadata,
    ImageReader,
    InputError,
    check_options,
    default_channel_names,
    unreadable_file,
    unreadable_plane,
)

#: LIF dimensions a time-lapse image may have besides Y and X
_PLANE_DIMS = ("T", "C", "Z")
_SWEEPS = {"λ": "emission λ sweep", "Λ": "excitation Λ sweep"}


def _describe(image: Any) -> str:
    """``'name' (T: 2, Z: 11, Y: 64, X: 64)``."""
    sizes = ", ".join(f"{k}: {v}" for k, v in image.sizes.items())
    return f"{image.name!r} ({sizes})"


def refusal(image: Any) -> str | None:
    """Why ``image`` is not an X-Y time-lapse pyama-flow can read, or None when it is."""
    dims = tuple(image.dims)
    sizes = dict(image.sizes)
    if "S" in dims:
        return "an RGB image; export one channel per plane"
    if "Y" not in dims or "X" not in dims:
        return "an X-Z line scan (no Y), not an X-Y image"
    if dims[-2:] != ("Y", "X"):
        return (f"an X-Z scan: its planes are {'-'.join(dims[-2:])} (stacked along "
                f"{', '.join(dims[:-2])}), not X-Y images")
    if "M" in dims:
        return f"a tile scan (M: {sizes['M']}); merge or export the tiles in LAS X"
    sweeps = [d for d in dims if d in _SWEEPS]
    if sweeps and sizes.get("T", 1) <= 1:
        return f"an {_SWEEPS[sweeps[0]]} ({sweeps[0]}: {sizes[sweeps[0]]}) without time, not a time-lapse"
    if len(sweeps) > 1 or (sweeps and "C" in dims):
        return "has channels and a wavelength sweep, or two sweeps: not supported"
    other = [d for d in dims[:-2] if d not in _PLANE_DIMS and d not in _SWEEPS]
    if other:
        return f"has dimension(s) {', '.join(other)} that pyama-flow does not read"
    return None


def _select(path: str, images: list[Any], wanted: Any) -> list[Any]:
    """Images chosen by the ``image`` option: a name (glob), an index, or a list of them."""
    if wanted is None:
        return images
    items = wanted if isinstance(wanted, (list, tuple)) else [wanted]
    chosen: list[Any] = []
    for item in items:
        if isinstance(item, int) or (isinstance(item, str) and item.isdigit()):
            i = int(item)
            if not 0 <= i < len(images):
                raise InputError(f"{path}: image {i} is out of range (valid: 0-{len(images) - 1})")
            found = [images[i]]
        else:
            found = [im for im in images if fnmatch.fnmatchcase(im.name, str(item))
                     or fnmatch.fnmatchcase(im.path, str(item))]
            if not found:
                names = ", ".join(repr(im.name) for im in images)
                raise InputError(f"{path}: no image named {item!r} (images: {names})")
        chosen.extend(im for im in found if all(im is not c for c in chosen))
    return chosen


def _check_images(path: str, images: list[Any], all_images: list[Any]) -> None:
    """Refuse with one line: an image that is no X-Y time-lapse, or FOVs that differ."""
    for im in images:
        why = refusal(im)
        if why:
            usable = [repr(i.name) for i in all_images if refusal(i) is None]
            hint = (f"choose images with the reader option image (time-lapse images here: "
                    f"{', '.join(usable)})") if usable else "the file has no X-Y time-lapse image"
            raise InputError(f"{path}: LIF image {_describe(im)} is {why}; {hint}")
    first = images[0]
    for im in images[1:]:
        if dict(im.sizes) != dict(first.sizes) or im.dtype != first.dtype:
            raise InputError(
                f"{path}: LIF images {_describe(first)} and {_describe(im)} differ; "
                "FOVs must share their dimensions and dtype (choose images with the reader option image)"
            )


def _channel_names(image: Any) -> list[str]:
    """Channel names: LUT names of C, wavelengths of a sweep, else C0, C1..."""
    sweep = next((d for d in image.dims if d in _SWEEPS), None)
    if sweep is not None:
        metres = np.asarray(image.coords.get(sweep, []), dtype=np.float64)
        if metres.size == image.sizes[sweep]:
            return [f"{sweep} {m * 1e9:.4g} nm" for m in metres]
        return [f"{sweep}{i}" for i in range(image.sizes[sweep])]
    n = image.sizes.get("C", 1)
    luts = [getattr(ch, "lut_name", "") or "" for ch in getattr(image, "_channels", ())]
    if len(luts) == n and all(luts) and len(set(luts)) == n:
        return luts
    return default_channel_names(n)


def _hardware(image: Any) -> dict[str, Any]:
    """Objective, microscope and confocal settings where the image's XML records them."""
    hw = (image.attrs or {}).get("HardwareSetting") or {}
    conf = hw.get("ATLConfocalSettingDefinition") or hw.get("ATLCameraSettingDefinition") or {}
    out: dict[str, Any] = {}
    if isinstance(conf, dict):
        for key, name in (("ObjectiveName", "objective"), ("Magnification", "magnification"),
                          ("NumericalAperture", "numerical_aperture"), ("MicroscopeModel", "stand")):
            if conf.get(key) not in (None, ""):
                value = conf[key]
                out[name] = " ".join(value.split()) if isinstance(value, str) else value
    if hw.get("SystemTypeName"):
        out["system"] = str(hw["SystemTypeName"]).strip()
    return out


class LifReader(ImageReader):
    """Leica LIF: the chosen images are FOVs; T, C (or λ / Λ bands), Z.

    Option ``image``: a name (glob allowed, matched against the name and the
    path inside the file), an index, or a list of them; default every image.
    Metadata: pixel size (X coordinates), per-frame time stamps, channel names,
    objective and microscope; ``extra`` holds the image names, the LIF
    dimensions, the Z step and the confocal system.
    """

    format_name = "lif"
    suffixes = (".lif",)

    def __init__(self, path: str | os.PathLike, image: Any = None, **options: Any) -> None:
        super().__init__(path, **options)
        check_options(self.path, "LIF", options, ("image",))
        import liffile  # optional dependency; open_image checks it is installed

        try:
            self._lif = liffile.LifFile(self.path)
            all_images = list(self._lif.images)
        except Exception as exc:  # liffile raises LifFileError/ValueError/OSError on bad files
            raise unreadable_file(self.path, "LIF", exc) from None
        try:
            if not all_images:
                raise InputError(f"{self.path}: the LIF file holds no image")
            self._images = _select(self.path, all_images, image)
            _check_images(self.path, self._images, all_images)
            self._setup()
        except BaseException:
            self._lif.close()
            raise

    def _setup(self) -> None:
        im = self._images[0]
        sizes = dict(im.sizes)
        self._sweep = next((d for d in im.dims if d in _SWEEPS), None)
        self._c_dim = self._sweep or ("C" if "C" in sizes else None)
        n_c = sizes.get(self._c_dim, 1) if self._c_dim else 1
        xs = np.asarray(im.coords.get("X", []), dtype=np.float64)
        pixel = float(xs[1] - xs[0]) * 1e6 if xs.size > 1 and xs[1] > xs[0] else None
        hw = _hardware(im)
        extra: dict[str, Any] = {
            "axes": "".join("C" if d == self._sweep else d for d in im.dims),
            "lif_dims": {k: int(v) for k, v in sizes.items()},
            "images": [i.name for i in self._images],
        }
        zs = np.asarray(im.coords.get("Z", []), dtype=np.float64)
        if zs.size > 1:
            extra["z_step_um"] = abs(float(zs[1] - zs[0])) * 1e6
        extra.update({k: v for k, v in hw.items() if k not in ("objective",)})
        self.metadata = ImageMetadata(
            path=self.path, format="lif", n_fovs=len(self._images), n_frames=sizes.get("T", 1),
            n_channels=n_c, n_z=sizes.get("Z", 1), height=sizes["Y"], width=sizes["X"],
            dtype=str(np.dtype(im.dtype)), channel_names=_channel_names(im), pixel_size_um=pixel,
            objective=hw.get("objective"), microscope=hw.get("system") or hw.get("stand"),
            file_size=os.path.getsize(self.path), extra=extra,
        )
        self._times: dict[int, np.ndarray | None] = {}
        self.metadata.set_times(*self._frame_times(0))

    def _frame_times(self, fov: int) -> tuple[np.ndarray | None, str | None]:
        """Minutes since the first frame: the planes' own time stamps, else the T coordinates."""
        im = self._images[fov]
        n_t = im.sizes.get("T", 1)
        plane_dims = [d for d in im.dims if d not in ("Y", "X")]
        stamps = im.timestamps
        if n_t < 2:
            return None, None
        shape = [im.sizes[d] for d in plane_dims]
        if stamps is not None and len(stamps) == int(np.prod(shape)):
            first = np.asarray(stamps).reshape(shape)
            first = first[tuple(slice(None) if d == "T" else 0 for d in plane_dims)]
            ms = (first - first[0]).astype("timedelta64[ms]").astype(np.float64)
            if np.all(np.diff(ms) > 0):
                return ms / 60000.0, "plane time stamps"
        coords = np.asarray(im.coords.get("T", []), dtype=np.float64)
        if coords.size == n_t and np.all(np.diff(coords) > 0):
            return (coords - coords[0]) / 60.0, "T dimension"
        return None, None

    def frame_times(self, fov: int) -> np.ndarray | None:
        self.check_index(fov=fov)
        if fov not in self._times:
            self._times[fov] = self._frame_times(fov)[0]
        return self._times[fov]

    def read_plane(self, fov: int, t: int, c: int, z: int = 0) -> np.ndarray:
        self.check_index(fov=fov, t=t, c=c, z=z)
        im = self._images[fov]
        index: dict[str, int] = {}
        if "T" in im.sizes:
            index["T"] = t
        if "Z" in im.sizes:
            index["Z"] = z
        if self._c_dim:
            index[self._c_dim] = c
        try:
            return np.asarray(im.frame(**index))
        except Exception as exc:
            raise unreadable_plane(self.path, f"image {im.name!r} frame {t} channel {c} Z {z}", exc) from None

    def close(self) -> None:
        self._lif.close()
