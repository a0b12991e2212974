"""Does the classifier look at the defect? Grad-CAM against ground-truth masks, per defect class.

Protocol (documented in the report): correctly classified samples with a mask; the Grad-CAM map of
the true class at input resolution; IoU of the map binarised at >= 0.5 of its maximum with the mask;
relevance mass (share of the map inside the mask); pointing game (the hottest pixel within
`tolerance_px` of the mask; default 8 px, one cell of the 1/8-resolution Grad-CAM layer, because a
1-2 px crack cannot be hit more precisely by a 16x16 map). Also IoU against the mask grown by the same
tolerance, the measure that stays meaningful for defects thinner than a map cell.
"""
from __future__ import annotations

import cv2
import numpy as np

from edge.audit.metrics import BINARISE_FRACTION, binarise, iou, pointing_game, relevance_mass


def grow(mask: np.ndarray, px: int) -> np.ndarray:
    if px <= 0:
        return np.asarray(mask, bool)
    return cv2.dilate(np.asarray(mask, np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)).astype(bool)


def localisation(heatmaps: np.ndarray, masks: np.ndarray, has_mask: np.ndarray, labels: list[str],
                 predicted: list[str], ok_class: str, tolerance_px: int = 8) -> tuple[dict, dict]:
    """Per defect class: iou / grown-mask iou / relevance mass / pointing game (mean, std, n).
    Returns (metrics, per-sample IoU by index) for the report's examples."""
    rows: dict[str, dict[str, list]] = {}
    per_sample = {}
    for i, (lab, pred) in enumerate(zip(labels, predicted)):
        if lab == ok_class or lab != pred or not has_mask[i] or not masks[i].any():
            continue
        heat, mask = heatmaps[i], masks[i]
        b = binarise(heat)
        r = rows.setdefault(lab, {"iou": [], "iou_grown": [], "mass": [], "pointing": []})
        r["iou"].append(iou(b, mask))
        r["iou_grown"].append(iou(b, grow(mask, tolerance_px)))
        r["mass"].append(relevance_mass(heat, mask))
        r["pointing"].append(float(pointing_game(heat, mask, tolerance_px)))
        per_sample[i] = r["iou"][-1]
    out = {}
    for lab, r in sorted(rows.items()):
        out[lab] = {"n": len(r["iou"]),
                    "iou_mean": float(np.mean(r["iou"])), "iou_std": float(np.std(r["iou"])),
                    "iou_grown_mean": float(np.mean(r["iou_grown"])),
                    "relevance_mass_mean": float(np.mean(r["mass"])),
                    "mask_area_share": float(np.mean([masks[i].mean() for i in per_sample if labels[i] == lab])),
                    "pointing_game": float(np.mean(r["pointing"]))}
    return out, per_sample


PROTOCOL = (f"Correctly classified samples with a mask; Grad-CAM of the true class at input resolution; "
            f"binarised at >= {BINARISE_FRACTION} of each map's maximum; IoU with the mask and with the mask "
            "grown by the tolerance; relevance mass = share of the map inside the mask; pointing game = "
            "hottest pixel within the tolerance of the mask.")
