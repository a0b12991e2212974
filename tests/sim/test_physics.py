"""The physics in pure functions: emissivity, radiometry, phase wrapping."""
import numpy as np
import pytest

from edge.sim import optics, thermal


def test_camera_reads_true_temperature_at_normal_emissivity():
    t = np.array([300.0, 340.0, 400.0], np.float32)
    out = thermal.apparent_temperature(t, np.full(3, 0.9, np.float32), 0.9, 293.15)
    np.testing.assert_allclose(out, t, rtol=1e-6)


def test_lower_emissivity_reads_colder_on_a_hot_part_and_warmer_on_a_cold_one():
    eps = np.float32(0.7)
    assert thermal.apparent_temperature(np.float32(350.0), eps, 0.9, 293.15) < 350.0
    assert thermal.apparent_temperature(np.float32(280.0), eps, 0.9, 293.15) > 280.0


def test_directional_emissivity_falls_with_tilt():
    slopes = np.array([0.0, 0.3, 1.0, 3.0], np.float32)
    eps = thermal.directional_emissivity(slopes, np.zeros_like(slopes), 0.9)
    assert eps[0] == pytest.approx(0.9)
    assert np.all(np.diff(eps) < 0)


def test_cavity_effect_raises_emissivity_towards_one():
    eps = np.full(3, 0.8, np.float32)
    out = thermal.cavity_emissivity(eps, np.array([0.0, 1.0, 100.0], np.float32))
    assert out[0] == pytest.approx(0.8)
    assert 0.8 < out[1] < out[2] <= 1.0


def test_wrap_phase_range_and_exact_multiples():
    phase = np.linspace(-20, 20, 10001).astype(np.float32)
    w = optics.wrap_phase(phase)
    assert w.min() > -np.pi - 1e-6 and w.max() <= np.pi + 1e-6
    k = (phase - w) / (2 * np.pi)
    np.testing.assert_allclose(k, np.round(k), atol=1e-4)
    assert optics.wrap_phase(np.float32(np.pi)) == pytest.approx(np.pi)


def test_fringe_order_recovers_the_multiple():
    w = np.array([0.5, -3.0, 3.0], np.float32)
    k = np.array([0, 2, -1])
    assert optics.fringe_order(w + 2 * np.pi * k, w).tolist() == k.tolist()
