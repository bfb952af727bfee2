"""A small learned pixel classifier for phase-contrast foreground (numpy only).

Used by :func:`pyama_flow.segmentation.watershed.segment_watershed` (the
``"learned"`` foreground, chosen by ``foreground="auto"`` when the frame looks
like the training data: a wide phase halo and agreement with the texture
mask). A one-hidden-layer perceptron maps ``N_FEATURES``
per-pixel features to the probability that the pixel belongs to a cell:

    p = sigmoid(relu(((x - mean) / std) @ w1 + b1) @ w2 + b2)

The features are computed on a *classifier grid* whose pixels are about
``cell_diameter / 15`` input pixels wide (4x4 binning for T98G at 10x, 60 px
cells), so the same weights apply to another magnification. They describe
the texture (log local standard deviation) and brightness at several scales
and the signed distance to the texture foreground mask (the prior):

==  ===========  =====================================================
 0  ``sd``        signed distance (grid px, chamfer) to the prior mask's
                  outline, positive inside, clipped to +-``SD_CLIP``
 1  ``tex``       texture minus the background's histogram mode
 2  ``tex_u3``    box mean of ``tex`` over 3x3 grid px
 3  ``tex_u7``    ... over 7x7
 4  ``tex_u15``   ... over 15x15
 5  ``cov_u3``    fraction of thresholded-texture pixels over 3x3
 6  ``cov_u7``    ... over 7x7
 7  ``cov_u15``   ... over 15x15
 8  ``z_u3``      robust z-score of the brightness, box mean 3x3
 9  ``absz_u3``   its absolute value
10  ``zsd_u3``    ln of the local standard deviation of z over 3x3
11  ``zsd_u7``    ... over 7x7
12  ``grad``      ln(1 + gradient magnitude of ``z_u3``)
13  ``texsd_u7``  standard deviation of ``tex`` over 7x7 grid px
14  ``texsd_u15`` ... over 15x15
==  ===========  =====================================================

The last two describe how *uneven* the texture is around a pixel: cells mix
nucleus, granules, flat lamellae and their halo, the background is uniformly
smooth; they lifted the two-fold cross-validated foreground IoU by about 0.01
(mean over five training seeds).

Brightness is only used locally (up to 7x7 grid px): mean brightness over
larger areas follows the illumination of a particular frame and made the
model generalise worse in cross-validation.

A second perceptron of the same form, on the same features, but with a
linear output, is the **seed map**: it predicts, for a pixel of a cell, its
distance (classifier-grid px, clipped to ``SEED_CLIP``) to the outline of
*its own* cell, where the outline includes the line along which it touches
another cell (0 on the background). Unlike the distance transform of a
foreground mask, it dips along the phase halo between touching cells and
does not peak on the thick middle of debris bands, so the watershed on it
splits touching cells without cutting spread ones in pieces.

The weights of both ship in :mod:`._pixel_mlp_weights` (generated, with their
data provenance and cross-validation by set, by
``resources/segmentation/train_pixel_classifier.py``; trained on the
hand-annotated Usiigaci T98G frames set1 to set25).
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi

from pyama_flow import kernels

FEATURE_NAMES: tuple[str, ...] = (
    "sd",
    "tex",
    "tex_u3",
    "tex_u7",
    "tex_u15",
    "cov_u3",
    "cov_u7",
    "cov_u15",
    "z_u3",
    "absz_u3",
    "zsd_u3",
    "zsd_u7",
    "grad",
    "texsd_u7",
    "texsd_u15",
)
N_FEATURES = len(FEATURE_NAMES)
#: clip of the signed-distance feature (classifier-grid px)
SD_CLIP = 6.0
#: classifier-grid pixel size as a fraction of the cell diameter
GRID_PER_DIAMETER = 1.0 / 15.0
#: clip (classifier-grid px) of the seed map's target, the distance to the own outline
SEED_CLIP = 8.0


class PixelMLP(NamedTuple):
    """Weights of the one-hidden-layer perceptron (float32)."""

    mean: np.ndarray  # (F,)
    std: np.ndarray  # (F,)
    w1: np.ndarray  # (F, H)
    b1: np.ndarray  # (H,)
    w2: np.ndarray  # (H,)
    b2: float


def _box(a: np.ndarray, size: int) -> np.ndarray:
    return ndi.uniform_filter(a, size, mode="nearest")


def _signed_distance(mask: np.ndarray, clip: float) -> np.ndarray:
    """Chamfer (city-block / chessboard mean) signed distance to the outline,
    >0 inside, <0 outside, clipped to +-``clip``."""
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(mask.shape, dtype=np.float32)
    if mask.any() and not mask.all():
        out = kernels.chamfer_mean_distance(mask) - kernels.chamfer_mean_distance(~mask)
    elif mask.all():
        out[:] = clip
    else:
        out[:] = -clip
    np.clip(out, -clip, clip, out=out)
    return out


def classifier_features(tex: np.ndarray, z: np.ndarray, raw: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Per-pixel features on the classifier grid, ``(Y, X, N_FEATURES)`` float32.

    Parameters
    ----------
    tex : texture (log local std) minus its background mode, binned to the grid.
    z : robust z-score of the binned frame's brightness.
    raw : fraction (0-1) of each grid pixel where the texture exceeds its threshold.
    prior : cleaned texture foreground mask (bool), on the grid.
    """
    tex = np.asarray(tex, dtype=np.float32)
    z = np.asarray(z, dtype=np.float32)
    cov = np.asarray(raw, dtype=np.float32)
    out = np.empty(tex.shape + (N_FEATURES,), dtype=np.float32)
    out[..., 0] = _signed_distance(prior, SD_CLIP)
    out[..., 1] = tex
    out[..., 2] = _box(tex, 3)
    out[..., 3] = _box(tex, 7)
    out[..., 4] = _box(tex, 15)
    out[..., 5] = _box(cov, 3)
    out[..., 6] = _box(cov, 7)
    out[..., 7] = _box(cov, 15)
    z3 = _box(z, 3)
    out[..., 8] = z3
    out[..., 9] = np.abs(z3)
    zz = z * z
    for k, size in ((10, 3), (11, 7)):
        mean = z3 if size == 3 else _box(z, size)
        var = _box(zz, size) - mean * mean
        out[..., k] = 0.5 * np.log(np.maximum(var, np.float32(1e-3)))
    gy = np.zeros_like(z3)
    gx = np.zeros_like(z3)
    gy[1:-1] = 0.5 * (z3[2:] - z3[:-2])
    gx[:, 1:-1] = 0.5 * (z3[:, 2:] - z3[:, :-2])
    out[..., 12] = np.log1p(np.sqrt(gy * gy + gx * gx))
    tt = tex * tex
    for k, size in ((13, 7), (14, 15)):
        mean = out[..., 3] if size == 7 else out[..., 4]
        var = _box(tt, size) - mean * mean
        out[..., k] = np.sqrt(np.maximum(var, np.float32(1e-4)))
    return out


def predict_proba(model: PixelMLP, features: np.ndarray) -> np.ndarray:
    """Foreground probability per pixel (float32, shape of ``features[..., 0]``)."""
    shape = features.shape[:-1]
    x = features.reshape(-1, features.shape[-1])
    w1, b1 = _folded(model)  # standardisation folded into the first layer
    h = x @ w1
    h += b1
    np.maximum(h, 0, out=h)
    logit = h @ model.w2.astype(np.float32)
    logit += np.float32(model.b2)
    np.clip(logit, -30, 30, out=logit)
    p = 1.0 / (1.0 + np.exp(-logit))
    return p.astype(np.float32).reshape(shape)


def _folded(model: PixelMLP) -> tuple[np.ndarray, np.ndarray]:
    """First layer with the standardisation folded in: ``(w1 / std, b1 - mean / std @ w1)``."""
    w1 = (model.w1 / model.std[:, None]).astype(np.float32)
    b1 = (model.b1 - (model.mean / model.std) @ model.w1).astype(np.float32)
    return w1, b1


def predict_maps(fg: PixelMLP, seed: PixelMLP, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Foreground probability and seed map (predicted distance to the own
    outline, >= 0, classifier-grid px) per pixel, both float32.

    The two hidden layers are computed in one matrix product (the values of
    :func:`predict_proba` and :func:`predict_distance` up to float32
    rounding, faster).
    """
    shape = features.shape[:-1]
    x = features.reshape(-1, features.shape[-1])
    wf, bf = _folded(fg)
    ws, bs = _folded(seed)
    h = x @ np.concatenate([wf, ws], axis=1)
    h += np.concatenate([bf, bs])
    np.maximum(h, 0, out=h)
    nf = wf.shape[1]
    logit = h[:, :nf] @ fg.w2.astype(np.float32)
    logit += np.float32(fg.b2)
    np.clip(logit, -30, 30, out=logit)
    p = (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    dist = h[:, nf:] @ seed.w2.astype(np.float32)
    dist += np.float32(seed.b2)
    np.maximum(dist, 0, out=dist)
    return p.reshape(shape), dist.astype(np.float32).reshape(shape)


def predict_distance(model: PixelMLP, features: np.ndarray) -> np.ndarray:
    """Linear output of the perceptron, floored at 0 (the seed map), float32."""
    shape = features.shape[:-1]
    w1, b1 = _folded(model)
    h = features.reshape(-1, features.shape[-1]) @ w1
    h += b1
    np.maximum(h, 0, out=h)
    out = h @ model.w2.astype(np.float32)
    out += np.float32(model.b2)
    np.maximum(out, 0, out=out)
    return out.astype(np.float32).reshape(shape)


def _load(prefix: str) -> PixelMLP:
    from pyama_flow.segmentation import _pixel_mlp_weights as w

    if tuple(w.FEATURE_NAMES) != FEATURE_NAMES:
        raise RuntimeError("pixel classifier weights do not match the feature set; retrain")
    return PixelMLP(
        mean=np.asarray(getattr(w, prefix + "MEAN"), dtype=np.float32),
        std=np.asarray(getattr(w, prefix + "STD"), dtype=np.float32),
        w1=np.asarray(getattr(w, prefix + "W1"), dtype=np.float32),
        b1=np.asarray(getattr(w, prefix + "B1"), dtype=np.float32),
        w2=np.asarray(getattr(w, prefix + "W2"), dtype=np.float32),
        b2=float(getattr(w, prefix + "B2")),
    )


@lru_cache(maxsize=1)
def default_model() -> PixelMLP:
    """The shipped T98G foreground model (see :mod:`._pixel_mlp_weights` for provenance)."""
    return _load("")


@lru_cache(maxsize=1)
def default_seed_model() -> PixelMLP:
    """The shipped T98G seed-map model (distance to the own outline)."""
    return _load("SEED_")


def upsample_linear(a: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling by an integer ``factor`` to ``shape`` (pixel centres aligned).

    Output pixel ``i`` (covering ``i`` of a grid ``factor`` times finer) sits at
    source coordinate ``(i - (factor - 1) / 2) / factor``; edges are clamped.
    """
    a = np.asarray(a, dtype=np.float32)
    if factor <= 1:
        out = a
    else:
        out = _upsample_axis(_upsample_axis(a, factor, shape[0], 0), factor, shape[1], 1)
    return out[: shape[0], : shape[1]]


def _upsample_axis(a: np.ndarray, k: int, n: int, axis: int) -> np.ndarray:
    src = (np.arange(n, dtype=np.float64) - (k - 1) / 2.0) / k
    src = np.clip(src, 0, a.shape[axis] - 1)
    i0 = np.floor(src).astype(np.intp)
    i1 = np.minimum(i0 + 1, a.shape[axis] - 1)
    w = (src - i0).astype(np.float32)
    a0 = np.take(a, i0, axis=axis)
    a1 = np.take(a, i1, axis=axis)
    shape = [1, 1]
    shape[axis] = n
    w = w.reshape(shape)
    return a0 + w * (a1 - a0)
