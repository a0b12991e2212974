"""Shapley values of a cooperative game, the maths behind patch SHAP, with no model in sight.

A game is `value_fn(coalitions) -> values`: a batch of boolean rows (B, n) (True = player present)
to their values (B,). Every estimator asks for whole batches, so the caller can push them through an
inference engine in one call, and counts its evaluations against a budget.

    phi = exact_shapley(value_fn, n)                                   # 2^n evaluations, n <= 20
    phi = permutation_shapley(value_fn, n, budget=2000, seed=0)        # antithetic permutations
    phi = kernel_shap(value_fn, n, budget=2000, seed=0)                # weighted least squares

All three are efficient: sum(phi) = v(all) - v(none), exactly for `exact_shapley` and
`permutation_shapley` (each permutation's marginals telescope) and for `kernel_shap` by its constraint.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import comb
from typing import Callable

import numpy as np

from edge.errors import InvalidInput

ValueFn = Callable[[np.ndarray], np.ndarray]
ESTIMATORS = ("kernel", "permutation", "exact")


@dataclass
class ShapleyResult:
    values: np.ndarray          # (n,) phi per player
    empty_value: float          # v(none)
    full_value: float           # v(all)
    evaluations: int            # calls to the game, counted per coalition

    @property
    def efficiency_gap(self) -> float:
        return abs(float(self.values.sum()) - (self.full_value - self.empty_value))


def exact_shapley(value_fn: ValueFn, n: int) -> ShapleyResult:
    """phi_i = sum over S not containing i of |S|! (n-|S|-1)! / n! (v(S + i) - v(S)), by enumeration."""
    if n > 20:
        raise InvalidInput(f"exact Shapley values enumerate 2^n coalitions; n = {n} is too many (max 20)")
    codes = np.arange(2 ** n)
    coalitions = ((codes[:, None] >> np.arange(n)) & 1).astype(bool)
    v = np.asarray(value_fn(coalitions), np.float64)
    sizes = coalitions.sum(axis=1)
    phi = np.zeros(n)
    for i in range(n):
        without = ~coalitions[:, i]
        s = sizes[without]
        weight = 1.0 / (n * np.array([comb(n - 1, k) for k in s], np.float64))
        phi[i] = (weight * (v[codes[without] | (1 << i)] - v[without])).sum()
    return ShapleyResult(phi, float(v[0]), float(v[-1]), len(codes))


def _ends(value_fn: ValueFn, n: int) -> tuple[float, float]:
    v = np.asarray(value_fn(np.array([np.zeros(n, bool), np.ones(n, bool)])), np.float64)
    return float(v[0]), float(v[1])


def permutation_shapley(value_fn: ValueFn, n: int, budget: int, seed: int = 0, batch: int = 256) -> ShapleyResult:
    """Monte-Carlo over permutations with antithetic pairs (each permutation and its reverse): a player
    early in one is late in the other, which cancels much of the position noise. One permutation costs
    n - 1 evaluations (the empty and full coalitions are shared), so the budget buys
    2 * floor((budget - 2) / (2 (n - 1))) permutations, at least one pair."""
    rng = np.random.default_rng(seed)
    v_empty, v_full = _ends(value_fn, n)
    pairs = max(1, (budget - 2) // (2 * max(n - 1, 1)))
    total = np.zeros(n)
    evaluations = 2
    perms = []
    for _ in range(pairs):
        p = rng.permutation(n)
        perms += [p, p[::-1]]
    # Coalitions along each permutation after 1..n-1 players joined, all permutations in order.
    rows = []
    for p in perms:
        c = np.zeros((n - 1, n), bool)
        for k in range(1, n):
            c[k - 1:, p[k - 1]] = True
        rows.append(c)
    coalitions = np.concatenate(rows) if n > 1 else np.zeros((0, n), bool)
    values = np.concatenate([np.asarray(value_fn(coalitions[i:i + batch]), np.float64)
                             for i in range(0, len(coalitions), batch)]) if len(coalitions) else np.zeros(0)
    evaluations += len(coalitions)
    values = values.reshape(len(perms), max(n - 1, 0))
    for p, v in zip(perms, values):
        chain = np.concatenate([[v_empty], v, [v_full]])
        total[p] += np.diff(chain)
    return ShapleyResult(total / len(perms), v_empty, v_full, evaluations)


def kernel_shap(value_fn: ValueFn, n: int, budget: int, seed: int = 0, batch: int = 256) -> ShapleyResult:
    """KernelSHAP (Lundberg & Lee 2017): coalitions drawn with the Shapley kernel's size distribution
    p(s) ∝ (n - 1) / (s (n - s)), each with its complement (paired sampling halves the variance), then
    least squares of v(z) - v(none) on z under the efficiency constraint, which is eliminated by
    substituting phi_n = (v(all) - v(none)) - sum of the others. With fewer samples than players the
    least-squares problem is underdetermined and lstsq returns its minimum-norm solution."""
    if n < 2:
        v_empty, v_full = _ends(value_fn, n)
        return ShapleyResult(np.array([v_full - v_empty])[:n], v_empty, v_full, 2)
    rng = np.random.default_rng(seed)
    v_empty, v_full = _ends(value_fn, n)
    sizes = np.arange(1, n)
    p = (n - 1) / (sizes * (n - sizes))
    p /= p.sum()
    half = max(1, (budget - 2) // 2)
    s = rng.choice(sizes, size=half, p=p)
    z = np.zeros((half, n), bool)
    for r, k in enumerate(s):
        z[r, rng.choice(n, size=k, replace=False)] = True
    z = np.concatenate([z, ~z])
    v = np.concatenate([np.asarray(value_fn(z[i:i + batch]), np.float64) for i in range(0, len(z), batch)])
    delta = v_full - v_empty
    zf = z.astype(np.float64)
    y = v - v_empty - zf[:, -1] * delta
    X = zf[:, :-1] - zf[:, -1:]
    head, *_ = np.linalg.lstsq(X, y, rcond=None)
    phi = np.append(head, delta - head.sum())
    return ShapleyResult(phi, v_empty, v_full, 2 + len(z))


def estimate(estimator: str, value_fn: ValueFn, n: int, budget: int, seed: int = 0) -> ShapleyResult:
    if estimator == "exact":
        return exact_shapley(value_fn, n)
    if estimator == "permutation":
        return permutation_shapley(value_fn, n, budget, seed)
    if estimator == "kernel":
        return kernel_shap(value_fn, n, budget, seed)
    raise InvalidInput(f"unknown Shapley estimator {estimator!r}; expected one of {', '.join(ESTIMATORS)}")
