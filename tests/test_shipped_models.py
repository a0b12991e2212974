"""The models in models/: complete, verified, small, parity recorded, bars met, and they work."""

import numpy as np
import pytest
from helpers import MODELS

from edge.export.graphs import ALLOWED_OPS
from edge.runtime.manifest import load_manifest
from edge.runtime.model import Model, softmax

TASKS = ("defect", "thermal", "phase")
# Measured 0.92 on the shipped classifier (issue #2 note); the bar sits below it and far above chance
# (a grown defect mask covers a few per cent of the frame).
POINTING_GAME_BAR = 0.8


@pytest.mark.parametrize("task", TASKS)
def test_manifest_is_complete_and_files_verify(task):
    m = load_manifest(MODELS / task)
    assert m["task"] == task
    for key in ("channels", "input", "opset", "operators", "files", "training", "parity", "evaluation"):
        assert key in m, key
    assert m["input"]["size"] == [128, 128]
    assert set(m["operators"]) <= ALLOWED_OPS
    for name in m["files"]:
        assert (MODELS / task / name).stat().st_size <= 5 * 1024 * 1024, name
    assert all(e <= 1e-4 for e in m["parity"]["relative_l2"].values())
    assert m["training"]["data"]["seed"] != m["evaluation"]["data"]["seed"]  # held out


def test_defect_model_meets_its_bars():
    ev = load_manifest(MODELS / "defect")["evaluation"]
    assert ev["metrics"]["samples"] >= 1000
    assert ev["metrics"]["accuracy"] >= 0.97
    assert all(v["recall"] >= 0.90 for v in ev["metrics"]["per_class"].values())


def test_thermal_model_is_within_half_a_kelvin():
    ev = load_manifest(MODELS / "thermal")["evaluation"]["metrics"]
    assert ev["samples"] >= 1000 and ev["mae"] <= 0.5


def test_thermal_model_meets_its_bars():
    ev = load_manifest(MODELS / "thermal")["evaluation"]["metrics"]
    assert ev["samples"] >= 1000
    assert ev["mae"] <= 0.5 and ev["baseline_mae"] >= 5 * ev["mae"]


def test_phase_model_meets_its_bars():
    ev = load_manifest(MODELS / "phase")["evaluation"]["metrics"]
    assert ev["samples"] >= 1000 and ev["fringe_order_accuracy"] >= 0.99


def test_defect_model_classifies_fresh_frames():
    """Frames from a seed used neither in training nor in the recorded evaluation."""
    from edge.sim.sample import simulate_sample

    model = Model.load(MODELS / "defect")
    samples = [simulate_sample(i, 424242) for i in range(48)]
    x = np.stack([np.stack([s[c] for c in model.manifest["channels"]]) for s in samples])
    probs = softmax(model.predict(x))
    pred = [model.classes[i] for i in probs.argmax(1)]
    accuracy = np.mean([p == str(s["label"]) for p, s in zip(pred, samples)])
    assert accuracy >= 0.9
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)


def test_thermal_model_corrects_a_cavity():
    from edge.sim.sample import simulate_sample

    model = Model.load(MODELS / "thermal")
    s = simulate_sample(3, 424242, defect_class="ok", geometry_type="cavity")
    pitch = np.full_like(s["thermal"], s["pixel_pitch_mm"])
    out = model.predict(np.stack([s["thermal"], s["height"], pitch])[None])[0, 0]
    before = np.abs(s["thermal"] - s["true_temperature"]).max()
    after = np.abs(out - s["true_temperature"]).max()
    assert after < before / 2


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_shipped_graphs_match_their_torch_weights(task):
    """Reference test: the shipped ONNX graphs against autograd on the shipped weights.pt."""
    import torch

    from edge.export.graphs import check_parity
    from edge.train.models import fold_batchnorm
    from edge.train.models import build_model

    m = load_manifest(MODELS / task)
    ckpt = torch.load(MODELS / task / "weights.pt", weights_only=True)
    model = build_model(ckpt["meta"])
    model.load_state_dict(ckpt["state_dict"])
    model = fold_batchnorm(model)
    norm = m.get("in_graph_normalisation")
    c = len(m["channels"])

    def sample(b, g):
        z = torch.randn(b, c, 128, 128, generator=g)
        if norm:
            z = z * torch.tensor(norm["std"]).view(1, -1, 1, 1) + torch.tensor(norm["mean"]).view(1, -1, 1, 1)
        return z

    errors = check_parity(model, task, MODELS / task, m["graphs"], sample, seed=123)
    assert all(e["relative_l2"] < 1e-4 for e in errors.values()), errors


def test_gradcam_layer_keeps_an_eighth_of_the_resolution_and_head_has_a_hidden_layer():
    import onnx

    model = Model.load(MODELS / "defect")
    x = np.random.default_rng(0).standard_normal((2, 3, 128, 128)).astype(np.float32)
    target = np.eye(len(model.classes), dtype=np.float32)[[1, 2]]
    logits, acts, grads = model.run("gradcam", {"input": x, "target": target})
    assert acts.shape[2:] == (16, 16) and grads.shape == acts.shape
    predict = onnx.load(str(MODELS / "defect" / "predict.onnx"))
    assert sum(n.op_type == "Gemm" for n in predict.graph.node) == 2  # hidden layer after pooling


def test_gradcam_from_the_onnx_graph_points_at_the_defect():
    """Pointing game on fresh frames: the hottest pixel of the model's CAM (the method chosen at training,
    what the explainer and the server draw) for the true class lies within 8 px (one cell of the
    1/8-resolution layer) of the defect. Run with no torch at all."""
    import cv2

    from edge.explain.cam import cam_raw, upsample_and_normalise
    from edge.sim.sample import simulate_sample

    model = Model.load(MODELS / "defect")
    hits = []
    for i in range(60):
        s = simulate_sample(i, 515151)
        if str(s["label"]) == "ok":
            continue
        x = model.normalisation.apply(np.stack([s[c] for c in model.manifest["channels"]])[None])
        target = np.eye(len(model.classes), dtype=np.float32)[[model.classes.index(str(s["label"]))]]
        _, acts, grads = model.run("gradcam", {"input": x, "target": target})
        heat = upsample_and_normalise(cam_raw(acts, grads, model.cam_method), (128, 128))[0]
        near = cv2.dilate(s["mask"], np.ones((17, 17), np.uint8)).astype(bool)
        hits.append(near[np.unravel_index(heat.argmax(), heat.shape)])
    assert np.mean(hits) >= POINTING_GAME_BAR, np.mean(hits)
