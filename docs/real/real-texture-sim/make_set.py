"""A stand-in for the kept-out real set of issue #9 on REAL surface texture: the simulator's defects laid on
real photographs of defect-free surfaces. The tiny-defects stand-in (../tiny-defects-sim/) draws its
backgrounds from the simulator too, so it cannot say how the recipe copes with real texture: grain,
stains, dark spots and lines that look like defects. Here the backgrounds are the elpv set's functional
solar cells (probability 0; PyPI `elpv-dataset`, electroluminescence photographs: multicrystalline grain,
busbars, dark regions), the cells of the test split drawn from a separate quarter of them.

Each defect is the simulator's: the same part rendered with and without it (`simulate_sample(...,
defect_channels=["thermal"])` leaves the intensity channel without the defect), and the ratio of the two
intensities (the defect's own change of reflectance and shading, nothing of the part's shape) multiplies
the real texture. Crops of 140-256 px a side keeping the whole defect, brightness and contrast varying
from part to part, one-channel 8-bit PNGs with pixel masks, a defect-free majority, the counts of
../tiny-defects-sim (the magnetic-tile set's shape). The defects are not real; the texture is.

    python make_set.py OUT_DIR SEED      # writes OUT_DIR/{train,test}/<class>/ (75/25)
"""
import sys
from pathlib import Path

import cv2
import numpy as np

from edge.sim.sample import SimConfig, simulate_sample

COUNTS = {"ok": 930, "crack": 57, "scratch": 103, "contamination": 115, "pit": 117}
SIDE = 256          # the simulator's frame and the texture's size before cropping


def textures() -> list[Path]:
    """The elpv cells the experts called functional (defect probability 0)."""
    import elpv_dataset

    data = Path(elpv_dataset.__file__).parent / "data"
    rows = (line.split() for line in (data / "labels.csv").read_text().splitlines())
    return sorted(data / path for path, prob, _ in rows if float(prob) == 0)


def texture(path: Path, rng: np.random.Generator) -> np.ndarray:
    """(SIDE, SIDE) float32 in [0, 1]: the whole cell shrunk, or its centre at its own scale, flipped at random."""
    t = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
    if rng.random() < 0.5:
        t = cv2.resize(t, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    else:
        y, x = (t.shape[0] - SIDE) // 2, (t.shape[1] - SIDE) // 2
        t = t[y:y + SIDE, x:x + SIDE]
    if rng.random() < 0.5:
        t = t[:, ::-1]
    if rng.random() < 0.5:
        t = t[::-1]
    return np.ascontiguousarray(t)


def defect_ratio(cls: str, index: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(ratio, mask) of one simulated defect of class `cls`: defective over clean intensity of the same part."""
    cfg = SimConfig(size=SIDE)
    while True:
        a = simulate_sample(index, seed, cfg, defect_class=cls)
        mask = a["mask"] > 0
        if mask.any():
            break
        index += 100_000                 # a draw whose defect fell outside the frame: draw another part
    b = simulate_sample(index, seed, cfg, defect_class=cls, defect_channels=["thermal"])
    return np.clip(a["intensity"] / np.maximum(b["intensity"], 1e-3), 0.2, 3.0).astype(np.float32), mask


def main(out: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    cells = textures()
    rng.shuffle(cells)
    pools = {"train": cells[: len(cells) * 3 // 4], "test": cells[len(cells) * 3 // 4:]}
    index = 0
    for cls, n in COUNTS.items():
        for i in range(n):
            split = "test" if i % 4 == 0 else "train"
            t = texture(pools[split][int(rng.integers(len(pools[split])))], rng)
            h, w = int(rng.integers(140, SIDE + 1)), int(rng.integers(140, SIDE + 1))
            ratio, mask = np.ones_like(t), np.zeros(t.shape, bool)
            if cls != "ok":
                index += 1
                ratio, mask = defect_ratio(cls, index, seed)
                ys, xs = np.nonzero(mask)       # a window that keeps the whole defect
                y0 = int(rng.integers(max(0, ys.max() + 1 - h), min(ys.min(), SIDE - h) + 1))
                x0 = int(rng.integers(max(0, xs.max() + 1 - w), min(xs.min(), SIDE - w) + 1))
            else:
                y0, x0 = int(rng.integers(0, SIDE - h + 1)), int(rng.integers(0, SIDE - w + 1))
            write_part(out / split / cls, f"{cls}_{seed}_{i:04d}", (t * ratio)[y0:y0 + h, x0:x0 + w],
                       mask[y0:y0 + h, x0:x0 + w] if cls != "ok" else None, rng)


def write_part(folder: Path, stem: str, img: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator) -> None:
    """One part as the set holds it: its brightness and contrast varied (the generator's next two draws),
    an 8-bit PNG, and its mask beside it where it has a defect."""
    gain, offset = rng.uniform(0.7, 1.3), rng.uniform(-0.1, 0.1)
    img = np.clip((img - img.mean()) * gain + img.mean() + offset, 0, 1)
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / f"{stem}.png"), np.round(img * 255).astype(np.uint8))
    if mask is not None:
        cv2.imwrite(str(folder / f"{stem}.mask.png"), mask.astype(np.uint8) * 255)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
