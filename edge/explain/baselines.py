"""IG / SHAP baselines: the input that means "nothing to explain", in the graph's input space.

Which input is neutral depends on the physics of the task:
- defect classifier (inputs centred per image): `black` is all zeros, i.e. a featureless part at the
  image's mean level in every channel; `blur` keeps the part's low-frequency look and removes the
  small structures a defect is made of (Gaussian, sigma = 1/16 of the image side).
- thermal reconstruction (physical units: apparent K, height mm, pitch mm): `uniform` keeps each
  channel's image mean, a flat part at uniform temperature, the "uniform gray" of the issue; `zero`
  is the zero-emission scene (0 K, zero height), far from anything the model saw, so use with care;
  `ambient` is the same part (its shape, the camera) at the temperature of its surroundings: there the
  camera reads the true temperature whatever the emissivity (emission and reflected surroundings
  balance), so no reading needs correcting, and the correction grows as the part heats. IG from there
  hands the correction to the pixels whose readings needed it. The exact physics, explained this way,
  lies on the simulator's physics map at r 0.92-0.95 on every shaped geometry, where `uniform` reaches
  only 0.26-0.83 (docs/audits/thermal/physics_ceiling.py). The path runs through temperatures between
  ambient and the part's: sound for a model whose correction at a pixel follows that pixel's reading
  and the part's shape (the radiometric head, `edge.train.models.RadiometricUNet`, whose manifest names
  this baseline as its default: `explain.baseline`), or one that has seen parts that cool (`edge-xai
  simulate --temperature-k`). A residual U-Net trained on 330-380 K has not, and corrects from its
  neighbourhood: it is explained from `uniform`.
- phase unwrapping: `flat`, zero phase everywhere, a flat mirror.
A user-supplied array of the input's shape is accepted everywhere.
"""
from __future__ import annotations

import cv2
import numpy as np

from edge.errors import InvalidInput

DEFAULTS = {"defect": "blur", "thermal": "uniform", "phase": "flat"}
KINDS = ("black", "blur", "uniform", "zero", "flat", "ambient")


def default_baseline(model) -> str:
    """The baseline a model is explained from unless asked otherwise: the one its manifest names
    (`explain.baseline`, e.g. `ambient` for the radiometric thermal head), else its task's."""
    return model.explained_baseline or DEFAULTS.get(model.task, "black")


def make_baseline(x: np.ndarray, kind: str | np.ndarray, task: str,
                  constant_channels: tuple[int, ...] = (), ambient: tuple[int, float] | None = None) -> np.ndarray:
    """Baseline for a graph-space batch x (N, C, H, W). `constant_channels` (e.g. the pixel-pitch plane)
    are copied from x: they describe the camera, not the scene, and have no "absent" value. ambient:
    (channel, value) for the `ambient` kind: that channel (the apparent temperature) set to the value
    (the surroundings' temperature), every other channel kept."""
    x = np.asarray(x, np.float32)
    if not isinstance(kind, str):
        b = np.asarray(kind, np.float32)
        if b.shape not in (x.shape, x.shape[1:]):
            raise InvalidInput(f"baseline of shape {b.shape}, expected {x.shape[1:]} or {x.shape}")
        return np.broadcast_to(b, x.shape).copy()
    if kind in ("black", "zero", "flat"):
        b = np.zeros_like(x)
    elif kind == "uniform":
        b = np.broadcast_to(x.mean(axis=(2, 3), keepdims=True), x.shape).copy()
    elif kind == "ambient":
        if ambient is None:
            raise InvalidInput("baseline 'ambient': the model's manifest gives no ambient temperature (output.ambient, "
                               "or env_temperature_k in its training data's recipe) or no corrected channel")
        b = x.copy()
        b[:, ambient[0]] = ambient[1]
    elif kind == "blur":
        sigma = max(x.shape[2], x.shape[3]) / 16
        b = np.stack([np.stack([cv2.GaussianBlur(ch, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
                                for ch in img]) for img in x]).astype(np.float32)
    else:
        raise InvalidInput(f"baseline {kind!r}: expected one of {', '.join(KINDS)} (default for {task}: "
                           f"{DEFAULTS.get(task, 'black')}) or an array")
    for c in constant_channels:
        b[:, c] = x[:, c]
    return b
