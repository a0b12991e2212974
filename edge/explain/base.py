"""The explanation interface: one small base, one file per method (gradcam.py, ig.py, shap.py).

    explainer = make_explainer("gradcam", Model.load("models/defect"))
    [e] = explainer.explain(x)          # x: (N, C, H, W) in physical units, as the loader gives them
    e.prediction.label, e.attribution   # (H, W) map at input resolution

Explainers take raw inputs, normalise them the model's way, and return one Explanation per sample.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from edge.runtime.model import Model, softmax


@dataclass
class Prediction:
    """A classifier's answer, or a regression model's output map (units from the manifest)."""
    label: str | None = None
    confidence: float | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    output: np.ndarray | None = None          # (H, W) for regression models
    units: str | None = None

    def to_dict(self) -> dict:
        if self.label is not None:
            return {"class": self.label, "confidence": self.confidence, "probabilities": self.probabilities}
        o = self.output
        return {"units": self.units, "mean": float(o.mean()), "min": float(o.min()), "max": float(o.max())}


@dataclass
class Explanation:
    method: str
    prediction: Prediction
    target: str                         # what was explained, in words ("class crack", "ROI mean")
    attribution: np.ndarray             # (H, W) per-pixel map at input resolution, signed for IG/SHAP
    heatmap: np.ndarray                 # (H, W) in [0, 1] for display
    extras: dict = field(default_factory=dict)   # method-specific arrays and numbers
    timings_ms: dict[str, float] = field(default_factory=dict)
    sentence: str | None = None


def predictions(model: Model, logits_or_output: np.ndarray) -> list[Prediction]:
    if model.classes:
        p = softmax(logits_or_output.astype(np.float64))
        return [Prediction(model.classes[int(r.argmax())], float(r.max()),
                           {c: float(v) for c, v in zip(model.classes, r)}) for r in p]
    units = model.manifest.get("output", {}).get("units")
    return [Prediction(output=o[0], units=units) for o in logits_or_output]


class Timer:
    """Per-stage wall-clock times in ms, accumulated by stage name."""

    def __init__(self):
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - t0) * 1e3


class Explainer(ABC):
    method: str
    has_completeness_delta = False

    def __init__(self, model: Model):
        self.model = model

    def prepare(self, x: np.ndarray, timer: Timer) -> np.ndarray:
        with timer.stage("preprocess"):
            return self.model.normalisation.apply(self.model.check_input(x))

    @abstractmethod
    def explain(self, x: np.ndarray, target=None) -> list[Explanation]:
        """x: raw (N, C, H, W); target: None (predicted class / whole-image mean), a class index or
        name, or a weighting array (see targets.py). One Explanation per sample."""


def class_indices(model: Model, target, predicted: np.ndarray) -> np.ndarray:
    """Target spec -> class index per sample; None means the predicted class."""
    if target is None:
        return predicted
    if isinstance(target, str):
        if target not in model.classes:
            raise ValueError(f"target class {target!r}: this model's classes are {', '.join(model.classes)}")
        target = model.classes.index(target)
    idx = np.broadcast_to(np.asarray(target, np.int64), predicted.shape)
    if (idx < 0).any() or (idx >= len(model.classes)).any():
        raise ValueError(f"target class {target!r}: expected 0..{len(model.classes) - 1}")
    return idx


def make_explainer(method: str, model: Model, **options) -> Explainer:
    from edge.explain.cam import METHODS as CAM_METHODS

    if method in CAM_METHODS:
        from edge.explain.gradcam import GradCAMExplainer

        return GradCAMExplainer(model, method, **options)
    if method == "ig":
        from edge.explain.ig import IGExplainer

        return IGExplainer(model, **options)
    if method == "shap":
        from edge.explain.shap import PatchShapExplainer

        return PatchShapExplainer(model, **options)
    raise ValueError(f"unknown method {method!r}; expected one of {', '.join((*CAM_METHODS, 'ig', 'shap'))}")
