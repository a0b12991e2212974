"""The audit's measures as pure functions of arrays: no model, no files. Each is tested on tiny arrays.

Localisation of a heatmap against a ground-truth mask:
    iou(binarise(heat), mask)          # binarisation rule: heat >= 0.5 of the image's maximum
    tolerant_iou(binarise(heat), mask, px)   # IoU where "near" (within px) counts as overlapping
    relevance_mass(heat, mask)         # share of the (non-negative) heat inside the mask
    pointing_game(heat, mask)          # does the hottest pixel fall inside the mask (+ tolerance)?
    boxes_hit(binarise(heat), boxes, px)     # share of annotated boxes the map touches
Physics: pearson(a, b). Faithfulness: perturbation_curve + auc. Stability: cosine_similarity.
Operator agreement: wilson_interval.
"""
from __future__ import annotations

import math
from typing import Callable

import cv2
import numpy as np

BINARISE_FRACTION = 0.5


def binarise(heat: np.ndarray, fraction: float = BINARISE_FRACTION) -> np.ndarray:
    """Pixels at or above `fraction` of the map's maximum; an all-zero map selects nothing."""
    peak = float(np.max(heat))
    if peak <= 0:
        return np.zeros(heat.shape, bool)
    return heat >= fraction * peak


def grow(mask: np.ndarray, px: int) -> np.ndarray:
    """The mask dilated by `px` pixels (a (2px+1)-square structuring element)."""
    if px <= 0:
        return np.asarray(mask, bool)
    return cv2.dilate(np.asarray(mask, np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)).astype(bool)


def tolerant_iou(region: np.ndarray, mask: np.ndarray, tolerance_px: int) -> float:
    """IoU at a stated resolution: TP / (TP + FP + FN), where a region pixel within `tolerance_px` of
    the mask is a hit (else a false positive) and a mask pixel farther than that from the region is
    missed. With tolerance 0 it is the plain IoU. Why: a map computed on a coarse grid cannot place
    its edge more precisely than one cell, so pixel IoU against a 1-px crack is bounded far below 0.5
    even for a map centred on it; the tolerance is the map's cell, the same idea as the tolerance of
    boundary precision/recall in segmentation benchmarks."""
    region, mask = np.asarray(region, bool), np.asarray(mask, bool)
    if tolerance_px <= 0:
        return iou(region, mask)
    near_mask = grow(mask, tolerance_px)
    tp = int((region & near_mask).sum())
    fp = int((region & ~near_mask).sum())
    fn = int((mask & ~grow(region, tolerance_px)).sum())
    return 1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks; two empty masks agree perfectly (1.0)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def relevance_mass(heat: np.ndarray, mask: np.ndarray) -> float:
    """Share of the positive heat inside the mask (threshold-free; 0 for an empty map)."""
    h = np.maximum(np.asarray(heat, np.float64), 0)
    total = h.sum()
    return 0.0 if total <= 0 else float(h[np.asarray(mask, bool)].sum() / total)


def pointing_game(heat: np.ndarray, mask: np.ndarray, tolerance_px: int = 0) -> bool:
    """Whether the map's maximum lies inside the mask grown by `tolerance_px` (tiny defects are a few
    pixels wide; a map at 1/8 resolution can only point to within a cell)."""
    m = np.asarray(mask, np.uint8)
    if tolerance_px > 0:
        k = 2 * tolerance_px + 1
        m = cv2.dilate(m, np.ones((k, k), np.uint8))
    r, c = np.unravel_index(int(np.argmax(heat)), np.shape(heat))
    return bool(m[r, c])


def boxes_hit(region: np.ndarray, boxes: list, tolerance_px: int = 0) -> float:
    """Share of annotated boxes that the binarised map touches (within `tolerance_px`): does the map mark
    every defect, not only the strongest one? Boxes as (x0, y0, x1, y1) pixel bounds (half-open)."""
    if not len(boxes):
        return float("nan")
    region = np.asarray(region, bool)
    h, w = region.shape
    hit = 0
    for b in boxes:
        x0, y0, x1, y1 = (b.as_list() if hasattr(b, "as_list") else b)
        r0, r1 = max(int(np.floor(y0)) - tolerance_px, 0), min(int(np.ceil(y1)) + tolerance_px, h)
        c0, c1 = max(int(np.floor(x0)) - tolerance_px, 0), min(int(np.ceil(x1)) + tolerance_px, w)
        hit += bool(region[r0:r1, c0:c1].any())
    return hit / len(boxes)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two maps; NaN when either is constant (no correlation is defined)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    sa, sb = a.std(), b.std()
    if sa == 0 or sb == 0:
        return float("nan")
    return float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb))


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float("nan") if na == 0 or nb == 0 else float(a @ b / (na * nb))


def ranks(a: np.ndarray) -> np.ndarray:
    """1-based ranks of a's values (flattened), ties given their average rank."""
    _, inverse, counts = np.unique(np.asarray(a).ravel(), return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts - 1) / 2)[inverse.ravel()]


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps (ties averaged): 0 for unrelated maps whatever their
    spread. The cosine of two non-negative maps is not: two unrelated maps that each cover much of the
    image have a cosine near 0.75 (0.70 between NEU-DET maps of different images)."""
    return pearson(ranks(a), ranks(b))


def perturbation_curve(score_fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, baseline: np.ndarray,
                       order: np.ndarray, steps: int = 20, insertion: bool = False) -> np.ndarray:
    """Scores as pixels are deleted from x (set to the baseline) or inserted into the baseline, most
    important first (`order`: flat pixel indices, all channels of a pixel together). Returns
    steps + 1 scores, from 0 % to 100 % of the pixels changed; one batched score_fn call."""
    c, h, w = x.shape
    fractions = np.linspace(0, 1, steps + 1)
    batch = np.empty((steps + 1, c, h, w), np.float32)
    start, end = (baseline, x) if insertion else (x, baseline)
    for k, f in enumerate(fractions):
        flat = start.reshape(c, -1).copy()
        idx = order[: int(round(f * h * w))]
        flat[:, idx] = end.reshape(c, -1)[:, idx]
        batch[k] = flat.reshape(c, h, w)
    return np.asarray(score_fn(batch), np.float64)


def random_map_order(shape: tuple[int, int], cell: int, rng: np.random.Generator) -> np.ndarray:
    """Flat pixel order (most important first) of a random map as smooth as the explained ones: uniform
    noise on a grid of one value per `cell` x `cell` pixels (the Grad-CAM layer's cell), upsampled
    bilinearly as the maps are. It is the comparator of the deletion and insertion curves: a random
    pixel order changes one pixel in twenty at the first step, everywhere, and a classifier of textured
    surfaces reacts to that speckle itself, wherever a map points. Measured in the audits of
    docs/real/README.md (60 defect samples each, map order / random pixels / this order): simulated
    defects on real solar-cell texture, deletion AUC 0.250 / 0.227 / 0.303 (the pixel order called the
    map unfaithful); tiles of large frames, insertion 0.706 / 0.750 / 0.582. Where the map's own
    perturbation is no artefact the two random orders agree (NEU-DET deletion 0.438 / 0.644 / 0.665).
    With the same shape of perturbation on both sides, the curves differ by where the map points only."""
    import cv2

    h, w = shape
    cell = max(1, int(cell))
    grid = rng.random((-(-h // cell), -(-w // cell))).astype(np.float32)
    smooth = cv2.resize(grid, (w, h), interpolation=cv2.INTER_LINEAR)
    # ties (flat stretches) broken at random, not in raster order
    return np.lexsort((rng.random(h * w), -smooth.ravel()))


def auc(curve: np.ndarray) -> float:
    """Area under a curve sampled evenly on [0, 1] (trapezoid rule)."""
    y = np.asarray(curve, np.float64)
    return float(((y[1:] + y[:-1]) / 2).sum() / (len(y) - 1))


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion (95 % by default); (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
