"""Simulator throughput on one core.

    python benchmarks/simulate.py [--n 600] [--size 128] [--out results/simulate.json]

Target (issue #2): >= 200 samples/s at 128x128 on one core, generation only. Writing .npz files is
timed separately (it depends on the disk, not on the simulator).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the target says
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from _common import machine, print_targets, write_json  # noqa: E402

from edge.sim.sample import SimConfig, simulate_sample, write_dataset  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=600)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=None, help="write JSON results here")
    args = p.parse_args()
    cv2.setNumThreads(1)
    cfg = SimConfig(size=args.size)
    simulate_sample(0, 0, cfg)  # warm-up (imports, OpenCV initialisation)
    rates = []
    for r in range(args.repeats):
        t = time.perf_counter()
        for i in range(args.n):
            simulate_sample(i, 1000 + r, cfg)
        rates.append(args.n / (time.perf_counter() - t))
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        write_dataset(Path(d) / "ds", args.n, 7, cfg, progress=False)
        write_rate = args.n / (time.perf_counter() - t)
    result = {
        "benchmark": "simulate", "machine": machine(threads=1),
        "size": args.size, "n": args.n,
        "results": {"generate": {"median_samples_per_s": float(np.median(rates)), "runs": rates},
                    "generate_and_write": {"samples_per_s": write_rate}},
        "target_samples_per_s": 200,
    }
    print(f"{'stage':<22}{'samples/s':>12}")
    print(f"{'generate (median)':<22}{result['results']['generate']['median_samples_per_s']:>12.1f}")
    print(f"{'generate + write npz':<22}{write_rate:>12.1f}")
    print_targets({"target >= 200 samples/s generation": (float(np.median(rates)), np.median(rates) >= 200)},
                  unit=" /s")
    write_json(args.out, result)


if __name__ == "__main__":
    main()
