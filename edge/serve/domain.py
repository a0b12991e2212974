"""The service's unit of work: a decoded request on its way through the models (the inspection it becomes
lives in `edge.record`)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from edge.explain import FrameView
from edge.record import new_inspection_id, now_ms

DEFAULT_EXPLANATIONS = ("gradcam", "sentence")


@dataclass(kw_only=True)
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
    preview_planes: dict[str, np.ndarray] = field(default_factory=dict)     # channel -> shrunk plane, for the store
    store_frame: bool = False
    raw_frame: bytes | None = None
    inspection_id: str = field(default_factory=new_inspection_id)
    received_ms: int = field(default_factory=now_ms)
    arrived: float = field(default_factory=time.perf_counter)   # monotonic, for the cycle budget

    def remaining_ms(self) -> float:
        return self.budget_ms - (time.perf_counter() - self.arrived) * 1e3
