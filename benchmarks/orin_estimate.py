"""A Jetson Orin estimate for the served answers, from a GPU run (benchmarks/device.py's JSON) and published
device figures. An ESTIMATE, never a measurement: no Jetson has run this code.

    python benchmarks/orin_estimate.py                       # table from the H200 runs of the current code
    python benchmarks/orin_estimate.py --out benchmarks/estimates/jetson-orin.json

The basis. Each served row (ONNX Runtime CUDA, the shipped classifier) was measured at batch 1 and 8. The
stages the explainers time themselves that run on the host (preprocessing; Grad-CAM's map stage: the
kernel's launch and its one packed copy back, mostly host time at batch 1) are host work. The graph stage is split by the two
batch sizes into a part that grows with the batch (the device's arithmetic and memory traffic: scaled by
the GPU ratio) and a part that does not (launches, bookkeeping, copies of a fixed size: scaled by the host
ratio):
    per_frame = (t8 - t1) / 7,  fixed = t1 - per_frame,
    orin(1) = (host stages + fixed) * host_ratio + per_frame * gpu_ratio.
gpu_ratio spans the two published limits: FP32 throughput (H200 60-67 TFLOPS, NVL and SXM; AGX Orin 64 GB
5.3 TFLOPS: 2048 CUDA cores at 1.3 GHz, NVIDIA's AGX Orin technical brief) and memory bandwidth (4.8 TB/s
against 204.8 GB/s). host_ratio is an ASSUMPTION, stated as a range (no published figure used): a Cortex-A78AE
core at 2.2 GHz taken as 2-4x slower than the x86 server core the H200 run's Python ran on. Orin Nano
(1024 cores at 1.02 GHz, 2.1 TFLOPS, 102 GB/s, A78AE at 1.7 GHz) has its own row. Not in the estimate:
TensorRT (what a Jetson would run; its fusions usually beat ONNX Runtime CUDA), clocks under power
modes, and the shared memory of a Jetson (no PCIe copies there).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEASURED = [ROOT / "benchmarks" / "measured" / f for f in ("device-nvidia-h200.json", "device-nvidia-h200-repeat-final.json")]

# Published figures (spec sheets), FP32 TFLOPS and memory bandwidth GB/s. The H200 row spans its two forms.
H200 = {"tflops": (60.0, 67.0), "gbps": 4800.0}
DEVICES = {
    "jetson-agx-orin-64gb": {"tflops": 5.3, "gbps": 204.8, "cpu_ghz": 2.2},
    "jetson-orin-nano-8gb-super": {"tflops": 2.1, "gbps": 102.0, "cpu_ghz": 1.7},
}
# The assumption: how much slower one Orin CPU core runs this host work than the H200 machine's x86 core.
HOST_RATIO_AGX = (2.0, 4.0)


def linear_split(t1: float, t8: float) -> tuple[float, float]:
    """(fixed, per_frame) ms of a row measured at batch 1 and batch 8, as t(b) = fixed + b * per_frame."""
    per_frame = max((t8 - t1) / 7.0, 0.0)
    return t1 - per_frame, per_frame


def gpu_ratio(device: dict) -> tuple[float, float]:
    """The slowdown of device-bound work from the H200 to `device`: the lower of the FP32 and bandwidth
    ratios (work bound by whichever the device has more of) to the higher."""
    flops = (H200["tflops"][0] / device["tflops"], H200["tflops"][1] / device["tflops"])
    bandwidth = H200["gbps"] / device["gbps"]
    return min(*flops, bandwidth), max(*flops, bandwidth)


def host_ratio(device: dict) -> tuple[float, float]:
    """HOST_RATIO_AGX scaled by the clock for slower Orin modules (same core)."""
    scale = DEVICES["jetson-agx-orin-64gb"]["cpu_ghz"] / device["cpu_ghz"]
    return HOST_RATIO_AGX[0] * scale, HOST_RATIO_AGX[1] * scale


def parts(served: dict) -> dict[str, tuple[float, float, float]]:
    """{row: (host ms, fixed graph ms, per-frame device ms)} at batch 1 from ort_cuda's b1 and b8 rows."""
    b1, b8 = served["b1"], served["b8"]
    g1, g8 = b1["gradcam_stages_median_ms"], b8["gradcam_stages_median_ms"]
    i1, i8 = b1["ig_stages_median_ms"], b8["ig_stages_median_ms"]
    out = {}
    # a prediction: its preprocessing is the same as Grad-CAM's (the same normalisation), the rest the graph
    fixed, per = linear_split(b1["predict"]["median_ms"] - g1["preprocess"], b8["predict"]["median_ms"] - g8["preprocess"])
    out["predict"] = (g1["preprocess"], fixed, per)
    fixed, per = linear_split(g1["graph"], g8["graph"])
    out["gradcam"] = (g1["preprocess"] + g1["cam"], fixed, per)
    fixed, per = linear_split(i1["ig"], i8["ig"])       # batch 1: 50 points, batch 8: 400
    out["ig_m50"] = (i1["preprocess"] + i1["baseline"] + i1["predict"], fixed, per)
    return out


def pooled(served_rows: list[dict]) -> dict:
    """ort_cuda steps of several runs as one: every number the median over the runs (the first run's value
    for anything else). Why: the split leans on the batch-8 rows, and one draw of the machine moved a single
    one enough to move the estimate twofold (2026-11-30, four runs of nearly the same code: the AGX Orin
    prediction read 0.5-1.1 ms at the low end from single runs, with the batch-8 prediction at 0.85-1.17 ms)."""
    first = served_rows[0]
    if isinstance(first, dict):
        return {k: pooled([r[k] for r in served_rows if isinstance(r, dict) and k in r]) for k in first}
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        return float(np.median(served_rows))
    return first


def estimate(served: dict) -> dict:
    measured = {k: served["b1"][k]["median_ms"] for k in ("predict", "gradcam", "ig_m50")}
    result: dict = {"kind": "estimate, not measured", "basis": " ".join(__doc__.split("The basis. ")[1].split()),
                    "h200_batch1_ms": measured, "devices": {}}
    for name, device in DEVICES.items():
        g, h = gpu_ratio(device), host_ratio(device)
        rows = {}
        for row, (host, fixed, per) in parts(served).items():
            low = (host + fixed) * h[0] + per * g[0]
            high = (host + fixed) * h[1] + per * g[1]
            rows[row] = {"low_ms": round(low, 2), "high_ms": round(high, 2),
                         "h200_host_ms": round(host + fixed, 4), "h200_device_ms": round(per, 4)}
        rows["gradcam_over_predict"] = {
            "low": round(rows["gradcam"]["low_ms"] / rows["predict"]["low_ms"], 2),
            "high": round(rows["gradcam"]["high_ms"] / rows["predict"]["high_ms"], 2)}
        result["devices"][name] = {"gpu_ratio": [round(x, 1) for x in g], "host_ratio": [round(x, 1) for x in h],
                                   "batch1": rows}
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, nargs="+", default=MEASURED,
                    help="device.py's JSON, one or more runs pooled by the median of each figure (default: "
                         + ", ".join(str(p.relative_to(ROOT)) for p in MEASURED) + ")")
    ap.add_argument("--out", type=Path, help="write the estimate as JSON here")
    args = ap.parse_args(argv)
    runs, served = [], []
    for path in args.run:
        try:
            run = json.loads(path.read_text())
            step = run["steps"]["ort_cuda"]
            if step.get("status") != "ok":
                raise KeyError("ort_cuda")
        except (OSError, ValueError, KeyError) as e:
            print(f"{path}: no ort_cuda step with its b1 and b8 rows ({type(e).__name__}: {e})", file=sys.stderr)
            return 2
        runs.append(run)
        served.append(step)
    result = estimate(pooled(served))
    result["from"] = "; ".join(f"{p.name}, {r.get('gpu')}, {r.get('started')}" for p, r in zip(args.run, runs))
    if len(runs) > 1:
        result["pooled"] = f"the median of each figure over {len(runs)} runs"
    print(f"ESTIMATE (not measured), batch 1, ms, from {result['from']}")
    print(f"{'device':28} {'row':8} {'H200':>7} {'low':>7} {'high':>7}")
    for name, d in result["devices"].items():
        for row in ("predict", "gradcam", "ig_m50"):
            r = d["batch1"][row]
            print(f"{name:28} {row:8} {result['h200_batch1_ms'][row]:7.2f} {r['low_ms']:7.2f} {r['high_ms']:7.2f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
