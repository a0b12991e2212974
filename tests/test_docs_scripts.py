"""The committed experiment scripts under docs/ still run against today's API (one of them did not: it
passed logits where `served_logits` had come to take a progress flag, and failed on the first tiled frame)."""
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _images(root: Path, shape: tuple[int, int], n: int, seed: int) -> Path:
    """good/ and dent/ (a bright spot, its mask beside it) grayscale images of one size."""
    rng = np.random.default_rng(seed)
    for cls in ("good", "dent"):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            img = rng.normal(120, 20, shape).clip(0, 255).astype(np.uint8)
            if cls == "dent":
                y, x = int(rng.integers(10, shape[0] - 10)), int(rng.integers(10, shape[1] - 10))
                cv2.circle(img, (x, y), 5, 250, -1)
                mask = np.zeros(shape, np.uint8)
                cv2.circle(mask, (x, y), 5, 255, -1)
                cv2.imwrite(str(root / cls / f"{i:02d}.mask.png"), mask)
            cv2.imwrite(str(root / cls / f"{i:02d}.png"), img)
    return root


def test_large_frames_calibration_script_runs_on_frames_read_in_tiles(tmp_path):
    from edge.train.train import TrainConfig, train

    small = _images(tmp_path / "small", (64, 80), 12, 0)
    train(small, tmp_path / "m", TrainConfig(task="defect", size=32, epochs=1, width=4, threads=2), progress=False)
    large = _images(tmp_path / "large", (320, 400), 6, 1)       # 5x the training images: served in tiles
    r = subprocess.run([sys.executable, str(ROOT / "docs/real/large-frames-sim/calibration.py"), "--model",
                        str(tmp_path / "m"), "--data", str(large), "--json", str(tmp_path / "c.json")],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert "judged on 6 other frames" in r.stdout and (tmp_path / "c.json").is_file()
