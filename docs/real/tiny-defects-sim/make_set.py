"""A simulated stand-in for the kept-out real set of issue #9: one-channel 8-bit PNG photographs of
varying size and aspect ratio (140-256 px a side), pixel masks, a defect-free majority (70 %), defects
of 0.02-1 % of the image, brightness and contrast varying from part to part. Made from the simulator's
intensity channel at 256 px; delamination is left out (a subsurface defect, invisible in intensity).
Class counts follow the magnetic-tile set's shape (a defect-free majority, 57-117 per defect class).

    python make_set.py SIMULATED_DIR OUT_DIR SEED      # writes OUT_DIR/{train,test}/<class>/ (75/25)
"""
import sys
from pathlib import Path

import cv2
import numpy as np

COUNTS = {"ok": 930, "crack": 57, "scratch": 103, "contamination": 115, "pit": 117}


def main(src: Path, out: Path, seed: int, counts: dict[str, int] = COUNTS, heights: tuple[int, int] = (140, 256),
         widths: tuple[int, int] = (140, 256)) -> None:
    """Crop `counts` frames per class from the simulated set `src`, each of a height and width drawn from
    the inclusive ranges `heights` and `widths` (../large-frames-sim/make_set.py reuses this)."""
    rng = np.random.default_rng(seed)
    for cls, n in counts.items():
        files = sorted((src / cls).glob("*.npz"))
        if len(files) < n:
            raise SystemExit(f"{src / cls}: {len(files)} frames, {n} needed (simulate more)")
        rng.shuffle(files)
        for i, f in enumerate(files[:n]):
            d = np.load(f)
            image, mask = d["intensity"], d["mask"] > 0
            H, W = image.shape
            h, w = int(rng.integers(heights[0], heights[1] + 1)), int(rng.integers(widths[0], widths[1] + 1))
            if mask.any():          # a window that keeps the whole defect
                ys, xs = np.nonzero(mask)
                y0 = int(rng.integers(max(0, ys.max() + 1 - h), min(ys.min(), H - h) + 1))
                x0 = int(rng.integers(max(0, xs.max() + 1 - w), min(xs.min(), W - w) + 1))
            else:
                y0, x0 = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
            crop, m = image[y0:y0 + h, x0:x0 + w], mask[y0:y0 + h, x0:x0 + w]
            gain, offset = rng.uniform(0.7, 1.3), rng.uniform(-0.15, 0.15)
            crop = np.clip((crop - 0.5) * gain + 0.5 + offset, 0, 1)
            folder = out / ("test" if i % 4 == 0 else "train") / cls
            folder.mkdir(parents=True, exist_ok=True)
            stem = f"{cls}_{seed}_{i:04d}"
            cv2.imwrite(str(folder / f"{stem}.png"), np.round(crop * 255).astype(np.uint8))
            if cls != "ok":
                cv2.imwrite(str(folder / f"{stem}.mask.png"), m.astype(np.uint8) * 255)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
