"""Fluorescence background by tiled interpolation (SPEC step 3).

Reference behaviour (PyAMA): the segmentation mask is dilated with a 21x21
square and those pixels are excluded; the frame is cut into overlapping tiles
(50 % overlap), each tile gives the median of its unmasked pixels (an
all-masked tile takes the frame's median), and a bicubic interpolating spline
through the tile centres, evaluated at every pixel, is the background.

A frame's background is fully described by its small grid of tile medians
(:class:`TileModel`), so the workflow stores that grid instead of a float32
image; :func:`evaluate` turns it back into the identical image on demand
(``scipy.interpolate.RectBivariateSpline``, the reference's call), and
:class:`BackgroundSpline` gives the identical values on any rectangle of the
frame (the traces step evaluates it only on the cells' bounding boxes).

Fixes over the reference:
- fewer than 4 tile centres along an axis (frames <= 512 px at the default
  tile size) crash the reference; here the spline order drops to
  ``n_centres - 1`` (quadratic, linear) and a single centre gives a constant;
- a frame with no unmasked pixels falls back to the undilated mask, then to
  the whole frame, instead of producing NaN;
- integer frames of any width: medians are read off a count per value only
  where the frame's values span fewer than :data:`COUNT_RANGE` values (always
  for uint8 / uint16); a uint32 frame with a hot pixel at 2^32 - 1 takes
  ``np.median`` per tile instead of allocating a count per possible value.

Non-finite pixels (NaN / inf in float input) never enter a tile median; a
frame without a single finite pixel has no measurable background and
evaluates to an all-NaN image (the traces step then leaves those pixels out
and marks the rows ``good = False``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pyama_flow import kernels
from pyama_flow.segmentation.logstd import _square_filter


@dataclass
class TileModel:
    """Tile medians of one frame and where they sit.

    Attributes
    ----------
    centers_y, centers_x : 1-D float64 arrays of tile-centre coordinates (px)
    support : (len(centers_y), len(centers_x)) float32 array of tile medians
    shape : (height, width) of the frame
    """

    centers_y: np.ndarray
    centers_x: np.ndarray
    support: np.ndarray
    shape: tuple[int, int]


def tile_edges(n: int, tile_size: int) -> np.ndarray:
    """Tile edges along one axis: tile i spans ``edges[i]:edges[i + 2]``.

    ``divs = max(ceil(n / s) + 1, 2)``, ``edges = round(linspace(0, n, 2 * divs - 1))``.
    """
    s = max(int(tile_size), 1)
    divs = max(int(np.ceil(n / s)) + 1, 2)
    return np.rint(np.linspace(0, n, 2 * divs - 1)).astype(np.int64)


#: widest value range (max - min + 1) whose tile medians are read off a count
#: per value; wider integer data (uint32 / int32 frames, e.g. one hot pixel at
#: 2^32 - 1) takes per-tile medians of the sorted values instead (the same result)
COUNT_RANGE = 1 << 20


def _counting_range(values: np.ndarray) -> bool:
    """True where the integer ``values`` span few enough values to be counted per value."""
    if values.dtype.kind not in "ui" or values.size == 0:
        return False
    if values.dtype.itemsize <= 2:
        return True
    return int(values.max()) - int(values.min()) < COUNT_RANGE


def _median(values: np.ndarray) -> float:
    """Median of a 1-D array, exactly as ``np.median`` (float32 kept)."""
    if values.size == 0:
        return np.nan
    if values.size > 4096 and _counting_range(values):
        # exact order statistics from a histogram of the integer values
        lo = int(values.min())
        counts = np.bincount((values - lo).astype(np.intp, copy=False))
        cum = np.cumsum(counts)
        n = values.size
        a = int(np.searchsorted(cum, (n - 1) // 2 + 1)) + lo
        b = int(np.searchsorted(cum, n // 2 + 1)) + lo
        # np.median on float32 data averages the two middle values in float32
        return float(np.mean(np.array([a, b], dtype=np.float32)))
    return float(np.median(values.astype(np.float32, copy=False)))


def background_mask(mask: np.ndarray, dilation: int = 21) -> np.ndarray:
    """Pixels excluded from the background: the mask dilated by a square."""
    fg = np.asarray(mask) > 0
    if dilation <= 1:
        return fg
    return _square_filter(fg, int(dilation), erode=False)


def fit_tiles(
    image: np.ndarray,
    mask: np.ndarray,
    tile_size: int = 256,
    dilation: int = 21,
) -> TileModel:
    """Tile medians of the unmasked pixels of one frame.

    Parameters
    ----------
    image : (Y, X) array
        Fluorescence frame (uint16 or float; NaN / inf pixels are ignored).
    mask : (Y, X) array
        Segmentation (labels or bool); nonzero = cell.
    tile_size : int
        Tile side in pixels (reference 256).
    dilation : int
        Side of the square the mask is dilated with (reference 21).
    """
    image = np.asarray(image)
    if image.dtype.kind == "f" and image.dtype != np.float32:
        image = image.astype(np.float32)  # the reference works in float32
    height, width = image.shape
    excluded = background_mask(mask, dilation)
    invalid = ~np.isfinite(image) if image.dtype.kind == "f" else None
    if invalid is not None:
        excluded = excluded | invalid
    if excluded.all():  # nothing left: undilated mask, then the whole frame
        excluded = np.asarray(mask) > 0
        if invalid is not None:
            excluded = excluded | invalid
        if excluded.all():
            excluded = invalid if invalid is not None else np.zeros_like(excluded)
    keep = ~excluded
    ey = tile_edges(height, tile_size)
    ex = tile_edges(width, tile_size)
    if _counting_range(image):  # uint8 / uint16 always; wider integers by their range
        support = kernels.tile_medians(np.ascontiguousarray(image), np.ascontiguousarray(excluded), ey, ex)
    else:
        support = np.empty((ey.size - 2, ex.size - 2), dtype=np.float32)
        for i in range(ey.size - 2):
            ys = slice(ey[i], ey[i + 2])
            for j in range(ex.size - 2):
                xs = slice(ex[j], ex[j + 2])
                support[i, j] = _median(image[ys, xs][keep[ys, xs]])
    missing = np.isnan(support)
    if missing.any():
        support[missing] = _median(image[keep])
    return TileModel(
        centers_y=(ey[:-2] + ey[2:]) * 0.5,
        centers_x=(ex[:-2] + ex[2:]) * 0.5,
        support=support,
        shape=(int(height), int(width)),
    )


def _orders(model: TileModel) -> tuple[int, int]:
    """Spline order along y and x: cubic, lowered to ``n - 1`` for ``n`` < 4 centres."""
    return min(3, model.centers_y.size - 1), min(3, model.centers_x.size - 1)


def _bicubic_orders(model: TileModel) -> tuple[int, int] | None:
    """(ky, kx) where the background is a 2-D spline through the tile centres
    (both axes have 2 or more centres), else None (a 1-D spline or a constant)."""
    ky, kx = _orders(model)
    return (ky, kx) if ky >= 1 and kx >= 1 else None


def _grid_function(model: TileModel) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``f(ys, xs)``: the background of ``model`` (float32) at rows ``ys`` x columns ``xs``.

    ``ys`` and ``xs`` are ascending pixel coordinates. The spline is fitted
    once here; every value depends only on its own (row, column) (FITPACK's
    ``bispev`` sums each grid point's basis on its own, and the 1-D splines
    evaluate point by point), so a sub-grid gives the whole grid's bits.
    """
    cy, cx, sup = model.centers_y, model.centers_x, model.support.astype(np.float64)
    if sup.size and not np.isfinite(sup).all():
        # only a frame without any finite pixel has NaN tile medians (all of them)
        return lambda ys, xs: np.full((ys.size, xs.size), np.nan, dtype=np.float32)
    if (orders := _bicubic_orders(model)) is not None:
        from scipy.interpolate import RectBivariateSpline

        ky, kx = orders  # the reference's call: x first, then transposed
        spline = RectBivariateSpline(cx, cy, sup.T, kx=kx, ky=ky)
        return lambda ys, xs: spline(xs, ys).astype(np.float32, copy=False).T
    ky, kx = _orders(model)
    if ky == 0 and kx == 0:
        return lambda ys, xs: np.full((ys.size, xs.size), sup[0, 0], dtype=np.float32)
    from scipy.interpolate import make_interp_spline

    if ky == 0:
        along_x = make_interp_spline(cx, sup[0], k=kx)
        return lambda ys, xs: np.broadcast_to(
            along_x(np.clip(xs, cx[0], cx[-1])).astype(np.float32), (ys.size, xs.size)).copy()
    along_y = make_interp_spline(cy, sup[:, 0], k=ky)
    return lambda ys, xs: np.broadcast_to(
        along_y(np.clip(ys, cy[0], cy[-1])).astype(np.float32)[:, None], (ys.size, xs.size)).copy()


class BackgroundSpline:
    """A frame's background, evaluated on any rectangle of the frame.

    :meth:`region` gives ``evaluate(model)[y0:y1, x0:x1]``, the same bits,
    for the cost of that rectangle only: the traces step evaluates each
    frame's spline on the cells' bounding boxes, not on the whole frame.
    """

    def __init__(self, model: TileModel) -> None:
        self.shape = model.shape
        self._grid = _grid_function(model)

    def region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """The float32 background of rows ``y0:y1`` and columns ``x0:x1`` (within the frame)."""
        return self._grid(np.arange(y0, y1), np.arange(x0, x1))

    def image(self) -> np.ndarray:
        """The whole background image (float32), as :func:`evaluate`."""
        height, width = self.shape
        return self.region(0, height, 0, width)


def evaluate(model: TileModel) -> np.ndarray:
    """Background image (float32) of a tile model: bicubic spline through the centres.

    Where an axis has fewer than 4 centres the spline order is lowered to
    ``n - 1``; one centre gives a constant along that axis.
    """
    return BackgroundSpline(model).image()


def estimate_background(
    image: np.ndarray, mask: np.ndarray, tile_size: int = 256, dilation: int = 21
) -> np.ndarray:
    """Background image of one frame (``evaluate(fit_tiles(...))``)."""
    return evaluate(fit_tiles(image, mask, tile_size=tile_size, dilation=dilation))


def save_models(path: str, models: list[TileModel], tile_size: int, dilation: int) -> None:
    """Write the per-frame tile models of one channel as a compressed ``.npz``.

    Arrays: ``support`` (T, ny, nx) float32, ``centers_y``, ``centers_x``,
    ``shape`` (2,), ``tile_size``, ``dilation``. All frames of a FOV share the
    frame shape and therefore the tile grid.
    """
    if models:
        support = np.stack([m.support for m in models])
        cy, cx, shape = models[0].centers_y, models[0].centers_x, models[0].shape
    else:
        support = np.zeros((0, 0, 0), np.float32)
        cy = cx = np.zeros(0)
        shape = (0, 0)
    with open(path, "wb") as fh:
        np.savez_compressed(
            fh,
            support=support,
            centers_y=cy,
            centers_x=cx,
            shape=np.asarray(shape, dtype=np.int64),
            tile_size=np.int64(tile_size),
            dilation=np.int64(dilation),
        )


class BackgroundModels:
    """Read a channel's stored tile models and evaluate frames on demand."""

    def __init__(self, path: str) -> None:
        with np.load(path) as data:
            self.support = data["support"]
            self.centers_y = data["centers_y"]
            self.centers_x = data["centers_x"]
            self.shape = tuple(int(v) for v in data["shape"])

    def __len__(self) -> int:
        return int(self.support.shape[0])

    def model(self, t: int) -> TileModel:
        return TileModel(self.centers_y, self.centers_x, self.support[t], self.shape)  # type: ignore[arg-type]

    def __getitem__(self, t: int) -> np.ndarray:
        return evaluate(self.model(t))

    def spline(self, t: int) -> BackgroundSpline:
        """Frame ``t``'s background for :func:`pyama_flow.traces.features.frame_features`,
        to be evaluated on the cells' bounding boxes only."""
        return BackgroundSpline(self.model(t))
