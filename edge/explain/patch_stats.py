"""Physical statistics of an image region, the vocabulary of the natural-language explanations.

Pure functions of the raw channels (physical units) and the pixel pitch. Each statistic is computed on
a window around a patch, on the channels' *detail* (the image minus a Gaussian-blurred copy, sigma 4 px),
so smooth geometry and the part's overall temperature do not count as structure:

- `edge_density`: fraction of window pixels whose detail gradient exceeds 3x the image's median
  gradient, any channel;
- `coherence`: orientation coherence of the dominant channel's structure tensor, (l1 - l2) / (l1 + l2):
  1 for a straight line, 0 for isotropic structure;
- `contrast`: per channel, the window's peak |detail| over the image's robust detail spread (MAD);
- `circularity`: 4 pi A / P^2 of the blob of strongest detail (|detail| >= half its peak) holding the
  peak: ~1 for a round spot, small for a line;
- `blob_area_px`: that blob's area;
- `uniformity`: 1 / (1 + window detail std / image detail std): 0.5 is "as textured as the image";
- `thermal_gradient_k_per_mm`: 95th percentile of the thermal channel's gradient in the window, K/mm
  (needs a channel named `thermal` and the pixel pitch);
- `thermal_peak_k`: the thermal detail at its extreme in the window, signed (K): hot > 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

DETAIL_SIGMA_PX = 4.0


@dataclass
class RegionStats:
    edge_density: float
    coherence: float
    circularity: float
    blob_area_px: int
    uniformity: float
    contrast: dict[str, float] = field(default_factory=dict)
    dominant_channel: str = ""
    thermal_gradient_k_per_mm: float | None = None
    thermal_peak_k: float | None = None


def detail(channel: np.ndarray) -> np.ndarray:
    c = channel.astype(np.float32)
    return c - cv2.GaussianBlur(c, (0, 0), DETAIL_SIGMA_PX, borderType=cv2.BORDER_REFLECT)


def _gradient(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3) / 8.0, cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3) / 8.0)


def _robust_spread(a: np.ndarray) -> float:
    return float(np.median(np.abs(a - np.median(a)))) * 1.4826 + 1e-12


def _blob(strength: np.ndarray) -> tuple[float, int]:
    peak = np.unravel_index(np.argmax(strength), strength.shape)
    binary = (strength >= 0.5 * strength[peak]).astype(np.uint8)
    _, labels = cv2.connectedComponents(binary, connectivity=8)
    blob = (labels == labels[peak]).astype(np.uint8)
    area = int(blob.sum())
    contours, _ = cv2.findContours(blob, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    perimeter = max(cv2.arcLength(max(contours, key=cv2.contourArea), True), 1.0) if contours else 1.0
    # A 1-px blob has perimeter ~0 in OpenCV's polygon sense: count it as a round dot.
    return (1.0 if area <= 2 else float(min(4 * np.pi * area / perimeter**2, 1.0))), area


class ImageContext:
    """Image-wide quantities every region of one frame shares, computed once: each channel's detail,
    its gradient magnitude and median, its robust spread, and the thermal gradient. Medians are taken
    on every second pixel in each direction: a normalisation, and four times cheaper."""

    def __init__(self, channels: dict[str, np.ndarray]):
        self.names = list(channels)
        self.shape = channels[self.names[0]].shape
        self.details, self.mag, self.mag_median, self.spread = {}, {}, {}, {}
        for n, c in channels.items():
            d = detail(c)
            gx, gy = _gradient(d)
            self.details[n] = d
            self.mag[n] = np.hypot(gx, gy)
            self.mag_median[n] = float(np.median(self.mag[n][::2, ::2]))
            self.spread[n] = _robust_spread(d[::2, ::2])
        self.thermal_mag = None
        if "thermal" in channels:
            tx, ty = _gradient(channels["thermal"].astype(np.float32))
            self.thermal_mag = np.hypot(tx, ty)


def region_stats(channels: "dict[str, np.ndarray] | ImageContext", box: tuple[int, int, int, int],
                 pixel_pitch_mm: float | None, window_px: int = 24) -> RegionStats:
    """Statistics of the window of side `window_px` centred on `box` (top, left, bottom, right).
    `channels` may be an ImageContext, to share the image-wide work between regions of one frame."""
    ctx = channels if isinstance(channels, ImageContext) else ImageContext(channels)
    h, w = ctx.shape
    cy, cx = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2
    half = window_px // 2
    t, b = max(cy - half, 0), min(cy + half, h)
    l, r = max(cx - half, 0), min(cx + half, w)
    contrast, edges = {}, np.zeros((b - t, r - l), bool)
    for n, d in ctx.details.items():
        edges |= ctx.mag[n][t:b, l:r] > 3 * (ctx.mag_median[n] + 1e-12)
        contrast[n] = float(np.abs(d[t:b, l:r]).max() / ctx.spread[n])
    dominant = max(contrast, key=contrast.get)
    dw = ctx.details[dominant][t:b, l:r]
    gx, gy = _gradient(dw)
    jxx, jyy, jxy = float((gx * gx).sum()), float((gy * gy).sum()), float((gx * gy).sum())
    root = np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2)
    coherence = float(root / (jxx + jyy)) if jxx + jyy > 0 else 0.0
    circularity, area = _blob(np.abs(dw))
    uniformity = float(1.0 / (1.0 + dw.std() / (ctx.details[dominant].std() + 1e-12)))
    stats = RegionStats(float(edges.mean()), coherence, circularity, area, uniformity, contrast, dominant)
    if "thermal" in ctx.details:
        td = ctx.details["thermal"][t:b, l:r]
        stats.thermal_peak_k = float(td.flat[np.argmax(np.abs(td))])
        if pixel_pitch_mm:
            stats.thermal_gradient_k_per_mm = float(np.percentile(ctx.thermal_mag[t:b, l:r], 95) / pixel_pitch_mm)
    return stats
