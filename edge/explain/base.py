"""The explanation interface: one small base, one file per method (gradcam.py, ig.py, shap.py); the
factory is `edge.explain.make_explainer`.

    explainer = make_explainer("gradcam", Model.load("models/defect"))
    [e] = explainer.explain(x)          # x: (N, C, H, W) in physical units, as the loader gives them
    e.prediction.label, e.attribution   # (H, W) map at input resolution

Explainers take raw inputs, normalise them the model's way, and return one Explanation per sample.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from edge.errors import InvalidInput
from edge.explain.cam import pool_activations
from edge.runtime.model import Model


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
class CamDetails:
    """What a Grad-CAM-family map was made from."""
    raw: np.ndarray                     # (h, w) ReLU'd map at the target layer's resolution
    class_index: int                    # the class explained
    shift_cells: float                  # receptive-field alignment applied when upsampling (map cells)
    activations: np.ndarray | None = None  # (K, h, w) this sample's target-layer activations
    guided: bool = False                # refined to input pixels by guided backpropagation (cam.guided_refine)
    logits: np.ndarray | None = None    # (K,) the graph's raw logits (before calibration) for this sample
    pooled: np.ndarray | None = None    # (2K,) the embedding, where the GPU kernel pooled the activations

    @property
    def embedding(self) -> np.ndarray | None:
        """(2K,) the target-layer activations averaged over space, then their maximum over space: what the
        review flag compares with the training data (no extra graph call). Computed when asked for: a
        Grad-CAM that no review flag reads does not pay for it (15 us a frame on the shipped classifier). On
        a GPU engine the kernel pools them on the device (`pooled`) and the activations stay there."""
        if self.pooled is not None:
            return self.pooled
        if self.activations is None:
            return None
        return pool_activations(self.activations[None])[0]

    def arrays(self) -> dict[str, np.ndarray]:
        return {"raw": self.raw}


@dataclass
class IGDetails:
    """Integrated Gradients' per-channel maps and its completeness check."""
    per_channel: np.ndarray             # (C, H, W) attribution per input channel
    channels: list[str]
    completeness_delta: float           # |sum of attributions - (F(x) - F(baseline))|
    relative_completeness_delta: float  # the delta over |F(x) - F(baseline)|
    score: float                        # F(x) for the target
    baseline_score: float               # F(baseline)
    n_steps: int                        # interpolation points of the final estimate
    quadrature: str
    gradient_evaluations: int           # points evaluated over all adaptive rounds
    converged: bool | None              # adaptive mode: tolerance reached within the budget; None otherwise
    baseline: str                       # its kind, or "user" for an array

    def arrays(self) -> dict[str, np.ndarray]:
        return {"per_channel": self.per_channel}


@dataclass
class ShapDetails:
    """Patch SHAP: one Shapley value per patch and how well they add up."""
    patch_values: np.ndarray            # (P,) per patch
    patch_boxes: np.ndarray             # (P, 4) top, left, bottom, right in input pixels
    evaluations: int                    # model evaluations spent
    value: float                        # v(all patches) = f(x)
    baseline_value: float               # v(no patch) = f(baseline)
    efficiency_gap: float               # |sum of values - (value - baseline_value)|
    estimator: str
    value_kind: str                     # log_odds | probability (classifier) | output (regression)
    budget: int
    seed: int
    baseline: str

    def arrays(self) -> dict[str, np.ndarray]:
        return {"patch_values": self.patch_values, "patch_boxes": np.asarray(self.patch_boxes)}


@dataclass
class Explanation:
    method: str
    prediction: Prediction
    target: str                         # what was explained, in words ("class crack", "ROI mean")
    attribution: np.ndarray             # (H, W) per-pixel map at input resolution, signed for IG/SHAP
    heatmap: np.ndarray                 # (H, W) in [0, 1] for display
    details: CamDetails | IGDetails | ShapDetails
    timings_ms: dict[str, float] = field(default_factory=dict)
    sentence: str | None = None
    evidence: list[dict] | None = None  # what the sentence quotes, per descriptor (see sentence.py)


def predictions(model: Model, logits_or_output: np.ndarray) -> list[Prediction]:
    if model.classes:
        p = model.probabilities(logits_or_output)
        return [Prediction(model.classes[int(r.argmax())], float(r.max()),
                           {c: float(v) for c, v in zip(model.classes, r)}) for r in p]
    units = model.units
    return [Prediction(output=o[0], units=units) for o in logits_or_output]


class Timer:
    """Per-stage wall-clock times in ms, accumulated by stage name.

        with timer.stage("graph"): ...

    A plain context-manager object, not a @contextmanager generator: a served Grad-CAM enters three stages,
    and right after an engine call each generator-based one cost several microseconds more."""

    def __init__(self):
        self.ms: dict[str, float] = {}

    def stage(self, name: str) -> _Stage:
        return _Stage(self.ms, name)


class _Stage:
    __slots__ = ("ms", "name", "t0")

    def __init__(self, ms: dict[str, float], name: str):
        self.ms, self.name = ms, name

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc) -> None:
        self.ms[self.name] = self.ms.get(self.name, 0.0) + (time.perf_counter() - self.t0) * 1e3


class Explainer(ABC):
    method: str

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
            raise InvalidInput(f"target class {target!r}: this model's classes are {', '.join(model.classes)}")
        target = model.classes.index(target)
    idx = np.broadcast_to(np.asarray(target, np.int64), predicted.shape)
    if (idx < 0).any() or (idx >= len(model.classes)).any():
        raise InvalidInput(f"target class {target!r}: expected 0..{len(model.classes) - 1}")
    return idx
