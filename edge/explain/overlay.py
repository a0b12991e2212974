"""Drawing, kept apart from computing: a heatmap blended over one input channel, as an 8-bit BGR image.

    bgr = overlay(x[0, channel], explanation.heatmap, opacity=0.45)
    cv2.imwrite("overlay.png", bgr)
"""
from __future__ import annotations

import cv2
import numpy as np

from edge.errors import InvalidInput


def to_gray8(channel: np.ndarray) -> np.ndarray:
    """A physical-unit plane to 8-bit gray, stretched between its 1st and 99th percentiles (a few hot
    pixels must not flatten the rest of the part)."""
    lo, hi = np.percentile(channel, [1, 99])
    if hi <= lo:
        return np.zeros(channel.shape, np.uint8)
    return (np.clip((channel - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def heatmap8(heat: np.ndarray) -> np.ndarray:
    """[0, 1] map to uint8 (the service's 8-bit PNG heatmap)."""
    return (np.clip(heat, 0, 1) * 255 + 0.5).astype(np.uint8)


def overlay(channel: np.ndarray, heat: np.ndarray, opacity: float = 0.45) -> np.ndarray:
    """(H, W) channel and (H, W) heat in [0, 1] -> (H, W, 3) uint8 BGR, turbo colour map."""
    if channel.shape != heat.shape:
        raise ValueError(f"channel {channel.shape} and heatmap {heat.shape} differ in size")
    if not 0 <= opacity <= 1:
        raise InvalidInput(f"opacity {opacity} outside [0, 1]")
    gray = cv2.cvtColor(to_gray8(channel), cv2.COLOR_GRAY2BGR)
    colour = cv2.applyColorMap(heatmap8(heat), cv2.COLORMAP_TURBO)
    return cv2.addWeighted(colour, opacity, gray, 1 - opacity, 0)
