"""Defects and their physical signatures across geometry, thermal emission and reflectance.

Each generator returns a `DefectEffect`: what it adds to the height map and to the true temperature, how
it scales emissivity and reflectance, and its pixel mask. The signatures are chosen to be distinct in
kind, not only in size, so that a classifier must look at more than one channel:

| class         | geometry               | thermal                                 | reflectance |
|---------------|------------------------|-----------------------------------------|-------------|
| crack         | narrow, deep line      | sharp step across the line              | dark line   |
| scratch       | long, shallow line     | none of its own                         | bright line |
| pit           | small round depression | local hot spot                          | —           |
| contamination | none                   | emissivity change (apparent only)       | stain       |
| delamination  | 10-30 um bulge         | broad diffuse anomaly (true temperature) | —           |
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from edge.errors import InvalidInput

DEFECT_CLASSES = ("crack", "pit", "contamination", "delamination", "scratch")
OK_CLASS = "ok"
CLASSES = (OK_CLASS,) + DEFECT_CLASSES
# What each simulated defect physically is, in the words of the sentence descriptors (edge.explain.sentence,
# decided from region statistics, never from the label): the audit's "right descriptor" share per class.
DESCRIPTOR_KEYWORDS = {"crack": "crack-like", "pit": "hot spot", "contamination": "contamination-like",
                       "delamination": "delamination", "scratch": "scratch-like"}


@dataclass
class DefectEffect:
    mask: np.ndarray               # bool (H, W): where the defect is
    height_mm: np.ndarray          # added to the surface height
    temperature_k: np.ndarray      # added to the true surface temperature
    emissivity_factor: np.ndarray  # multiplies the emissivity (contamination only)
    reflectance_factor: np.ndarray  # multiplies the albedo

    @classmethod
    def none(cls, size: int) -> "DefectEffect":
        z = np.zeros((size, size), np.float32)
        return cls(z.astype(bool), z, z.copy(), z + 1, z + 1)


def _centre(size: int, rng: np.random.Generator, margin: float = 0.15) -> np.ndarray:
    return rng.uniform(margin * size, (1 - margin) * size, 2)


def _polyline(size: int, rng: np.random.Generator, length_px: float, wiggle_px: float) -> np.ndarray:
    """Points (N, 2) of a slightly bent line of the given length through a random centre."""
    c, angle = _centre(size, rng), rng.uniform(0, np.pi)
    t = np.linspace(-0.5, 0.5, 5)[:, None] * length_px
    d = np.array([np.cos(angle), np.sin(angle)])
    normal = np.array([-d[1], d[0]])
    offsets = rng.normal(0, wiggle_px, (5, 1)) * np.array([[0, 1, 1, 1, 0]]).T
    return c + t * d + offsets * normal


def _draw_line(size: int, pts: np.ndarray, width_px: int) -> np.ndarray:
    canvas = np.zeros((size, size), np.uint8)
    cv2.polylines(canvas, [np.round(pts).astype(np.int32)], False, 1, thickness=width_px)
    return canvas.astype(bool)


def crack(size: int, pitch_mm: float, rng: np.random.Generator) -> DefectEffect:
    pts = _polyline(size, rng, rng.uniform(18, 36), wiggle_px=2.0)
    mask = _draw_line(size, pts, int(rng.integers(1, 3)))
    e = DefectEffect.none(size)
    e.mask = mask
    e.height_mm = np.where(mask, -rng.uniform(0.05, 0.15), 0).astype(np.float32)
    # A crack interrupts heat flow: one side runs warmer than the other, decaying away from the crack.
    dist = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    d = pts[-1] - pts[0]
    side = np.sign((xx - pts[0][0]) * d[1] - (yy - pts[0][1]) * d[0])
    e.temperature_k = (rng.uniform(1.0, 2.5) * side * np.exp(-dist / 4.0)).astype(np.float32)
    e.reflectance_factor = np.where(mask, 0.55, 1.0).astype(np.float32)
    return e


def scratch(size: int, pitch_mm: float, rng: np.random.Generator) -> DefectEffect:
    pts = _polyline(size, rng, rng.uniform(45, 90), wiggle_px=0.5)
    mask = _draw_line(size, pts, 1)
    e = DefectEffect.none(size)
    e.mask = mask
    e.height_mm = np.where(mask, -rng.uniform(0.005, 0.02), 0).astype(np.float32)
    e.reflectance_factor = np.where(mask, rng.uniform(1.25, 1.45), 1.0).astype(np.float32)  # glint
    return e


def pit(size: int, pitch_mm: float, rng: np.random.Generator) -> DefectEffect:
    c, r = _centre(size, rng), rng.uniform(2.0, 4.5)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    rho2 = ((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / r**2
    e = DefectEffect.none(size)
    e.mask = rho2 <= 1.0
    e.height_mm = (-rng.uniform(0.04, 0.12) * np.clip(1 - rho2, 0, None)).astype(np.float32)
    e.temperature_k = (rng.uniform(1.5, 4.0) * np.exp(-rho2 / (2 * 1.5**2))).astype(np.float32)
    return e


def _blob(size: int, rng: np.random.Generator, radius_range: tuple[float, float]) -> np.ndarray:
    """Soft irregular blob in [0, 1]: an ellipse with a noisy, blurred boundary."""
    c = _centre(size, rng)
    axes = rng.uniform(*radius_range, 2)
    canvas = np.zeros((size, size), np.float32)
    centre = tuple(int(v) for v in np.round(c))
    half_axes = tuple(int(v) for v in np.round(axes))
    cv2.ellipse(canvas, centre, half_axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    soft = cv2.GaussianBlur(canvas, (0, 0), 2.0)
    noise = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), 2.5)
    noise /= noise.std() + 1e-6
    # Ragged boundary: noise moves the 0.5 level, and only near the ellipse (a stain has one body).
    near = cv2.GaussianBlur(canvas, (0, 0), 5.0)
    return np.clip((soft - 0.5 + 0.25 * noise * near) * 3.0 + 0.5, 0, 1) * (near > 0.05)


def contamination(size: int, pitch_mm: float, rng: np.random.Generator) -> DefectEffect:
    blob = _blob(size, rng, (6, 13))
    e = DefectEffect.none(size)
    e.mask = blob > 0.5
    e.emissivity_factor = (1 - blob * rng.uniform(0.08, 0.18)).astype(np.float32)
    e.reflectance_factor = (1 - blob * rng.uniform(0.3, 0.5)).astype(np.float32)
    return e


def delamination(size: int, pitch_mm: float, rng: np.random.Generator) -> DefectEffect:
    c, sigma = _centre(size, rng, 0.2), rng.uniform(8, 15)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    g = np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / (2 * sigma**2)).astype(np.float32)
    e = DefectEffect.none(size)
    e.mask = g >= 0.5
    e.temperature_k = (rng.uniform(2.0, 5.0) * g).astype(np.float32)
    # A skin lifted by 10-30 um: invisible to the eye, but deflectometry sees the slope lobes around it.
    e.height_mm = (rng.uniform(0.01, 0.03) * g).astype(np.float32)
    return e


GENERATORS: dict[str, Callable[[int, float, np.random.Generator], DefectEffect]] = {
    "crack": crack, "scratch": scratch, "pit": pit,
    "contamination": contamination, "delamination": delamination,
}


def defect_effect(name: str, size: int, pitch_mm: float, rng: np.random.Generator) -> DefectEffect:
    """The effect of one defect of class `name` (`ok` gives no defect)."""
    if name == OK_CLASS:
        return DefectEffect.none(size)
    if name not in GENERATORS:
        raise InvalidInput(f"unknown defect class {name!r}; expected one of {', '.join(CLASSES)}")
    return GENERATORS[name](size, pitch_mm, rng)
