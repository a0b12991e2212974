"""Deflectometry phase and reflectance images of a shaped surface.

Phase-measuring deflectometry observes fringes reflected by the surface; the fringe phase shifts in
proportion to the local surface slope along the fringe direction (x here). The camera only sees the
phase modulo 2*pi, which is why a phase-unwrapping model is needed.
"""
from __future__ import annotations

import numpy as np

LIGHT_DIRECTION = np.array([0.35, -0.25, 1.0]) / np.linalg.norm([0.35, -0.25, 1.0])


def wrap_phase(phase_rad: np.ndarray) -> np.ndarray:
    """Wrap to (-pi, pi] so that `phase - wrapped` is an exact multiple of 2*pi."""
    return (phase_rad - 2 * np.pi * np.ceil((phase_rad - np.pi) / (2 * np.pi))).astype(np.float32)


def fringe_order(unwrapped_rad: np.ndarray, wrapped_rad: np.ndarray) -> np.ndarray:
    """Integer fringe order k with unwrapped = wrapped + 2*pi*k (rounded, so estimates work too)."""
    return np.rint((unwrapped_rad - wrapped_rad) / (2 * np.pi)).astype(np.int32)


def reflectance_image(slope_x: np.ndarray, slope_y: np.ndarray, albedo: np.ndarray) -> np.ndarray:
    """Lambertian shading under one oblique light, in [0, 1]."""
    norm = np.sqrt(1.0 + slope_x**2 + slope_y**2)
    l = LIGHT_DIRECTION
    shading = (-slope_x * l[0] - slope_y * l[1] + l[2]) / norm
    return np.clip(albedo * np.clip(shading, 0, None) / l[2], 0, 1).astype(np.float32)
