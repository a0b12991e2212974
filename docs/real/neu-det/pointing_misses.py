"""Where the map points when the pointing game is lost: for one class of a test split, each image whose
map maximum lies outside its boxes (grown by the audit's 8 px), drawn with the boxes (green), the
maximum (red) and the map beside it; and the share of the image the boxes cover, for hits and misses.

    python docs/real/neu-det/pointing_misses.py MODEL DATA CLASS OUT_DIR
    python docs/real/neu-det/pointing_misses.py docs/real/neu-det/model ../shared/datasets/neu-det/test crazing /tmp/misses
"""
import sys
from pathlib import Path

import cv2
import numpy as np

from edge.audit.localisation import cell_tolerance
from edge.audit.metrics import pointing_game
from edge.data.arrays import load_arrays
from edge.explain import GradCAMExplainer
from edge.runtime.model import Model


def main(model_dir: Path, data: Path, cls: str, out: Path) -> None:
    model = Model.load(model_dir)
    arrays = load_arrays(data, model.input_shape[1], model.channels, progress=False)
    idx = [i for i, label in enumerate(arrays.labels) if label == cls]
    tolerance = cell_tolerance(model.manifest)
    explained = GradCAMExplainer(model).explain(arrays.x[idx], [model.classes.index(cls)] * len(idx))
    out.mkdir(parents=True, exist_ok=True)
    hits, cover = [], []
    for i, e in zip(idx, explained):
        mask = arrays.masks[i]
        hits.append(pointing_game(e.heatmap, mask, tolerance))
        cover.append(float(mask.mean()))
        if hits[-1]:
            continue
        heat = e.heatmap / max(float(e.heatmap.max()), 1e-9)
        img = arrays.x[i, 0]
        img = ((img - img.min()) / (np.ptp(img) + 1e-9) * 255).astype(np.uint8)
        vis = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(vis, contours, -1, (0, 255, 0), 1)
        r, c = np.unravel_index(int(np.argmax(heat)), heat.shape)
        cv2.circle(vis, (int(c), int(r)), 4, (0, 0, 255), 1)
        side = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
        cv2.imwrite(str(out / f"{arrays.paths[i].stem}.png"), cv2.resize(np.hstack([vis, side]), None, fx=2, fy=2,
                                                                          interpolation=cv2.INTER_NEAREST))
    hits, cover = np.array(hits), np.array(cover)
    print(f"{cls}: pointing game {hits.mean():.3f} over {len(hits)} images (tolerance {tolerance} px); boxes cover "
          f"{cover[hits].mean():.2f} of the image where it is won, {cover[~hits].mean():.2f} where it is lost; "
          f"{int((~hits).sum())} misses drawn in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4]))
