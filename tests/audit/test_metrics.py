"""Audit measures on arrays small enough to check by hand."""
import math

import numpy as np
import pytest

from edge.audit.metrics import (auc, binarise, boxes_hit, cosine_similarity, grow, iou, pearson, perturbation_curve,
                                pointing_game, random_map_order, rank_correlation, ranks, relevance_mass,
                                tolerant_iou, wilson_interval)


def test_binarise_and_iou():
    heat = np.array([[0.0, 0.4], [0.5, 1.0]])
    np.testing.assert_array_equal(binarise(heat), [[False, False], [True, True]])
    assert not binarise(np.zeros((2, 2))).any()
    mask = np.array([[False, False], [False, True]])
    assert iou(binarise(heat), mask) == 0.5
    assert iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0 and iou(mask, ~mask) == 0.0


def test_tolerant_iou_counts_near_misses_within_the_tolerance_only():
    crack = np.zeros((32, 32), bool)
    crack[16, 4:28] = True                                   # a 1-px line
    band = np.zeros((32, 32), bool)
    band[12:21, 4:28] = True                                 # a map region 9 px tall centred on it
    assert iou(band, crack) == pytest.approx(24 / 216)       # pixel IoU punishes the map's coarseness
    assert tolerant_iou(band, crack, 4) == 1.0               # every map pixel within 4 px, every line pixel covered
    assert tolerant_iou(band, crack, 0) == iou(band, crack)
    half = band.copy()
    half[:, 16:] = False                                     # the map covers the left half of the line only
    # the right half of the line (x 16..27) lies farther than 4 px from the map, except x 16..19
    assert tolerant_iou(half, crack, 4) == pytest.approx(108 / (108 + 0 + 8))
    far = np.zeros((32, 32), bool)
    far[0:3, 0:3] = True                                     # a map on something else entirely
    assert tolerant_iou(far, crack, 4) == 0.0
    assert tolerant_iou(np.zeros((4, 4), bool), np.zeros((4, 4), bool), 2) == 1.0
    np.testing.assert_array_equal(grow(np.array([[0, 1, 0, 0, 0]], bool), 1), [[True, True, True, False, False]])


def test_relevance_mass_and_pointing_game():
    heat = np.zeros((5, 5))
    heat[1, 1], heat[3, 3] = 3.0, 1.0
    mask = np.zeros((5, 5), bool)
    mask[1, 1] = True
    assert relevance_mass(heat, mask) == 0.75 and relevance_mass(np.zeros((5, 5)), mask) == 0.0
    assert relevance_mass(-heat, mask) == 0.0                 # negative evidence is not relevance
    assert pointing_game(heat, mask)
    off = np.zeros((5, 5), bool)
    off[2, 2] = True
    assert not pointing_game(heat, off) and pointing_game(heat, off, tolerance_px=1)


def test_pearson_and_cosine():
    a = np.arange(10.0)
    assert pearson(a, 2 * a + 1) == pytest.approx(1.0) and pearson(a, -a) == pytest.approx(-1.0)
    assert math.isnan(pearson(a, np.ones(10)))
    assert cosine_similarity(a, 3 * a) == pytest.approx(1.0) and math.isnan(cosine_similarity(a, 0 * a))


def _boundary(order: np.ndarray, n: int, shape: tuple[int, int]) -> int:
    """Edge length of the region of the first n pixels of an order."""
    region = np.zeros(shape[0] * shape[1], np.int8)
    region[order[:n]] = 1
    region = region.reshape(shape)
    return int(np.abs(np.diff(region, axis=0)).sum() + np.abs(np.diff(region, axis=1)).sum())


def test_a_random_map_order_changes_compact_regions_like_a_map_does():
    rng = np.random.default_rng(0)
    order = random_map_order((48, 40), 8, rng)
    np.testing.assert_array_equal(np.sort(order), np.arange(48 * 40))          # every pixel once
    assert set(random_map_order((5, 7), 1, rng)) == set(range(35))
    # a tenth of the pixels: a few blobs (edge length ~100) against speckle everywhere (~660)
    smooth = [_boundary(random_map_order((48, 40), 8, rng), 192, (48, 40)) for _ in range(10)]
    pixels = [_boundary(rng.permutation(48 * 40), 192, (48, 40)) for _ in range(10)]
    assert max(smooth) * 3 < min(pixels)


def test_the_random_comparator_has_the_perturbation_shape_of_the_map():
    """A classifier that reacts to speckle (fine changes anywhere), not to where the map points: a smooth
    map of a place holding nothing looks far more "faithful" than a random pixel order, and much less so
    against a random map as smooth as it (which still changes a few blobs at a time where the map has one)."""
    rng = np.random.default_rng(1)
    x = rng.random((1, 48, 48)).astype(np.float32)
    base = np.full_like(x, 0.5)

    def speckle_score(batch):                               # falls with the changed pixels' edge length
        changed = (batch != x).astype(np.float32)[:, 0]
        edges = np.abs(np.diff(changed, axis=1)).sum((1, 2)) + np.abs(np.diff(changed, axis=2)).sum((1, 2))
        return np.exp(-edges / 200.0)

    yy, xx = np.mgrid[:48, :48]
    blob = np.exp(-((yy - 10) ** 2 + (xx - 30) ** 2) / 200.0)                 # a smooth map of nothing

    def deletion_auc(order):
        return auc(perturbation_curve(speckle_score, x, base, order, steps=10))
    mapped = deletion_auc(np.argsort(-blob.ravel()))
    pixels = np.mean([deletion_auc(rng.permutation(48 * 48)) for _ in range(10)])
    smooth = np.mean([deletion_auc(random_map_order((48, 48), 8, rng)) for _ in range(10)])
    assert mapped - pixels > 0.5                 # measured 0.70 against 0.10: "unfaithful" by the speckle alone
    assert mapped - smooth < (mapped - pixels) / 2          # random smooth maps measured 0.45


def test_perturbation_curves_and_auc():
    x = np.ones((1, 2, 2), np.float32)
    base = np.zeros_like(x)
    score = lambda b: b.reshape(len(b), -1).sum(axis=1)   # noqa: E731 - the sum of the pixels
    order = np.array([3, 0, 1, 2])
    deletion = perturbation_curve(score, x, base, order, steps=4)
    insertion = perturbation_curve(score, x, base, order, steps=4, insertion=True)
    np.testing.assert_allclose(deletion, [4, 3, 2, 1, 0])
    np.testing.assert_allclose(insertion, [0, 1, 2, 3, 4])
    assert auc(deletion) == pytest.approx(2.0) and auc([1, 1]) == 1.0


def test_wilson_interval():
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and 0 < hi < 0.2


def test_boxes_hit_counts_the_boxes_the_map_touches():
    region = np.zeros((20, 20), bool)
    region[2:4, 2:4] = True
    boxes = [(1, 1, 5, 5), (10, 10, 12, 12), (5, 5, 8, 8)]      # touched, far, one pixel away
    assert boxes_hit(region, boxes) == pytest.approx(1 / 3)
    assert boxes_hit(region, boxes, tolerance_px=2) == pytest.approx(2 / 3)
    assert math.isnan(boxes_hit(region, []))


def test_rank_correlation_is_zero_for_unrelated_broad_maps_where_the_cosine_is_not():
    assert list(ranks(np.array([[3.0, 0.0], [0.0, 5.0]]))) == [3.0, 1.5, 1.5, 4.0]        # ties share their rank
    rng = np.random.default_rng(0)
    a, b = rng.random((64, 64)), rng.random((64, 64))        # unrelated, each covering the whole image
    assert cosine_similarity(a, b) > 0.7 and abs(rank_correlation(a, b)) < 0.05
    assert rank_correlation(a, a ** 3) == pytest.approx(1.0)                   # any monotone map of the same order
    assert rank_correlation(a, -a) == pytest.approx(-1.0)


def test_faithfulness_is_judged_on_defect_classes_where_there_are_enough():
    from edge.audit.run import _faithfulness_samples

    labels = np.array([0] * 70 + [1] * 20 + [2] * 10)                 # 0: the defect-free class
    pick = _faithfulness_samples(labels, 0, 60, np.random.default_rng(0))
    assert len(pick) == 30 and (labels[pick] != 0).all() and (np.diff(pick) > 0).all()
    few = np.array([0] * 95 + [1] * 5)
    assert _faithfulness_samples(few, 0, 60, np.random.default_rng(0)) is None       # too few defects: all classes
    assert _faithfulness_samples(labels, None, 60, np.random.default_rng(0)) is None  # no defect-free class
