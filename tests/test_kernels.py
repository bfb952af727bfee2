"""Compiled kernels against the numpy / scipy code they replace: identical results."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from pyama_flow.background import model as bg
from pyama_flow import kernels
from pyama_flow.segmentation.logstd import _square_filter, histogram_threshold, open_close, pack_rows, unpack_rows
from pyama_flow.traces.features import frame_features

SHAPES = [(1, 1), (1, 9), (9, 1), (2, 2), (37, 53), (128, 96)]


def random_masks(seed):
    rng = np.random.default_rng(seed)
    for shape in SHAPES:
        for p in (0.0, 0.3, 0.55, 0.8, 1.0):
            yield rng.random(shape) < p
        # blobs with holes: smoothed noise
        if min(shape) > 4:
            yield ndi.gaussian_filter(rng.random(shape), 2) > 0.5


@pytest.mark.parametrize("seed", range(3))
def test_label4_equals_scipy_label(seed):
    for m in random_masks(seed):
        expected, n = ndi.label(m)
        got, k = kernels.label4(m)
        assert k == n
        assert np.array_equal(got, expected)


@pytest.mark.parametrize("seed", range(3))
def test_fill_holes_equals_scipy(seed):
    for m in random_masks(seed):
        assert np.array_equal(kernels.fill_holes(m), ndi.binary_fill_holes(m))


@pytest.mark.parametrize("side", [1, 2, 3, 4, 7, 19, 37, 64, 65, 130])
def test_square_filter_equals_scipy_min_max(side):
    """Bit-packed erosion / dilation (64 pixels a word) against scipy, including
    windows wider than a word and frames whose width is not a multiple of 64."""
    masks = list(random_masks(side))
    rng = np.random.default_rng(side)
    masks += [rng.random((h, w)) < 0.7 for h, w in ((1, 1), (1, 70), (70, 1), (9, 63), (40, 64), (33, 129))]
    for m in masks:
        u = m.astype(np.uint8)
        ero = ndi.minimum_filter(u, size=side, mode="constant", cval=0).astype(bool)
        dil = ndi.maximum_filter(u, size=side, mode="constant", cval=0).astype(bool)
        assert np.array_equal(_square_filter(m, side, True), ero)
        assert np.array_equal(_square_filter(m, side, False), dil)
        assert np.array_equal(unpack_rows(pack_rows(m), m.shape[1]), m)


@pytest.mark.parametrize("size,iterations", [(7, 3), (6, 2), (4, 1), (3, 2)])
def test_open_close_equals_scipy_iterated_operators(size, iterations):
    se = np.ones((size, size))
    for m in random_masks(size):
        if m.shape[0] < 10:
            continue
        expected = ndi.binary_closing(ndi.binary_opening(m, se, iterations=iterations), se,
                                      iterations=iterations)
        assert np.array_equal(open_close(m, size, iterations), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_histogram_counts_equal_numpy(dtype):
    rng = np.random.default_rng(4)
    for values in (
        rng.normal(0, 1, 100_000),
        rng.gamma(2, 1, 50_000) - 3,
        np.repeat(np.linspace(-1, 1, 201), 7),  # values on the bin edges
        np.full(10, 2.5),  # a constant: numpy's range becomes [v - 0.5, v + 0.5]
        # a range of a few ulps far from 0: the float32 edges stray far from even spacing
        np.float32(3.0) + rng.integers(0, 2000, 20_000) * np.float32(2.4e-7),
        rng.uniform(1000.0, 1000.05, 20_000),
        # around every edge of a range that does not start at 0: one ulp either side
        np.array([np.nextafter(e, d) for e in np.linspace(-3.7, 5.1, 201) for d in (-np.inf, np.inf)]),
    ):
        values = values.astype(dtype)
        lo, hi = kernels.min_max(values)
        edges = np.histogram_bin_edges(np.array([lo, hi], dtype=dtype), bins=200)
        counts, ref_edges = np.histogram(values, bins=200)
        assert np.array_equal(edges, ref_edges)
        assert np.array_equal(kernels.histogram_counts(values, edges), counts)
        # and the threshold built on it, against numpy throughout
        centres = (ref_edges[:-1] + ref_edges[1:]) * 0.5
        mode = centres[np.argmax(counts)]
        assert histogram_threshold(values) == float(mode + 3 * np.std(values[values <= mode]))


def tile_model(shape, tile, seed):
    rng = np.random.default_rng(seed)
    ey, ex = bg.tile_edges(shape[0], tile), bg.tile_edges(shape[1], tile)
    support = rng.normal(500, 80, (ey.size - 2, ex.size - 2)).astype(np.float32)
    return bg.TileModel((ey[:-2] + ey[2:]) * 0.5, (ex[:-2] + ex[2:]) * 0.5, support, shape)


@pytest.mark.parametrize("shape,tile", [((1024, 1024), 256), ((700, 1300), 256), ((517, 300), 128),
                                        ((300, 200), 128), ((300, 900), 256)])
def test_tile_spline_bit_identical_to_fitpack_grid(shape, tile):
    model = tile_model(shape, tile, sum(shape))
    spline = bg.SplineFactory()(model)
    assert spline is not None
    assert np.array_equal(spline.image(), bg.evaluate(model))


@pytest.mark.parametrize("mx,my", [(2, 2), (2, 7), (3, 3), (3, 9), (4, 4), (5, 8), (9, 6), (12, 17)])
def test_interpolating_spline_coefficients_bit_identical_to_fitpack(mx, my):
    """FITPACK regrid (s = 0) redone: knots and coefficients equal RectBivariateSpline's
    bit for bit, for cubic, quadratic and linear orders and uneven spacing."""
    from scipy.interpolate import RectBivariateSpline

    rng = np.random.default_rng(mx * 100 + my)
    for x, y in (((np.arange(mx) + 1) * 128.0, (np.arange(my) + 1) * 128.0),
                 (np.sort(rng.uniform(0, 2000, mx)), np.sort(rng.uniform(0, 2000, my)))):
        z = rng.normal(300, 30, (mx, my)).astype(np.float32).astype(np.float64)
        kx, ky = min(3, mx - 1), min(3, my - 1)
        want = RectBivariateSpline(x, y, z, kx=kx, ky=ky).tck
        got = kernels.interpolating_spline(x, y, z, kx, ky)
        for a, b in zip(got, want):
            assert a.shape == b.shape and np.array_equal(a, b)


def test_spline_factory_declines_low_order_grids():
    # one tile centre along y: evaluate() uses a 1-D spline, no bicubic one
    assert bg.SplineFactory()(tile_model((200, 900), 256, 0)) is None


@pytest.mark.parametrize("h,w", [(600, 640), (300, 900)])  # bicubic; quadratic along y
def test_frame_features_with_spline_equal_those_with_the_image(h, w):
    rng = np.random.default_rng(7)
    labels = np.zeros((h, w), np.uint32)
    for i in range(1, 60):
        y, x, r = rng.integers(20, h - 20), rng.integers(20, w - 20), rng.integers(4, 15)
        yy, xx = np.ogrid[:h, :w]
        labels[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = i * 3  # sparse ids
    image = rng.integers(0, 4000, (h, w)).astype(np.uint16)
    image[labels == 3][:5] = 65535
    image[np.nonzero(labels == 9)[0][:4], np.nonzero(labels == 9)[1][:4]] = 65535  # saturated
    model = tile_model((h, w), 256, 3)
    spline = bg.SplineFactory()(model)
    with_image = frame_features(labels, {1: image}, {1: bg.evaluate(model)}, 0.8)
    with_spline = frame_features(labels, {1: image}, {1: spline}, 0.8)
    assert with_image.keys() == with_spline.keys()
    for key in with_image:
        assert np.array_equal(with_image[key], with_spline[key]), key
    assert with_spline["saturated_pixels"].sum() >= 4
    # against a plain per-cell computation
    b = bg.evaluate(model).astype(np.float64)
    for k, cell in enumerate(with_spline["cell"]):
        sel = labels == cell
        ys, xs = np.nonzero(sel)
        assert with_spline["area"][k] == sel.sum()
        assert (with_spline["bbox_y0"][k], with_spline["bbox_x1"][k]) == (ys.min(), xs.max())
        assert with_spline["centroid_x"][k] == pytest.approx(xs.mean(), rel=1e-12)
        expected = image[sel].astype(np.float64).sum() - 0.8 * b[sel].sum()
        assert with_spline["intensity_total_ch_1"][k] == pytest.approx(expected, rel=1e-9)


def test_frame_features_nonfinite_pixels_left_out():
    labels = np.zeros((8, 8), np.uint16)
    labels[2:5, 2:5] = 1
    image = np.full((8, 8), 10.0, np.float32)
    image[3, 3] = np.nan
    feats = frame_features(labels, {0: image}, {0: np.ones((8, 8), np.float32)})
    assert feats["invalid_pixels"].tolist() == [1]
    assert feats["intensity_total_ch_0"].tolist() == [8 * 10.0 - 8 * 1.0]


# the last one has too wide a value range for per-block counts: counted per tile
@pytest.mark.parametrize("dtype,top", [(np.uint16, 4000), (np.uint16, 65535), (np.uint8, 255), (np.int32, 3),
                                       (np.int32, 2**20)])
def test_tile_medians_equal_numpy_median(dtype, top):
    rng = np.random.default_rng(top)
    image = rng.integers(0, top + 1, (300, 410)).astype(dtype)
    excluded = rng.random(image.shape) < 0.6
    excluded[:120, :150] = True  # a tile with nothing left
    ey, ex = bg.tile_edges(300, 128), bg.tile_edges(410, 128)
    got = kernels.tile_medians(image, excluded, ey, ex)
    for i in range(ey.size - 2):
        for j in range(ex.size - 2):
            ys, xs = slice(ey[i], ey[i + 2]), slice(ex[j], ex[j + 2])
            values = image[ys, xs][~excluded[ys, xs]].astype(np.float32)
            if values.size == 0:
                assert np.isnan(got[i, j])
            else:
                assert got[i, j] == np.median(values), (i, j)
    assert np.isnan(got).sum() == 1


def test_frame_features_refuse_negative_labels():
    labels = np.zeros((4, 4), np.int32)
    labels[1, 1] = -2
    with pytest.raises(ValueError, match="non-negative"):
        frame_features(labels)
