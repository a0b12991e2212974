"""What an explanation explains: the weighting the gradient graphs differentiate, score = sum(output * target).

    class_target(6, [2, 0])              # (2, 6) one-hot: the class logits of CRACK and OK
    pixel_target((1, 1, 128, 128), 40, 90)   # the output at pixel (40, 90)
    roi_target((1, 1, 128, 128), mask)   # the mean output over a region

Pure functions; `parse_target` turns the CLI / request text into one of them.
"""
from __future__ import annotations

import re

import numpy as np

from edge.errors import InvalidInput


def class_target(num_classes: int, classes) -> np.ndarray:
    """One-hot (N, K) for class indices."""
    idx = np.atleast_1d(np.asarray(classes, np.int64))
    if (idx < 0).any() or (idx >= num_classes).any():
        raise InvalidInput(f"class index {idx.tolist()} outside 0..{num_classes - 1}")
    return np.eye(num_classes, dtype=np.float32)[idx]


def pixel_target(output_shape: tuple[int, ...], row: int, col: int) -> np.ndarray:
    """(N, 1, H, W) selecting the output at one pixel of every sample."""
    n, c, h, w = output_shape
    if not (0 <= row < h and 0 <= col < w):
        raise InvalidInput(f"pixel ({row}, {col}) outside the {h}x{w} output")
    t = np.zeros(output_shape, np.float32)
    t[:, :, row, col] = 1.0
    return t


def roi_target(output_shape: tuple[int, ...], mask: np.ndarray) -> np.ndarray:
    """(N, 1, H, W) weighting 1/|ROI| inside the region: the score is the ROI's mean output."""
    mask = np.asarray(mask, bool)
    if mask.shape != tuple(output_shape[2:]):
        raise InvalidInput(f"ROI mask of shape {mask.shape}, expected {tuple(output_shape[2:])}")
    if not mask.any():
        raise InvalidInput("empty ROI: the region selects no pixel")
    t = np.zeros(output_shape, np.float32)
    t[:, :] = mask / mask.sum()
    return t


def box_mask(size: tuple[int, int], top: int, left: int, bottom: int, right: int) -> np.ndarray:
    """Boolean (H, W) mask of rows top..bottom-1 and columns left..right-1."""
    h, w = size
    if not (0 <= top < bottom <= h and 0 <= left < right <= w):
        raise InvalidInput(f"box rows {top}:{bottom}, columns {left}:{right} not inside {h}x{w}")
    m = np.zeros(size, bool)
    m[top:bottom, left:right] = True
    return m


def parse_target(text: str | None, classes: list[str], output_shape: tuple[int, ...]):
    """Target text -> ("class", index | None) or ("weights", array).

    Classifier: a class name or index; None means the predicted class.
    Regression: "pixel:ROW,COL", "roi:TOP:BOTTOM,LEFT:RIGHT", or None / "mean" for the whole image.
    """
    if classes:
        if text is None or text == "predicted":
            return "class", None
        if text in classes:
            return "class", classes.index(text)
        if text.isdigit() and int(text) < len(classes):
            return "class", int(text)
        raise InvalidInput(f"target {text!r}: not a class of this model ({', '.join(classes)}) or an index "
                           f"0..{len(classes) - 1}")
    if text is None or text == "mean":
        return "weights", roi_target(output_shape, np.ones(output_shape[2:], bool))
    m = re.fullmatch(r"pixel:(\d+),(\d+)", text)
    if m:
        return "weights", pixel_target(output_shape, int(m[1]), int(m[2]))
    m = re.fullmatch(r"roi:(\d+):(\d+),(\d+):(\d+)", text)
    if m:
        top, bottom, left, right = map(int, m.groups())
        return "weights", roi_target(output_shape, box_mask(output_shape[2:], top, left, bottom, right))
    raise InvalidInput(f"target {text!r}: a regression model takes 'mean', 'pixel:ROW,COL' or "
                       "'roi:TOP:BOTTOM,LEFT:RIGHT'")
