"""Binned per-frame maps the watershed works on.

Block-mean binning of a frame and nearest-neighbour upsampling of labels
back to it, the log local standard deviation (texture: cells are textured,
the background is flat), and the robust brightness z-score (the bright phase
halo). :class:`_Maps` holds both maps of one frame at one bin factor.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage as ndi

from pyama_flow import kernels


def bin_image(image: np.ndarray, factor: int) -> np.ndarray:
    """Block mean over ``factor x factor`` pixels, float32.

    Trailing rows / columns that do not fill a whole block are dropped;
    ``factor <= 1`` only converts to float32.
    """
    img = np.asarray(image, dtype=np.float32)
    if factor <= 1:
        return img
    ny, nx = img.shape[0] // factor, img.shape[1] // factor
    if ny == 0 or nx == 0:
        raise ValueError(f"frame {img.shape} smaller than bin factor {factor}")
    img = img[: ny * factor, : nx * factor]
    out = np.zeros((ny, nx), dtype=np.float32)
    for dy in range(factor):
        for dx in range(factor):
            out += img[dy::factor, dx::factor]
    out *= np.float32(1.0 / (factor * factor))
    return out


@lru_cache(maxsize=32)
def _gaussian_half(sigma: float, truncate: float) -> np.ndarray:
    """The weights ``scipy.ndimage.gaussian_filter1d`` uses (centre, then +-1, +-2 ...):
    its response to a unit impulse, which is each weight times one."""
    r = int(truncate * sigma + 0.5)
    impulse = np.zeros(4 * r + 3, dtype=np.float64)
    impulse[2 * r + 1] = 1.0
    return ndi.gaussian_filter1d(impulse, sigma, truncate=truncate)[2 * r + 1 : 3 * r + 2].copy()


def gaussian_filter(image: np.ndarray, sigma: float, truncate: float = 3.0) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter(image, sigma, truncate=truncate)``, bit for bit.

    A 2-D float32 image whose sides are at least the filter's radius goes
    through the compiled :func:`pyama_flow.kernels.symmetric_filter` (2-4x
    faster), anything else through scipy itself.
    """
    img = np.asarray(image)
    r = int(truncate * float(sigma) + 0.5)
    if img.ndim != 2 or img.dtype != np.float32 or not 0 < r <= min(img.shape) or not sigma > 0:
        return ndi.gaussian_filter(img, sigma, truncate=truncate)
    return kernels.symmetric_filter(img, _gaussian_half(float(sigma), float(truncate)))


def unbin_labels(labels: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upsampling of binned labels to ``shape``.

    Rows / columns dropped by :func:`bin_image` repeat the last binned
    row / column.
    """
    if factor <= 1:
        return labels
    iy = np.minimum(np.arange(shape[0]) // factor, labels.shape[0] - 1)
    ix = np.minimum(np.arange(shape[1]) // factor, labels.shape[1] - 1)
    if shape[0] == labels.shape[0] * factor and shape[1] == labels.shape[1] * factor:
        return np.repeat(np.repeat(labels, factor, axis=0), factor, axis=1)
    return labels[np.ix_(iy, ix)]


def _window_sum(a: np.ndarray, w: int) -> np.ndarray:
    """Sums over all ``w x w`` windows fully inside ``a`` (shape shrinks by w - 1)."""
    ny, nx = a.shape[0] - w + 1, a.shape[1] - w + 1
    rows = a[:ny] + a[1 : ny + 1]
    for k in range(2, w):
        rows += a[k : ny + k]
    out = rows[:, :nx] + rows[:, 1 : nx + 1]
    for k in range(2, w):
        out += rows[:, k : nx + k]
    return out


def texture_image(image: np.ndarray, window: int = 3) -> np.ndarray:
    """Log local standard deviation over an odd ``window`` square (float32).

    Returns ``0.5 * ln(w**4 * var)`` (a constant offset from ``0.5 * ln(var)``,
    which does not matter since thresholds are taken relative to the
    histogram mode). Computed on windows fully inside the frame; the
    ``window // 2`` outermost rows / columns copy their inner neighbours. The
    frame's median is subtracted first (float32 precision); variances are
    floored at a tiny fraction of the frame's so flat patches stay finite.
    """
    image = np.asarray(image)
    w = int(window)
    if w < 3 or w % 2 == 0 or min(image.shape) < w:
        raise ValueError(f"texture window {window} must be odd, >= 3 and fit the frame {image.shape}")
    img = np.subtract(image, np.float32(np.median(image[::4, ::4])), dtype=np.float32)
    s = _window_sum(img, w)
    var = _window_sum(img * img, w)
    var *= np.float32(w * w)
    var -= s * s  # = w**4 * variance
    floor = np.float32(max(float(np.var(img[::4, ::4])) * 1e-6, 1e-12) * w**4)
    np.maximum(var, floor, out=var)
    r = w // 2
    out = np.empty(img.shape, dtype=np.float32)
    inner = out[r : img.shape[0] - r, r : img.shape[1] - r]
    np.log(var, out=inner)
    inner *= np.float32(0.5)
    for k in range(r):  # borders copy their inner neighbours
        out[k, r:-r] = out[r, r:-r]
        out[-1 - k, r:-r] = out[-1 - r, r:-r]
    out[:, :r] = out[:, r : r + 1]
    out[:, -r:] = out[:, -r - 1 : -r]
    return out


def binned_texture(image: np.ndarray, window: int = 3, factor: int = 1, block: int = 64) -> np.ndarray:
    """``bin_image(texture_image(image, window), factor)``, computed in blocks
    of about ``block`` rows (same values; far fewer frame-sized temporaries)."""
    image = np.asarray(image)
    w = int(window)
    if w < 3 or w % 2 == 0 or min(image.shape) < w:
        raise ValueError(f"texture window {window} must be odd, >= 3 and fit the frame {image.shape}")
    f = max(1, int(factor))
    ny, nx = image.shape
    oy, ox = ny // f, nx // f
    if oy == 0 or ox == 0:
        raise ValueError(f"frame {image.shape} smaller than bin factor {f}")
    r = w // 2
    med = np.float32(np.median(image[::4, ::4]))
    sub = np.subtract(image[::4, ::4], med, dtype=np.float32)
    floor = np.float32(max(float(np.var(sub)) * 1e-6, 1e-12) * w**4)
    out = np.empty((oy, ox), dtype=np.float32)
    step = max(1, block // f) * f
    for y0 in range(0, oy * f, step):
        y1 = min(y0 + step, oy * f)
        rows = np.clip(np.arange(y0, y1), r, ny - 1 - r)
        c0, c1 = int(rows[0]), int(rows[-1]) + 1
        img = np.subtract(image[c0 - r : c1 + r], med, dtype=np.float32)
        s = _window_sum(img, w)
        var = _window_sum(img * img, w)
        var *= np.float32(w * w)
        var -= s * s
        np.maximum(var, floor, out=var)
        t = np.empty((c1 - c0, nx), dtype=np.float32)
        inner = t[:, r : nx - r]
        np.log(var, out=inner)
        inner *= np.float32(0.5)
        t[:, :r] = t[:, r : r + 1]
        t[:, nx - r :] = t[:, nx - r - 1 : nx - r]
        if rows[0] != y0 or rows[-1] != y1 - 1:
            t = t[rows - c0]
        out[y0 // f : y1 // f] = bin_image(t[:, : ox * f], f)
    return out


def histogram_mode(values: np.ndarray, n_bins: int = 200) -> float:
    """Centre of the fullest bin of an ``n_bins`` histogram (first on ties)."""
    counts, edges = np.histogram(np.ravel(values), bins=n_bins)
    k = int(np.argmax(counts))
    return float(0.5 * (edges[k] + edges[k + 1]))


def robust_z(image: np.ndarray) -> np.ndarray:
    """``(x - median) / (1.4826 * MAD)``, float32 (median / MAD from a 1/16 subsample)."""
    img = np.asarray(image, dtype=np.float32)
    sub = img[::4, ::4]
    med = float(np.median(sub))
    mad = 1.4826 * float(np.median(np.abs(sub - med)))
    if mad <= 0:
        mad = float(np.std(sub)) or 1.0
    return (img - np.float32(med)) * np.float32(1.0 / mad)


class _Maps:
    """Binned texture (minus its background mode) and brightness z-score."""

    def __init__(self, image: np.ndarray, f: int, texture_window: int | None):
        self.f = f
        self.shape = (image.shape[0] // f, image.shape[1] // f)
        self.z = robust_z(bin_image(image, f))
        self.tex = None
        if texture_window is not None:
            tex = binned_texture(image, texture_window, f)
            tex -= np.float32(histogram_mode(tex))
            self.tex = tex
