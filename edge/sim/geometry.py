"""Height maps of inspected surfaces (millimetres), one generator per geometry type.

Every generator takes the image size, the pixel pitch and a seeded Generator and returns a float32
height map in mm. Edges are softened with a Gaussian of ~1.5 px: real surfaces have finite radii, and
deflectometry needs continuous slopes (Itoh's condition) for its phase to be unwrappable at all.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from edge.errors import InvalidInput

GEOMETRIES = ("flat", "v_groove", "cavity", "cylinder", "step", "combined")

# Softening of geometric edges in pixels: wider than the 1 px of a cut edge, so that slopes stay
# continuous and the deflectometric phase changes by < pi between neighbouring pixels.
EDGE_SOFTENING_PX = 1.5
CONCAVITY_SMOOTHING_PX = 3.0   # a view factor depends on the shape around a point


def _coords(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Signed distances (px) along and across a random direction through a random point."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    cx, cy = rng.uniform(0.3 * size, 0.7 * size, 2)
    across = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
    along = -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
    return across, along


def flat(size: int, pitch_mm: float, rng: np.random.Generator) -> np.ndarray:
    return np.zeros((size, size), np.float32)


def v_groove(size: int, pitch_mm: float, rng: np.random.Generator) -> np.ndarray:
    across, _ = _coords(size, rng)
    half_width_px = rng.uniform(8, 22)
    # Wall slope between 0.15 and 0.45 (8..24 degrees): steep enough to tilt emissivity.
    depth_mm = rng.uniform(0.15, 0.45) * half_width_px * pitch_mm
    return (-depth_mm * np.clip(1 - np.abs(across) / half_width_px, 0, None)).astype(np.float32)


def cavity(size: int, pitch_mm: float, rng: np.random.Generator) -> np.ndarray:
    across, along = _coords(size, rng)
    half_w, half_l = rng.uniform(10, 24), rng.uniform(12, 30)
    wall_px = rng.uniform(3, 6)  # sidewall run; depth/run sets the sidewall slope
    depth_mm = rng.uniform(0.3, 0.8) * wall_px * pitch_mm
    inside = np.minimum(half_w - np.abs(across), half_l - np.abs(along))
    return (-depth_mm * np.clip(inside / wall_px, 0, 1)).astype(np.float32)


def cylinder(size: int, pitch_mm: float, rng: np.random.Generator) -> np.ndarray:
    across, _ = _coords(size, rng)
    radius_px = rng.uniform(0.9, 1.6) * size
    sign = rng.choice([-1.0, 1.0])  # convex boss or concave channel
    u = np.clip(across, -0.95 * radius_px, 0.95 * radius_px)
    h_px = np.sqrt(radius_px**2 - u**2) - radius_px
    return (sign * h_px * pitch_mm).astype(np.float32)


def step(size: int, pitch_mm: float, rng: np.random.Generator) -> np.ndarray:
    across, _ = _coords(size, rng)
    run_px = rng.uniform(3, 6)
    height_mm = rng.uniform(0.3, 0.8) * run_px * pitch_mm * rng.choice([-1.0, 1.0])
    return (height_mm * np.clip(across / run_px + 0.5, 0, 1)).astype(np.float32)


def combined(size: int, pitch_mm: float, rng: np.random.Generator) -> np.ndarray:
    names = rng.choice(["v_groove", "cavity", "cylinder", "step"], size=2, replace=False)
    return sum(GENERATORS[str(n)](size, pitch_mm, rng) for n in names).astype(np.float32)


GENERATORS: dict[str, Callable[[int, float, np.random.Generator], np.ndarray]] = {
    "flat": flat, "v_groove": v_groove, "cavity": cavity, "cylinder": cylinder,
    "step": step, "combined": combined,
}


def height_map(geometry: str, size: int, pitch_mm: float, rng: np.random.Generator) -> np.ndarray:
    """Softened height map (mm) of shape (size, size) for a named geometry."""
    if geometry not in GENERATORS:
        raise InvalidInput(f"unknown geometry {geometry!r}; expected one of {', '.join(GEOMETRIES)}")
    h = GENERATORS[geometry](size, pitch_mm, rng)
    # The blur's own border (even reflection) flattened every slope that reaches the frame's edge, which
    # drew a 3-4 px bright or dark line along that edge on cylinders and grooves; tiled inspection of
    # 2048 px frames of such parts called it a scratch (2026-11-30).
    pad = _reach(EDGE_SOFTENING_PX)
    return cv2.GaussianBlur(_past_the_frame(h, pad), (0, 0), EDGE_SOFTENING_PX)[pad:-pad, pad:-pad]


def _reach(sigma_px: float, extra: int = 0) -> int:
    """How far (px) a Gaussian blur of sigma_px (OpenCV's kernel: 4 sigma each side), plus `extra` px of a
    further filter, reads past a pixel."""
    return int(np.ceil(4 * sigma_px)) + 1 + extra


def _past_the_frame(height_mm: np.ndarray, pad: int) -> np.ndarray:
    """The surface extended by `pad` px on every side by odd reflection, which continues a slope (a plane
    stays that plane): the part goes on past the frame, it neither stops nor folds back at its edge.
    Filters run on this and are cut back to the frame; pixels farther than `pad` from the edge are
    exactly what the filter gives without it."""
    return np.pad(height_mm, pad, mode="reflect", reflect_type="odd")


def slopes(height_mm: np.ndarray, pitch_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Dimensionless surface slopes (dh/dx, dh/dy) by central differences."""
    gy, gx = np.gradient(height_mm, pitch_mm)
    return gx.astype(np.float32), gy.astype(np.float32)


def concavity(height_mm: np.ndarray, pitch_mm: float) -> np.ndarray:
    """Positive where the surface is concave (valleys, inner corners), 1/mm; zero elsewhere.

    The Laplacian is taken on a 3 px smoothed surface: a view factor depends on the shape around a point,
    not on a single pixel's curvature.
    """
    # the blur's and the Laplacian's mirror border turned a slope that runs on past the edge into a valley
    # there (fake concavity, up to 7/mm along the edges of cylinder frames against 0.03/mm inside)
    pad = _reach(CONCAVITY_SMOOTHING_PX, extra=1)
    smooth = cv2.GaussianBlur(_past_the_frame(height_mm, pad), (0, 0), CONCAVITY_SMOOTHING_PX)
    lap = cv2.Laplacian(smooth, cv2.CV_32F, ksize=3)[pad:-pad, pad:-pad] / (pitch_mm**2)
    return np.maximum(lap, 0).astype(np.float32)


def edge_map(height_mm: np.ndarray, pitch_mm: float, curvature_threshold_per_mm: float = 0.5) -> np.ndarray:
    """Legitimate geometric edges (uint8 0/1) of a defect-free surface: where its slope changes fast.

    Curvature, not slope: a gently inclined cylinder is not an edge, a groove bottom or a cavity rim is.
    """
    gx, gy = slopes(height_mm, pitch_mm)
    gxy, gxx = np.gradient(gx, pitch_mm)
    gyy, gyx = np.gradient(gy, pitch_mm)
    curvature = np.sqrt(gxx**2 + gyy**2 + gxy**2 + gyx**2)
    # The image border is no edge of the part: the one-sided differences there bend the curvature.
    b = 5
    curvature[:b], curvature[-b:], curvature[:, :b], curvature[:, -b:] = 0, 0, 0, 0
    return (curvature > curvature_threshold_per_mm).astype(np.uint8)
