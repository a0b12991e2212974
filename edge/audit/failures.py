"""Failure modes of misclassified samples (seed paper 4.4), each with the remedy an engineer can act on."""
from __future__ import annotations

import numpy as np

from edge.audit.metrics import binarise, grow, relevance_mass

REMEDIES = {
    "false alarm on a geometric edge": "add defect-free parts with this geometry to training; consider the "
                                       "phase channel's weight at edges",
    "false alarm elsewhere": "inspect the frames for sensor artifacts or unlabelled defects",
    "missed defect, attention off the defect": "more examples of this defect class, or a larger input size "
                                               "for small defects",
    "missed defect, attention on the defect": "the model saw it but was not confident: recalibrate the threshold",
    "class confusion": "more examples separating these two classes",
}


def failure_modes(heatmaps: np.ndarray, labels: list[str], predicted: list[str], masks: np.ndarray,
                  has_mask: np.ndarray, edge_maps: list[np.ndarray | None], ok_class: str) -> dict:
    rows = []
    for i, (lab, pred) in enumerate(zip(labels, predicted)):
        if lab == pred:
            continue
        heat = heatmaps[i]
        if lab == ok_class:
            em = edge_maps[i]
            on_edge = None
            if em is not None and em.any():
                hot = binarise(heat)
                on_edge = float((hot & grow(em, 2)).sum() / max(hot.sum(), 1))
            kind = "false alarm on a geometric edge" if on_edge is not None and on_edge >= 0.5 else "false alarm elsewhere"
            rows.append({"index": i, "true": lab, "predicted": pred, "kind": kind, "edge_overlap": on_edge})
        elif pred == ok_class:
            mass = relevance_mass(heat, grow(masks[i], 8)) if has_mask[i] and masks[i].any() else None
            kind = ("missed defect, attention on the defect" if mass is not None and mass >= 0.5
                    else "missed defect, attention off the defect")
            rows.append({"index": i, "true": lab, "predicted": pred, "kind": kind, "mass_on_defect": mass})
        else:
            rows.append({"index": i, "true": lab, "predicted": pred, "kind": "class confusion"})
    summary = {}
    for r in rows:
        key = r["kind"] if r["kind"] != "class confusion" else f"class confusion {r['true']} -> {r['predicted']}"
        s = summary.setdefault(key, {"count": 0, "remedy": REMEDIES[r["kind"]], "examples": []})
        s["count"] += 1
        if len(s["examples"]) < 3:
            s["examples"].append(r["index"])
    return {"misclassified": len(rows), "modes": summary}
