"""A simulated set of line-camera-like frames: one-channel 8-bit PNG photographs of 512-768 x 640-768
pixels (varying size and aspect), pixel masks, defects of 0.002-0.15 % of the frame (the simulator's
defects keep their pixel size at any frame size: a pit of 11-65 px in a 0.3-0.6 MPixel frame), brightness
and contrast varying from part to part, defect-free frames the largest class (200 of 520). Made from the simulator's
intensity channel at 768 px; delamination is left out (subsurface, invisible in intensity).

    python make_set.py SIMULATED_DIR OUT_DIR SEED      # writes OUT_DIR/{train,test}/<class>/ (75/25)
"""
import sys
from pathlib import Path

import cv2
import numpy as np

COUNTS = {"ok": 200, "crack": 80, "scratch": 80, "contamination": 80, "pit": 80}


def main(src: Path, out: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for cls, n in COUNTS.items():
        files = sorted((src / cls).glob("*.npz"))
        if len(files) < n:
            raise SystemExit(f"{src / cls}: {len(files)} frames, {n} needed (simulate more)")
        rng.shuffle(files)
        for i, f in enumerate(files[:n]):
            d = np.load(f)
            image, mask = d["intensity"], d["mask"] > 0
            H, W = image.shape
            h, w = int(rng.integers(512, H + 1)), int(rng.integers(640, W + 1))
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
