"""Patch grids, targets and baselines: pure NumPy."""
import numpy as np
import pytest

from edge.explain.baselines import make_baseline
from edge.explain.patches import PatchGrid
from edge.explain.targets import box_mask, class_target, parse_target, pixel_target, roi_target


def _dense_membership(g):
    m = np.zeros((g.n, g.height, g.width), np.float32)
    for j, (t, l, b, r) in enumerate(g.boxes):
        m[j, t:b, l:r] = 1
    return m


def test_grid_reaches_the_border_and_counts_coverage():
    g = PatchGrid(30, 30, 8, 4)
    assert g.boxes[:, 2].max() == 30 and g.boxes[:, 3].max() == 30
    np.testing.assert_array_equal(g.coverage, _dense_membership(g).sum(axis=0))
    assert g.n == 7 * 7                                     # starts 0,4,...,20 and 22
    assert PatchGrid(128, 128, 8, 4).n == 31 * 31


def test_masking_all_none_and_pixel_map_sum():
    g = PatchGrid(16, 16, 8, 4)
    rng = np.random.default_rng(0)
    x, b = rng.normal(size=(2, 16, 16)).astype(np.float32), np.zeros((2, 16, 16), np.float32)
    full = g.masked(x, b, np.ones((1, g.n), bool))[0]
    none = g.masked(x, b, np.zeros((1, g.n), bool))[0]
    np.testing.assert_allclose(full, x, atol=1e-6)
    np.testing.assert_allclose(none, b)
    values = rng.normal(size=g.n)
    assert g.pixel_map(values).sum() == pytest.approx(values.sum(), abs=1e-4)
    np.testing.assert_allclose(g.pool(np.ones((16, 16)), "mean"), 1.0)


def test_non_overlapping_grid_is_a_partition():
    g = PatchGrid(32, 32, 16, 16)
    assert g.n == 4
    np.testing.assert_array_equal(g.coverage, 1.0)


@pytest.mark.parametrize("shape", [(128, 128, 8, 4), (30, 33, 8, 4), (20, 33, 5, 3), (128, 128, 48, 40)])
def test_separable_operations_equal_the_dense_definitions(shape):
    g = PatchGrid(*shape)
    m = _dense_membership(g)
    rng = np.random.default_rng(1)
    z = rng.random((5, g.n)) < 0.5
    dense = np.tensordot(z.astype(np.float32), m, axes=(1, 0)) / m.sum(axis=0)
    np.testing.assert_allclose(g.presence(z), dense, atol=1e-6)
    v = rng.normal(size=g.n)
    np.testing.assert_allclose(g.pixel_map(v), np.tensordot(v, m, axes=(0, 0)) / g.size**2, atol=1e-5)
    img = rng.normal(size=(g.height, g.width)).astype(np.float32)
    np.testing.assert_allclose(g.pool(img, "sum"), (m * img).sum(axis=(1, 2)), rtol=1e-4, atol=1e-4)


def test_bad_grid():
    with pytest.raises(ValueError, match="exceeds the image side"):
        PatchGrid(8, 8, 16, 4)


def test_targets():
    np.testing.assert_array_equal(class_target(4, [2, 0]), [[0, 0, 1, 0], [1, 0, 0, 0]])
    with pytest.raises(ValueError, match="outside 0..3"):
        class_target(4, [4])
    t = pixel_target((2, 1, 8, 8), 3, 5)
    assert t.sum() == 2 and t[1, 0, 3, 5] == 1
    r = roi_target((1, 1, 8, 8), box_mask((8, 8), 2, 2, 4, 6))
    assert r.sum() == pytest.approx(1.0) and (r > 0).sum() == 8
    with pytest.raises(ValueError, match="empty ROI"):
        roi_target((1, 1, 8, 8), np.zeros((8, 8), bool))


def test_parse_target_text():
    classes = ["ok", "crack"]
    assert parse_target(None, classes, (1, 2)) == ("class", None)
    assert parse_target("crack", classes, (1, 2)) == ("class", 1)
    assert parse_target("0", classes, (1, 2)) == ("class", 0)
    with pytest.raises(ValueError, match="not a class of this model"):
        parse_target("pit", classes, (1, 2))
    kind, w = parse_target("roi:0:4,0:2", [], (1, 1, 8, 8))
    assert kind == "weights" and w.sum() == pytest.approx(1.0) and (w > 0).sum() == 8
    assert parse_target("pixel:7,7", [], (1, 1, 8, 8))[1][0, 0, 7, 7] == 1
    assert parse_target(None, [], (1, 1, 8, 8))[1].sum() == pytest.approx(1.0)
    for bad in ("pixel:8,0", "roi:4:2,0:1", "box"):
        with pytest.raises(ValueError):
            parse_target(bad, [], (1, 1, 8, 8))


def test_baselines():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 32, 32)).astype(np.float32) + 5
    assert (make_baseline(x, "black", "defect") == 0).all()
    u = make_baseline(x, "uniform", "thermal", constant_channels=(2,))
    np.testing.assert_allclose(u[:, 0], np.broadcast_to(x[:, 0].mean(axis=(1, 2))[:, None, None], u[:, 0].shape), rtol=1e-5)
    np.testing.assert_array_equal(u[:, 2], x[:, 2])     # the camera's pitch plane is kept
    blur = make_baseline(x, "blur", "defect")
    assert blur.std() < x.std() / 3 and abs(blur.mean() - x.mean()) < 0.05
    user = make_baseline(x, np.ones((3, 32, 32)), "defect")
    assert user.shape == x.shape
    with pytest.raises(ValueError, match="baseline of shape"):
        make_baseline(x, np.ones((3, 8, 8)), "defect")
    with pytest.raises(ValueError, match="expected one of"):
        make_baseline(x, "grey", "defect")
