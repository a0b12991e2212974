"""Would a finer Grad-CAM layer, or LayerCAM's fusion of layers, draw thin defects? (#11 §2, insight only)

The served map is the model's own CAM at its target layer (1/8 of the input: 16x16 at 128 px). This
script reads, with the audit's protocol (`edge.audit.localisation`: correctly classified samples with a
mask, the true class's map binarised at half its maximum), the maps one would get one or two stages
earlier, where each cell is 4 or 2 px, and their fusions with the served map:

* HiResCAM at layer L: ReLU(sum_k G_k * A_k) with A, G the activations and dscore/dA at L;
* LayerCAM (Jiang et al., 2021) at layer L: ReLU(sum_k ReLU(G_k) * A_k);
* fusions with the served map: the product, its square or cube root, the mean and the maximum of the
  min-max normalised, bilinearly upsampled maps.

And what each costs: a gradient at an earlier layer is a backward pass through every layer after it,
where the served map needs only the head's. Timed in torch on the same weights (batch 1, the machine's
threads), as ratios to a forward pass: the ratio, not the milliseconds, carries to the exported graphs.

    edge-xai simulate --out /tmp/sim1000 --n 600 --seed 1000
    python docs/audits/finer_layers.py --model models/defect --data /tmp/sim1000 --layers 1,3

Uses torch (a development-time check, like the parity tests); nothing here is on the served path.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from edge.audit import localisation as loc
from edge.data.arrays import load_arrays
from edge.explain.cam import cam_raw, normalise_minmax, upsample_and_normalise
from edge.runtime.model import Model
from edge.train.models import load_weights


def layer_maps(model: torch.nn.Module, x: torch.Tensor, target: np.ndarray, layers: list[int], served_method: str
               ) -> tuple[np.ndarray, dict[tuple[int, str], np.ndarray]]:
    """Logits and, for each layer index of `model.features` (and the target layer), HiResCAM and LayerCAM
    maps of the target class at the layer's resolution; at the target layer also the served map (the model's
    own CAM method, `served`)."""
    acts = []
    a = x
    for module in model.features:
        a = module(a)
        a.retain_grad()
        acts.append(a)
    logits = model.classify(a)
    logits[torch.arange(len(x)), torch.from_numpy(target)].sum().backward()
    maps = {}
    for i in sorted(set(layers) | {len(acts) - 1}):
        A, G = acts[i].detach().numpy(), acts[i].grad.numpy()
        maps[(i, "hirescam")] = cam_raw(A, G, "hirescam")
        maps[(i, "layercam")] = np.maximum((np.maximum(G, 0) * A).sum(1), 0)
        if i == len(acts) - 1:
            maps[(i, "served")] = cam_raw(A, G, served_method)
    return logits.detach().numpy(), maps


def backward_cost(model: torch.nn.Module, x: torch.Tensor, layers: list[int], repeats: int = 30) -> dict[str, float]:
    """Median time of the forward pass, and of forward + the class score's backward down to each layer,
    relative to the forward pass (batch of one)."""
    def run(stop: int | None) -> float:
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            with torch.enable_grad():
                a = x
                start = None
                for i, module in enumerate(model.features):
                    if stop is not None and i == stop + 1:
                        a = a.detach().requires_grad_(True)   # the backward stops here: dscore/d(layer stop)
                        start = a
                    a = module(a)
                if stop is None:
                    with torch.no_grad():
                        model.classify(a)
                else:
                    if start is None:                         # the target layer itself: the head's backward only
                        a = a.detach().requires_grad_(True)
                        start = a
                    logits = model.classify(a)
                    torch.autograd.grad(logits[:, 0].sum(), start)
            times.append(time.perf_counter() - t)
        return float(np.median(times))

    with torch.no_grad():
        run(None)
    forward = run(None)
    last = len(model.features) - 1
    out = {"forward_ms": round(forward * 1e3, 3)}
    for i in sorted(set(layers) | {last}):
        out[f"to_layer_{i}_x_forward"] = round(run(i) / forward, 3)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a classifier's model folder (weights.pt)")
    ap.add_argument("--data", required=True, help="annotated data (simulator output or a user's folder)")
    ap.add_argument("--layers", default="1,3", help="indices into model.features (default 1,3)")
    ap.add_argument("--limit", type=int, default=600)
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args(argv)

    served = Model.load(Path(args.model))
    model = load_weights(args.model).eval()
    layers = [int(v) for v in args.layers.split(",")]
    last = len(model.features) - 1
    _, size, _ = served.input_shape
    arrays = load_arrays(Path(args.data), size, served.channels, limit=args.limit, seed=0, progress=False)
    target = np.array([served.classes.index(lab) for lab in arrays.labels])
    x = torch.from_numpy(np.ascontiguousarray(served.normalisation.apply(arrays.x), dtype=np.float32))

    upsampled: dict[tuple[int, str], list[np.ndarray]] = {}
    predicted: list[str] = []
    for s in range(0, len(x), 32):
        logits, maps = layer_maps(model, x[s:s + 32], target[s:s + 32], layers, served.cam_method)
        predicted += [served.classes[j] for j in logits.argmax(1)]
        for key, raw in maps.items():
            upsampled.setdefault(key, []).append(upsample_and_normalise(raw, (size, size)))
    heat = {k: np.concatenate(v) for k, v in upsampled.items()}

    base = heat[(last, "served")]
    variants = {f"layer {k[0]} {k[1]}": v for k, v in heat.items()}
    fine = [heat[(i, "layercam")] for i in layers]
    for i, f in zip(layers, fine):
        variants[f"served x layer {i} layercam"] = normalise_minmax(base * f)
        variants[f"sqrt(served x layer {i} layercam)"] = normalise_minmax(np.sqrt(base * f))
    variants["geometric mean, served and all layercams"] = normalise_minmax(np.prod([base, *fine], 0) ** (1 / (1 + len(fine))))
    variants["mean, served and all layercams"] = normalise_minmax(np.mean([base, *fine], 0))
    variants["max, served and all layercams"] = normalise_minmax(np.max([base, *fine], 0))

    tolerance = loc.cell_tolerance(served.manifest)
    result = {"model": args.model, "data": args.data, "served_method": served.cam_method, "maps": {}}
    for name, maps in variants.items():
        metrics, _ = loc.localisation(maps, arrays.masks, arrays.has_mask, arrays.labels, predicted, served.ok_class,
                                      tolerance, arrays.boxes, arrays.mask_kind)
        rows = {c: {"iou": round(v["iou_mean"], 3), "iou_tolerant": round(v["iou_tolerant_mean"], 3),
                    "pointing_game": round(v["pointing_game"], 3)}
                for c, v in metrics.items() if isinstance(v, dict) and "iou_mean" in v}
        result["maps"][name] = rows
        print(f"{name:44s} " + "  ".join(f"{c} {r['iou']:.2f}/{r['iou_tolerant']:.2f}/{r['pointing_game']:.2f}"
                                          for c, r in rows.items()))
    print("(per class: pixel IoU / tolerant IoU / pointing game)")
    result["cost"] = backward_cost(model, x[:1], layers)
    print("cost relative to a forward pass (torch, batch 1):", result["cost"])
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
