"""Patch grids for SHAP: which pixels each player owns, and how a coalition becomes a masked image.

Pure NumPy. Patches of `size` px every `stride` px (overlapping when stride < size); the last row and
column of patches are moved in so the grid always reaches the image border. A pixel covered by k
patches belongs to each in equal share 1/k, which makes a coalition a soft mask: the fraction of a
pixel's patches that are present. Per-pixel maps spread each patch's value evenly over its pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _starts(length: int, size: int, stride: int) -> list[int]:
    if size > length:
        raise ValueError(f"patch size {size} exceeds the image side {length}")
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


@dataclass
class PatchGrid:
    height: int
    width: int
    size: int = 8
    stride: int = 4

    def __post_init__(self) -> None:
        if self.size < 1 or self.stride < 1:
            raise ValueError(f"patch size {self.size} and stride {self.stride} must be >= 1")
        rows, cols = _starts(self.height, self.size, self.stride), _starts(self.width, self.size, self.stride)
        self.boxes = np.array([(r, c, r + self.size, c + self.size) for r in rows for c in cols], np.int64)
        m = np.zeros((len(self.boxes), self.height, self.width), np.float32)
        for j, (t, l, b, r) in enumerate(self.boxes):
            m[j, t:b, l:r] = 1.0
        coverage = m.sum(axis=0)
        self.share = m / coverage        # (P, H, W): each patch's share of every pixel; sums to 1 per pixel
        self._flat_share = self.share.reshape(len(self.boxes), -1)
        self._member = m.reshape(len(self.boxes), -1)

    @property
    def n(self) -> int:
        return len(self.boxes)

    def presence(self, coalitions: np.ndarray) -> np.ndarray:
        """(B, P) booleans -> (B, H, W) fraction of each pixel's patches that are present."""
        return (coalitions.astype(np.float32) @ self._flat_share).reshape(len(coalitions), self.height, self.width)

    def masked(self, x: np.ndarray, baseline: np.ndarray, coalitions: np.ndarray) -> np.ndarray:
        """x, baseline (C, H, W) -> (B, C, H, W): x where present, the baseline where absent."""
        keep = self.presence(coalitions)[:, None]
        return (baseline[None] + keep * (x - baseline)[None]).astype(np.float32)

    def pixel_map(self, values: np.ndarray) -> np.ndarray:
        """Patch values (P,) -> per-pixel map (H, W): each patch's value spread evenly over its pixels,
        so the map sums to values.sum() (Shapley efficiency carries over to pixels)."""
        spread = np.asarray(values, np.float64) / (self.size * self.size)
        return (spread @ self._member).reshape(self.height, self.width).astype(np.float32)

    def centre(self, j: int) -> tuple[float, float]:
        t, l, b, r = self.boxes[j]
        return (t + b - 1) / 2, (l + r - 1) / 2

    def pool(self, pixel_map: np.ndarray, how: str = "mean") -> np.ndarray:
        """(H, W) map -> (P,) per patch: the mean or the sum of the map over each patch's box."""
        sums = self._member @ np.asarray(pixel_map, np.float32).reshape(-1)
        return sums / (self.size * self.size) if how == "mean" else sums
