"""What the thermal physics check can show: the audit's protocol applied to the exact physics.

The audit judges the thermal model by Integrated Gradients of the size of its correction against the
simulator's physics map |apparent - true| (edge/audit/physics.py). Before asking a model to reach a bar
there, this asks what a *perfect* model would reach: the simulator's own inverse, written in PyTorch from
the same formulas (edge/sim/thermal.py, edge/sim/geometry.py: directional emissivity from the slopes, the
cavity effect from the concavity of the 3-px smoothed surface, the camera's inversion), differentiated by
autograd and integrated by the product's own IG (same quadrature, same 16 points, same |IG| over the
thermal and height channels, same 3-px scale, same Pearson r). Its correction equals the physics map
(r 1.000 on every shaped geometry), so whatever r it gets is the ceiling of the protocol, not of a model.

Two baselines, for the oracle and for a trained model:
- `uniform` (the audit's): each channel at its image mean, the pixel-pitch plane kept;
- `ambient`: the part as it is, at the temperature of its surroundings, where the camera reads true
  whatever the emissivity and no reading needs correcting (edge.explain.baselines).

    python docs/audits/thermal/physics_ceiling.py --data D [--model models/thermal] [--per-geometry 100]

D is a simulated set (`edge-xai simulate`). Needs PyTorch (the oracle's gradients); the model runs from
its ONNX graphs as in the audit. Prints a table and writes --out (JSON).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from edge.audit.metrics import pearson
from edge.audit.physics import PHYSICS_SCALE_PX, thermal_attribution
from edge.data.arrays import load_arrays
from edge.explain import IGExplainer, make_baseline
from edge.explain.ig import integrated_gradients
from edge.runtime.model import Model
from edge.sim import geometry, thermal

F = torch.nn.functional
SHAPED = ("cavity", "v_groove", "step", "cylinder", "combined")


class ExactPhysics:
    """The simulator's apparent -> true temperature, inverted exactly, for inputs (thermal K, height mm,
    pitch mm) as the thermal model takes them; float64, differentiable."""

    def __init__(self, emissivity_normal: float, env_k: float):
        self.eps_n, self.env = emissivity_normal, env_k
        sigma = geometry.CONCAVITY_SMOOTHING_PX
        k = cv2.getGaussianKernel(round(sigma * 8 + 1) | 1, sigma)[:, 0]   # cv2's kernel for it (float32)
        self.gauss = torch.tensor(k, dtype=torch.float64)
        # cv2.Laplacian, ksize 3
        self.laplace = torch.tensor([[2.0, 0, 2], [0, -8, 0], [2, 0, 2]], dtype=torch.float64).view(1, 1, 3, 3)

    @staticmethod
    def _slopes(h: torch.Tensor, pitch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """np.gradient: central differences inside, one-sided at the borders."""
        def along(a: torch.Tensor, dim: int) -> torch.Tensor:
            n = a.shape[dim]
            inner = (a.narrow(dim, 2, n - 2) - a.narrow(dim, 0, n - 2)) / 2
            first = a.narrow(dim, 1, 1) - a.narrow(dim, 0, 1)
            last = a.narrow(dim, n - 1, 1) - a.narrow(dim, n - 2, 1)
            return torch.cat([first, inner, last], dim=dim)
        return along(h, 3) / pitch, along(h, 2) / pitch

    @staticmethod
    def _past_the_frame(h: torch.Tensor, pad: int) -> torch.Tensor:
        """edge.sim.geometry._past_the_frame: the surface extended by odd reflection (2 h_edge - mirror),
        axis by axis, as np.pad(mode="reflect", reflect_type="odd") does."""
        for dim in (3, 2):
            n = h.shape[dim]
            first, last = h.narrow(dim, 0, 1), h.narrow(dim, n - 1, 1)
            before = 2 * first - h.narrow(dim, 1, pad).flip(dim)
            after = 2 * last - h.narrow(dim, n - 1 - pad, pad).flip(dim)
            h = torch.cat([before, h, after], dim=dim)
        return h

    def _smoothed_concavity_input(self, h: torch.Tensor) -> torch.Tensor:
        """cv2.GaussianBlur(sigma 3) of the surface extended past the frame as the simulator extends it,
        one pixel wider on every side than the frame (for the Laplacian); separable."""
        p = len(self.gauss) // 2
        y = self._past_the_frame(h, p + 1)
        y = F.conv2d(y, self.gauss.view(1, 1, 1, -1))
        return F.conv2d(y, self.gauss.view(1, 1, -1, 1))

    def correction(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) true - apparent temperature for inputs (N, 3, H, W)."""
        t, h = x[:, 0:1], x[:, 1:2]
        pitch = x[:, 2:3].mean(dim=(2, 3), keepdim=True)
        sx, sy = self._slopes(h, pitch)
        cos = 1.0 / torch.sqrt(1 + sx ** 2 + sy ** 2)
        eps = self.eps_n * cos ** thermal.DIRECTIONAL_EXPONENT
        lap = F.conv2d(self._smoothed_concavity_input(h), self.laplace) / pitch ** 2
        concavity = torch.clamp(lap, min=0)
        eps = eps + (1 - eps) * (1 - torch.exp(-thermal.CAVITY_LENGTH_MM * concavity))
        t4 = (t ** 4 - self.env ** 4) * self.eps_n / eps + self.env ** 4
        return torch.clamp(t4, min=1.0) ** 0.25 - t

    def grad_fn(self, inputs: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """edge.explain.ig's GradFn: the correction and d sum(target * correction) / d inputs."""
        z = torch.tensor(inputs, dtype=torch.float64, requires_grad=True)
        out = self.correction(z)
        (g,) = torch.autograd.grad((out * torch.tensor(target, dtype=torch.float64)).sum(), z)
        return out.detach().numpy().astype(np.float32), g.numpy().astype(np.float32)


def oracle_attribution(physics: ExactPhysics, x: np.ndarray, correction: np.ndarray, kind: str,
                       ambient: tuple[int, float]) -> np.ndarray:
    """|IG| of the size of the exact correction (N, 1, H, W) at x (its signs taken there), over the thermal
    and height channels."""
    base = make_baseline(x, kind, "thermal", constant_channels=(2,), ambient=ambient)
    sign = np.sign(correction)
    r = integrated_gradients(physics.grad_fn, x, base, sign, n_steps=16, method="gausslegendre")
    return np.abs(r.attributions[:, :2]).sum(axis=1)


def model_attribution(model: Model, x: np.ndarray, kind: str) -> np.ndarray:
    if kind == "uniform":
        return thermal_attribution(model, x)        # exactly what the audit computes
    ig = IGExplainer(model, n_steps=16, baseline=kind, quantity="correction")
    return np.stack([np.abs(e.details.per_channel[:2]).sum(axis=0) for e in ig.explain(x)])


def r_scale(att: np.ndarray, importance: np.ndarray) -> float:
    """The audit's r at the physics scale (a constant map counts 0)."""
    r = pearson(cv2.GaussianBlur(att.astype(np.float32), (0, 0), PHYSICS_SCALE_PX), importance)
    return 0.0 if np.isnan(r) else r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="a simulated set (edge-xai simulate)")
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "thermal")
    ap.add_argument("--per-geometry", type=int, default=100, help="frames per geometry (default 100)")
    ap.add_argument("--out", type=Path, default=None, help="JSON of the results")
    args = ap.parse_args()
    torch.set_num_threads(2)
    recipe = json.loads((args.data / "dataset.json").read_text())["config"]
    physics = ExactPhysics(recipe["emissivity_normal"], recipe["env_temperature_k"])
    model = Model.load(args.model, threads=2)
    if model.channels != ["thermal", "height", "pixel_pitch_mm"]:
        sys.exit(f"{args.model}: expected a thermal model of channels thermal, height, pixel_pitch_mm")
    ambient = (0, float(recipe["env_temperature_k"]))
    a = load_arrays(args.data, model.input_shape[1], model.channels, targets=["physics_importance"],
                    progress=False)
    geometry = np.array([m.get("geometry", "?") for m in a.meta])
    importance = a.targets["physics_importance"]
    kinds = ("uniform", "ambient")
    results = {}
    for g in (*SHAPED, "flat"):
        idx = np.flatnonzero(geometry == g)[:args.per_geometry]
        if not len(idx):
            continue
        rows = {f"{who} {k}": [] for who in ("exact physics", "model") for k in kinds}
        same = []
        for s in tqdm(range(0, len(idx), 8), desc=g, leave=False):
            batch = idx[s:s + 8]
            x = a.x[batch]
            c = physics.grad_fn(x, np.zeros((len(x), 1, *x.shape[2:]), np.float32))[0]   # once per batch
            same += [pearson(np.abs(c[k, 0]), importance[i]) for k, i in enumerate(batch)]
            for k in kinds:
                for who, att in (("exact physics", oracle_attribution(physics, x, c, k, ambient)),
                                 ("model", model_attribution(model, x, k))):
                    rows[f"{who} {k}"] += [r_scale(att[j], importance[i]) for j, i in enumerate(batch)]
        results[g] = {"n": len(idx), "exact_correction_vs_physics_r": float(np.nanmean(same)),
                      **{name: float(np.mean(v)) for name, v in rows.items()}}
    cols = [f"{who} {k}" for k in kinds for who in ("exact physics", "model")]
    print(f"r at the physics scale ({PHYSICS_SCALE_PX:g} px), |IG| of the size of the correction, {args.data}")
    print(f"{'geometry':10s} {'n':>4s}  {'exact corr.':>11s}  " + "  ".join(f"{c:>20s}" for c in cols))
    for g, r in results.items():
        print(f"{g:10s} {r['n']:4d}  {r['exact_correction_vs_physics_r']:11.3f}  "
              + "  ".join(f"{r[c]:20.3f}" for c in cols))
    if args.out:
        args.out.write_text(json.dumps({"data": str(args.data), "model": str(args.model), "results": results},
                                       indent=1) + "\n")


if __name__ == "__main__":
    main()
