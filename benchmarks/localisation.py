"""How well each class-activation-map method localises, per class, from the exported graphs: pixel IoU
(the seed paper's measure), tolerant IoU (within one Grad-CAM cell) and pointing game, with the audit's
own protocol (`edge.audit.localisation`: correctly classified samples with a mask, the true class's map
binarised at half its maximum).

    python benchmarks/localisation.py --data data/test --model models/defect [--model OTHER] [--limit 600] \\
        [--json benchmarks/measured/localisation-cpu.json]

Grad-CAM, Grad-CAM++ and HiResCAM all come from one `gradcam` graph call (activations and their
gradient at the target layer); they differ only in how the gradient weights the activations
(`edge.explain.cam`), so their costs are the same to within the map arithmetic.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, write_json  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a data set with masks or boxes (simulator: data/test)")
    ap.add_argument("--model", action="append", required=True, help="model folder (repeatable)")
    ap.add_argument("--limit", type=int, default=600, help="seeded random subset (default 600)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)

    from edge.audit import localisation as loc
    from edge.data.arrays import load_arrays
    from edge.explain import GradCAMExplainer
    from edge.explain.cam import METHODS
    from edge.runtime.model import Model

    result = {"machine": machine(args.threads), "data": args.data, "limit": args.limit, "models": {}}
    for model_dir in args.model:
        model = Model.load(Path(model_dir), threads=args.threads)
        _, h, _ = model.input_shape
        arrays = load_arrays(Path(args.data), h, model.channels, limit=args.limit, seed=0, progress=False)
        true_index = np.array([model.classes.index(lab) for lab in arrays.labels])
        per_method = result["models"][model_dir] = {"sha256": model.sha256, "chosen": model.cam_method, "methods": {}}
        for method in METHODS:
            explainer = GradCAMExplainer(model, method)
            heat = np.zeros((len(arrays.x), *arrays.x.shape[2:]), np.float32)
            predicted: list[str] = []
            t = time.perf_counter()
            for s in range(0, len(arrays.x), 64):
                es = explainer.explain(arrays.x[s:s + 64], true_index[s:s + 64])
                heat[s:s + len(es)] = [e.heatmap for e in es]
                predicted += [e.prediction.label for e in es]
            ms = (time.perf_counter() - t) * 1e3 / len(arrays.x)
            metrics, _ = loc.localisation(heat, arrays.masks, arrays.has_mask, arrays.labels, predicted, model.ok_class,
                                          loc.cell_tolerance(model.manifest), arrays.boxes, arrays.mask_kind)
            rows = {c: {k: round(v[k], 3) for k in ("iou_mean", "iou_tolerant_mean", "pointing_game", "n") if k in v}
                    for c, v in metrics.items() if isinstance(v, dict) and "pointing_game" in v}
            per_method["methods"][method] = {"ms_per_frame_batched": round(ms, 3), "per_class": rows}
            print(f"{model_dir} {method:9s} ({ms:.2f} ms/frame in batches of 64)")
            for c, r in rows.items():
                print(f"    {c:14s} pixel IoU {r['iou_mean']:.3f}  tolerant IoU {r['iou_tolerant_mean']:.3f}  "
                      f"pointing {r['pointing_game']:.3f}")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
