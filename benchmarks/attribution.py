"""Attribution latency: ours (ONNX Runtime, no torch) against the reference libraries, same weights,
same input, this machine.

    python benchmarks/attribution.py [--runs 48] [--rounds 8] [--threads 2] [--shap-budget 256] [--out results/attribution.json]

Rows (JSON `results.<name>.median_ms`):
  predict              our predict graph: normalise, run, softmax
  gradcam              our Grad-CAM explainer, predicted class: one gradcam-graph call + map
  gradcam_guided       the same, refined by the guided_gradient graph (--guided; no target, for the record)
  predict_then_gradcam a predict-graph call, then Grad-CAM, back to back: two sessions' thread pools in turn
                       (minus predict + gradcam = what one pool's after-work spinning costs the other)
  pytorch_grad_cam     pytorch-grad-cam GradCAM on the torch model (same weights)
  captum_layergradcam  Captum LayerGradCam + bilinear upsampling + min-max
  ig                   our IG, M = 50 Gauss-Legendre, one batched input-gradient call
  captum_ig            Captum IntegratedGradients, n_steps = 50, gausslegendre, internal_batch_size = 50
  ig_adaptive          our adaptive IG, relative completeness delta <= 1 %
  shap                 our patch SHAP (KernelSHAP, default 16x16/8 patches, blur baseline), --shap-budget evaluations
  shap_lib             shap.KernelExplainer on the same patch game with the torch model's forward,
                       the stack a shap user has, same budget
  shap_lib_onnx        the same with our ONNX forward: what is left is the library's own overhead
Each row runs in its own process (torch's and ONNX Runtime's thread pools spin after work and slow
each other down when they share one), with the same thread count. Shared cloud CPUs drift by 10-20 %
over minutes, so the rows run round-robin in --rounds rounds, a new process per row and round, and each
row's median is taken over all its runs (--runs in total, after warm-up in every round).
The targets are judged on each row's steady time: the fastest of its processes' medians. Why: on the
2-core development VM a process runs at one of two speeds for its whole life (2026-11-29, the NEU-DET
model's predict row in 8 processes: 0.56-0.60 ms in five, 0.89 in three; its gradcam row 0.71-0.77 and
0.97-1.00), so a ratio of pooled medians depends on how many slow processes each row drew: gradcam /
predict read 0.93-0.97 in three runs of 8 rounds that hour, 1.28 between the fast processes. As with
timeit, the slower readings are interference, not the code. The pooled medians are printed and kept too.
The rows run in a new (seeded) order every round, so no row always follows the same one.
Grad-CAM against a prediction is also measured *paired*: with both rows asked for, every round adds a
process that alternates a prediction and a Grad-CAM call (`PAIRED_CALLS` of each per turn) and reports
the ratio of its two medians; the `gradcam / predict` target is judged on the median of those ratios.
Both calls then run at the process's one speed, as in a serving process, so the ratio no longer depends on
which speed each row's processes drew: on the shipped classifier the steady ratio read 1.02-1.24 across
three runs of 12 rounds within an hour, alternating calls in one process 1.14-1.16 (2026-11-29).
Targets (issue #3): Grad-CAM <= 1.2x predict-only and >= 2x faster than pytorch-grad-cam and Captum;
IG >= 1.25x faster than Captum at equal steps; SHAP >= 2x faster than shap at equal budget.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))      # helpers.reference_libs: pytorch-grad-cam without torchvision
sys.path.insert(0, str(ROOT / "benchmarks"))

ROWS = ("predict", "gradcam", "gradcam_guided", "predict_then_gradcam", "pytorch_grad_cam", "captum_layergradcam", "ig", "captum_ig", "ig_adaptive",
        "shap", "shap_lib", "shap_lib_onnx")


def build_row(name: str, args: argparse.Namespace):
    """Set up one row; returns (callable, extra facts). Torch is imported only by torch rows."""
    import numpy as np

    from edge.runtime.model import Model, softmax
    from edge.sim.sample import simulate_sample

    model = Model.load(args.model, threads=args.threads, spin=args.spin)
    model.warm_up()
    s = simulate_sample(1, 1000)                     # a crack frame
    # A model trained on photographs reads other channels (`gray`, `c0..`): the frame's intensity stands
    # in for each of them (what is timed depends on the input's shape, not on its content).
    x = np.stack([s.get(c, s["intensity"]) for c in model.manifest["channels"]])[None].astype(np.float32)
    h, w = model.manifest["input"]["size"]
    if x.shape[2:] != (h, w):
        import cv2
        x = np.stack([cv2.resize(p, (w, h), interpolation=cv2.INTER_AREA) for p in x[0]])[None]
    xn = model.normalisation.apply(x)
    c = int(np.argmax(model.predict(x)[0]))

    if name == "predict":
        return lambda: softmax(model.run("predict", {"input": model.normalisation.apply(x)})[0]), {}
    if name == "gradcam":
        from edge.explain import GradCAMExplainer
        e = GradCAMExplainer(model)
        return lambda: e.explain(x), {}
    if name == "gradcam_guided":
        from edge.explain import GradCAMExplainer
        e = GradCAMExplainer(model, guided=True)
        return lambda: e.explain(x), {}
    if name == "predict_then_gradcam":
        from edge.explain import GradCAMExplainer
        e = GradCAMExplainer(model)
        return lambda: (model.run("predict", {"input": model.normalisation.apply(x)}), e.explain(x)), {}
    if name in ("ig", "ig_adaptive"):
        from edge.explain import IGExplainer
        kw = dict(n_steps=args.steps) if name == "ig" else dict(tolerance=0.01)
        e = IGExplainer(model, quadrature="gausslegendre", baseline="black", **kw)
        [r] = e.explain(x, c)
        return lambda: e.explain(x, c), {k: getattr(r.details, k) for k in ("n_steps", "gradient_evaluations",
                                                                          "relative_completeness_delta")}
    if name == "shap":
        from edge.explain import PatchShapExplainer
        e = PatchShapExplainer(model, budget=args.shap_budget, seed=0, baseline="blur")
        return lambda: e.explain(x, c), {"patches": e.grid.n, "budget": args.shap_budget}

    import torch

    from helpers.reference_libs import shipped_torch_model

    torch.set_num_threads(args.threads)
    net = shipped_torch_model(args.model)
    xt = lambda: torch.from_numpy(model.normalisation.apply(x))  # noqa: E731  (the same input as ours)
    if name == "pytorch_grad_cam":
        from helpers.reference_libs import pytorch_grad_cam_class

        # the same member of the family as ours (the model's cam_method): HiResCAM is not Grad-CAM's cost
        cls = pytorch_grad_cam_class(model.cam_method)
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        cam = cls(model=net, target_layers=[net.features])
        return lambda: cam(xt(), targets=[ClassifierOutputTarget(c)]), {"method": model.cam_method}
    if name == "captum_layergradcam":
        from captum.attr import LayerAttribution, LayerGradCam

        lgc = LayerGradCam(net, net.features)

        def captum_gradcam():
            a = lgc.attribute(xt(), target=c, relu_attributions=True)
            up = LayerAttribution.interpolate(a, x.shape[2:], interpolate_mode="bilinear")[:, 0].detach().numpy()
            lo, hi = up.min(), up.max()
            return (up - lo) / (hi - lo) if hi > lo else up * 0
        return captum_gradcam, {}
    if name == "captum_ig":
        from captum.attr import IntegratedGradients

        ig = IntegratedGradients(net)

        def captum_ig():
            inp = xt()
            return ig.attribute(inp, baselines=torch.zeros_like(inp), target=c, n_steps=args.steps,
                                method="gausslegendre", internal_batch_size=args.steps)
        return captum_ig, {}
    if name in ("shap_lib", "shap_lib_onnx"):
        import shap

        from edge.explain import PatchGrid, make_baseline
        from edge.explain.patches import DEFAULT_PATCH, DEFAULT_STRIDE
        grid = PatchGrid(*xn.shape[2:], DEFAULT_PATCH, DEFAULT_STRIDE)     # the same players as ours
        base = make_baseline(xn, "blur", "defect")

        def forward(batch):
            if name == "shap_lib_onnx":
                return model.run("predict", {"input": batch})[0].astype(np.float64)
            with torch.no_grad():
                return net(torch.from_numpy(batch)).double().numpy()

        def masked_log_odds(z):
            out = np.concatenate([forward(grid.masked(xn[0], base[0], z[i:i + 64] > 0.5))
                                  for i in range(0, len(z), 64)])
            others = np.delete(out, c, axis=1)
            return out[:, c] - np.log(np.exp(others).sum(axis=1))

        def shap_lib():
            # The same game (patch coalitions -> masked frame -> log-odds of the class), same budget,
            # no L1 feature selection (as ours).
            explainer = shap.KernelExplainer(masked_log_odds, np.zeros((1, grid.n)))
            return explainer.shap_values(np.ones((1, grid.n)), nsamples=args.shap_budget, l1_reg=False, silent=True)
        return shap_lib, {"patches": grid.n, "budget": args.shap_budget}
    raise ValueError(f"unknown row {name!r}")


def input_shape(model_dir: Path) -> str:
    """CxHxW as build_row feeds it: the frame's channels resized to the model's input size."""
    m = json.loads((Path(model_dir) / "manifest.json").read_text())
    h, w = m["input"]["size"]
    return f"{len(m['channels'])}x{h}x{w}"


PAIRED = "paired"          # the internal row that alternates predict and gradcam in one process
PAIRED_CALLS = 4           # calls of one row before switching to the other
PAIRED_RUNS = 48           # calls of each row per paired process, at least: its ratio from 8 read 0.79-1.72


def run_paired(args: argparse.Namespace) -> dict:
    """predict and gradcam alternating in this process: both samples, and their medians' ratio."""
    import numpy as np
    from _common import time_ms

    fns = {name: build_row(name, args)[0] for name in ("predict", "gradcam")}
    runs = max(PAIRED_RUNS, -(-args.runs // args.rounds))
    out: dict[str, list[float]] = {name: [] for name in fns}
    for name, fn in fns.items():
        time_ms(fn, 0, warmup=3)
    while len(out["predict"]) < runs:
        for name, fn in fns.items():
            out[name] += time_ms(fn, PAIRED_CALLS, warmup=0)
    return {"samples_ms": out, "ratio": float(np.median(out["gradcam"]) / np.median(out["predict"]))}


def run_row(name: str, args: argparse.Namespace) -> dict:
    import warnings

    from _common import time_ms

    warnings.simplefilter("ignore")
    if name == PAIRED:
        return run_paired(args)
    fn, extra = build_row(name, args)
    runs = (args.shap_runs or args.runs) if name.startswith("shap") else args.runs
    runs = max(1, -(-runs // args.rounds))
    return {"samples_ms": time_ms(fn, runs, warmup=3 if runs > 5 else 1), **extra}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=ROOT / "models" / "defect")
    p.add_argument("--runs", type=int, default=48, help="timed runs per row in all, after 3 warm-up runs in every "
                   "round (default 48)")
    p.add_argument("--threads", type=int, default=min(os.cpu_count() or 1, 4))
    p.add_argument("--steps", type=int, default=50, help="IG interpolation points (default 50, as in the paper)")
    p.add_argument("--shap-budget", type=int, default=256, help="model evaluations for the SHAP rows (default 256)")
    p.add_argument("--shap-runs", type=int, default=None, help="runs for the SHAP rows (default: --runs)")
    p.add_argument("--rounds", type=int, default=8,
                   help="rounds over the rows, a new process per row each round (default 8: the targets are "
                        "judged on each row's fastest process, so more processes, fewer chances to miss its speed)")
    p.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of the rows")
    p.add_argument("--row", default=None, help=argparse.SUPPRESS)   # internal: one row, in this process
    p.add_argument("--out", type=Path, default=None, help="write JSON results here")
    p.add_argument("--spin", action="store_true",
                   help="let ONNX Runtime's thread pools busy-wait between calls (its own default; ours is off)")
    args = p.parse_args()
    if args.row:
        print(json.dumps(run_row(args.row, args)))
        return

    import numpy as np
    from _common import machine, print_targets, summary, write_json
    from tqdm import tqdm

    rows = [r for r in args.rows.split(",") if r]
    unknown = set(rows) - set(ROWS)
    if unknown:
        p.error(f"unknown rows {sorted(unknown)}; expected some of {', '.join(ROWS)}")
    passthrough = [a for a in sys.argv[1:] if not a.startswith("--out") and a != str(args.out)]
    samples: dict[str, list[float]] = {r: [] for r in rows}
    process_medians: dict[str, list[float]] = {r: [] for r in rows}
    extras: dict[str, dict] = {}
    paired = {"predict", "gradcam"} <= set(rows)
    paired_ratios: list[float] = []
    with tqdm(total=(len(rows) + paired) * args.rounds, desc="benchmark", unit="row") as bar:
        order = np.random.default_rng(0)
        for _ in range(args.rounds):
            # A new order every round (reproducibly): a row that always followed a heavy one ran on a
            # disturbed machine in every round (the predict row after shap_lib_onnx: 1.1-1.3 ms in all 8
            # processes, 0.72 alone).
            for name in map(str, order.permutation(rows + [PAIRED] * paired)):
                r = subprocess.run([sys.executable, __file__, *passthrough, "--row", name], capture_output=True,
                                   text=True)
                if r.returncode != 0:
                    raise SystemExit(f"row {name} failed:\n{r.stderr[-3000:]}")
                out = json.loads(r.stdout.strip().splitlines()[-1])
                bar.update()
                if name == PAIRED:
                    paired_ratios.append(out["ratio"])
                    continue
                runs_ms = out.pop("samples_ms")
                samples[name] += runs_ms
                process_medians[name].append(float(np.median(runs_ms)))
                extras[name] = out
    results = {name: {**summary(samples[name]), "steady_ms": min(process_medians[name]),
                      "process_medians_ms": process_medians[name], **extras[name]} for name in rows}

    med = {k: v["steady_ms"] for k, v in results.items()}      # the targets' basis: see the docstring
    checks = [("gradcam / predict", "gradcam", "predict", "<=", 1.2),
              ("pytorch_grad_cam / gradcam", "pytorch_grad_cam", "gradcam", ">=", 2),
              ("captum_layergradcam / gradcam", "captum_layergradcam", "gradcam", ">=", 2),
              ("captum_ig / ig", "captum_ig", "ig", ">=", 1.25),
              ("shap_lib / shap", "shap_lib", "shap", ">=", 2),
              ("shap_lib_onnx / shap", "shap_lib_onnx", "shap", ">=", 2)]
    ratios, met = {}, {}
    for label, a, b, how, bar in checks:
        if a in med and b in med:
            ratios[label] = med[a] / med[b]
            met[label] = ratios[label] <= bar if how == "<=" else ratios[label] >= bar
    if paired_ratios:          # judged paired (see the docstring); the ratio of steady times kept beside it
        ratios["gradcam / predict, steady"] = ratios["gradcam / predict"]
        ratios["gradcam / predict"] = float(np.median(paired_ratios))
        met["gradcam / predict"] = ratios["gradcam / predict"] <= 1.2
    if "gradcam_guided" in med and "predict" in med:   # an option, not the inline path: reported, no target
        ratios["gradcam_guided / predict"] = med["gradcam_guided"] / med["predict"]
    import captum
    import onnxruntime
    import shap
    import torch

    result = {"benchmark": "attribution", "machine": machine(args.threads), "model": str(args.model),
              "rounds": args.rounds,
              "input": f"simulator frame seed 1000 index 1 (crack), {input_shape(args.model)}", "ig_steps": args.steps,
              "shap_budget": args.shap_budget, "results": results, "ratios": ratios, "targets_met": met,
              "paired_gradcam_over_predict": paired_ratios,
              "versions": {"torch": torch.__version__, "captum": captum.__version__, "shap": shap.__version__,
                           "onnxruntime": onnxruntime.__version__}}
    print(f"\n{'row':<22}{'steady ms':>10}{'median ms':>11}{'p10':>8}{'p90':>8}{'runs':>6}")
    for k, v in results.items():
        print(f"{k:<22}{v['steady_ms']:>10.2f}{v['median_ms']:>11.2f}{v['p10_ms']:>8.2f}{v['p90_ms']:>8.2f}{v['runs']:>6}")
    print("(steady: the fastest process's median, what the ratios below compare; median/p10/p90: all runs)")
    print()
    print_targets({f"{label} (target {how} {bar})": (ratios[label], met[label])
                   for (label, _, _, how, bar) in checks if label in ratios})
    if paired_ratios:
        steady = ratios["gradcam / predict, steady"]
        print(f"  (gradcam / predict: the median of {len(paired_ratios)} paired processes, "
              f"{min(paired_ratios):.2f}-{max(paired_ratios):.2f}; of the steady times {steady:.2f})")
    if "gradcam_guided / predict" in ratios:
        print(f"{'gradcam_guided / predict (option, no target)':<52}{ratios['gradcam_guided / predict']:>8.2f}")
    m = result["machine"]
    print(f"\nmachine: {m['cpu']} ({m['cpu_count']} cores, {m['threads']} threads), gpu: {m['gpu']}")
    write_json(args.out, result)


if __name__ == "__main__":
    main()
