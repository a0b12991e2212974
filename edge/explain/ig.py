"""Integrated Gradients with a batched path: all interpolation points in one gradient call (or a few,
under a memory cap), through any function that returns outputs and input gradients — the ONNX
`input_gradient` graph on the edge.

    result = integrated_gradients(grad_fn, x, baseline, target, n_steps=50, method="gausslegendre")
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from edge.explain.ig_math import completeness_delta, interpolation_batch, reduce_path
from edge.explain.quadrature import quadrature_rule

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


def _score(outputs: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The scalar the gradient graphs differentiate: sum(output * target) per sample."""
    return (outputs.astype(np.float64) * target).reshape(len(outputs), -1).sum(axis=1)


def integrated_gradients(grad_fn: GradFn, x: np.ndarray, baseline: np.ndarray, target: np.ndarray,
                         n_steps: int = 50, method: str = "gausslegendre",
                         internal_batch_size: int | None = None) -> IGResult:
    """IG of sum(F(x) * target) for a batch x (N, C, H, W) against a baseline of the same shape.

    `internal_batch_size` caps how many interpolated inputs go through one call (memory); by default
    all n_steps * N points go in one call.
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
    ends, _ = grad_fn(np.concatenate([x, baseline]), np.concatenate([target, target]))
    f = _score(ends, np.concatenate([target, target]))
    f_x, f_b = f[:len(x)], f[len(x):]
    delta, rel = completeness_delta(total, f_x, f_b)
    return IGResult(attributions, delta, rel, f_x, f_b, n_steps, method)
