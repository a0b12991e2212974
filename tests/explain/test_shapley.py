"""Shapley estimators on games with known answers: no model involved."""
import numpy as np
import pytest

from edge.explain.shapley import estimate, exact_shapley, kernel_shap, permutation_shapley


def game(n=8, seed=0):
    """Linear part + one pairwise and one triple interaction: Shapley values in closed form."""
    rng = np.random.default_rng(seed)
    w, pair, triple = rng.normal(size=n), rng.normal(), rng.normal()

    def v(c):
        c = c.astype(float)
        return c @ w + pair * c[:, 0] * c[:, 1] + triple * c[:, 2] * c[:, 3] * c[:, 4]

    phi = w.copy()
    phi[[0, 1]] += pair / 2          # an interaction is shared equally by its players
    phi[[2, 3, 4]] += triple / 3
    return v, phi


@pytest.mark.parametrize("n", [1, 3, 8, 10])
def test_exact_matches_closed_form(n):
    v, phi = game(max(n, 5))
    if n < 5:   # a smaller game: a pure linear one
        w = np.arange(1, n + 1, dtype=float)
        v, phi = (lambda c: c.astype(float) @ w), w
    r = exact_shapley(v, len(phi))
    np.testing.assert_allclose(r.values, phi, atol=1e-6)
    assert r.efficiency_gap < 1e-9
    assert r.evaluations == 2 ** len(phi)


def test_exact_refuses_huge_games():
    with pytest.raises(ValueError, match="too many"):
        exact_shapley(lambda c: c.sum(1), 21)


@pytest.mark.parametrize("estimator", [kernel_shap, permutation_shapley])
def test_sampled_estimators_converge_and_are_efficient(estimator):
    v, phi = game(10, seed=3)
    errors = []
    for budget in (100, 1000, 10000):
        r = estimator(v, 10, budget, seed=1)
        assert r.evaluations <= budget
        assert r.efficiency_gap < 1e-9          # efficient by construction, at any budget
        errors.append(np.abs(r.values - phi).max())
    assert errors[2] < errors[0] / 3 and errors[2] < 0.02, errors


@pytest.mark.parametrize("estimator", ["kernel", "permutation"])
def test_sampled_estimators_are_deterministic_given_a_seed(estimator):
    v, _ = game(8)
    a, b = estimate(estimator, v, 8, 500, seed=7), estimate(estimator, v, 8, 500, seed=7)
    np.testing.assert_array_equal(a.values, b.values)
    c = estimate(estimator, v, 8, 500, seed=8)
    assert not np.array_equal(a.values, c.values)


def test_additive_games_are_exact_for_kernel_shap_at_any_budget():
    w = np.random.default_rng(2).normal(size=30)
    r = kernel_shap(lambda c: c.astype(float) @ w + 5.0, 30, budget=200, seed=0)
    np.testing.assert_allclose(r.values, w, atol=1e-8)


def test_agrees_with_the_shap_library_on_the_same_game():
    """shap's KernelExplainer on the same masked function: both within sampling error of the truth,
    and of each other."""
    shap = pytest.importorskip("shap")
    v, phi = game(10, seed=5)
    ours = kernel_shap(v, 10, budget=1024, seed=0).values
    explainer = shap.KernelExplainer(lambda z: v(z > 0.5), np.zeros((1, 10)))
    theirs = explainer.shap_values(np.ones((1, 10)), nsamples=1024, silent=True)[0]
    np.testing.assert_allclose(theirs, phi, atol=0.05)   # at 1024 >= 2^10 samples shap enumerates
    np.testing.assert_allclose(ours, phi, atol=0.05)
    np.testing.assert_allclose(ours, theirs, atol=0.08)
