"""Does a heatmap point at something the model does not use? A small bright spot (a glint, a speck of dust,
a sensor mark) is pasted onto correctly classified defect images, away from the defect, and each CAM
method's map of the true class is asked where its maximum lies. A faithful map stays on the defect when
the spot leaves the answer alone.

Why: on the shortcut experiment's marked frames (docs/shortcut/), element-wise Grad-CAM of the shipped
classifier put its maximum on the sensor mark for 69 of 100 crack frames where HiResCAM put it there for
none, and training's CAM choice, which judges clean validation images, cannot see that. This measures the
same blind spot on any model and annotated set, with a distractor the model never saw.

    python docs/real/distractor_check.py MODEL DATA [--limit 400] [--seed 0] [--out result.json]

The spot: a square of about 1/25 of the input's side (at least 3 px), every channel set to its image's
mean + 4 standard deviations, placed at random where it keeps a Grad-CAM cell's distance from the mask.
Reported per method: the share of maps whose maximum lies on the spot (within the audit's one-cell
tolerance), over all images and over those whose answer the spot left unchanged (where the spot did
change the answer, a map on it may be right), and the pointing game on the defect with the spot present;
and what the spot does to the answers (labels changed, the true class's mean probability before and
after).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from edge.audit.localisation import cell_tolerance
from edge.audit.metrics import pointing_game
from edge.data.arrays import load_arrays
from edge.explain import GradCAMExplainer
from edge.explain.base import predictions
from edge.explain.cam import METHODS
from edge.runtime.model import Model


def place_spot(mask: np.ndarray, side: int, keep_away: int, rng: np.random.Generator) -> tuple[int, int] | None:
    """Top-left corner of a side x side square at least `keep_away` px from the mask, or None if none fits."""
    free = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5) > keep_away + side
    free[-side:, :] = False
    free[:, -side:] = False
    ys, xs = np.nonzero(free)
    if not len(ys):
        return None
    k = rng.integers(len(ys))
    return int(ys[k]), int(xs[k])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--limit", type=int, default=400, help="at most this many defect images, drawn at random (default 400)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    model = Model.load(Path(args.model))
    size = model.input_shape[1]
    arrays = load_arrays(Path(args.data), size, model.channels, progress=False)
    tol = cell_tolerance(model.manifest)
    side = max(3, round(size / 25))
    rng = np.random.default_rng(args.seed)
    idx = [i for i, lab in enumerate(arrays.labels) if lab != model.ok_class and arrays.masks[i].any()]
    before = dict(zip(idx, predictions(model, model.predict(arrays.x[idx]))))
    idx = [i for i in idx if before[i].label == arrays.labels[i]]
    idx = sorted(rng.permutation(idx)[: args.limit].tolist())        # every class, not the first folders

    clean, spotted, spots = [], [], []
    for i in idx:
        corner = place_spot(arrays.masks[i], side, tol, rng)
        if corner is None:
            continue
        y, x = corner
        img = arrays.x[i].copy()
        for c in range(len(img)):
            img[c, y:y + side, x:x + side] = img[c].mean() + 4 * img[c].std()
        spot = np.zeros(arrays.masks[i].shape, bool)
        spot[y:y + side, x:x + side] = True
        clean.append(i)
        spotted.append(img)
        spots.append(spot)
    x_spot = np.stack(spotted)
    labels = [arrays.labels[i] for i in clean]
    target = model.class_indices(labels, args.data)
    p_before = np.array([before[i].probabilities[lab] for i, lab in zip(clean, labels)])
    after = predictions(model, model.predict(x_spot))
    p_after = np.array([p.probabilities[lab] for p, lab in zip(after, labels)])
    # where the spot changed the answer, a map on the spot may be right: it moved the score
    kept = np.array([p.label == lab for p, lab in zip(after, labels)])
    result = {"model": str(args.model), "data": str(args.data), "model_cam_method": model.cam_method,
              "images": len(clean), "spot_px": side, "tolerance_px": tol,
              "answers_changed": int(len(kept) - kept.sum()),
              "true_class_probability": {"clean": float(p_before.mean()), "with_spot": float(p_after.mean())},
              "methods": {}, "answers_kept": int(kept.sum())}
    for method in METHODS:
        maps = GradCAMExplainer(model, method).explain(x_spot, target)
        on_spot = np.array([pointing_game(e.heatmap, s, tol) for e, s in zip(maps, spots)], float)
        on_defect = np.array([pointing_game(e.heatmap, arrays.masks[i], tol) for e, i in zip(maps, clean)], float)
        result["methods"][method] = {"maximum_on_spot": float(on_spot.mean()),
                                     "maximum_on_spot_answer_kept": float(on_spot[kept].mean()) if kept.any() else None,
                                     "pointing_game_on_defect": float(on_defect.mean())}
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
