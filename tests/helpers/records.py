"""Inspection records for store tests, without a model."""
from __future__ import annotations

import numpy as np

from edge.record import Attribution, Inspection


def make_inspection(i: int, station: str = "s1", inspection_id: str | None = None) -> Inspection:
    import cv2

    heat = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    png = cv2.imencode(".png", (heat * 255).astype(np.uint8))[1].tobytes()
    return Inspection(inspection_id=inspection_id or f"{i:08d}", station_id=station, part_id=f"p{i}", model="defect",
                      model_sha256="ab" * 32, label="crack", confidence=0.9, probabilities={"ok": 0.1, "crack": 0.9},
                      heatmap=heat, heatmap_png=png, heatmap_target="class crack", sentence="sentence",
                      requested=("gradcam", "ig"), received_ms=1000 + i, timings_ms={"graph": 2.0}, deferred=["ig"])


def make_attribution(n_steps: int = 16) -> Attribution:
    return Attribution(model="thermal", model_sha256="cd" * 32, method="ig", target="output mean", heat_png=b"png",
                       attribution=np.ones((8, 8), np.float32), completeness_delta=0.01,
                       relative_completeness_delta=0.001, n_steps=n_steps)
