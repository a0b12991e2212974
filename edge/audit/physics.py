"""Do the regression models attend to physics? IG attributions against the simulator's ground truth.

Thermal (protocol): for each frame, Integrated Gradients (Gauss-Legendre, 16 points) of the size of the
correction the model makes, the mean of |corrected - apparent temperature| over the frame (signs taken at
the frame, see IGExplainer's quantity "correction"), from the model's own baseline: `ambient` for a model
whose manifest says so (the part as it is, at the temperature of its surroundings, where the camera reads
true whatever the emissivity and nothing needs correcting), else `uniform` (each channel at its image
mean, the pitch plane kept). |IG| summed over the thermal and height channels is compared with the
simulator's physics-importance map |apparent - true| (K): the correction a perfect model would make.
Pearson r per frame, averaged per geometry: `r` pixel by pixel, and `r_physics_scale` (judged by the
default gate) with |IG| first smoothed by a Gaussian of 3 px, the scale over which the simulated physics
itself reads the shape (view factors from a 3-px smoothed surface, slopes from neighbouring pixels). A flat
part has no geometric structure but its defects' own, so from `uniform` its |r| should stay small (the
paper's negative control); from `ambient`, where each pixel's attribution is the correction the model
made there, the control is read in kelvin instead: the correction handed to the pixels whose geometry
needs none (physics map under 0.01 K), `correction_unneeded_k`. What each baseline can show, applied to
the exact physics (the simulator's own inverse, whose correction is the physics map;
docs/audits/thermal/physics_ceiling.py): from `ambient` it reads 0.92-0.96 on every shaped geometry (and
0.55-0.62 on flat parts, whose physics map is their defects' own shape); from `uniform` only cavity 0.79, V-groove 0.83, step 0.26, cylinder 0.62, combined
0.54, because its path changes the shape too and the correction's gradient with respect to the height lies
where the slope changes, not where it is large. So `ambient` is the protocol a physically right model
passes; it is sound for a model whose correction at a pixel follows that pixel's reading (the radiometric
head, edge.train.models.RadiometricUNet), and the `uniform` protocol and the earlier one (IG of the mean
corrected temperature) are reported beside it (`physics_uniform`, `physics_output`, on 300 evenly spaced
frames). Why the correction's size: the corrected temperature is mostly the apparent one, and in a signed
mean a frame's positive corrections (cavities look hotter) and negative ones (grazing slopes look colder)
cancel; where the model had to correct, and by how much, is the physical question.

Phase (protocol): |IG| of the mean unwrapped phase against the wrapped-phase jump map (pixels within
2 px of a 2 pi discontinuity): the concentration = share of |IG| on jumps over their share of the area
(> 1 means attribution concentrates where unwrapping has work to do).
"""
from __future__ import annotations

import cv2
import numpy as np

from edge.audit.metrics import grow, pearson
from edge.explain import IGExplainer

THERMAL_PROTOCOL = "F" + __doc__.split("Thermal (protocol): f")[1].split("\n\nPhase")[0].replace("\n", " ")
PHASE_PROTOCOL = __doc__.split("Phase (protocol): ")[1].strip().replace("\n", " ")
PHYSICS_SCALE_PX = 3.0        # edge.sim.geometry.concavity smooths the surface with this sigma
# Where the physics map is below this, the geometry needs no correction (a third of the simulated camera's
# 0.03 K noise); what the attribution puts there, per pixel in kelvin, is `correction_unneeded_k`.
NO_CORRECTION_K = 0.01
COMPARISON_FRAMES = 300       # frames the earlier thermal protocol is reported on, beside the judged one


def thermal_physics(model, x: np.ndarray, importance: np.ndarray, geometries: list[str], batch: int = 8,
                    progress=None, quantity: str = "correction", baseline: str = "uniform") -> dict:
    """Per geometry: mean r and r at the physics scale (with std, n, and the median frame as the example)
    of |IG| of `quantity` from `baseline` (see the protocol above) against `importance`."""
    r_by_geo: dict[str, list[tuple[float, float, float]]] = {}
    for s in range(0, len(x), batch):
        for k, a in enumerate(thermal_attribution(model, x[s:s + batch], quantity, baseline)):
            i = s + k
            r = pearson(a, importance[i])
            r_scale = pearson(cv2.GaussianBlur(a, (0, 0), PHYSICS_SCALE_PX), importance[i])
            r_by_geo.setdefault(geometries[i], []).append(
                # a constant map (no attribution, or no structure) correlates with nothing: 0, not NaN
                (0.0 if np.isnan(r) else r, 0.0 if np.isnan(r_scale) else r_scale,
                 unneeded_correction_k(a, importance[i])))
        if progress:
            progress(min(batch, len(x) - s))
    out = {}
    for g, v in sorted(r_by_geo.items()):
        arr = np.array(v)
        out[g] = {"r": float(arr[:, 0].mean()), "r_std": float(arr[:, 0].std()),
                  "r_physics_scale": float(arr[:, 1].mean()), "r_physics_scale_std": float(arr[:, 1].std()),
                  "n": len(v)}
        if baseline == "ambient":      # only from there is each pixel's attribution its own correction
            out[g]["correction_unneeded_k"] = float(np.nanmean(arr[:, 2])) if np.isfinite(arr[:, 2]).any() else 0.0
        # the report's example for this geometry: the frame whose r is the geometry's median
        frames = [i for i, geo in enumerate(geometries) if geo == g]
        out[g]["example"] = int(frames[int(np.argsort(arr[:, 1])[len(arr) // 2])])
    return out


def unneeded_correction_k(attribution: np.ndarray, importance: np.ndarray) -> float:
    """Mean |IG| per pixel, times the pixel count, over the pixels whose physics map is under
    NO_CORRECTION_K (NaN where there are none). With IG of the correction's size (a mean over the frame)
    from `ambient` on a model local by construction, each pixel's |IG| is its own correction over the pixel
    count, so this is the correction in kelvin the model makes where the geometry needs none."""
    quiet = importance < NO_CORRECTION_K
    return float(attribution[quiet].mean() * attribution.size) if quiet.any() else float("nan")


def thermal_attribution(model, x: np.ndarray, quantity: str = "correction", baseline: str = "uniform") -> np.ndarray:
    """|IG| over the thermal and height channels, as the thermal protocol measures it: (N, H, W).
    quantity "output" is the earlier protocol (IG of the mean corrected temperature)."""
    ig = IGExplainer(model, n_steps=16, baseline=baseline, quantity=quantity)
    channels = [i for i, c in enumerate(model.channels) if c in ("thermal", "height")]
    return np.stack([np.abs(e.details.per_channel[channels]).sum(axis=0) for e in ig.explain(x)]).astype(np.float32)


def jump_map(wrapped: np.ndarray, px: int = 2) -> np.ndarray:
    """Pixels within `px` of a 2 pi discontinuity of the wrapped phase."""
    dy = np.abs(np.diff(wrapped, axis=0, prepend=wrapped[:1])) > np.pi
    dx = np.abs(np.diff(wrapped, axis=1, prepend=wrapped[:, :1])) > np.pi
    return grow(dy | dx, px)


def phase_physics(model, x: np.ndarray, batch: int = 8, progress=None) -> dict:
    ig = IGExplainer(model, n_steps=16, baseline="flat", quantity="output")
    ratios = []
    for s in range(0, len(x), batch):
        for k, e in enumerate(ig.explain(x[s:s + batch])):
            jumps = jump_map(x[s + k, 0])
            if not jumps.any() or jumps.all():
                continue
            a = np.abs(e.attribution)
            share = a[jumps].sum() / max(a.sum(), 1e-12)
            ratios.append(share / jumps.mean())
        if progress:
            progress(min(batch, len(x) - s))
    return {"concentration_mean": float(np.mean(ratios)) if ratios else None, "n": len(ratios)}
