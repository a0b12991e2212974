"""Integrated Gradients with a batched path: all interpolation points in one gradient call (or a few,
under a memory cap), through any function that returns outputs and input gradients: on the edge, the
exported `input_gradient` graph.

    result = integrated_gradients(grad_fn, x, baseline, target, n_steps=50, method="gausslegendre")
    result = adaptive_integrated_gradients(grad_fn, x, baseline, target, tolerance=0.01, budget_ms=200)
    [e] = IGExplainer(Model.load("models/thermal")).explain(x, target=roi_weights)

On an engine that keeps its outputs on the GPU (`run_device`), IGExplainer makes the points, runs the
gradient graph and reduces along the path on the device (`kernels/ig.cu`, `IGExplainer._device_ig`);
`integrated_gradients` below is the host path and the oracle.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from edge.data.arrays import SCALAR_PLANES
from edge.errors import InvalidInput
from edge.explain.base import Explainer, Explanation, IGDetails, Timer, class_indices, predictions
from edge.explain.baselines import default_baseline, make_baseline
from edge.explain.cuda import device_kernels
from edge.explain.ig_math import completeness_delta, interpolation_batch, reduce_path
from edge.explain.quadrature import quadrature_rule
from edge.explain.targets import class_target, parse_target
from edge.runtime.model import Model

# grad_fn(inputs (B, C, H, W), target (B, ...)) -> (outputs, d score / d inputs)
GradFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class IGResult:
    attributions: np.ndarray     # (N, C, H, W), in output units per input
    delta: np.ndarray            # (N,) |sum IG - (F(x) - F(x'))|
    relative_delta: np.ndarray   # (N,) delta / |F(x) - F(x')|
    score: np.ndarray            # (N,) F(x)
    baseline_score: np.ndarray   # (N,) F(x')
    n_steps: int
    method: str
    gradient_evaluations: int = 0   # interpolation points evaluated, over all adaptive rounds
    converged: bool | None = None   # adaptive mode only: the tolerance was reached within the budget


def _score(outputs: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The scalar the gradient graphs differentiate: sum(output * target) per sample."""
    return (outputs.astype(np.float64) * target).reshape(len(outputs), -1).sum(axis=1)


def endpoint_scores(grad_fn: GradFn, x: np.ndarray, baseline: np.ndarray, target: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """F(x) and F(x') in one call (the completeness check's right-hand side)."""
    both = np.concatenate([target, target])
    ends, _ = grad_fn(np.concatenate([x, baseline]), both)
    f = _score(ends, both)
    return f[:len(x)], f[len(x):]


def integrated_gradients(grad_fn: GradFn, x: np.ndarray, baseline: np.ndarray, target: np.ndarray,
                         n_steps: int = 50, method: str = "gausslegendre",
                         internal_batch_size: int | None = None,
                         endpoints: tuple[np.ndarray, np.ndarray] | None = None) -> IGResult:
    """IG of sum(F(x) * target) for a batch x (N, C, H, W) against a baseline of the same shape.

    `internal_batch_size` caps how many interpolated inputs go through one call (memory); by default
    all n_steps * N points go in one call. `endpoints` reuses F(x), F(x') already computed.
    """
    x = np.asarray(x, np.float32)
    baseline = np.broadcast_to(np.asarray(baseline, np.float32), x.shape)
    target = np.asarray(target, np.float32)
    alphas, weights = quadrature_rule(method, n_steps)
    points = interpolation_batch(x, baseline, alphas)
    targets = np.broadcast_to(target[None], (n_steps, *target.shape)).reshape(-1, *target.shape[1:])
    chunk = internal_batch_size or len(points)
    grads = np.concatenate([grad_fn(points[i:i + chunk], targets[i:i + chunk])[1]
                            for i in range(0, len(points), chunk)])
    attributions, total = reduce_path(grads, weights, x, baseline)
    f_x, f_b = endpoints if endpoints is not None else endpoint_scores(grad_fn, x, baseline, target)
    delta, rel = completeness_delta(total, f_x, f_b)
    return IGResult(attributions, delta, rel, f_x, f_b, n_steps, method, gradient_evaluations=len(points))


def adaptive_integrated_gradients(grad_fn: GradFn, x: np.ndarray, baseline: np.ndarray, target: np.ndarray,
                                  tolerance: float = 0.01, budget_ms: float | None = None,
                                  start_steps: int = 4, max_steps: int = 256, method: str = "gausslegendre",
                                  internal_batch_size: int | None = None,
                                  endpoints: tuple[np.ndarray, np.ndarray] | None = None) -> list[IGResult]:
    """IG with M doubled from `start_steps`, per sample, until its relative completeness delta is
    <= `tolerance`, M would exceed `max_steps`, or the next round would overrun `budget_ms` (its cost
    predicted from the last round's time per point). Samples that converged leave the batch, so one
    hard sample does not make the others pay. Gauss-Legendre nodes are not nested, so each round
    starts afresh; doubling keeps the total cost under twice the final round's.

    Returns one single-sample IGResult per input, `converged` saying whether its tolerance was met and
    `gradient_evaluations` counting its points over all rounds."""
    t0 = time.perf_counter()
    x = np.asarray(x, np.float32)
    baseline = np.broadcast_to(np.asarray(baseline, np.float32), x.shape)
    target = np.asarray(target, np.float32)
    f_x, f_b = endpoints if endpoints is not None else endpoint_scores(grad_fn, x, baseline, target)
    results: list[IGResult | None] = [None] * len(x)
    evaluations = np.zeros(len(x), np.int64)
    todo, m = np.arange(len(x)), start_steps
    while len(todo):
        t_round = time.perf_counter()
        r = integrated_gradients(grad_fn, x[todo], baseline[todo], target[todo], m, method, internal_batch_size,
                                 (f_x[todo], f_b[todo]))
        evaluations[todo] += m
        ok = r.relative_delta <= tolerance
        last = 2 * m > max_steps
        if budget_ms is not None and not last:
            spent = (time.perf_counter() - t0) * 1e3
            next_round = 2 * (time.perf_counter() - t_round) * 1e3 * (~ok).sum() / len(todo)
            last = spent + next_round > budget_ms
        for k, i in enumerate(todo):
            if ok[k] or last:
                results[i] = IGResult(r.attributions[k:k + 1], r.delta[k:k + 1], r.relative_delta[k:k + 1],
                                      r.score[k:k + 1], r.baseline_score[k:k + 1], m, method,
                                      int(evaluations[i]), bool(ok[k]))
        todo = todo[~ok] if not last else todo[:0]
        m *= 2
    return results


QUANTITIES = ("output", "correction")


class IGExplainer(Explainer):
    """IG through the model's `input_gradient` graph, in the graph's input space.

    Targets: a class (classifier; default the predicted one) or an output weighting (regression;
    default the mean over the whole output, or "pixel:R,C" / "roi:T:B,L:R" / an (N, 1, H, W) array).
    The per-pixel map sums the attribution over channels; per-channel maps are in `details.per_channel`.

    quantity (regression models whose output is an input channel plus a learnt correction, manifest
    `output.residual_channel`; default the model's `explained_quantity`):
    - "output": the weighted output itself, e.g. the mean corrected temperature;
    - "correction": the size of the correction the model makes, sum(weights * |output - input[c]|),
      with the signs taken at x (so the explained score is linear in the output along the path and
      completeness holds exactly). Why: the corrected temperature is mostly the apparent one, and a
      frame's positive corrections (cavities look hotter) and negative ones (grazing slopes look colder)
      cancel in a signed mean; what an engineer asks is where the part made a correction necessary.
      Exact from the same graph: d(output - input[c])/d input = input_grad minus the weights on channel
      c, so no second graph is exported.
    """
    method = "ig"

    def __init__(self, model: Model, n_steps: int = 50, quadrature: str = "gausslegendre",
                 baseline: str | np.ndarray | None = None, internal_batch_size: int | None = None,
                 tolerance: float | None = None, budget_ms: float | None = None, quantity: str | None = None):
        super().__init__(model)
        quadrature_rule(quadrature, n_steps)   # fail now on a bad rule, not after the first call
        self.n_steps, self.quadrature = n_steps, quadrature
        self.baseline = default_baseline(model) if baseline is None else baseline
        self.internal_batch_size = internal_batch_size
        self.tolerance, self.budget_ms = tolerance, budget_ms
        self._kernels = None          # the CUDA kernels, once looked up (False: the host path)
        self.constant_channels = tuple(i for i, c in enumerate(model.channels) if c in SCALAR_PLANES)
        self.quantity = quantity or model.explained_quantity
        if self.quantity not in QUANTITIES:
            raise InvalidInput(f"quantity {self.quantity!r}: expected one of {', '.join(QUANTITIES)}")
        if self.quantity == "correction" and model.residual_channel is None:
            raise InvalidInput(f"quantity 'correction': model {model.dir} does not say which input channel its "
                               "output corrects (manifest output.residual_channel); explain its output instead")

    def _explained(self, out: np.ndarray, inputs: np.ndarray) -> np.ndarray:
        """The explained quantity from the graph's output at `inputs`: the output, or (quantity
        "correction") the correction it makes, output - input[c]."""
        if self.quantity != "correction":
            return out
        c = self.model.residual_channel
        return out - inputs[:, c:c + 1]

    def _forward(self, inputs: np.ndarray) -> np.ndarray:
        """The explained quantity at `inputs`, from the predict graph."""
        return self._explained(self.model.run("predict", {"input": inputs})[0], inputs)

    def _grad_fn(self, inputs: np.ndarray, target: np.ndarray):
        out, grad = self.model.run("input_gradient", {"input": inputs, "target": target})
        if self.quantity == "correction":
            # the correction is output - input[c]: its gradient is the output's minus the weights on c
            grad = grad.copy()
            grad[:, self.model.residual_channel] -= target[:, 0]
        return self._explained(out, inputs), grad

    def _device_ig(self, xn: np.ndarray, base: np.ndarray, weights: np.ndarray,
                   endpoints: tuple[np.ndarray, np.ndarray]) -> IGResult | None:
        """The batched path on the GPU: the interpolation points made, differentiated and reduced in the
        engine's device memory (kernels/ig.cu, the input_gradient graph through `run_device`), so the
        M x N x C x H x W points and their gradients never cross to the host. None where it does not apply:
        a host engine or no kernel launcher, the correction quantity (its gradient is adjusted on the host),
        or more points than one engine call takes (internal_batch_size, the engine's max_batch)."""
        n_points = self.n_steps * len(xn)
        engine = self.model.engine
        if (self.quantity == "correction" or (self.internal_batch_size or n_points) < n_points
                or n_points > getattr(engine, "max_batch", n_points)):
            return None
        if self._kernels is None:
            self._kernels = device_kernels(engine) or False
        if not self._kernels:
            return None
        k = self._kernels
        alphas, w = quadrature_rule(self.quadrature, self.n_steps)
        dx, db = k.upload(xn), k.upload(base)
        points = k.ig_interpolate(dx, db, alphas)
        targets = np.broadcast_to(weights[None], (self.n_steps, *weights.shape)).reshape(-1, *weights.shape[1:])
        k.check()          # the points are complete before the engine reads them (ONNX Runtime: its own stream)

        def reduce(outs):
            # inside the engine call, on its own gradient buffer (M x N x C x H x W: no copy of it)
            attributions, totals = k.ig_reduce(outs["input_grad"], w, dx, db)
            k.check()
            return attributions.get(), totals.get()

        attributions, totals = engine.run_device("input_gradient", {"input": points,
                                                                    "target": np.ascontiguousarray(targets, np.float32)},
                                                 consume=reduce)
        f_x, f_b = endpoints
        delta, rel = completeness_delta(totals, f_x, f_b)
        return IGResult(attributions, delta, rel, f_x, f_b, self.n_steps, self.quadrature,
                        gradient_evaluations=n_points)

    def _targets(self, outputs: np.ndarray, target) -> tuple[np.ndarray, list[str]]:
        """Target weights from the outputs at x (the predicted class needs them) and the target spec."""
        if self.model.classes:
            idx = class_indices(self.model, target, outputs.argmax(axis=1))
            return class_target(len(self.model.classes), idx), [f"class {self.model.classes[i]}" for i in idx]
        shape = outputs.shape
        if target is None or isinstance(target, str):
            _, weights = parse_target(target, [], shape)
            words = target or "mean"
        else:
            weights = np.broadcast_to(np.asarray(target, np.float32), shape).copy()
            words = "weighted"
        if self.quantity == "correction":
            # outputs are the corrections here (see _grad_fn): weigh each pixel by its sign at x
            weights = (weights * np.sign(outputs)).astype(np.float32)
            return weights, [f"|correction| {words}"] * len(outputs)
        return weights, [f"output {words}"] * len(outputs)

    def explain(self, x: np.ndarray, target=None) -> list[Explanation]:
        timer = Timer()
        xn = self.prepare(x, timer)
        n = len(xn)
        with timer.stage("baseline"):
            base = make_baseline(xn, self.baseline, self.model.task, self.constant_channels, self.model.ambient)
        with timer.stage("predict"):
            # One forward of x and x' together, through the predict graph: the prediction, the
            # predicted-class target, and the completeness check's F(x) - F(x'). (Until 2026-11-30 through
            # the input-gradient graph, whose backward pass it then threw away: when ONNX Runtime's
            # threads spun after a call, another session's pool slowed the 50-point call that followed by
            # 20 % on 2 cores; the engines no longer spin. Same outputs bit for bit; at batch 2 on the
            # 2-core CPU 1.5 ms against 4.0 for the classifier, 3.0 against 7.8 for the thermal model.)
            both = self._forward(np.concatenate([xn, base]))
        outputs = both[:n]
        weights, words = self._targets(outputs, target)
        endpoints = (_score(outputs, weights), _score(both[n:], weights))
        with timer.stage("ig"):
            if self.tolerance is not None:
                per = adaptive_integrated_gradients(self._grad_fn, xn, base, weights, self.tolerance, self.budget_ms,
                                                    method=self.quadrature, internal_batch_size=self.internal_batch_size,
                                                    endpoints=endpoints)
            else:
                r = self._device_ig(xn, base, weights, endpoints) or integrated_gradients(
                    self._grad_fn, xn, base, weights, self.n_steps, self.quadrature, self.internal_batch_size,
                    endpoints)
                per = [IGResult(r.attributions[i:i + 1], r.delta[i:i + 1], r.relative_delta[i:i + 1],
                                r.score[i:i + 1], r.baseline_score[i:i + 1], r.n_steps, r.method, r.n_steps)
                       for i in range(n)]
        if self.quantity == "correction":        # the answer is the model's output, not its correction
            c = self.model.residual_channel
            outputs = outputs + xn[:, c:c + 1]
        preds = predictions(self.model, outputs)
        out = []
        for i, (p, r) in enumerate(zip(preds, per)):
            a = r.attributions[0].sum(axis=0)
            peak = np.abs(a).max()
            heat = (np.abs(a) / peak if peak > 0 else np.zeros_like(a)).astype(np.float32)
            out.append(Explanation("ig", p, words[i], a, heat, IGDetails(
                per_channel=r.attributions[0], channels=self.model.channels,
                completeness_delta=float(r.delta[0]), relative_completeness_delta=float(r.relative_delta[0]),
                score=float(r.score[0]), baseline_score=float(r.baseline_score[0]),
                n_steps=r.n_steps, quadrature=r.method, gradient_evaluations=r.gradient_evaluations,
                converged=r.converged, baseline=self.baseline if isinstance(self.baseline, str) else "user"),
                timings_ms=dict(timer.ms)))
        return out
