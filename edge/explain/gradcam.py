"""Grad-CAM, Grad-CAM++ and HiResCAM from the exported `gradcam` graph: one engine call gives the
logits, the target layer's activations A and dscore/dA; the rest is `cam.py` (or `kernels/gradcam.cu`).

    [e] = GradCAMExplainer(Model.load("models/defect")).explain(x)          # the model's CAM, predicted class
    [e] = GradCAMExplainer(model, "gradcam++").explain(x, target="crack")   # any class

Maps are placed by the layer's measured receptive-field alignment (manifest `gradcam_alignment`);
`align=False` gives the half-pixel placement of pytorch-grad-cam and Captum, for comparisons.
"""
from __future__ import annotations

import numpy as np

from edge.errors import InvalidInput
from edge.explain.base import CamDetails, Explainer, Explanation, Timer, class_indices, predictions
from edge.explain.cam import METHODS, alignment_shift, cam_raw, normalise_minmax, upsample_bilinear
from edge.explain.targets import class_target
from edge.runtime.model import Model


def map_shift(model: Model, align: bool = True) -> float:
    """Upsampling shift (map cells) for this model's Grad-CAM layer; 0 without a recorded alignment."""
    a = model.gradcam_alignment
    return alignment_shift(a["stride"], a["centre_px"]) if (align and a) else 0.0


def per_sample_targets(model: Model, target, n: int) -> np.ndarray:
    """(n,) class indices, -1 where the sample's predicted class is meant."""
    if target is None:
        return np.full(n, -1, np.int64)
    if not isinstance(target, str) and np.ndim(target) == 1:
        t = np.asarray(target, np.int64)
        if len(t) != n:
            raise InvalidInput(f"{len(t)} targets for {n} samples")
        rows = t >= 0
        out = t.copy()
        out[rows] = class_indices(model, t[rows], np.zeros(int(rows.sum()), np.int64))
        return out
    return class_indices(model, target, np.zeros(n, np.int64)).copy()


class GradCAMExplainer(Explainer):
    def __init__(self, model: Model, method: str | None = None, align: bool = True):
        """method: gradcam, gradcam++ or hirescam; None: the model's own (`Model.cam_method`)."""
        method = method or model.cam_method
        if method not in METHODS:
            raise InvalidInput(f"unknown CAM method {method!r}; expected one of {', '.join(METHODS)}")
        if "gradcam" not in model.graphs:
            raise InvalidInput(f"model {model.dir} has no gradcam graph: class activation maps need a "
                               f"classifier (this is a {model.task} model; use ig or shap)")
        super().__init__(model)
        self.method = method
        self.shift = map_shift(model, align)

    def explain(self, x: np.ndarray, target=None) -> list[Explanation]:
        """target: None (each sample's predicted class), a class name or index for all, or one index per
        sample where -1 means that sample's predicted class."""
        timer = Timer()
        xn = self.prepare(x, timer)
        k = len(self.model.classes)
        with timer.stage("graph"):
            wanted = per_sample_targets(self.model, target, len(xn))
            # Zero rows: the graph picks the predicted class itself, so any mix of targets is one call.
            onehot = np.zeros((len(xn), k), np.float32)
            rows = np.flatnonzero(wanted >= 0)
            onehot[rows] = class_target(k, wanted[rows])
            logits, acts, grads = self.model.run("gradcam", {"input": xn, "target": onehot})
        preds = predictions(self.model, logits)
        explained = np.where(wanted >= 0, wanted, logits.argmax(axis=1))
        with timer.stage("cam"):
            raw = cam_raw(acts, grads, self.method)
            up = upsample_bilinear(raw, xn.shape[2:], self.shift)
            heat = normalise_minmax(up)
            # the review flag's embedding: spatial mean, then spatial max (local anomalies; see review.py)
            embedding = np.concatenate([acts.mean(axis=(2, 3)), acts.max(axis=(2, 3))], axis=1)
        return [Explanation(self.method, p, f"class {self.model.classes[c]}", up[i], heat[i],
                            CamDetails(raw=raw[i], class_index=int(c), shift_cells=self.shift,
                                       embedding=embedding[i]),
                            timings_ms=dict(timer.ms))
                for i, (p, c) in enumerate(zip(preds, explained))]
