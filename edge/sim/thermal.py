"""Infrared thermography of a shaped surface: emissivity from geometry, apparent temperature, ground truth.

An IR camera calibrated for the material's normal emissivity reads a flat surface correctly. Where the
surface tilts, emissivity falls (directional emissivity of dielectric coatings and oxides); where it is
concave, the surface sees itself and multiple reflections raise the effective emissivity toward 1 (the
cavity / view-factor effect). Either makes the apparent temperature differ from the true one, and that
difference is what the thermal reconstruction model must undo.

Radiance uses the broadband Stefan–Boltzmann form (L ∝ T⁴): enough to get the direction and size of the
geometric errors right without a spectral camera model.
"""
from __future__ import annotations

import numpy as np

# Exponent of the cosine fall-off of directional emissivity. 1.0 is between a diffuse paint (~0.5) and
# an oxidised metal (~2): about -8 % at 25 degrees and -22 % at 40 degrees.
DIRECTIONAL_EXPONENT = 1.0
# Length (mm) that turns a concavity (1/mm) into a cavity factor: a V-groove bottom or an inner corner
# of ~1/mm curvature gains about half of its missing emissivity.
CAVITY_LENGTH_MM = 0.7


def directional_emissivity(slope_x: np.ndarray, slope_y: np.ndarray, emissivity_normal: float) -> np.ndarray:
    """Emissivity seen by a camera looking straight down at a surface with the given slopes."""
    cos_theta = 1.0 / np.sqrt(1.0 + slope_x**2 + slope_y**2)  # cosine of the tilt angle
    return (emissivity_normal * cos_theta**DIRECTIONAL_EXPONENT).astype(np.float32)


def cavity_emissivity(emissivity: np.ndarray, concavity_per_mm: np.ndarray) -> np.ndarray:
    """Effective emissivity of a concave region: a fraction of the missing emissivity is recovered."""
    view_factor = 1.0 - np.exp(-CAVITY_LENGTH_MM * concavity_per_mm)
    return (emissivity + (1.0 - emissivity) * view_factor).astype(np.float32)


def apparent_temperature(true_k: np.ndarray, emissivity: np.ndarray, emissivity_normal: float,
                         env_k: float) -> np.ndarray:
    """Temperature (K) that a camera calibrated for `emissivity_normal` reports.

    Measured radiance: eps*T^4 + (1-eps)*T_env^4 (emission + reflected surroundings); the camera inverts
    it with eps_n and the same T_env, so eps == eps_n gives back T exactly.
    """
    t4 = (emissivity / emissivity_normal) * (true_k**4 - env_k**4) + env_k**4
    return np.power(np.maximum(t4, 1.0), 0.25, dtype=np.float32)


def true_temperature(size: int, rng: np.random.Generator,
                     level_k: tuple[float, float] = (330.0, 380.0)) -> np.ndarray:
    """A heated part: a uniform level (drawn from `level_k`, default 330–380 K) with a gentle linear
    gradient of up to ±3 K."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    base = rng.uniform(*level_k)
    gx, gy = rng.uniform(-3.0, 3.0, 2)
    return (base + gx * xx + gy * yy).astype(np.float32)
