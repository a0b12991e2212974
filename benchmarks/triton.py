"""The `triton` engine's cost: the same graphs through a real Triton Inference Server over gRPC (PyPI
nvidia-pytriton's tritonserver on this machine's CPU, ONNX Runtime inside its Python backend) against the
local ONNX Runtime engine, per graph and batch size.

    python benchmarks/triton.py [--model models/defect] [--runs 50] [--json benchmarks/measured/triton-cpu.json]

What it shows: the round trip a node pays to use a remote server (serialisation, gRPC, Triton's
scheduler, the Python backend's IPC). On a GPU server the graph time itself shrinks; the round trip stays.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, summary, time_ms, write_json  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(ROOT / "models" / "defect"))
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads on both sides (default 1)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from edge.runtime.model import Model
    from helpers.triton import TritonServer

    model_dir = Path(args.model)
    result = {"machine": machine(args.threads), "model": str(model_dir), "rows": {}}
    with TritonServer(model_dir, max_batch=8) as triton:
        local = Model.load(model_dir, threads=args.threads)
        remote = Model.load(model_dir, backend=triton.backend, name=model_dir.name)
        k = len(local.classes)
        for batch in (1, 8):
            x = np.random.default_rng(0).standard_normal((batch, *local.input_shape)).astype(np.float32)
            feeds = {"predict": {"input": x}, "gradcam": {"input": x, "target": np.zeros((batch, k), np.float32)}}
            for graph, f in feeds.items():
                for where, m in (("local", local), ("triton", remote)):
                    s = summary(time_ms(lambda: m.run(graph, f), args.runs, warmup=5))
                    result["rows"][f"{graph}_b{batch}_{where}"] = s
                    print(f"{graph:8s} batch {batch}  {where:6s} median {s['median_ms']:.2f} ms "
                          f"(p10 {s['p10_ms']:.2f}, p90 {s['p90_ms']:.2f})")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
