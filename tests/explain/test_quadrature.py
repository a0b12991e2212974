"""Quadrature rules, with n = 2 or 3 and no model."""
import numpy as np
import pytest

from edge.explain.quadrature import METHODS, quadrature_rule


def _integrate(method, n, f):
    a, w = quadrature_rule(method, n)
    return float(np.sum(w * f(a)))


def test_gauss_legendre_is_exact_to_degree_2n_minus_1():
    for n in (2, 3):
        for degree in range(2 * n):
            assert _integrate("gausslegendre", n, lambda a: a**degree) == pytest.approx(1 / (degree + 1), abs=1e-14)
    # ...and not beyond: degree 2n is off.
    assert abs(_integrate("gausslegendre", 2, lambda a: a**4) - 0.2) > 1e-3


def test_gauss_legendre_three_point_nodes():
    a, w = quadrature_rule("gausslegendre", 3)
    np.testing.assert_allclose(a, [0.5 - np.sqrt(0.15), 0.5, 0.5 + np.sqrt(0.15)])
    np.testing.assert_allclose(w, [5 / 18, 8 / 18, 5 / 18])


def test_riemann_rules_by_hand_for_n_2():
    assert quadrature_rule("riemann_left", 2)[0].tolist() == [0.0, 0.5]
    assert quadrature_rule("riemann_right", 2)[0].tolist() == [0.5, 1.0]
    assert quadrature_rule("riemann_middle", 2)[0].tolist() == [0.25, 0.75]
    a, w = quadrature_rule("riemann_trapezoid", 2)
    assert a.tolist() == [0.0, 1.0] and w.tolist() == [0.5, 0.5]


@pytest.mark.parametrize("method", ["riemann_middle", "riemann_trapezoid"])
def test_midpoint_and_trapezoid_are_exact_for_lines(method):
    assert _integrate(method, 3, lambda a: 3 * a + 1) == pytest.approx(2.5, abs=1e-14)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "captum_trapezoid"])
def test_weights_sum_to_one_and_nodes_lie_in_the_interval(method):
    a, w = quadrature_rule(method, 7)
    assert w.sum() == pytest.approx(1.0)
    assert a.min() >= 0 and a.max() <= 1


def test_captum_trapezoid_reproduces_its_short_weights():
    a, w = quadrature_rule("captum_trapezoid", 4)
    np.testing.assert_allclose(a, np.linspace(0, 1, 4))
    np.testing.assert_allclose(w, [1 / 8, 1 / 4, 1 / 4, 1 / 8])


def test_convergence_order_on_a_smooth_integrand():
    f = np.exp
    exact = np.e - 1
    err = {n: abs(_integrate("riemann_middle", n, f) - exact) for n in (4, 8)}
    assert err[4] / err[8] == pytest.approx(4, rel=0.05)  # second order
    assert abs(_integrate("gausslegendre", 4, f) - exact) < 1e-7


@pytest.mark.parametrize("method, n", [("nope", 3), ("riemann_trapezoid", 1), ("gausslegendre", 0), ("riemann_left", 2.5)])
def test_bad_arguments_are_named(method, n):
    with pytest.raises(ValueError, match=method if method == "nope" else "points"):
        quadrature_rule(method, n)
