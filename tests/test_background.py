"""Background by tiled interpolation: the reference result, the small-frame
and all-masked fixes, and recovery of a known smooth background."""

import numpy as np
import pytest
from scipy.interpolate import RectBivariateSpline
from scipy.ndimage import binary_dilation

from pyama_flow.background.model import (
    BackgroundModels,
    BackgroundSpline,
    TileModel,
    estimate_background,
    evaluate,
    fit_tiles,
    save_models,
    tile_edges,
)


def reference_background(image, mask, tile=256):
    """PyAMA's tiled interpolation written plainly (needs >= 4 tiles per axis)."""
    d = binary_dilation(mask, structure=np.ones((21, 21), bool))
    masked = np.where(d, np.nan, image.astype(np.float32)).astype(np.float32)
    h, w = masked.shape
    ey, ex = tile_edges(h, tile), tile_edges(w, tile)
    sup = np.full((ey.size - 2, ex.size - 2), np.nan, np.float32)
    with np.errstate(all="ignore"):
        for i in range(ey.size - 2):
            for j in range(ex.size - 2):
                block = masked[ey[i] : ey[i + 2], ex[j] : ex[j + 2]]
                if np.isfinite(block).any():
                    sup[i, j] = np.nanmedian(block)
    sup[np.isnan(sup)] = np.nanmedian(masked)
    cy, cx = (ey[:-2] + ey[2:]) * 0.5, (ex[:-2] + ex[2:]) * 0.5
    return RectBivariateSpline(cx, cy, sup.T)(np.arange(w), np.arange(h)).astype(np.float32).T


def test_tile_edges_follow_the_spec():
    # n = 1024, s = 256: divs = 5, 9 edges, tile i spans edges[i]..edges[i+2]
    assert tile_edges(1024, 256).tolist() == [0, 128, 256, 384, 512, 640, 768, 896, 1024]
    assert tile_edges(100, 256).tolist() == [0, 50, 100]  # divs = max(1 + 1, 2)
    assert tile_edges(1000, 300).tolist() == list(np.rint(np.linspace(0, 1000, 9)).astype(int))


def scene(h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w].astype(float)
    bg = 400 + 0.08 * xx + 0.05 * yy + 30 * np.exp(-((yy - h / 2) ** 2 + (xx - w / 3) ** 2) / (2 * (0.5 * w) ** 2))
    mask = np.zeros((h, w), bool)
    for _ in range(max(1, h * w // 40000)):  # ~ 25 cells per 1024^2
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 < 15**2
    img = bg + np.where(mask, 3000.0, 0.0) + rng.normal(0, 2, (h, w))
    return np.clip(np.rint(img), 0, 65535).astype(np.uint16), mask, bg


def test_identical_to_reference_on_large_frame():
    img, mask, _ = scene(1100, 1030)
    assert np.array_equal(estimate_background(img, mask), reference_background(img, mask))


def test_recovers_smooth_gradient_within_2_percent():
    img, mask, bg = scene(1024, 1024, seed=1)
    est = estimate_background(img, mask)
    rel = np.abs(est - bg) / bg
    # inside the outermost tile centres (128 px in); beyond them the reference
    # spline is clamped (constant), as PyAMA's is
    assert rel[128:897, 128:897].max() < 0.02
    assert np.median(rel) < 0.002
    assert rel.max() < 0.06


@pytest.mark.parametrize("shape", [(512, 512), (300, 200), (100, 100), (256, 700), (40, 1100)])
def test_any_frame_size_works(shape):
    # the reference crashes here (fewer than 4 tile centres on an axis)
    img, mask, bg = scene(*shape, seed=2)
    est = estimate_background(img, mask)
    assert est.shape == shape and est.dtype == np.float32
    assert np.isfinite(est).all()
    assert np.median(np.abs(est - bg) / bg) < 0.02


def test_all_masked_frame_falls_back():
    img = np.full((300, 300), 250, np.uint16)
    est = estimate_background(img, np.ones((300, 300), bool))
    assert np.allclose(est, 250)


def test_even_median_and_float_input_match_numpy():
    rng = np.random.default_rng(5)
    img = rng.integers(0, 4000, (600, 600)).astype(np.uint16)
    mask = np.zeros(img.shape, bool)
    a = fit_tiles(img, mask)
    b = fit_tiles(img.astype(np.float32), mask)
    assert np.array_equal(a.support, b.support)
    ey = tile_edges(600, 256)
    assert a.support[0, 0] == np.float32(np.median(img[ey[0] : ey[2], ey[0] : ey[2]].astype(np.float32)))


def test_models_roundtrip(tmp_path):
    img, mask, _ = scene(700, 600)
    models = [fit_tiles(img, mask), fit_tiles(img[::-1].copy(), mask[::-1].copy())]
    save_models(str(tmp_path / "bg.npz"), models, 256, 21)
    stored = BackgroundModels(str(tmp_path / "bg.npz"))
    assert len(stored) == 2
    assert np.array_equal(stored[1], evaluate(models[1]))


def tile_model(shape, tile, seed):
    """A tile model of a ``shape`` frame with random tile medians."""
    rng = np.random.default_rng(seed)
    ey, ex = tile_edges(shape[0], tile), tile_edges(shape[1], tile)
    support = rng.normal(500, 80, (ey.size - 2, ex.size - 2)).astype(np.float32)
    return TileModel((ey[:-2] + ey[2:]) * 0.5, (ex[:-2] + ex[2:]) * 0.5, support, shape)


def random_regions(rng, shape, n):
    """``n`` random rectangles of a ``shape`` frame (empty, single pixels and the edges included)."""
    h, w = shape
    yield 0, h, 0, w
    yield 0, 1, 0, 1
    yield h - 1, h, w - 1, w
    yield 0, h, w - 1, w
    yield 5 % h, 5 % h, 0, w  # empty
    for _ in range(n):
        y0, y1 = sorted(int(v) for v in rng.integers(0, h + 1, 2))
        x0, x1 = sorted(int(v) for v in rng.integers(0, w + 1, 2))
        yield y0, y1, x0, x1


# bicubic; quadratic along x; quadratic along y; one centre along y (a 1-D spline along x);
# one along x; one centre on either axis (a constant)
@pytest.mark.parametrize("shape,tile", [((1024, 1024), 256), ((700, 1300), 256), ((517, 300), 128),
                                        ((300, 200), 128), ((300, 900), 256), ((200, 900), 256),
                                        ((900, 150), 256), ((100, 100), 256)])
def test_spline_regions_are_the_whole_frames_bits(shape, tile):
    """A background evaluated on a sub-grid is the whole-frame evaluation's bits (FITPACK
    evaluates each grid point on its own), for every spline order."""
    model = tile_model(shape, tile, sum(shape))
    full = evaluate(model)
    spline = BackgroundSpline(model)
    assert np.array_equal(spline.image(), full)
    rng = np.random.default_rng(sum(shape) + tile)
    for y0, y1, x0, x1 in random_regions(rng, shape, 25):
        region = spline.region(y0, y1, x0, x1)
        assert region.dtype == np.float32 and region.shape == (y1 - y0, x1 - x0)
        assert np.array_equal(region, full[y0:y1, x0:x1]), (y0, y1, x0, x1)


@pytest.mark.parametrize("seed", range(8))
def test_spline_regions_of_random_frames_are_the_whole_frames_bits(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 1500)), int(rng.integers(1, 1500)))
    model = tile_model(shape, int(rng.choice([32, 64, 128, 256])), seed)
    full = evaluate(model)
    spline = BackgroundSpline(model)
    for y0, y1, x0, x1 in random_regions(rng, shape, 25):
        assert np.array_equal(spline.region(y0, y1, x0, x1), full[y0:y1, x0:x1]), (shape, y0, y1, x0, x1)


def test_spline_of_a_frame_without_finite_pixels_is_nan_everywhere():
    model = tile_model((600, 500), 256, 0)
    model.support[:] = np.nan
    assert np.isnan(evaluate(model)).all()
    region = BackgroundSpline(model).region(10, 20, 30, 45)
    assert region.shape == (10, 15) and region.dtype == np.float32 and np.isnan(region).all()
