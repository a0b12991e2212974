"""Audit speed: `edge-xai audit` of each shipped model on the same simulated frames, this machine.

    python benchmarks/audit.py [--n 1000] [--data DIR] [--models defect,thermal,phase] [--shap-samples 60]
                               [--out benchmarks/measured/audit-cpu.json]

Without --data, --n frames are simulated first (seed 1000, the held-out seed; not timed). Each model's
audit runs in its own process, with its progress bars, exactly as `edge-xai audit` does, and reports its
own wall time per stage (metrics.json "timings_s"). Target (issue #5): 1000 samples audit in <= 10 min
on the 2-core development CPU (judged per model: the gate audits each model it deploys).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

TARGET_S = 600.0


def main(argv: list[str] | None = None) -> int:
    from _common import machine, print_targets, write_json

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1000, help="frames to simulate when --data is not given")
    p.add_argument("--data", type=Path, help="an existing dataset folder (all of it is audited)")
    p.add_argument("--models", default="defect,thermal,phase")
    p.add_argument("--shap-samples", type=int, default=60, help="the audit's default")
    p.add_argument("--out", type=Path, help="JSON results file")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            from edge.sim.sample import write_dataset

            t = time.perf_counter()
            data = write_dataset(Path(tmp) / "data", args.n, seed=1000)
            print(f"simulated {args.n} frames in {time.perf_counter() - t:.0f} s (not part of the audit time)")
        results = {}
        for name in args.models.split(","):
            out = Path(tmp) / f"report-{name}"
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "edge.cli", "audit", "--model", str(ROOT / "models" / name),
                            "--data", str(data), "--out", str(out), "--shap-samples", str(args.shap_samples)],
                           check=True, env=os.environ | {"PYTHONPATH": str(ROOT)})
            wall = time.perf_counter() - t
            m = json.loads((out / "metrics.json").read_text())
            results[name] = {"samples": m["data"]["samples"], "wall_s": wall, "audit_s": m["seconds"],
                             "stages_s": m.get("timings_s", {})}
    print(f"\n{'model':<10}{'samples':>8}{'wall s':>9}{'audit s':>9}  stages (s)")
    for name, r in results.items():
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["stages_s"].items())
        print(f"{name:<10}{r['samples']:>8}{r['wall_s']:>9.1f}{r['audit_s']:>9.1f}  {stages}")
    per_1000 = {k: r["wall_s"] * 1000 / r["samples"] for k, r in results.items()}
    if any(r["samples"] != 1000 for r in results.values()):
        print("(not 1000 samples: the times below are scaled linearly, an approximation; SHAP is per-audit constant)")
    print_targets({f"target: {k} audit of 1000 samples <= 600 s": (v, v <= TARGET_S) for k, v in per_1000.items()},
                  unit=" s")
    m = machine(os.cpu_count() or 1)
    print(f"machine: {m['cpu']} ({m['cpu_count']} cores)")
    write_json(args.out, {"machine": m, "shap_samples": args.shap_samples, "results": results,
                          "per_1000_samples_s": per_1000, "target_s": TARGET_S,
                          "targets_met": {k: v <= TARGET_S for k, v in per_1000.items()}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
