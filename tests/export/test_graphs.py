"""Explain graphs: ONNX gradients equal autograd, the batch is dynamic, only allowed operators appear."""
import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn

from edge.errors import ExportError
from edge.export.graphs import ALLOWED_OPS, check_parity, export_graphs, reference_outputs
from edge.train.models import ResidualUNet, fold_batchnorm
from helpers import randomise_batchnorm

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def classifier(tiny_classifier):
    return tiny_classifier


@pytest.fixture(scope="module")
def regressor(tmp_path_factory):
    torch.manual_seed(0)
    model = fold_batchnorm(randomise_batchnorm(ResidualUNet(2, 0, 2.0, [340.0, 0.0], [10.0, 0.1], width=4)))
    d = tmp_path_factory.mktemp("reg")
    x = torch.randn(2, 2, 32, 32) * torch.tensor([10.0, 0.1]).view(1, 2, 1, 1) + torch.tensor([340.0, 0.0]).view(1, 2, 1, 1)
    return model, d, export_graphs(model, "thermal", x, d), x


def test_classifier_graphs_match_autograd_at_batch_1_and_8(classifier):
    model, _, d, graphs = classifier
    assert set(graphs) == {"predict", "gradcam", "input_gradient", "guided_gradient", "head_gradient"}
    errors = check_parity(model, "defect", d, graphs, lambda b, g: torch.randn(b, 3, 32, 32, generator=g))
    assert all(e["relative_l2"] < 1e-4 for e in errors.values()), errors


@pytest.mark.parametrize("pool,context", [("meanmax", 0), ("attention", 0), ("attention", 2)])
def test_pooling_for_small_defects_exports_and_matches_autograd(pool, context, tmp_path):
    """Global max and mask-head attention pooling (the real-image recipe, with its dilated context layers)
    keep exact gradients in the graphs, with TensorRT-parser operators only; the training-only mask head does
    not enter the meanmax graphs."""
    from edge.train.models import FusionClassifier

    torch.manual_seed(0)
    model = fold_batchnorm(randomise_batchnorm(FusionClassifier(1, 4, width=8, pool=pool, mask_head=True,
                                                                context=context)))
    graphs = export_graphs(model, "defect", torch.randn(2, 1, 40, 40), tmp_path)
    errors = check_parity(model, "defect", tmp_path, graphs, lambda b, g: torch.randn(b, 1, 40, 40, generator=g))
    assert all(e["relative_l2"] < 1e-4 for e in errors.values()), errors
    ops = {o for g in graphs.values() for o in g["operators"]}
    assert ops <= ALLOWED_OPS and (("Sigmoid" in ops) == (pool == "attention"))


def test_guided_gradient_is_the_input_gradient_with_negative_relu_gradients_dropped(classifier):
    """Guided backpropagation: zero wherever the plain gradient path is closed, and different from the plain
    input gradient (which lets negative gradients through); both from the same weights and target."""
    model, _, d, _ = classifier
    x = np.random.default_rng(3).standard_normal((2, 3, 32, 32)).astype(np.float32)
    target = np.eye(6, dtype=np.float32)[[1, 4]]
    _, plain = ort.InferenceSession(str(d / "input_gradient.onnx")).run(None, {"input": x, "target": target})
    logits, guided = ort.InferenceSession(str(d / "guided_gradient.onnx")).run(None, {"input": x, "target": target})
    with torch.no_grad():
        np.testing.assert_allclose(logits, model(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)
    assert guided.shape == plain.shape
    assert np.linalg.norm(guided - plain) > 0.05 * np.linalg.norm(plain)
    ref = reference_outputs(model, "defect", "guided_gradient", torch.from_numpy(x), torch.from_numpy(target))[1]
    np.testing.assert_allclose(guided, ref, atol=1e-5 * np.abs(ref).max())


def test_regression_graphs_match_autograd(regressor):
    model, d, graphs, x = regressor
    assert set(graphs) == {"predict", "input_gradient"}
    errors = check_parity(model, "thermal", d, graphs,
                          lambda b, g: x[:1].repeat(b, 1, 1, 1) + torch.randn(b, 2, 32, 32, generator=g))
    assert all(e["relative_l2"] < 1e-4 for e in errors.values()), errors


def test_folded_model_computes_what_the_trained_one_did(classifier):
    model, reference, _, _ = classifier
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), reference(x).numpy(), rtol=1e-4, atol=1e-5)


def test_gradcam_graph_outputs_and_dynamic_batch(classifier):
    model, _, d, graphs = classifier
    sess = ort.InferenceSession(str(d / graphs["gradcam"]["file"]))
    for b in (1, 3, 17):
        x = np.random.default_rng(b).standard_normal((b, 3, 32, 32)).astype(np.float32)
        target = np.eye(6, dtype=np.float32)[np.arange(b) % 6]
        logits, acts, grads = sess.run(None, {"input": x, "target": target})
        assert logits.shape == (b, 6)
        assert acts.shape == grads.shape == (b, 24, 4, 4)  # 1/8 of the input resolution


def test_input_gradient_of_a_class_is_its_own_and_samples_are_independent(classifier):
    """The score is the target-weighted logit of each sample; changing one sample's target must not
    change another sample's gradient (no hidden batch coupling)."""
    model, _, d, graphs = classifier
    sess = ort.InferenceSession(str(d / graphs["input_gradient"]["file"]))
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    t1 = np.eye(6, dtype=np.float32)[[0, 1]]
    t2 = np.eye(6, dtype=np.float32)[[0, 4]]
    g1 = sess.run(None, {"input": x, "target": t1})[1]
    g2 = sess.run(None, {"input": x, "target": t2})[1]
    np.testing.assert_array_equal(g1[0], g2[0])
    assert not np.allclose(g1[1], g2[1])
    ref = reference_outputs(model, "defect", "input_gradient", torch.from_numpy(x), torch.from_numpy(t2))[1]
    np.testing.assert_allclose(g2, ref, rtol=1e-4, atol=1e-6 * np.abs(ref).max())


def test_regression_roi_gradient_is_linear_in_the_roi(regressor):
    """A mean over an ROI is the mean of per-pixel scores: gradients must add up the same way."""
    model, d, graphs, x = regressor
    sess = ort.InferenceSession(str(d / graphs["input_gradient"]["file"]))
    xn = x[:1].numpy()
    a = np.zeros((1, 1, 32, 32), np.float32)
    b = np.zeros_like(a)
    a[0, 0, 10, 10] = 1.0
    b[0, 0, 20, 5] = 1.0
    ga = sess.run(None, {"input": xn, "target": a})[1]
    gb = sess.run(None, {"input": xn, "target": b})[1]
    gab = sess.run(None, {"input": xn, "target": (a + b) / 2})[1]
    np.testing.assert_allclose(gab, (ga + gb) / 2, rtol=1e-4, atol=1e-7)


def test_only_allowed_operators(classifier, regressor):
    for graphs in (classifier[3], regressor[2]):
        for spec in graphs.values():
            assert set(spec["operators"]) <= ALLOWED_OPS
        # The input gradient runs back through every convolution: that is ConvTranspose.
        assert "ConvTranspose" in graphs["input_gradient"]["operators"]


def test_a_layer_without_a_supported_backward_is_refused(tmp_path):
    """Max-pooling is outside the operator allow-list the graphs are held to (TensorRT's): export must fail
    naming it, not ship a graph the device cannot run."""

    class Pooled(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.MaxPool2d(2))
            self.head = nn.Linear(4, 2)

        def classify(self, a):
            return self.head(a.mean(dim=(2, 3)))

        def forward(self, x):
            return self.classify(self.features(x))

    with pytest.raises(ExportError, match="MaxPool"):
        export_graphs(Pooled().eval(), "defect", torch.randn(2, 1, 16, 16), tmp_path)


def test_parity_check_catches_a_graph_of_other_weights(classifier):
    """The kink tolerance (nudging a failing sample) must not hide a real mismatch."""
    import copy

    model, _, d, graphs = classifier
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.head[2].weight.mul_(1.01)
    with pytest.raises(RuntimeError, match="differs from autograd"):
        check_parity(other, "defect", d, graphs, lambda b, g: torch.randn(b, 3, 32, 32, generator=g))


def _kinky_reference(monkeypatch, share_at_kink: float):
    """The float64 reference, with a kink-sized difference (1e-3 relative) in the inputs that "sit at a
    kink": a share of random inputs decided by their values, so a nudged input is a fresh draw."""
    from edge.export import graphs as g

    def reference(model, task, graph, x, target):
        out = reference_outputs(model, task, graph, x, target)      # the real one, imported above
        at_kink = torch.from_numpy(np.array([(abs(hash(float(v))) % 1000) / 1000 < share_at_kink
                                             for v in x.reshape(len(x), -1)[:, 7]]))
        return [o * (1 + 1e-3 * at_kink.numpy().reshape(-1, *[1] * (o.ndim - 1))) for o in out]

    monkeypatch.setattr(g, "reference_outputs", reference)


def test_parity_check_redraws_kinks_and_still_catches_what_every_input_shows(classifier, monkeypatch):
    """Most random inputs of a deep backbone sit at some ReLU kink: those are nudged and compared again
    until they agree (none left here, nudges counted). A difference in every input stays: it raises."""
    model, _, d, graphs = classifier
    _kinky_reference(monkeypatch, 0.7)
    errors = check_parity(model, "defect", d, graphs, lambda b, g: torch.randn(b, 3, 32, 32, generator=g))
    assert all(e["relative_l2"] < 1e-4 and e["kink_nudges"] > 0 and e["kink_samples"] <= 2 for e in errors.values())
    _kinky_reference(monkeypatch, 1.0)
    with pytest.raises(RuntimeError, match="differs from autograd in 9 of 9 random inputs"):
        check_parity(model, "defect", d, graphs, lambda b, g: torch.randn(b, 3, 32, 32, generator=g))


@pytest.mark.parametrize("pool", ["mean", "meanmax", "attention"])
def test_the_written_out_head_gradient_is_autograds(pool):
    """head_gradient (the gradcam graph's backward, written by hand) against autograd in float64, without
    an export: every pooling, explicit and predicted-class targets, and a channel dead everywhere (its
    maximum tied at every position: autograd shares the gradient among the ties, so must the formula)."""
    from edge.export.graphs import head_gradient, resolve_target
    from edge.train.models import FusionClassifier

    torch.manual_seed(1)
    model = FusionClassifier(2, 5, width=8, pool=pool).double().eval()
    a = torch.relu(torch.randn(4, 24, 6, 7, dtype=torch.float64))
    a[1, 3] = 0.0
    target = torch.zeros(4, 5, dtype=torch.float64)
    target[0, 2], target[2, 4], target[3] = 1.0, 1.0, torch.tensor([0.5, 0, 0, 0.5, 0], dtype=torch.float64)
    logits, grad = head_gradient(model, a, target)
    ag = a.clone().requires_grad_(True)
    want_logits = model.classify(ag)
    (want,) = torch.autograd.grad((want_logits * resolve_target(want_logits, target)).sum(), ag)
    torch.testing.assert_close(logits, want_logits.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, want, rtol=1e-10, atol=1e-12)
