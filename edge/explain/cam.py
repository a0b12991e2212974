"""Class activation maps from target-layer activations A and their gradients dscore/dA.

The NumPy twin of `kernels/gradcam.cu` (same steps, same order): the CPU path and the test oracle.

    raw = cam_raw(A, G, "gradcam")          # (N, h, w) at the layer's resolution
    heat = upsample_and_normalise(raw, (H, W))  # (N, H, W) in [0, 1]

Grad-CAM (Selvaraju et al.): alpha_k = spatial mean of dy/dA_k; map = ReLU(sum_k alpha_k A_k).
Grad-CAM++ (Chattopadhyay et al.): alpha_k = sum_ij ReLU(g_ij) * a_ij with
    a_ij = g² / (2 g² + sum_ij(A) g³), the closed form for an exponential output.
HiResCAM (Draelos & Carin): map = ReLU(sum_k G_k ⊙ A_k), no spatial averaging, so the map is
faithful to the score for models that end in global average pooling + linear layers.
Element-wise Grad-CAM (pytorch-grad-cam's GradCAMElementWise): map = sum_k ReLU(G_k ⊙ A_k), HiResCAM's
terms with the ReLU before the channel sum: each channel's positive evidence at a place counts, whatever
other channels subtract there. Measured on every annotated model we have (2026-11-29, the audit's
protocol on their test splits: NEU-DET over three training seeds, the tiny-defect and real-texture
stand-ins, the shipped classifier), its worst class's pointing game was at least HiResCAM's but for one
model (0.83 against 0.84) and its thin classes' pixel IoU higher (pits 0.20 -> 0.25, 0.14 -> 0.22,
0.22 -> 0.30); training chooses among all four on the validation split, and `edge-xai calibrate
--choose-cam` on held-out data (`audit.localisation.choose_cam`). Where an artifact the model never saw
makes channels respond strongly in both directions, element-wise keeps the positive half and points at
it while HiResCAM nets it out: on the shortcut experiment's marked frames the shipped classifier's crack
maps pointed at the mark 69 % of the time with element-wise, never with HiResCAM, which it keeps
(README, *Grad-CAM family*).
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

from edge.errors import InvalidInput

METHODS = ("gradcam", "gradcam++", "hirescam", "gradcam-elementwise")   # kernels/gradcam.cu numbers them so
DISPLAY_NAMES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "hirescam": "HiResCAM",
                 "gradcam-elementwise": "element-wise Grad-CAM"}   # as sentences quote them
ELEMENTWISE = ("hirescam", "gradcam-elementwise")   # weights per place, not per channel
EPS = 1e-7


def cam_weights(method: str, activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Channel weights (N, K) for gradcam / gradcam++, or elementwise weights (N, K, h, w) for hirescam and
    gradcam-elementwise."""
    if method == "gradcam":
        return grads.mean(axis=(2, 3))
    if method == "gradcam++":
        g2 = grads**2
        g3 = g2 * grads
        sum_a = activations.sum(axis=(2, 3), keepdims=True)
        denom = 2 * g2 + sum_a * g3
        aij = np.where(grads != 0, g2 / np.where(denom != 0, denom, EPS), 0.0)
        return (np.maximum(grads, 0) * aij).sum(axis=(2, 3))
    if method in ELEMENTWISE:
        return grads
    raise InvalidInput(f"unknown CAM method {method!r}; expected one of {', '.join(METHODS)}")


def cam_raw(activations: np.ndarray, grads: np.ndarray, method: str = "gradcam") -> np.ndarray:
    """(N, K, h, w) activations and gradients -> ReLU'd maps (N, h, w) at the layer's resolution."""
    if activations.shape != grads.shape or activations.ndim != 4:
        raise ValueError(f"activations {activations.shape} and gradients {grads.shape} must be equal (N, K, h, w)")
    w = cam_weights(method, activations, grads)
    if w.ndim == 2:
        w = w[:, :, None, None]
    terms = w * activations
    if method == "gradcam-elementwise":
        return np.maximum(terms, 0, out=terms).sum(axis=1).astype(np.float32, copy=False)   # one temporary
    return np.maximum(terms.sum(axis=1), 0).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _axis_weights(n_in: int, n_out: int, shift: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights along one axis, exactly as kernels/gradcam.cu computes them. Cached: a
    served model asks for the same few sizes on every request (read-only arrays, safe to share)."""
    f = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * np.float32(n_in / n_out) - np.float32(0.5) \
        - np.float32(shift)
    f = np.maximum(f, np.float32(0))
    i0 = np.minimum(f.astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    t = (f - i0).astype(np.float32)
    for a in (i0, i1, t):
        a.flags.writeable = False
    return i0, i1, t


@functools.lru_cache(maxsize=64)
def _axis_matrix(n_in: int, n_out: int, shift: float) -> np.ndarray:
    """The same interpolation as a (n_out, n_in) matrix with two non-zeros per row ((1 - t) at i0, t at i1):
    upsampling is then two small matrix products instead of two gathers over the full-size map (0.08 ->
    0.02 ms for one 16x16 -> 128x128 map here; a served Grad-CAM costs about 3 ms in all)."""
    i0, i1, t = _axis_weights(n_in, n_out, shift)
    w = np.zeros((n_out, n_in), np.float32)
    rows = np.arange(n_out)
    np.add.at(w, (rows, i0), 1 - t)
    np.add.at(w, (rows, i1), t)
    w.flags.writeable = False
    return w


def upsample_bilinear(maps: np.ndarray, size: tuple[int, int], shift: float = 0.0) -> np.ndarray:
    """(N, h, w) -> (N, H, W), bilinear. With shift = 0, half-pixel centres (align_corners=False), as
    pytorch-grad-cam and Captum upsample. `shift` (in map cells) moves the sampling grid: the
    receptive-field alignment (see `alignment_shift`) puts the map where its evidence is."""
    maps = np.asarray(maps, np.float32)
    if shift == 0.0:
        h, w = size
        return np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in maps])
    wy = _axis_matrix(maps.shape[1], size[0], shift)
    wx = _axis_matrix(maps.shape[2], size[1], shift)
    return np.matmul(np.matmul(wy, maps), wx.T)


def alignment_shift(stride: int, centre_px: float = 0.0) -> float:
    """Sampling shift (map cells) for a layer whose cell i sees input pixels centred at
    stride * i + centre_px. Half-pixel upsampling assumes stride * i + (stride - 1) / 2, which for a stack
    of stride-2, 3x3, pad-1 convolutions (centre 0) draws the map (stride - 1) / 2 px too far right and
    down: 3.5 px at 1/8 resolution. Measured on 300 held-out frames of the shipped classifier, aligning
    raised the IoU with masks grown by 8 px from 0.58 to 0.72 for pits and 0.60 to 0.64 for scratches."""
    return (centre_px - (stride - 1) / 2) / stride


def normalise_minmax(maps: np.ndarray) -> np.ndarray:
    """Per-image min-max to [0, 1]; a constant map becomes all zeros (nothing stands out)."""
    out = np.array(maps, np.float32)               # a copy: the caller keeps its unnormalised maps
    for m in out:                                  # per image: no broadcast masks over the whole batch
        lo, hi = m.min(), m.max()
        if hi > lo:
            m -= lo
            m *= np.float32(1.0) / (hi - lo)
        else:
            m[...] = 0
    return out


GUIDED_SIGMA_PX = 1.0     # smoothing of the pixel evidence, input pixels
GUIDED_POWER = 0.5        # how strongly the pixel evidence reshapes the map (1: plain Guided Grad-CAM)
SURROUND_SIGMA_FRACTION = 1 / 16   # "the surface around a pixel": a Gaussian of this fraction of the long side


def local_contrast(x: np.ndarray, sigma_fraction: float = SURROUND_SIGMA_FRACTION) -> np.ndarray:
    """(N, C, H, W) -> each channel minus its Gaussian-weighted surroundings (sigma = `sigma_fraction` of the
    frame's long side): what a pixel shows beyond the surface around it."""
    x = np.asarray(x, np.float32)
    sigma = max(x.shape[2:]) * sigma_fraction
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            out[i, c] = x[i, c] - cv2.GaussianBlur(x[i, c], (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return out


def guided_refine(cam_up: np.ndarray, guided_grad: np.ndarray, inputs: np.ndarray,
                  sigma_px: float = GUIDED_SIGMA_PX, power: float = GUIDED_POWER) -> np.ndarray:
    """Guided Grad-CAM made to draw regions: (N, H, W) upsampled class map times the pixel evidence (scaled
    to [0, 1] per image) to the power `power`. The pixel evidence is |guided gradient x local contrast|
    summed over input channels and Gaussian-smoothed by `sigma_px`; `inputs` are the graph's (normalised)
    inputs (N, C, H, W), the guided gradient's own coordinates.

    Why: the class map is 1/8 of the input resolution and cannot draw a 1-2 px crack; guided
    backpropagation marks the input pixels the class evidence came through, but on its own it follows
    every edge and spreads over the few pixels each filter sees (a 1 px scratch came out 4-5 px wide, pixel
    IoU 0.19). Times the local contrast (`local_contrast`: the pixel minus the surface around it) it is the
    first-order change of the class score had that pixel looked like its surroundings (the evidence per
    sensor measures that counterfactual for a whole region, `sensors.py`, with the same surroundings), so
    it sits on the pixels that differ, not on their neighbours. The smoothing by one pixel joins a crack's
    pixels into a line, and the square root lets the class map keep the extent of broad defects. Measured
    on the simulator (pixel IoU per class, right answers; chosen on seed 3000 among 23 combinations of the
    surroundings' sigma {2, 4, 8} px, smoothing {0, 0.5, 1, 1.5} px and power {0.35, 0.5, 0.7, 1}, the best
    lowest class; read on the 1200 held-out frames of seed 1000, `docs/audits/defect`): scratch 0.19 -> 0.33, crack 0.34 -> 0.45, pit 0.51 -> 0.57, contamination
    0.36 -> 0.40, delamination 0.49 -> 0.33 (the class map alone: 0.09-0.68). The share of the map's mass
    inside the ground truth rose for every class of every set with masks or boxes: simulator 0.10-0.62 ->
    0.17-0.69, the tiny-defect stand-in 0.17-0.51 -> 0.28-0.71, NEU-DET 0.56-0.91 -> 0.60-0.92. Against
    NEU-DET's loose boxes the thinner maps score lower IoUs (scratches, tolerant 0.59 -> 0.32): broad and
    box-annotated defects are the class map's, this option is for thin ones.
    """
    grad = np.asarray(guided_grad, np.float32)
    if grad.shape != np.shape(inputs):
        raise ValueError(f"guided gradient {grad.shape} and inputs {np.shape(inputs)} must be equal (N, C, H, W)")
    return refine_by_pixels(cam_up, np.abs(grad * local_contrast(inputs)).sum(axis=1), sigma_px, power)


def contrast_control(cam_up: np.ndarray, inputs: np.ndarray, sigma_px: float = GUIDED_SIGMA_PX,
                     power: float = GUIDED_POWER) -> np.ndarray:
    """A control for guided_refine, not an explanation: the same refinement with the guided gradient left
    out, i.e. the class map times |local contrast| (the image's own pixels that differ from the surface
    around them, which no model's weights choose). What a guided map scores beyond this control is what the
    model's pixel-level evidence adds to it; what this control scores alone, any edge detector inside the
    class map would.

    Why it is measured: on the shipped classifier's 1200 held-out frames (seed 1000), pixel IoU, class map
    -> this control -> guided map: crack 0.17 -> 0.40 -> 0.45, pit 0.22 -> 0.53 -> 0.57, scratch 0.10 ->
    0.24 -> 0.33; the share of the map inside the mask (relevance mass) crack 0.08 -> 0.14 -> 0.29, pit
    0.05 -> 0.10 -> 0.35, scratch 0.05 -> 0.07 -> 0.17. Most of the guided maps' pixel IoU on thin defects
    is the image's contrast; their relevance mass is the model's (docs/audits/README.md)."""
    return refine_by_pixels(cam_up, np.abs(local_contrast(inputs)).sum(axis=1), sigma_px, power)


def refine_by_pixels(cam_up: np.ndarray, evidence: np.ndarray, sigma_px: float = GUIDED_SIGMA_PX,
                     power: float = GUIDED_POWER) -> np.ndarray:
    """(N, H, W) class maps times the pixel evidence (N, H, W), smoothed by `sigma_px`, scaled to [0, 1] per
    image, to the power `power` (guided_refine's and contrast_control's common step)."""
    cam_up = np.asarray(cam_up, np.float32)
    out = np.empty_like(cam_up)
    for i, m in enumerate(np.asarray(evidence, np.float32)):
        if sigma_px > 0:
            m = cv2.GaussianBlur(m, (0, 0), sigma_px)
        peak = float(m.max())
        out[i] = cam_up[i] * (m / peak) ** power if peak > 0 else 0.0
    return out


def upsample_and_normalise(raw: np.ndarray, size: tuple[int, int], shift: float = 0.0) -> np.ndarray:
    return normalise_minmax(upsample_bilinear(raw, size, shift))


def pool_activations(activations: np.ndarray) -> np.ndarray:
    """(N, K, h, w) target-layer activations -> (N, 2K): each channel's spatial mean, then its spatial
    maximum (the review flag's embedding, CamDetails.embedding; the kernel's `emb` output is its twin)."""
    flat = np.asarray(activations).reshape(*activations.shape[:2], -1)
    return np.concatenate([flat.mean(axis=2), flat.max(axis=2)], axis=1)
