"""Patch SHAP: Shapley values of image patches for one model output, estimated from masked forwards
batched through the engine's `predict` graph.

    [e] = PatchShapExplainer(Model.load("models/defect"), budget=1024, seed=0).explain(x)
    e.details.patch_values, e.attribution          # per patch, per pixel (sums to f(x) - f(baseline))

Players: 16x16 patches every 8 px by default, 225 at 128 px. KernelSHAP fits one value per player
from `budget` masked forwards, so with more players than evaluations (8x8/4 gives 961 against the
256-512 the audit and the service spend) the fit is underdetermined and its top patch lands off the
defect: on 60 held-out defects (12 per class) the top patch overlapped the defect 32 times at 8x8/4
and 51 times at 16x16/8 with budget 256 (48 and 53 with 512), and the sentence built on it described
the wrong region accordingly.

The explained value is, for a classifier, the target class's log-odds log(p / (1 - p)) by default:
a confident prediction sits at p = 0.9999, where masking one patch barely moves p but still moves
the log-odds (measured on 10 simulator defects at 8x8/stride 4, budget 1024: SHAP mass inside the
defect mask was 5.6x the mask's area share with log-odds, 3.5x with probability). `value="probability"`
explains p itself. For regression it is the weighted output (mean, pixel, ROI) in the output's units.
Absent patches show the baseline (default: the task's, e.g. a blurred copy for the classifier).
Deterministic given the seed.
"""
from __future__ import annotations

import numpy as np

from edge.data.arrays import SCALAR_PLANES
from edge.errors import InvalidInput
from edge.explain.base import Explainer, Explanation, ShapDetails, Timer, class_indices, predictions
from edge.explain.baselines import default_baseline, make_baseline
from edge.explain.patches import DEFAULT_PATCH, DEFAULT_STRIDE, PatchGrid
from edge.explain.shapley import ESTIMATORS, estimate
from edge.explain.targets import parse_target
from edge.runtime.model import softmax


class PatchShapExplainer(Explainer):
    method = "shap"

    def __init__(self, model, patch: int = DEFAULT_PATCH, stride: int = DEFAULT_STRIDE, budget: int = 1024, estimator: str = "kernel",
                 baseline: str | np.ndarray | None = None, seed: int = 0, batch_size: int = 64,
                 value: str = "log_odds"):
        super().__init__(model)
        if value not in ("log_odds", "probability"):
            raise InvalidInput(f"SHAP value {value!r}: expected log_odds or probability")
        self.value = value
        if estimator not in ESTIMATORS:
            raise InvalidInput(f"unknown Shapley estimator {estimator!r}; expected one of {', '.join(ESTIMATORS)}")
        _, h, w = model.input_shape
        self.grid = PatchGrid(h, w, patch, stride)
        if budget < 4:
            raise InvalidInput(f"SHAP budget {budget}: at least 4 evaluations are needed")
        self.budget, self.estimator, self.seed, self.batch_size = budget, estimator, seed, batch_size
        self.baseline = default_baseline(model) if baseline is None else baseline
        self.constant_channels = tuple(i for i, c in enumerate(model.channels) if c in SCALAR_PLANES)

    def _value_fn(self, x: np.ndarray, base: np.ndarray, score):
        def value(coalitions: np.ndarray) -> np.ndarray:
            out = []
            for i in range(0, len(coalitions), self.batch_size):
                batch = self.grid.masked(x, base, coalitions[i:i + self.batch_size])
                out.append(score(self.model.run("predict", {"input": batch})[0]))
            return np.concatenate(out) if out else np.zeros(0)
        return value

    def explain(self, x: np.ndarray, target=None) -> list[Explanation]:
        timer = Timer()
        xn = self.prepare(x, timer)
        with timer.stage("predict"):
            outputs = self.model.run("predict", {"input": xn})[0]
        preds = predictions(self.model, outputs)
        with timer.stage("baseline"):
            bases = make_baseline(xn, self.baseline, self.model.task, self.constant_channels, self.model.ambient)
        results = []
        for i in range(len(xn)):
            if self.model.classes:
                c = int(class_indices(self.model, target, outputs[i:i + 1].argmax(axis=1))[0])
                words = f"class {self.model.classes[c]} {self.value.replace('_', '-')}"

                def score(o, c=c):
                    p = softmax(o.astype(np.float64))[:, c]
                    if self.value == "probability":
                        return p
                    # log p - log(1 - p) from the logits, stable where p rounds to 1
                    others = np.delete(o.astype(np.float64), c, axis=1)
                    top = others.max(axis=1, keepdims=True)
                    log_rest = top[:, 0] + np.log(np.exp(others - top).sum(axis=1))
                    return o[:, c].astype(np.float64) - log_rest
            else:
                shape = (1, 1, *xn.shape[2:])
                if target is None or isinstance(target, str):
                    _, weights = parse_target(target, [], shape)
                else:
                    weights = np.broadcast_to(np.asarray(target, np.float32)[i:i + 1], shape)
                words = f"output {target if isinstance(target, str) else 'mean' if target is None else 'weighted'}"

                def score(o, w=weights):
                    return (o.astype(np.float64) * w).reshape(len(o), -1).sum(axis=1)
            with timer.stage("shapley"):
                r = estimate(self.estimator, self._value_fn(xn[i], bases[i], score), self.grid.n,
                             self.budget, self.seed)
            pixel = self.grid.pixel_map(r.values)
            peak = np.abs(pixel).max()
            heat = (np.maximum(pixel, 0) / peak if peak > 0 else np.zeros_like(pixel)).astype(np.float32)
            results.append(Explanation("shap", preds[i], words, pixel, heat, ShapDetails(
                patch_values=r.values, patch_boxes=self.grid.boxes, evaluations=r.evaluations,
                value=r.full_value, baseline_value=r.empty_value, efficiency_gap=r.efficiency_gap,
                estimator=self.estimator, value_kind=self.value if self.model.classes else "output",
                budget=self.budget, seed=self.seed, baseline=self.baseline if isinstance(self.baseline, str) else "user"),
                timings_ms=dict(timer.ms)))
        return results
