"""Evidence per sensor: which input channel (thermal, phase, intensity) carried the class evidence.

    shares = sensor_evidence(model, x, [e.heatmap for e in explanations], class_indices)   # (N, C), rows sum to 1
    sensor_phrase(model.channels, shares[0])      # "evidence by sensor: 97 % intensity, 3 % thermal"

What is measured is a counterfactual: for each channel, the part's region the heatmap points at (its
hottest half, grown by GROW_PX) is refilled in that channel alone from the surrounding surface (a
normalised convolution: the channel's values around the region, Gaussian-weighted), and the explained
class's logit is read again. A channel's share is its drop of the logit over the sum of the drops: "had
only this sensor not seen the defect, how much of the answer would be gone". All C variants go through the
predict graph in one batched call.

Why this and not the gradient: the classifier fuses the channels after an 8-filter stem per channel, and
gradient-based splits (IG per channel, the Grad-CAM of a per-sensor branch) mostly credit the context a
channel provides, not the defect. Tested on simulated parts whose defect only one sensor sees (the
simulator renders the other channels from the same part without it, `simulate_sample(defect_channels=)`):
wherever the shipped classifier still recognises the class from that one channel, this measure puts the
right channel first in every frame (shares 0.85-0.99), IG per channel in 20-100 % of frames per class.
Inpainting a defect away instead leaves traces the classifier reads as defects (such "clean" frames were
never called ok), which is why earlier measurements of per-sensor evidence were misleading.

Cost: one predict call on C + 1 frames (C where the frame's logits are known, as in the service) and C
refills, the region's weights blurred once: 6-8 ms with the shipped classifier on the 2-core development
CPU, against 2.3 ms for a prediction and 3.2 ms for Grad-CAM; in the service +7.4 ms on a 14.3 ms
inspection (benchmarks/service.py). Since the refill's wide blur runs on a coarse grid (_wide_blur), a
frame in the service's form (C rows, its logits known) costs 2.5 ms against 2.9 ms before (medians of
120 calls each, interleaved in one process, 20 held-out frames, 2026-11-29; a prediction 0.8 ms then),
and the audit's shares moved by at most 0.015 (pit, thermal 0.685 -> 0.670; every single-sensor part's
sensor still first). So it runs on request (`edge-xai explain --sensors`, the service's
SENSORS explanation kind) and in the audit, not on every served inspection (issue #12 asks for at most
10 % inline). The service starts it as soon as the map exists and runs it beside the sentence
(`Inspector.sensor_shares` on its own thread: ONNX Runtime and OpenCV release the GIL), which took its
extra latency from +38-42 % to +20-33 % on the 2-core CPU; the work itself is unchanged.
A first-order stand-in for the C refills (the input_gradient graph's gradient times the refill's change,
summed over the region: one graph call instead of C rows) was measured on 2026-12-03 and not adopted: the
call costs what the three rows do (3.4 against 3.3 ms, the shipped classifier, 2-core Xeon), and on
thermal-only pits it put the wrong sensor first in 4 of 12 frames, where this measure put it right in all.
"""
from __future__ import annotations

import cv2
import numpy as np

from edge.errors import InvalidInput
from edge.explain.cam import SURROUND_SIGMA_FRACTION
from edge.runtime.model import Model

HOT_FRACTION = 0.5        # the heatmap's region: at least half its maximum (the audit's binarisation)
GROW_PX = 5               # grown by this much, so a defect's edges and halo go with it


def evidence_region(heatmap: np.ndarray, fraction: float = HOT_FRACTION, grow_px: int = GROW_PX) -> np.ndarray:
    """(H, W) bool: where the map is at least `fraction` of its maximum, grown by `grow_px`; empty for an
    all-zero map (nothing to take away)."""
    h = np.asarray(heatmap, np.float32)
    peak = float(h.max()) if h.size else 0.0
    if peak <= 0:
        return np.zeros(h.shape, bool)
    region = (h >= fraction * peak).astype(np.uint8)
    if grow_px > 0:
        region = cv2.dilate(region, np.ones((2 * grow_px + 1, 2 * grow_px + 1), np.uint8))
    return region > 0


def fill_region(channel: np.ndarray, region: np.ndarray, sigma_px: float | None = None) -> np.ndarray:
    """The channel with `region` replaced by a Gaussian-weighted average of the values outside it
    (normalised convolution); outside the region it is unchanged. A region covering everything leaves the
    channel as it is (there is no surrounding surface to fill from)."""
    return fill_channels(np.asarray(channel, np.float32)[None], region, sigma_px)[0]


def fill_channels(channels: np.ndarray, region: np.ndarray, sigma_px: float | None = None) -> np.ndarray:
    """fill_region for each of (C, H, W) channels, the region's weights blurred once for all of them."""
    c = np.asarray(channels, np.float32)
    region = np.asarray(region, bool)
    if not region.any() or region.all():
        return c.copy()
    sigma = sigma_px if sigma_px is not None else max(c.shape[1:]) * SURROUND_SIGMA_FRACTION
    keep = (~region).astype(np.float32)
    den = _wide_blur(keep, sigma)[region]
    out = c.copy()
    for k in range(len(c)):
        num = _wide_blur(c[k] * keep, sigma)[region]
        # far inside a large region the weights vanish: fall back to the mean of the surface outside it
        fallback = float(c[k][~region].mean())
        out[k][region] = np.where(den > 1e-4, num / np.maximum(den, 1e-12), fallback)
    return out


def _wide_blur(plane: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur of width sigma (px), computed at 1/f resolution when sigma is wide (f = sigma // 2,
    so the blur there is still 2 px or more): area-averaged down, blurred, bilinear back up. Why: the
    refill's blur is wide (1/16 of the long side) and smooth, so the coarse grid loses little of it, and at
    full resolution its four blurs made fill_channels take 0.57 ms per 128 px frame on the 2-core CPU
    (0.23 ms this way)."""
    f = int(sigma // 2)
    if f < 2:
        return cv2.GaussianBlur(plane, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    h, w = plane.shape
    small = cv2.resize(plane, (-(-w // f), -(-h // f)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / f, borderType=cv2.BORDER_REFLECT)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def drop_shares(full_logit: float, ablated_logits: np.ndarray) -> np.ndarray:
    """(C,) shares from the class logit of the frame and of its C one-channel-refilled variants: each
    channel's drop (negative drops count as 0) over their sum; all zeros when no channel's refill lowers
    the logit."""
    drop = np.maximum(float(full_logit) - np.asarray(ablated_logits, np.float64), 0.0)
    total = drop.sum()
    return drop / total if total > 0 else drop


def sensor_evidence(model: Model, x: np.ndarray, heatmaps, class_indices, logits=None) -> np.ndarray:
    """(N, C) evidence shares per input channel for N raw frames (N, C, H, W) in the model's input size,
    each explained for its class with its heatmap (H, W) at input resolution. logits: the frames' own
    (N, K) logits where a graph call already gave them (the Grad-CAM graph's): then only the C refilled
    variants go through the predict graph."""
    x = model.check_input(x)
    heatmaps = np.asarray(heatmaps, np.float32)
    if heatmaps.shape != (x.shape[0], *x.shape[2:]):
        raise InvalidInput(f"heatmaps {heatmaps.shape}: expected one (H, W) map per frame, {(x.shape[0], *x.shape[2:])}")
    n, c = x.shape[:2]
    own = 0 if logits is not None else 1           # row 0 of each frame: the frame itself, unless known
    variants = np.empty((n, c + own, *x.shape[1:]), np.float32)
    for i in range(n):
        filled = fill_channels(x[i], evidence_region(heatmaps[i]))
        if own:
            variants[i, 0] = x[i]
        for k in range(c):
            variants[i, own + k] = x[i]
            variants[i, own + k, k] = filled[k]
    flat = variants.reshape(n * (c + own), *x.shape[1:])
    out = model.run("predict", {"input": model.normalisation.apply(flat)})[0].reshape(n, c + own, -1)
    idx = np.asarray(class_indices, np.int64)
    full = out[np.arange(n), 0, idx] if own else np.asarray(logits, np.float64)[np.arange(n), idx]
    return np.stack([drop_shares(full[i], out[i, own:, idx[i]]) for i in range(n)])


def leading_channel(shares: np.ndarray) -> np.ndarray:
    """(N,) index of the channel with the largest share per row of (N, C) shares; -1 where no channel's
    refill changed the answer (all shares zero)."""
    shares = np.atleast_2d(np.asarray(shares, np.float64))
    return np.where(shares.sum(axis=1) > 0, shares.argmax(axis=1), -1)


def sensor_phrase(channels: list[str], shares: np.ndarray) -> str:
    """'evidence by sensor: 70 % thermal, 25 % phase, 5 % intensity' (largest first); '' when no channel's
    refill changed the answer."""
    shares = np.asarray(shares, np.float64)
    if shares.sum() <= 0:
        return ""
    order = np.argsort(-shares, kind="stable")
    return "evidence by sensor: " + ", ".join(f"{100 * shares[k]:.0f} % {channels[k]}" for k in order)


def with_sensor_phrase(sentence: str, channels: list[str], shares: np.ndarray) -> str:
    """The sentence followed by 'Evidence by sensor: ...' (the sentence as it is when no channel's refill
    changed the answer). The CLI's --sensors and the service both say it this way."""
    phrase = sensor_phrase(channels, shares)
    if not phrase:
        return sentence
    phrase = f"{phrase[0].upper()}{phrase[1:]}."
    return f"{sentence} {phrase}" if sentence else phrase
