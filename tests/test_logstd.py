"""Reference LOG-STD segmentation: each piece against a hand computation or
scipy's own (slow) operators, and the whole method against a direct
re-statement of PyAMA's code on real frames."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from pyama_flow.segmentation import get_method, list_methods, segment_frame
from pyama_flow.segmentation.logstd import (
    fill_holes,
    histogram_threshold,
    logstd_image,
    open_close,
    segment_logstd,
)

from conftest import shared_data


def reference_logstd_segmentation(image):
    """PyAMA's algorithm written plainly with scipy's iterated operators."""
    img = image.astype(np.float32)
    mean = ndi.uniform_filter(img, size=3)
    mean_sq = ndi.uniform_filter(img * img, size=3)
    var = mean_sq - mean * mean
    ls = np.zeros_like(img)
    ls[var > 0] = 0.5 * np.log(var[var > 0])
    counts, edges = np.histogram(ls.ravel(), bins=200)
    mode = ((edges[:-1] + edges[1:]) * 0.5)[np.argmax(counts)]
    thr = mode + 3 * np.std(ls.ravel()[ls.ravel() <= mode])
    se = np.ones((7, 7))
    m = ndi.binary_fill_holes(ls > thr)
    m = ndi.binary_opening(m, structure=se, iterations=3)
    m = ndi.binary_closing(m, structure=se, iterations=3)
    return ndi.label(m)[0]


def test_threshold_on_known_histogram():
    # 900 values at 1.0, 100 values at 2.0 and a single 5.0: 200 bins over [1, 5]
    values = np.concatenate([np.full(900, 1.0), np.full(100, 2.0), [5.0]])
    # fullest bin is the first one, centre 1 + 0.01 = 1.01; values <= 1.01 are
    # the 900 ones, whose std is 0 -> threshold = 1.01
    assert histogram_threshold(values) == pytest.approx(1.01)
    # a spread below the mode: std of {0, 1} (mode bin holds the 1s) is 0.5
    values = np.concatenate([np.zeros(10), np.ones(10), np.ones(30) * 1.0, [3.0]])
    counts, edges = np.histogram(values, bins=200)
    mode = ((edges[:-1] + edges[1:]) * 0.5)[np.argmax(counts)]
    below = values[values <= mode]
    assert histogram_threshold(values) == pytest.approx(mode + 3 * below.std())


def test_logstd_of_constant_and_checkerboard():
    flat = np.full((8, 8), 7, np.uint16)
    assert not logstd_image(flat).any()  # var == 0 -> 0
    board = (np.indices((9, 9)).sum(0) % 2 * 10).astype(np.uint16)
    ls = logstd_image(board)
    # interior 3x3 window holds five of one value and four of the other
    p = 5 / 9
    var = 100 * p * (1 - p)
    assert ls[4, 4] == pytest.approx(0.5 * np.log(var), rel=1e-5)


@pytest.mark.parametrize("seed", range(6))
def test_morphology_equals_scipy_iterated_operators(seed):
    rng = np.random.default_rng(seed)
    m = ndi.binary_opening(rng.random((90, 110)) > rng.uniform(0.3, 0.7))
    se = np.ones((7, 7))
    expected = ndi.binary_closing(
        ndi.binary_opening(ndi.binary_fill_holes(m), se, iterations=3), se, iterations=3
    )
    assert np.array_equal(fill_holes(m), ndi.binary_fill_holes(m))
    assert np.array_equal(open_close(fill_holes(m)), expected)


def test_segments_textured_disc_and_drops_small_speck():
    rng = np.random.default_rng(0)
    img = rng.normal(1000, 3, (128, 128))
    yy, xx = np.mgrid[:128, :128]
    disc = (yy - 64) ** 2 + (xx - 64) ** 2 <= 20**2
    img[disc] += rng.normal(0, 200, disc.sum())
    speck = (yy - 20) ** 2 + (xx - 20) ** 2 <= 4**2  # smaller than the 19 px opening
    img[speck] += rng.normal(0, 200, speck.sum())
    labels = segment_logstd(img.astype(np.uint16))
    assert labels.dtype == np.uint16
    assert labels.max() == 1
    obj = labels == 1
    iou = (obj & disc).sum() / (obj | disc).sum()
    assert iou > 0.8
    assert not obj[speck].any()


def test_registry():
    assert "logstd" in list_methods()
    assert get_method("logstd") is segment_logstd
    with pytest.raises(ValueError, match="unknown segmentation method 'nope'"):
        segment_frame(np.zeros((4, 4)), method="nope")


@pytest.mark.realdata
def test_identical_to_reference_on_real_t98g_frames():
    import tifffile

    folder = shared_data("phase_gt_segmentation", "usiigaci_train")
    for name in ("set1_raw.tif", "set3_raw.tif"):
        img = tifffile.imread(folder / name)
        expected = reference_logstd_segmentation(img)
        got = segment_logstd(img)
        assert np.array_equal(got > 0, expected > 0)
        assert got.max() == expected.max()


@pytest.mark.parametrize("shape", [(517, 300), (33, 65), (2, 7), (7, 1), (1, 1), (64, 64)])
@pytest.mark.parametrize("size", [3, 5])
def test_logstd_bit_identical_to_scipy_uniform_filter(shape, size):
    rng = np.random.default_rng(sum(shape) + size)
    img = rng.integers(0, 65535, shape).astype(np.uint16)
    f = img.astype(np.float32)
    mean = ndi.uniform_filter(f, size)
    var = ndi.uniform_filter(f * f, size) - mean * mean
    expected = np.zeros_like(f)
    expected[var > 0] = 0.5 * np.log(var[var > 0])
    assert np.array_equal(logstd_image(img, size=size), expected)
