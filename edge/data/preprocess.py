"""Pre-processing shared by training and the runtime (NumPy + OpenCV only, never torch).

One code path for both sides is what keeps a deployed model seeing what it was trained on.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edge.errors import InvalidInput

NORMALISATION_MODES = ("per_image", "centred", "dataset", "in_graph")
# Floor for a channel's standard deviation: a flat channel (a defect-free flat part's phase) must not
# blow noise up to unit variance.
MIN_STD = 1e-3


@dataclass
class Normalisation:
    """How raw channels become model input.

    per_image: each image's channels standardised by their own mean/std (brightness varies per part);
    centred:   each image's channel mean removed, then divided by a fixed per-channel std from the
               training set. For physical channels: the part's overall temperature or albedo says
               nothing about defects, but a 3 K hot spot must stay 3 K whatever the rest of the image;
    dataset:   fixed per-channel mean/std from the training set;
    in_graph:  the ONNX graph takes physical units and normalises inside (regression models).
    """
    mode: str
    mean: list[float] | None = None
    std: list[float] | None = None

    def __post_init__(self) -> None:
        if self.mode not in NORMALISATION_MODES:
            raise InvalidInput(f"normalisation mode {self.mode!r}; expected one of {NORMALISATION_MODES}")
        if self.mode == "dataset" and (self.mean is None or self.std is None):
            raise InvalidInput("dataset normalisation needs mean and std per channel")
        if self.mode == "centred" and self.std is None:
            raise InvalidInput("centred normalisation needs a std per channel")

    def apply(self, x: np.ndarray) -> np.ndarray:
        """x: (N, C, H, W) float32 in physical units -> model input (N, C, H, W) float32."""
        x = np.asarray(x, np.float32)
        if self.mode == "in_graph":
            return x
        # Each mode works in one new array (no second copy): on every call of every graph, and every
        # training batch. per_image is x.std()'s own arithmetic on deviations it keeps, so bit-identical to
        # (x - mean) / x.std() and half the time (46 -> 29 us at 1x1x128x128, 8.2 -> 4.1 ms at 64x3x128x128).
        if self.mode == "per_image":
            d = x - x.mean(axis=(2, 3), keepdims=True)
            d /= np.maximum(np.sqrt(np.square(d).mean(axis=(2, 3), keepdims=True)), MIN_STD)
            return d
        if self.mode == "centred":
            d = x - x.mean(axis=(2, 3), keepdims=True)
        else:
            d = x - np.asarray(self.mean, np.float32)[None, :, None, None]
        d /= self._std(x)
        return d

    def _std(self, x: np.ndarray) -> np.ndarray:
        std = np.asarray(self.std, np.float32)[None, :, None, None]
        if std.shape[1] != x.shape[1]:
            raise ValueError(f"normalisation has {std.shape[1]} channels, input has {x.shape[1]}")
        return std

    @classmethod
    def fit(cls, x: np.ndarray, mode: str = "dataset") -> "Normalisation":
        """Statistics of (N, C, H, W) raw inputs for the `dataset` or `centred` mode."""
        if mode == "centred":
            x = x - x.mean(axis=(2, 3), keepdims=True)
        mean = x.mean(axis=(0, 2, 3), dtype=np.float64)
        std = np.maximum(x.std(axis=(0, 2, 3), dtype=np.float64), MIN_STD)
        if mode == "centred":
            return cls("centred", None, [float(v) for v in std])
        return cls("dataset", [float(v) for v in mean], [float(v) for v in std])

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}
