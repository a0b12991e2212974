"""Does the classifier look at the defect? Grad-CAM against ground-truth masks, per defect class.

Protocol (written into the report): correctly classified samples with a mask; the Grad-CAM map of the
true class at input resolution, binarised at >= 0.5 of its maximum (the seed paper's rule). Measures:

- iou: plain pixel IoU of the binarised map with the mask (the paper's number);
- iou_tolerant: the same region judged at the map's resolution: a map pixel within one Grad-CAM cell
  (`tolerance_px`, the target layer's stride) of the mask is a hit, a mask pixel farther than a cell
  from the map is missed (see metrics.tolerant_iou). The default gate judges this one, because pixel
  IoU cannot reach 0.5 for defects thinner than a cell: a 1-2 px crack under a 16x16 map scores
  ~0.03 even when the map is centred on it;
- iou_grown: IoU with the mask grown by the tolerance (kept for comparison with earlier reports);
- relevance mass (share of the map inside the mask) and pointing game (hottest pixel within the
  tolerance of the mask): threshold-free;
- with box annotations (Pascal VOC, COCO) the mask is the filled boxes, and boxes hit says which share
  of the boxes the binarised map touches (within the tolerance). Boxes are loose (a box around a
  diagonal scratch is mostly clean surface), so the gate judges box-annotated classes by the pointing
  game, not by IoU against the filled box.
"""
from __future__ import annotations

import numpy as np

from edge.audit.metrics import (BINARISE_FRACTION, binarise, boxes_hit, grow, iou, pointing_game, relevance_mass,
                                tolerant_iou)

DEFAULT_TOLERANCE_PX = 8


def cell_tolerance(manifest: dict) -> int:
    """One cell of the Grad-CAM target layer, in input pixels (measured at export; 8 if unknown)."""
    return int(round(manifest.get("gradcam_alignment", {}).get("stride", DEFAULT_TOLERANCE_PX)))


def localisation(heatmaps: np.ndarray, masks: np.ndarray, has_mask: np.ndarray, labels: list[str],
                 predicted: list[str], ok_class: str, tolerance_px: int = DEFAULT_TOLERANCE_PX,
                 boxes: list[list] | None = None, mask_kind: list[str | None] | None = None) -> tuple[dict, dict]:
    """Per defect class: iou / tolerant iou / grown-mask iou / relevance mass / pointing game, and boxes hit
    where the ground truth is boxes. Returns (metrics, per-sample tolerant IoU by index) for the report's
    examples."""
    rows: dict[str, dict[str, list]] = {}
    per_sample = {}
    for i, (lab, pred) in enumerate(zip(labels, predicted)):
        if lab == ok_class or lab != pred or not has_mask[i] or not masks[i].any():
            continue
        heat, mask = heatmaps[i], masks[i]
        b = binarise(heat)
        r = rows.setdefault(lab, {"iou": [], "iou_tolerant": [], "iou_grown": [], "mass": [], "pointing": [],
                                  "boxes_hit": [], "kind": []})
        r["iou"].append(iou(b, mask))
        r["iou_tolerant"].append(tolerant_iou(b, mask, tolerance_px))
        r["iou_grown"].append(iou(b, grow(mask, tolerance_px)))
        r["mass"].append(relevance_mass(heat, mask))
        r["pointing"].append(float(pointing_game(heat, mask, tolerance_px)))
        kind = (mask_kind[i] if mask_kind else None) or "pixel"
        r["kind"].append(kind)
        if kind == "box" and boxes is not None and boxes[i]:
            r["boxes_hit"].append(boxes_hit(b, boxes[i], tolerance_px))
        per_sample[i] = r["iou_tolerant"][-1]
    out = {}
    for lab, r in sorted(rows.items()):
        out[lab] = {"n": len(r["iou"]),
                    "iou_mean": float(np.mean(r["iou"])), "iou_std": float(np.std(r["iou"])),
                    "iou_tolerant_mean": float(np.mean(r["iou_tolerant"])),
                    "iou_tolerant_std": float(np.std(r["iou_tolerant"])),
                    "iou_grown_mean": float(np.mean(r["iou_grown"])),
                    "relevance_mass_mean": float(np.mean(r["mass"])),
                    "mask_area_share": float(np.mean([masks[i].mean() for i in per_sample if labels[i] == lab])),
                    "pointing_game": float(np.mean(r["pointing"])),
                    "tolerance_px": tolerance_px,
                    # what the ground truth is: the gate judges box classes by the pointing game
                    "ground_truth": "box" if r["kind"].count("box") > len(r["kind"]) / 2 else "pixel"}
        if r["boxes_hit"]:
            out[lab]["boxes_hit_mean"] = float(np.mean(r["boxes_hit"]))
    return out, per_sample


def protocol(tolerance_px: int, method: str = "Grad-CAM") -> str:
    """`method`: the map judged, as sentences name it (the model's own CAM method)."""
    return (f"Correctly classified samples with a mask; {method} of the true class at input resolution, "
            f"binarised at >= {BINARISE_FRACTION} of each map's maximum. IoU: plain pixel IoU with the mask. "
            f"Tolerant IoU (judged by the default gate): TP/(TP+FP+FN) where a map pixel within {tolerance_px} px "
            f"(one Grad-CAM cell) of the mask is a hit and a mask pixel farther than that from the map is missed; "
            f"pixel IoU cannot reach 0.5 for defects thinner than a cell. Grown-mask IoU: IoU with the mask grown "
            f"by {tolerance_px} px. Relevance mass: share of the map inside the mask. Pointing game: hottest pixel "
            f"within {tolerance_px} px of the mask. Box annotations (Pascal VOC, COCO) count as filled boxes; "
            f"boxes hit: share of a sample's boxes that the binarised map touches within {tolerance_px} px. "
            f"Boxes are loose, so classes whose ground truth is boxes are gated on the pointing game.")


def choose_cam_method(pointing: dict[str, dict[str, float]], default: str = "gradcam",
                      overlap: dict[str, dict[str, float]] | None = None,
                      where: str = "the validation split") -> tuple[str, str]:
    """The CAM method that localised best on annotated samples: `pointing[method][class]` is its pointing game per
    defect class. Best worst class first, then best mean, then (with `overlap[method][class]`, the tolerant
    IoU per class) the map that covers the annotated defects best: a hundred validation parts often leave
    two methods' pointing games equal at 1.00. Ties after that keep the earlier method (Grad-CAM first).
    `where`: the data judged on, as the reason names it."""
    def score(m: str, v: dict[str, float]) -> tuple[float, ...]:
        s = (min(v.values()), float(np.mean(list(v.values()))))
        return s + (float(np.mean(list(overlap[m].values()))),) if overlap and overlap.get(m) else s

    scored = {m: score(m, v) for m, v in pointing.items() if v}
    if not scored:
        # maps are judged on correctly classified defects only: annotated samples the model gets wrong say
        # nothing about which map localises its decisions
        what = ("no annotated defect classified correctly" if pointing else "no sample with a mask or boxes")
        return default, f"{what} in {where}: Grad-CAM, the family's reference"
    best = max(scored.values())
    method = next(m for m, v in scored.items() if v == best)
    table = "; ".join(f"{m} worst class {v[0]:.2f}, mean {v[1]:.2f}"
                      + (f", tolerant IoU {v[2]:.2f}" if len(v) > 2 else "") for m, v in scored.items())
    return method, f"best pointing game on the masks/boxes of {where} ({table})"


def choose_cam(model, x: np.ndarray, masks: np.ndarray, has_mask: np.ndarray, labels: list[str],
               ok_class: str | None, source: object = "the validation split",
               batch_size: int = 64) -> tuple[str, str, int]:
    """Which Grad-CAM-family map localises this model's decisions best on annotated samples (training's
    validation split, or held-out data given to `edge-xai calibrate --choose-cam`): each method's map of
    the true class, judged as the audit judges it (pointing game per class, then tolerant IoU; correctly
    classified defects only), and `choose_cam_method`'s rule. Returns (method, why, samples judged)."""
    from edge.explain import GradCAMExplainer
    from edge.explain.cam import METHODS

    keep = np.array([i for i in range(len(x)) if has_mask[i] and masks[i].any()], np.int64)
    pointing: dict[str, dict[str, float]] = {}
    overlap: dict[str, dict[str, float]] = {}
    if len(keep):
        kept = [labels[i] for i in keep]
        target = model.class_indices(kept, source)
        for method in METHODS:
            explainer = GradCAMExplainer(model, method)
            es = [e for s in range(0, len(keep), batch_size)
                  for e in explainer.explain(x[keep[s:s + batch_size]], target[s:s + batch_size])]
            rows, _ = localisation(np.stack([e.heatmap for e in es]), masks[keep], has_mask[keep], kept,
                                   [e.prediction.label for e in es], ok_class, cell_tolerance(model.manifest))
            pointing[method] = {c: r["pointing_game"] for c, r in rows.items()}
            overlap[method] = {c: r["iou_tolerant_mean"] for c, r in rows.items()}
    method, why = choose_cam_method(pointing, overlap=overlap, where=str(source))
    return method, why, len(keep)
