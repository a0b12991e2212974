"""Integrated Gradients arithmetic, the NumPy twin of `kernels/ig.cu`.

    batch = interpolation_batch(x, baseline, alphas)           # (M*N, C, H, W), point-major
    attributions, total = reduce_path(grads, weights, x, baseline)

IG_i(x) = (x_i - x'_i) * integral_0^1 dF(x' + a (x - x'))/dx_i da  ≈  (x_i - x'_i) * sum_m w_m g_m,i.
Completeness: sum_i IG_i = F(x) - F(x'); the gap measures the quadrature error.
"""
from __future__ import annotations

import numpy as np


def interpolation_batch(x: np.ndarray, baseline: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Points x' + a_m (x - x') for every alpha, stacked point-major: row m*N + n is (alpha m, sample n)."""
    alphas = np.asarray(alphas, np.float32).reshape(-1, 1, 1, 1, 1)
    return (baseline[None] + alphas * (x - baseline)[None]).reshape(-1, *x.shape[1:]).astype(np.float32)


def reduce_path(grads: np.ndarray, weights: np.ndarray, x: np.ndarray, baseline: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Point-major gradients (M*N, C, H, W) -> attributions (N, C, H, W) and their sums (N,)."""
    m = len(weights)
    g = grads.reshape(m, -1, *x.shape[1:]).astype(np.float64)
    avg = np.tensordot(np.asarray(weights, np.float64), g, axes=(0, 0))
    attributions = ((x - baseline) * avg).astype(np.float32)
    return attributions, attributions.reshape(len(x), -1).sum(axis=1, dtype=np.float64)


def completeness_delta(total: np.ndarray, f_x: np.ndarray, f_baseline: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Absolute and relative |sum IG - (F(x) - F(x'))| per sample."""
    diff = np.asarray(f_x, np.float64) - np.asarray(f_baseline, np.float64)
    delta = np.abs(np.asarray(total, np.float64) - diff)
    return delta, delta / np.maximum(np.abs(diff), 1e-12)
