"""Our Grad-CAM and IG, computed from the ONNX graphs with no torch, against Captum on the same weights."""
import numpy as np
import onnxruntime as ort
import pytest
import torch

from edge.explain.cam import cam_raw, upsample_bilinear
from edge.explain.ig import integrated_gradients

captum_attr = pytest.importorskip("captum.attr")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sessions(tiny_classifier):
    model, _, d, graphs = tiny_classifier
    return model, {k: ort.InferenceSession(str(d / v["file"])) for k, v in graphs.items()}


def _x(n=3, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32)


def test_gradcam_equals_captum_layergradcam_with_upsampling(sessions):
    model, sess = sessions
    x = _x()
    classes = np.array([0, 3, 5])
    target = np.eye(6, dtype=np.float32)[classes]
    _, acts, grads = sess["gradcam"].run(None, {"input": x, "target": target})
    ours = cam_raw(acts, grads, "gradcam")
    lgc = captum_attr.LayerGradCam(model, model.features)
    theirs = lgc.attribute(torch.from_numpy(x), target=torch.from_numpy(classes), relu_attributions=True)
    theirs = theirs.detach()
    scale = float(theirs.abs().max())
    np.testing.assert_allclose(ours, theirs[:, 0].numpy(), atol=1e-4 * scale)
    up = captum_attr.LayerAttribution.interpolate(theirs, (32, 32), interpolate_mode="bilinear")
    np.testing.assert_allclose(upsample_bilinear(ours, (32, 32)), up[:, 0].detach().numpy(), atol=1e-4 * scale)


def test_guided_gradient_equals_captum_guided_backprop_and_guided_gradcam(sessions):
    """The exported guided_gradient graph is Captum's GuidedBackprop; times the class map upsampled nearest,
    it is Captum's GuidedGradCam (our guided_refine weighs the guided gradient by the local contrast, then
    smooths and softens the product)."""
    model, sess = sessions
    x = _x(2, seed=2)
    classes = np.array([2, 5])
    target = np.eye(6, dtype=np.float32)[classes]
    _, guided = sess["guided_gradient"].run(None, {"input": x, "target": target})
    theirs = captum_attr.GuidedBackprop(model).attribute(torch.from_numpy(x), target=torch.from_numpy(classes))
    theirs = theirs.detach().numpy()
    np.testing.assert_allclose(guided, theirs, atol=1e-5 * np.abs(theirs).max())
    _, acts, grads = sess["gradcam"].run(None, {"input": x, "target": target})
    cam = cam_raw(acts, grads, "gradcam")
    nearest = np.repeat(np.repeat(cam, 32 // cam.shape[1], axis=1), 32 // cam.shape[2], axis=2)
    ggc = captum_attr.GuidedGradCam(model, model.features).attribute(torch.from_numpy(x), target=torch.from_numpy(classes))
    ggc = ggc.detach().numpy()
    np.testing.assert_allclose(nearest[:, None] * guided, ggc, atol=1e-4 * np.abs(ggc).max())


@pytest.mark.parametrize("method, captum_method", [
    ("gausslegendre", "gausslegendre"), ("riemann_middle", "riemann_middle"),
    ("riemann_left", "riemann_left"), ("riemann_right", "riemann_right"),
    ("captum_trapezoid", "riemann_trapezoid"),
])
def test_integrated_gradients_equal_captum(sessions, method, captum_method):
    model, sess = sessions
    x = _x(2, seed=1)
    baseline = np.zeros_like(x)
    classes = np.array([1, 4])
    target = np.eye(6, dtype=np.float32)[classes]

    def grad_fn(inp, tgt):
        return tuple(sess["input_gradient"].run(None, {"input": inp, "target": tgt}))

    ours = integrated_gradients(grad_fn, x, baseline, target, n_steps=50, method=method)
    ig = captum_attr.IntegratedGradients(model)
    theirs, delta = ig.attribute(torch.from_numpy(x), baselines=torch.from_numpy(baseline),
                                 target=torch.from_numpy(classes), n_steps=50, method=captum_method,
                                 internal_batch_size=50, return_convergence_delta=True)
    theirs = theirs.detach().numpy()
    np.testing.assert_allclose(ours.attributions, theirs, atol=1e-4 * np.abs(theirs).max())
    np.testing.assert_allclose(ours.delta, delta.abs().detach().numpy(), atol=1e-4 * np.abs(ours.score).max())
