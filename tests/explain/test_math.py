"""CAM and IG arithmetic on tiny arrays, no model."""
import numpy as np
import pytest

from edge.explain.cam import cam_raw, contrast_control, guided_refine, normalise_minmax, upsample_and_normalise
from edge.explain.ig import integrated_gradients
from edge.explain.ig_math import interpolation_batch, reduce_path


def test_gradcam_by_hand():
    a = np.zeros((1, 2, 2, 2), np.float32)
    a[0, 0] = [[1, 0], [0, 0]]
    a[0, 1] = [[0, 0], [0, 2]]
    g = np.zeros_like(a)
    g[0, 0] = 1.0   # alpha_0 = 1
    g[0, 1] = -1.0  # alpha_1 = -1
    np.testing.assert_array_equal(cam_raw(a, g, "gradcam")[0], [[1, 0], [0, 0]])  # -2 clipped by ReLU


def test_hirescam_is_elementwise_and_gradcam_averages():
    rng = np.random.default_rng(0)
    a, g = rng.random((2, 3, 4, 4)).astype(np.float32), rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(cam_raw(a, g, "hirescam"), np.maximum((a * g).sum(1), 0), rtol=1e-6)
    alpha = g.mean(axis=(2, 3))[:, :, None, None]
    np.testing.assert_allclose(cam_raw(a, g, "gradcam"), np.maximum((a * alpha).sum(1), 0), rtol=1e-6)


def test_elementwise_gradcam_keeps_a_channels_evidence_that_another_cancels():
    """Element-wise Grad-CAM clips each channel's term before the sum: where one channel's evidence is
    cancelled by another's negative term, HiResCAM shows nothing and the element-wise map keeps it."""
    a = np.ones((1, 2, 1, 2), np.float32)
    g = np.array([[[[2.0, 1.0]], [[-2.0, -3.0]]]], np.float32)     # place 0: 2 - 2, place 1: 1 - 3
    np.testing.assert_array_equal(cam_raw(a, g, "hirescam")[0], [[0, 0]])
    np.testing.assert_array_equal(cam_raw(a, g, "gradcam-elementwise")[0], [[2, 1]])
    rng = np.random.default_rng(1)
    a, g = rng.random((2, 3, 4, 4)).astype(np.float32), rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(cam_raw(a, g, "gradcam-elementwise"), np.maximum(a * g, 0).sum(1), rtol=1e-6)


def test_gradcam_plus_plus_ignores_negative_gradients():
    a = np.ones((1, 2, 2, 2), np.float32)
    g = np.stack([np.full((2, 2), 0.5), np.full((2, 2), -0.5)])[None].astype(np.float32)
    m = cam_raw(a, g, "gradcam++")
    assert np.all(m > 0)
    g_pos_only = g.copy()
    g_pos_only[0, 1] = 0
    np.testing.assert_allclose(m, cam_raw(a, g_pos_only, "gradcam++"))


def test_unknown_method_and_mismatched_shapes():
    a = np.zeros((1, 1, 2, 2), np.float32)
    with pytest.raises(ValueError, match="unknown CAM method"):
        cam_raw(a, a, "scorecam")
    with pytest.raises(ValueError, match="must be equal"):
        cam_raw(a, np.zeros((1, 2, 2, 2), np.float32))


def test_normalise_and_upsample():
    m = np.array([[[0.0, 2.0], [1.0, 4.0]]], np.float32)
    n = normalise_minmax(m)
    assert n.min() == 0 and n.max() == 1
    assert normalise_minmax(np.ones((1, 3, 3), np.float32)).max() == 0  # constant: nothing stands out
    up = upsample_and_normalise(m, (8, 8))
    assert up.shape == (1, 8, 8) and up.min() == 0 and up.max() == 1


def test_interpolation_batch_is_point_major():
    x = np.array([[[[2.0]]], [[[4.0]]]], np.float32)  # N=2
    b = np.zeros_like(x)
    batch = interpolation_batch(x, b, np.array([0.0, 0.5, 1.0]))
    assert batch.ravel().tolist() == [0, 0, 1, 2, 2, 4]


def test_ig_of_a_quadratic_is_exact_with_gauss_legendre_and_complete():
    """F(x) = sum(c * x^2): IG_i = c_i x_i^2 exactly (baseline 0), integrand linear in alpha."""
    c = np.array([1.0, -2.0, 3.0], np.float32).reshape(1, 3, 1, 1)

    def grad_fn(inp, target):
        out = (c * inp**2).sum(axis=(1, 2, 3)).reshape(-1, 1)
        return out, 2 * c * inp * target.reshape(-1, 1, 1, 1)

    x = np.array([0.5, 1.5, -1.0], np.float32).reshape(1, 3, 1, 1)
    r = integrated_gradients(grad_fn, x, np.zeros_like(x), np.ones((1, 1), np.float32), n_steps=2)
    np.testing.assert_allclose(r.attributions.ravel(), (c * x**2).ravel(), rtol=1e-6)
    assert r.delta[0] < 1e-6


def test_internal_batch_size_does_not_change_the_result():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((1, 2, 3, 3)).astype(np.float32)

    def grad_fn(inp, target):
        z = (w * inp).sum(axis=(1, 2, 3))
        return np.tanh(z)[:, None], ((1 - np.tanh(z) ** 2) * target[:, 0])[:, None, None, None] * w

    x = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    t = np.ones((3, 1), np.float32)
    a = integrated_gradients(grad_fn, x, 0 * x, t, n_steps=20)
    b = integrated_gradients(grad_fn, x, 0 * x, t, n_steps=20, internal_batch_size=7)
    np.testing.assert_allclose(a.attributions, b.attributions, rtol=1e-6)
    assert np.all(a.relative_delta < 1e-3)


def test_reduce_path_weights():
    g = np.ones((2, 1, 1, 1, 1), np.float32).reshape(2, 1, 1, 1)  # M=2, N=1
    attr, total = reduce_path(g, np.array([0.25, 0.75]), np.full((1, 1, 1, 1), 2.0, np.float32),
                              np.zeros((1, 1, 1, 1), np.float32))
    assert attr.item() == 2.0 and total.item() == 2.0


def test_aligned_upsampling_moves_the_map_by_the_receptive_field_offset():
    from edge.explain.cam import alignment_shift, upsample_bilinear

    m = np.zeros((1, 16, 16), np.float32)
    m[0, 8, 8] = 1.0                       # one cell; its receptive field is centred on pixel 64 (stride 8)
    half_pixel = upsample_bilinear(m, (128, 128))[0]
    aligned = upsample_bilinear(m, (128, 128), alignment_shift(8, 0.0))[0]
    assert np.unravel_index(half_pixel.argmax(), (128, 128)) in [(67, 67), (67, 68), (68, 67), (68, 68)]
    assert np.unravel_index(aligned.argmax(), (128, 128)) == (64, 64)
    assert alignment_shift(8, 3.5) == 0.0  # a layer centred like half-pixel sampling needs no shift


def test_guided_refinement_draws_a_thin_defect_thin_and_keeps_the_class_map_extent():
    """A coarse class map over a 24x24 block; a 1-px line in one input channel inside it, and the guided
    gradient spread 5 px wide around the line (as the filters that saw it spread it): weighed by the local
    contrast, half the refined map's maximum selects the line (and its one-pixel smoothing), not the
    gradient's band nor the block. The gradient's magnitude alone draws the band. With no guided gradient
    there is no map, power 0 gives the class map back, and mismatched shapes are refused."""
    from edge.audit.metrics import binarise, iou

    cam = np.zeros((1, 128, 128), np.float32)
    cam[0, 20:44, 20:44] = 1.0
    x = np.zeros((1, 2, 128, 128), np.float32)
    x[0, 0, 32, 22:42] = 5.0              # the defect, seen by channel 0; channel 1 is a smooth ramp
    x[0, 1] = np.linspace(0, 1, 128)[None, :]
    g = np.zeros((1, 2, 128, 128), np.float32)
    g[0, 0, 28:37, 22:42] = -3.0          # signs do not matter: magnitude, summed over channels
    g[0, 1, 28:37, 22:42] = 1.0
    line = np.zeros((128, 128), bool)
    line[32, 22:42] = True
    region = binarise(guided_refine(cam, g, x)[0])
    assert region[32, 25:40].all() and not region[20:31].any() and not region[34:44].any()
    assert iou(region, line) > 0.3 > iou(binarise(cam[0]), line)
    band = binarise(np.abs(g).sum(axis=1)[0])
    assert iou(band, line) < 0.15                 # the gradient alone: 9 px wide
    outside = np.zeros_like(g)
    outside[0, 0, 5, 5] = 1.0             # evidence only where the class map is zero
    assert not guided_refine(cam, outside, x).any()
    assert not guided_refine(cam, np.zeros_like(g), x).any()
    np.testing.assert_allclose(guided_refine(cam, g, x, power=0.0), cam)
    with pytest.raises(ValueError, match="inputs"):
        guided_refine(cam, g, x[:, :1])


def test_the_contrast_control_is_the_guided_refinement_with_the_gradient_left_out():
    """contrast_control is guided_refine with a guided gradient of ones: the class map times the image's
    local contrast alone, the same for any model; it draws the line too (hence a control, not evidence)."""
    from edge.audit.metrics import binarise, iou

    rng = np.random.default_rng(3)
    cam = np.maximum(rng.normal(size=(2, 64, 48)), 0).astype(np.float32)
    x = rng.normal(size=(2, 3, 64, 48)).astype(np.float32)
    np.testing.assert_allclose(contrast_control(cam, x), guided_refine(cam, np.ones_like(x), x), rtol=1e-6)
    block = np.zeros((1, 128, 128), np.float32)
    block[0, 20:44, 20:44] = 1.0
    line = np.zeros((1, 1, 128, 128), np.float32)
    line[0, 0, 32, 22:42] = 5.0
    assert iou(binarise(contrast_control(block, line)[0]), line[0, 0] > 0) > 0.3


def test_local_contrast_is_what_a_pixel_shows_beyond_its_surroundings():
    """A flat channel has none; a linear ramp almost none away from the borders (a Gaussian average of a
    ramp is the ramp); a bright pixel keeps most of its height, its surroundings go slightly negative."""
    from edge.explain.cam import local_contrast

    x = np.zeros((1, 3, 64, 64), np.float32)
    x[0, 0] = 7.0
    x[0, 1] = np.linspace(0, 1, 64)[None, :]
    x[0, 2, 32, 32] = 1.0
    c = local_contrast(x)
    assert np.abs(c[0, 0]).max() < 1e-5
    assert np.abs(c[0, 1, :, 16:48]).max() < 1e-3
    assert c[0, 2, 32, 32] > 0.9 and c[0, 2, 32, 36] < 0
