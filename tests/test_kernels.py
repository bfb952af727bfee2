"""Compiled kernels against the numpy / scipy code they replace: identical results."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from pyama_flow.background import model as bg
from pyama_flow import kernels
from pyama_flow.segmentation.logstd import _square_filter, histogram_threshold, open_close, pack_rows, unpack_rows
from pyama_flow.segmentation.maps import gaussian_filter
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
def test_label8_equals_scipy_label(seed):
    for m in random_masks(seed):
        expected, n = ndi.label(m, structure=np.ones((3, 3), bool))
        got, k = kernels.label8(m)
        assert k == n
        assert np.array_equal(got, expected)
    # runs that touch only at a corner are one object in 8-connectivity, two in 4
    m = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 0, 0]], bool)
    assert kernels.label8(m)[1] == 2 and kernels.label4(m)[1] == 3


@pytest.mark.parametrize("seed", range(3))
def test_chamfer_mean_distance_equals_scipy_cdt(seed):
    """The watershed's distance map: mean of the city-block and chessboard
    chamfer distances, as the two scipy transforms give them."""
    for m in random_masks(seed):
        if m.all():
            continue
        expected = ndi.distance_transform_cdt(m, metric="taxicab").astype(np.float32)
        expected += ndi.distance_transform_cdt(m, metric="chessboard")
        expected *= np.float32(0.5)
        assert np.array_equal(kernels.chamfer_mean_distance(m), expected)
    # hand-computed: a 5x5 square in a 7x7 frame, centre 3 px from the background both ways,
    # the pixel beside it 2 (city-block) and 2 (chessboard), a corner pixel of the square 1
    m = np.zeros((7, 7), bool)
    m[1:6, 1:6] = True
    d = kernels.chamfer_mean_distance(m)
    assert d[3, 3] == 3.0 and d[3, 2] == 2.0 and d[1, 1] == 1.0 and d[0, 0] == 0.0
    # city-block and chessboard differ on a diagonal: background only at the top-left corner
    m = np.ones((4, 4), bool)
    m[0, 0] = False
    assert kernels.chamfer_mean_distance(m)[3, 3] == (6 + 3) / 2


@pytest.mark.parametrize("seed", range(3))
def test_masked_maxima_equals_scipy_maximum_filter(seed):
    rng = np.random.default_rng(seed)
    for m in random_masks(seed):
        for height in (rng.integers(0, 4, m.shape).astype(np.float32), rng.random(m.shape)):
            expected = (height == ndi.maximum_filter(height, size=3)) & m
            assert np.array_equal(kernels.masked_maxima(height, m), expected)


@pytest.mark.parametrize("seed", range(3))
def test_gaussian_filter_equals_scipy_bit_for_bit(seed):
    """The compiled Gaussian (float32, reflect border) and scipy's: same float64
    sums in the same order, so not one bit differs; other inputs go to scipy."""
    rng = np.random.default_rng(seed)
    for shape in SHAPES + [(300, 211)]:
        img = (rng.random(shape) * 1000 - 300).astype(np.float32)
        for sigma in (0.1, 0.5, 1.0, 1.0922, 2.0, 3.3, 12.0):
            for truncate in (3.0, 4.0):
                expected = ndi.gaussian_filter(img, sigma, truncate=truncate)
                got = gaussian_filter(img, sigma, truncate)
                assert got.dtype == expected.dtype
                assert np.array_equal(got, expected), (shape, sigma, truncate)
        as64 = img.astype(np.float64)
        assert np.array_equal(gaussian_filter(as64, 1.5), ndi.gaussian_filter(as64, 1.5, truncate=3.0))


@pytest.mark.parametrize("seed", range(3))
def test_mask_cleanup_equals_scipy_labelling(seed):
    """Hole filling, small-object removal and the dark cells' regions, which
    count components over runs (kernels.components), against the same
    rules written with scipy's labels."""
    from pyama_flow.segmentation.masks import dark_cells, fill_small_holes, remove_small

    rng = np.random.default_rng(seed)
    for m in random_masks(seed):
        holes, n = ndi.label(~m)
        fill = np.bincount(holes.ravel(), minlength=n + 1) <= 3
        for edge in (holes[0], holes[-1], holes[:, 0], holes[:, -1]):
            fill[edge] = False
        fill[0] = False
        assert np.array_equal(fill_small_holes(m, 3), m | fill[holes])
        lab, n = ndi.label(m, structure=np.ones((3, 3), bool))
        keep = np.bincount(lab.ravel(), minlength=n + 1) >= 4
        keep[0] = False
        assert np.array_equal(remove_small(m, 4), keep[lab])
        z = np.where(m, rng.normal(-9, 3, m.shape), rng.normal(0, 10, m.shape)).astype(np.float32)
        dark = z < -8
        regions, n = ndi.label(z < 15)
        whole = 2 * np.bincount(regions[dark], minlength=n + 1) >= np.bincount(regions.ravel(), minlength=n + 1)
        whole[0] = False
        assert np.array_equal(dark_cells(z, 8.0, 15.0), dark | whole[regions])


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


def test_kernels_cached_looks_in_the_modules_own_cache_folder(tmp_path, monkeypatch):
    """Two modules named kernels.py (image kernels, fitter): with NUMBA_CACHE_DIR,
    numba keeps each one's cache in a folder of its own (source folder's name
    and a hash of its path); one's index does not count for the other."""
    import os

    import numba.core.caching as caching

    from pyama_flow.fitting import kernels as fit_kernels
    from pyama_flow.numba_cache import cache_subfolder, kernels_cached

    for module in (kernels, fit_kernels):
        assert cache_subfolder(module.__file__) == caching._CacheLocator.get_suitable_cache_subpath(module.__file__)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    assert not kernels_cached(kernels.__file__) and not kernels_cached(fit_kernels.__file__)
    image = tmp_path / cache_subfolder(kernels.__file__)
    image.mkdir()
    (image / "kernels.label4-10.py311.nbi").write_bytes(b"")
    assert kernels_cached(kernels.__file__) and not kernels_cached(fit_kernels.__file__)
    # an index older than the source is stale
    old = os.stat(kernels.__file__).st_mtime - 60
    os.utime(image / "kernels.label4-10.py311.nbi", (old, old))
    assert not kernels_cached(kernels.__file__)
