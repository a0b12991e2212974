"""The service's domain objects: what an inspection is, independent of gRPC and of the HMI."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import numpy as np

from edge.explain.frame import FrameView

EXPLANATION_KINDS = ("gradcam", "sentence", "ig", "shap", "raw_heatmap")
DEFAULT_EXPLANATIONS = ("gradcam", "sentence")


def new_inspection_id() -> str:
    # Time-ordered (sortable in the store and the HMI) and unique across restarts.
    return f"{time.time_ns():x}-{uuid.uuid4().hex[:8]}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Job:
    """One decoded request, ready for the models."""
    station_id: str
    part_id: str
    model: str
    view: FrameView                        # the frame as classifier inputs (letterboxed, or tiles)
    explanations: tuple[str, ...]
    budget_ms: float                       # cycle time left for this inspection, from its arrival
    target_class: str | None = None
    regression_inputs: dict[str, np.ndarray] = field(default_factory=dict)   # model -> (C, H, W)
    pixel_pitch_mm: float | None = None
    frame_previews: dict[str, bytes] = field(default_factory=dict)           # channel -> 8-bit PNG
    store_frame: bool = False
    raw_frame: bytes | None = None
    inspection_id: str = field(default_factory=new_inspection_id)
    received_ms: int = field(default_factory=now_ms)
    arrived: float = field(default_factory=time.perf_counter)   # monotonic, for the cycle budget

    def remaining_ms(self) -> float:
        return self.budget_ms - (time.perf_counter() - self.arrived) * 1e3


@dataclass
class Attribution:
    """An IG or SHAP map (deferred or inline)."""
    model: str
    model_sha256: str
    method: str
    target: str
    heat_png: bytes
    attribution: np.ndarray          # (H, W) float32, signed
    completeness_delta: float
    relative_completeness_delta: float
    n_steps: int
    sentence: str | None = None


@dataclass
class Inspection:
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
    verdict: str = ""
    heatmap_method: str = "gradcam"  # gradcam | gradcam++ | hirescam: the model's own CAM (Model.cam_method)
    tiles: int = 1                   # a frame much larger than the training images is inspected in tiles
    tile_box: tuple[int, int, int, int] | None = None   # the deciding tile, (x0, y0, x1, y1) frame pixels
    tile: int | None = None          # its row among the job's inputs (in memory only, for deferred SHAP)

    @property
    def complete(self) -> bool:
        return not self.deferred
