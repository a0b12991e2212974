"""Natural-language explanations: from the two strongest patches of a per-patch evidence map (SHAP values,
or a Grad-CAM / IG map pooled on a patch grid) to a sentence an engineer can act on.

    sentence, evidence = explain_in_words(label, confidence, patch_values, boxes, channels, pixel_pitch_mm,
                                          ok_class="ok", value_name="SHAP log-odds")
    "Defect classified as CRACK (confidence 94.2%). Primary evidence: sharp linear discontinuity with a
     thermal step (crack-like) in the upper-left quadrant, 3.1 mm right and 2.4 mm down from the top-left
     corner (SHAP +2.31 log-odds), thermal gradient 27.8 K/mm. Secondary evidence: ..."

The descriptors are decided from the region statistics (`patch_stats.py`), never from the predicted
label, so a sentence can disagree with the class, which is what an auditor wants to see. Thresholds
were set on simulator defects (seed 2000, 240 samples: medians per class in the issue #3 note), revised
on 2026-11-28 with the statistics of the windows the served sentence actually reads (the model's CAM
pooled on the patch grid, correctly classified frames of seed 3000, 1200 frames) and checked on seed 1000,
and tests check them on other seeds. Only what the data measures is said: no depth, no material.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from edge.explain.base import ShapDetails
from edge.explain.cam import DISPLAY_NAMES
from edge.explain.patch_stats import ImageContext, RegionStats, region_stats

# Descriptor thresholds (dimensionless unless named); see the module docstring for their origin.
LINEAR_COHERENCE = 0.6       # straight lines measure 0.7-0.95, spots and stains < 0.5
STEP_COHERENCE = 0.35        # a thermal step is linear enough at this coherence (cracks: median 0.67; the
#                              cracks the first rules called "irregular" measured 0.43)
LINEAR_MAX_CIRCULARITY = 0.5
TINY_BLOB_PX = 8             # below this a blob's circularity says nothing (a 1-4 px blob of a thin scratch
#                              reads as round): the window's coherence alone decides "linear"
EDGE_MAX_INTENSITY = 6.0     # geometric edges barely mark the reflectance image (median 4.4 x spread)
EDGE_MIN_PHASE = 10.0        # ...but the slope change shows in the deflectometry phase
CRACK_MIN_GRADIENT = 15.0    # K/mm: a crack's thermal step (median 28) vs scratches (median 2)
CRACK_MIN_INTENSITY = 15.0   # a crack opens the surface: reflectance contrast median 28, where stains with a
#                              straight border (12) and geometric edges with a thermal step (4-8) stay lower
SPOT_MIN_CIRCULARITY = 0.7
SPOT_MIN_PEAK_K = 1.0
SPOT_MAX_AREA_PX = 60
SHAPELESS_MAX_PHASE = 5.0    # no slope change: the surface shape is intact
BROAD_MIN_AREA_PX = 80
BROAD_MAX_GRADIENT = 10.0    # K/mm
STAIN_MIN_INTENSITY = 6.0    # stains mark the reflectance image (median 10.6); delaminations do not (3.5)
STAIN_MAX_COHERENCE = 0.35   # a broad reflectance mark without a direction is a stain even where the part's
#                              own shape puts slope structure in the window (a quarter of stains: phase >= 5)
BROAD_MAX_EDGE_DENSITY = 0.8
FLAT_MAX_CONTRAST = 3.0      # every channel within 3x its robust spread: nothing stands out (the windows
#                              the sentence reads on defect-free parts: a quarter below 3.3; on defects the
#                              10th percentile is 5 for delaminations, 16-60 for the others)

NO_STRUCTURE = "no distinct structure (the surface looks like the rest of the part)"
SCRATCH = "linear scratch-like structure"
HOT_SPOT = "localised thermal hot spot"
# Small structures are judged in a tighter window first: in the 24 px window a thin scratch or a 3 px pit
# shares its statistics with whatever geometry lies around it (a cavity's edge, a step), and was named
# after that instead. Where the tight window reads a scratch or a hot spot that is what is said; anything
# else is judged in the 24 px window the other rules were set on. Measured on the served sentence's
# windows, right answers (rules chosen on seed 3000, checked on seeds 1000 and 5000, 1200 frames each):
# right descriptor for scratches 0.75 -> 0.84 and 0.74 -> 0.82, pits 0.71 -> 0.75 and 0.70 -> 0.74,
# cracks and stains unchanged, delaminations 0.65 -> 0.64 and 0.62 -> 0.60.
FINE_WINDOW_PX = 16
FINE_DESCRIPTORS = (SCRATCH, HOT_SPOT)


def describe(s: RegionStats) -> str:
    """One descriptor for a region's statistics."""
    c = s.contrast
    thermal = s.thermal_gradient_k_per_mm
    if c and max(c.values()) < FLAT_MAX_CONTRAST:
        return NO_STRUCTURE
    if thermal is not None and thermal >= CRACK_MIN_GRADIENT and s.coherence >= STEP_COHERENCE \
            and c.get("intensity", np.inf) >= CRACK_MIN_INTENSITY:
        return "sharp linear discontinuity with a thermal step (crack-like)"
    elongated = s.circularity < LINEAR_MAX_CIRCULARITY or s.blob_area_px < TINY_BLOB_PX
    if s.coherence >= LINEAR_COHERENCE and elongated:
        if c.get("intensity", np.inf) < EDGE_MAX_INTENSITY and c.get("phase", 0.0) >= EDGE_MIN_PHASE:
            return "straight geometric edge (slope change without a reflectance mark)"
        if thermal is not None and thermal >= CRACK_MIN_GRADIENT:
            return "sharp linear discontinuity with a thermal step (crack-like)"
        return SCRATCH
    if (s.circularity >= SPOT_MIN_CIRCULARITY and s.blob_area_px <= SPOT_MAX_AREA_PX
            and s.thermal_peak_k is not None and s.thermal_peak_k >= SPOT_MIN_PEAK_K):
        return HOT_SPOT
    # "without a change of surface shape" is only said where a phase channel measures the shape
    if "phase" in c and c.get("intensity", 0.0) >= STAIN_MIN_INTENSITY and (
            c["phase"] < SHAPELESS_MAX_PHASE
            or (s.coherence < STAIN_MAX_COHERENCE and s.blob_area_px >= BROAD_MIN_AREA_PX)):
        return "emissivity and reflectance change without a change of surface shape (contamination-like)"
    if (thermal is None or thermal < BROAD_MAX_GRADIENT) and s.edge_density < BROAD_MAX_EDGE_DENSITY and (
            s.blob_area_px >= BROAD_MIN_AREA_PX or c.get("intensity", np.inf) < STAIN_MIN_INTENSITY):
        return "broad diffuse thermal anomaly, surface irregularity consistent with delamination"
    return "local irregularity without a single clear signature"


def where(centre_rc: tuple[float, float], size: tuple[int, int], pixel_pitch_mm: float | None) -> str:
    """'upper-left quadrant, 3.1 mm right and 2.4 mm down from the top-left corner'."""
    h, w = size
    r, col = centre_rc
    dy, dx = (r - (h - 1) / 2) / h, (col - (w - 1) / 2) / w
    if abs(dy) < 0.125 and abs(dx) < 0.125:
        words = "centre"
    else:
        words = f"{'upper' if dy < 0 else 'lower'}-{'left' if dx < 0 else 'right'} quadrant"
    if pixel_pitch_mm:
        words += (f", {col * pixel_pitch_mm:.1f} mm right and {r * pixel_pitch_mm:.1f} mm down from the "
                  "top-left corner")
    else:
        words += f", at pixel row {r:.0f}, column {col:.0f}"
    return words


def _evidence(stats: RegionStats, value: float, value_name: str, location: str) -> str:
    text = f"{describe(stats)} in the {location} ({value_name} {value:+.2f})"
    if stats.thermal_gradient_k_per_mm is not None:
        text += f", thermal gradient {stats.thermal_gradient_k_per_mm:.1f} K/mm"
    return text


def top_patches(values: np.ndarray, boxes: np.ndarray, k: int = 2, min_separation_px: int = 16) -> list[int]:
    """Indices of the k most positive patches, skipping patches whose centre lies within
    `min_separation_px` of one already chosen (overlapping patches would repeat one piece of evidence)."""
    chosen: list[int] = []
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    for j in np.argsort(-values):
        if values[j] <= 0 or len(chosen) == k:
            break
        if all(np.abs(centres[j] - centres[c]).max() >= min_separation_px for c in chosen):
            chosen.append(int(j))
    return chosen


@dataclass(frozen=True)
class FrameLocator:
    """Where the model's input sits in the operator's frame: `to_frame(row, col)` maps input pixels to frame
    pixels, `size` is the frame's (H, W), `scale` model pixels per frame pixel."""
    to_frame: Callable[[float, float], tuple[float, float]]
    size: tuple[int, int]
    scale: float


def explain_in_words(label: str, confidence: float, patch_values: np.ndarray, boxes: np.ndarray,
                     channels: dict[str, np.ndarray], pixel_pitch_mm: float | None, ok_class: str = "ok",
                     value_name: str = "SHAP log-odds", frame: FrameLocator | None = None) -> tuple[str, list[dict]]:
    """The sentence and, per evidence item, its statistics (for the JSON and the audit).
    `value_name` says which method's number is quoted, e.g. "SHAP log-odds" or "Grad-CAM". With `frame`,
    places are said in the frame's pixels and millimetres (`pixel_pitch_mm` is then the frame's pitch)."""
    size = next(iter(channels.values())).shape
    model_pitch = pixel_pitch_mm
    if frame is not None and pixel_pitch_mm:
        model_pitch = pixel_pitch_mm / frame.scale
    picks = top_patches(np.asarray(patch_values), np.asarray(boxes))
    context = ImageContext(channels) if picks else None
    items = []
    for j in picks:
        box = tuple(int(v) for v in boxes[j])
        stats = region_stats(context, box, model_pitch, FINE_WINDOW_PX)
        if describe(stats) not in FINE_DESCRIPTORS:
            stats = region_stats(context, box, model_pitch)
        centre = ((box[0] + box[2] - 1) / 2, (box[1] + box[3] - 1) / 2)
        location = where(centre, size, pixel_pitch_mm) if frame is None else \
            where(frame.to_frame(*centre), frame.size, pixel_pitch_mm)
        items.append({"box": box, "value": float(patch_values[j]), "descriptor": describe(stats),
                      "location": location, "stats": stats})
    conf = f"confidence {100 * confidence:.1f}%"
    if label == ok_class:
        head = f"Part classified as {label.upper()}, no defect found ({conf})."
        if not items:
            return head + " No region stands out: no patch raises the OK score.", items
        lead = "Strongest support for OK"
    else:
        head = f"Defect classified as {label.upper()} ({conf})."
        if not items:
            return head + " No single region carries the decision (no patch raises the class score).", items
        lead = "Primary evidence"
    parts = [f"{lead}: {_evidence(items[0]['stats'], items[0]['value'], value_name, items[0]['location'])}."]
    for it in items[1:]:
        parts.append(f"Secondary evidence: {_evidence(it['stats'], it['value'], value_name, it['location'])}.")
    return " ".join([head, *parts]), items


def add_sentences(model, x: np.ndarray, explanations: list, pixel_pitch_mm: float | None = None,
                  frames: list[FrameLocator] | None = None) -> None:
    """Attach a sentence (and its evidence) to each classifier explanation, in place.

    SHAP explanations quote their patch values; Grad-CAM and IG ones quote their own map pooled on an
    8x8/stride-4 patch grid (mean heat for CAMs, summed attribution for IG), so every method can speak
    and each sentence names the number it quotes. The grid is finer than SHAP's 16x16/8 players on
    purpose: pooling a computed map estimates nothing, so it has no reason to be coarse. x: the raw (N, C, H, W) batch explained.
    frames: per explanation, where its input sits in a larger frame (letterboxed or a tile), so that places
    are said in the frame's pixels, as the server says them.
    Regression models get no sentence: their maps explain an output field, not a decision.
    """
    from dataclasses import asdict

    from edge.explain.patches import PatchGrid

    if not model.classes:
        return
    pitch = pixel_pitch_mm or model.pixel_pitch_mm
    names = model.channels
    grid = None
    for i, (raw, e) in enumerate(zip(np.asarray(x, np.float32), explanations)):
        if isinstance(e.details, ShapDetails):
            values, boxes = e.details.patch_values, e.details.patch_boxes
            name = "SHAP log-odds" if e.details.value_kind == "log_odds" else "SHAP"
        else:
            grid = grid or PatchGrid(*e.attribution.shape)
            if e.method == "ig":
                values, name = grid.pool(e.attribution, "sum"), "IG logit"
            else:
                values, name = grid.pool(e.heatmap, "mean"), DISPLAY_NAMES[e.method]
                if getattr(e.details, "guided", False):
                    name = f"guided {name}"          # the numbers quoted are the refined map's
            boxes = grid.boxes
        channels = {n: raw[k] for k, n in enumerate(names)}
        e.sentence, evidence = explain_in_words(e.prediction.label, e.prediction.confidence, values, boxes,
                                                channels, pitch, model.ok_class, name,
                                                frame=frames[i] if frames else None)
        e.evidence = [{**{k: v for k, v in it.items() if k != "stats"}, "stats": asdict(it["stats"])}
                                for it in evidence]
