"""A whole frame of any size through a classifier, and its Grad-CAM map back in the frame's own pixels.

    view = frame_view(planes, model)           # planes: (C, H, W) at the frame's size
    [r] = explain_frames(GradCAMExplainer(model), [view])
    r.label, r.heatmap.shape == (H, W)

A frame like the training images is letterboxed into the model's input, as training did. A frame much
larger than them (a line camera's 2-5 MPixel frame against training crops) is cut into overlapping
tiles at the training images' pixel size, all tiles go through the engine as one batch, the tile that
looks most defective decides, and every tile's map for the decided class is blended into one map
(geometry.Tiling.stitch). Per-tile maps are combined before normalising, so tiles stay comparable and
no tile is stretched to full scale on its own. (Intel's Geti merges per-tile saliency maps the same way.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge.data.geometry import Placement, Tiling, resize_plane, should_tile, training_scale
from edge.errors import InvalidInput
from edge.explain.base import Explanation
from edge.explain.cam import normalise_minmax
from edge.explain.gradcam import GradCAMExplainer
from edge.explain.sentence import FrameLocator
from edge.runtime.model import Model


@dataclass
class FrameView:
    """One frame as model inputs: `x` (T, C, S, S) raw values, and how they map back to the frame."""
    x: np.ndarray
    placement: Placement | None = None
    tiling: Tiling | None = None

    @property
    def shape(self) -> tuple[int, int]:
        v = self.placement or self.tiling
        return v.src_h, v.src_w

    @property
    def scale(self) -> float:
        """Model pixels per frame pixel (for millimetres: pitch_model = pitch_frame / scale)."""
        return self.placement.h / self.placement.src_h if self.placement else self.tiling.scale

    def _row_box(self, row: int) -> tuple[float, float, float, float]:
        """Input `row`'s frame pixels as (x0, y0, sx, sy): frame = (input - offset) / s, per axis."""
        if self.placement is not None:
            p = self.placement
            return -p.left / (p.w / p.src_w), -p.top / (p.h / p.src_h), p.w / p.src_w, p.h / p.src_h
        t = self.tiling
        y, x = t.origins[row]
        sy, sx = t.scaled_shape[0] / t.src_h, t.scaled_shape[1] / t.src_w
        return x / sx, y / sy, sx, sy

    def locator(self, row: int) -> FrameLocator:
        """For sentences: input pixels of `row` -> frame pixels."""
        x0, y0, sx, sy = self._row_box(row)
        return FrameLocator(lambda r, c: (y0 + r / sy, x0 + c / sx), self.shape, self.scale)

    def to_frame(self, row: int, m: np.ndarray) -> np.ndarray:
        """A map over input `row` (model pixels) -> the frame's pixels (zero outside the tile)."""
        if self.placement is not None:
            return self.placement.to_source(m)
        x0, y0, x1, y1 = self.tiling.box(row)
        h, w = self.shape
        x1, y1 = min(x1, w), min(y1, h)
        out = np.zeros((h, w), np.float32)
        out[y0:y1, x0:x1] = resize_plane(np.asarray(m, np.float32), y1 - y0, x1 - x0)
        return out


def pitch_ratio(model: Model, pixel_pitch_mm: float | None) -> float:
    """Training-image pixels per frame pixel. The model learnt its defects at the pitches its training images
    had (manifest `pixel_pitch_range_mm`: over every training image, its own pitch where it records one,
    else `train --pixel-pitch-mm`): a frame within that range is read as it is, a frame outside it as if
    resampled to the nearest end. 1 where the frame's pitch or the model's range is unknown (models trained before the range
    was recorded included): the frame is taken to have the training images' pitch. A camera with twice the
    resolution of the training images' over the same field (half the pitch) gives 0.5."""
    known = model.manifest.get("pixel_pitch_range_mm")
    if not pixel_pitch_mm or not known:
        return 1.0
    if not (math.isfinite(pixel_pitch_mm) and pixel_pitch_mm > 0):
        raise InvalidInput(f"pixel_pitch_mm {pixel_pitch_mm!r}: expected a positive number of mm per pixel")
    lo, hi = known
    return float(pixel_pitch_mm) / min(max(float(pixel_pitch_mm), lo), hi)


def require_training_pitch(model: Model, option: str = "--pixel-pitch-mm") -> None:
    """A data set's pitch is only of use for a model that records the pitches it was trained at: say so
    rather than read the frames as taken and report them as read at the training pitch."""
    if not model.manifest.get("pixel_pitch_range_mm"):
        raise InvalidInput(f"{option}: model {model.name} records no training pitch (trained without "
                           f"--pixel-pitch-mm, before it existed, or on images that carry none), so frames "
                           f"are read as they are: leave the option out, or retrain with --pixel-pitch-mm")


def read_at_pitch_note(pixel_pitch_mm: float) -> str:
    """What evaluate's report and the audit's notes say of a data set read with its pitch."""
    return (f"frames read at the training pitch from their own {pixel_pitch_mm:g} mm per pixel, as the service "
            "reads frames sent with it")


def served_input(model: Model, pixel_pitch_mm: float | None = None) -> dict:
    """The model's manifest `input` as frames of this pitch are served: `source_size` and `source_long_max`
    (the training images' typical and largest long side, from which the training scale, whether to tile
    and the tile's side follow: `geometry.training_scale`, `should_tile`, `tiles.served_tile`) in the
    frame's pixels instead of the training images'. The spec itself where the pitch changes nothing."""
    spec = model.input_spec
    r = pitch_ratio(model, pixel_pitch_mm)
    if r == 1.0 or not spec.get("source_size"):
        return spec
    out = {**spec, "source_size": [s / r for s in spec["source_size"]]}
    if "source_long_max" in spec:
        out["source_long_max"] = spec["source_long_max"] / r
    return out


def frame_view(planes: np.ndarray, model: Model, pixel_pitch_mm: float | None = None) -> FrameView:
    """(C, H, W) raw planes -> the model inputs for this frame (letterboxed, or tiles when the frame is much
    larger than the training images). `pixel_pitch_mm`: the frame's pitch. Where it and the model's are both
    known (`pitch_ratio`), the frame's size is judged in the training images' pixels and tiles are cut at the
    training images' pitch (`served_input`), so a camera with another resolution shows the model defects at
    the size it learnt them (NEU-DET test images at 3x the resolution: 52 % right when tiled at the training
    pixel size, 100 % when read at their pitch; README, *Frames from a camera of another resolution*)."""
    _, h, w = planes.shape
    spec = served_input(model, pixel_pitch_mm)
    size = spec["size"][0]
    if should_tile(h, w, spec):
        tiling = Tiling.plan(h, w, size, training_scale(spec))
        return FrameView(tiling.crops(planes), tiling=tiling)
    placement = Placement.fit(h, w, size)
    return FrameView(placement.planes(planes)[None], placement=placement)


@dataclass
class FrameResult:
    explanation: Explanation        # of the deciding input (the whole letterboxed frame, or the worst tile)
    heatmap: np.ndarray             # (H, W) in [0, 1], the frame's own pixels
    view: FrameView
    tile: int | None = None         # index of the deciding tile
    tiles: int = 1

    @property
    def tile_box(self) -> tuple[int, int, int, int] | None:
        """The deciding tile as (x0, y0, x1, y1) in frame pixels."""
        return self.view.tiling.box(self.tile) if self.tile is not None else None


def worst_tile(probabilities: np.ndarray, ok_index: int | None) -> int:
    """The tile that decides: least likely to be defect-free (or, without a defect-free class, the most
    confident answer)."""
    if ok_index is not None:
        return int(np.argmin(probabilities[:, ok_index]))
    return int(np.argmax(probabilities.max(axis=1)))


def decide_frames(model: Model, views: list[FrameView]) -> np.ndarray:
    """Each frame's deciding logits (N, K) without a map, decided as `explain_frames` and the server decide:
    a letterboxed frame's one input, a tiled frame's worst tile."""
    out = []
    for v in views:
        logits = model.predict(v.x)
        out.append(logits[worst_tile(model.probabilities(logits), model.ok_index) if len(v.x) > 1 else 0])
    return np.stack(out) if out else np.zeros((0, len(model.classes)), np.float32)


def explain_frames(explainer: GradCAMExplainer, views: list[FrameView], targets: list[int | None] | None = None
                   ) -> list[FrameResult]:
    """Grad-CAM for whole frames, all their inputs in one engine call (plus one for tiles whose own
    prediction differs from their frame's decision: of the head alone where the model has that graph).
    `targets`: a class index per frame, or None for the decided class."""
    model = explainer.model
    targets = targets or [None] * len(views)
    counts = [len(v.x) for v in views]
    starts = np.cumsum([0, *counts])
    rows = np.concatenate([v.x for v in views])
    wanted = np.concatenate([np.full(n, -1 if t is None else t, np.int64) for n, t in zip(counts, targets)])
    es = explainer.explain(rows, wanted)
    ok_index = model.ok_index
    decided, redo = [], []
    for v, t, s0, n in zip(views, targets, starts, counts):
        tile = 0
        if n > 1:
            probs = np.array([[e.prediction.probabilities[c] for c in model.classes] for e in es[s0:s0 + n]])
            tile = worst_tile(probs, ok_index)
        cls = t if t is not None else es[s0 + tile].details.class_index
        decided.append((tile, cls))
        redo += [s0 + i for i in range(n) if es[s0 + i].details.class_index != cls]
    if redo:      # tiles whose own class differs: their map for the frame's class
        classes = np.array([decided[np.searchsorted(starts, r, "right") - 1][1] for r in redo], np.int64)
        # from the activations already computed where the model has the head's own graph (the backward of
        # a few small layers); otherwise a second call of the whole gradcam graph on those tiles
        again = explainer.retarget([es[r] for r in redo], classes) or explainer.explain(rows[redo], classes)
        for r, e in zip(redo, again):
            es[r] = e
    out = []
    for v, s0, n, (tile, _) in zip(views, starts, counts, decided):
        if v.tiling is not None:
            raw = v.tiling.stitch(np.stack([np.maximum(e.attribution, 0) for e in es[s0:s0 + n]]))
        else:
            raw = v.placement.to_source(es[s0].attribution)
        out.append(FrameResult(es[s0 + tile], normalise_minmax(raw[None])[0], v,
                               tile if v.tiling is not None else None, n))
    return out
