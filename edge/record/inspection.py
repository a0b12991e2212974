"""What an inspection is, as the plant keeps it: independent of gRPC, of the HMI and of the models.

The record (`InspectionStore`) holds these; the service makes them, the HMI shows them, the audit's
operator agreement reads their verdicts. Built with keywords only: a positional 0.0 that silently
means "relative completeness delta" is exactly the slip this prevents.
"""
from __future__ import annotations

import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np


def new_inspection_id() -> str:
    # Time-ordered (sortable in the store and the HMI) and unique across restarts.
    return f"{time.time_ns():x}-{uuid.uuid4().hex[:8]}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(kw_only=True)
class Attribution:
    """An IG, SHAP or guided Grad-CAM map (deferred or inline)."""
    model: str
    model_sha256: str
    method: str                      # ig | shap | guided <cam method>
    target: str                      # what was explained, in words
    heat_png: bytes
    attribution: np.ndarray          # (H, W) float32, signed
    completeness_delta: float        # IG: |sum of attributions - (F(x) - F(baseline))|; SHAP: efficiency gap; guided: 0
    relative_completeness_delta: float   # IG: the delta over |F(x) - F(baseline)|; SHAP, guided: 0 (no such measure)
    n_steps: int                     # IG: interpolation points; SHAP: model evaluations; guided: 0
    sentence: str | None = None


@dataclass(kw_only=True)
class Inspection:
    """One part's inspection: the decision, its Grad-CAM map and sentence, later explanations, the verdict."""
    inspection_id: str
    station_id: str
    part_id: str
    model: str
    model_sha256: str
    label: str
    confidence: float
    probabilities: dict[str, float]
    heatmap: np.ndarray              # (H, W) in [0, 1], the frame's own pixels
    heatmap_png: bytes
    heatmap_target: str
    sentence: str
    requested: tuple[str, ...]
    received_ms: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    attributions: list[Attribution] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)   # asked for, never computed: the deferred queue was full
    verdict: str = ""
    heatmap_method: str = "gradcam"  # cam.METHODS: the model's own CAM (Model.cam_method)
    tiles: int = 1                   # a frame much larger than the training images is inspected in tiles
    tile_box: tuple[int, int, int, int] | None = None   # the deciding tile, (x0, y0, x1, y1) frame pixels
    tile: int | None = None          # its row among the job's inputs (in memory only, for deferred SHAP)
    review: list[str] | None = None  # why a person should look ([] = no need); None: the model has no review flag
    sensors: dict[str, float] | None = None   # share of the evidence per input channel (asked for: SENSORS)
    pixel_pitch_mm: float | None = None       # the frame's pitch as sent (None: not given); it decides how the
                                              # frame was read (edge.explain.frame.served_input), so it is kept
    # the deciding input's map at model resolution, its logits (in memory only, for the evidence per sensor)
    # and the map before normalisation (in memory only, for the guided map)
    tile_heatmap: np.ndarray | None = None
    tile_logits: np.ndarray | None = None
    tile_map: np.ndarray | None = None
    # the evidence per sensor while it is being computed beside the sentence (in memory only)
    sensors_pending: Future | None = None

    @property
    def flagged(self) -> bool:
        return bool(self.review)

    @property
    def complete(self) -> bool:
        return not self.deferred and not self.skipped
