"""Memory a node holds for work it has not done yet: (1) a station asks for IG and SHAP on every frame, at a
cycle budget they never fit, faster than the node's background thread computes them. Each inspection
waiting for its deferred explanations holds its frame; `[serve] deferred_limit` bounds how many wait, and
the rest are skipped (the answer lists them in `skipped`). (2) `--stalled-watcher`: a watcher that never
reads (an HMI tab left open on a hung browser) while plain inspections go on; the hub keeps each watcher's
newest events within a count and a byte bound (edge/serve/hub.py). Run each case in its own process (the
peak resident memory is the process's):

    python benchmarks/deferred_backlog.py --limit 16 --count 150 --side 1024 --json out16.json
    python benchmarks/deferred_backlog.py --limit 100000 --count 150 --side 1024 --json out-unbounded.json
    python benchmarks/deferred_backlog.py --stalled-watcher --count 300 --side 1024

Reports the deferred backlog's peak (or the events the watcher holds), how many answers skipped kinds, the
answers' median latency, the wall time, and the process's peak resident memory.
"""
from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, write_json  # noqa: E402


async def run(limit: int, count: int, side: int, budget_ms: int, threads: int, stalled_watcher: bool) -> dict:
    from edge.serve.config import ServeConfig
    from edge.serve.frames import encode_frame
    from edge.serve.node import Node
    from edge.serve.servicer import build_job
    from edge.v1 import inspection_pb2 as pb

    rng = np.random.default_rng(0)
    # physical units like the simulator's: kelvin, radians, reflectance
    frame = encode_frame({"thermal": 340 + 5 * rng.random((side, side)), "phase": rng.uniform(-3, 3, (side, side)),
                          "intensity": 0.03 * rng.random((side, side))})
    kinds = [pb.GRADCAM, pb.SENTENCE] + ([] if stalled_watcher else [pb.IG, pb.SHAP])
    request = pb.InspectRequest(station_id="bench", frame=frame, cycle_budget_ms=budget_ms, explanations=kinds)
    with tempfile.TemporaryDirectory() as tmp:
        node = Node(ServeConfig(store=Path(tmp) / "s.sqlite", threads=threads, hmi=None, allow_unaudited=True,
                                deferred_limit=limit))
        await node.start()
        peak, skipped, latency = 0, 0, []
        t0 = time.perf_counter()
        with node.hub.subscribe() as watcher:          # read only when asked to stall
            for i in range(count):
                request.part_id = str(i)
                t = time.perf_counter()
                ins = await node.inspect(build_job(request, node, None))
                latency.append((time.perf_counter() - t) * 1e3)
                skipped += bool(ins.skipped)
                peak = max(peak, len(node.background))
                while not stalled_watcher and len(watcher):
                    await watcher.get()
            held = len(watcher)
        wall = time.perf_counter() - t0
        await node.stop(1.0)
    return {"case": "stalled watcher" if stalled_watcher else "deferred IG and SHAP", "watcher_events_held": held,
            "deferred_limit": limit, "inspections": count, "frame_side_px": side, "cycle_budget_ms": budget_ms,
            "backlog_peak": peak, "answers_with_skipped_kinds": skipped,
            "latency_p50_ms": round(float(np.median(latency)), 1), "wall_s": round(wall, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=16, help="[serve] deferred_limit (default 16, the node's)")
    ap.add_argument("--count", type=int, default=150, help="inspections, one after the other")
    ap.add_argument("--side", type=int, default=1024, help="frame side in pixels (3 float32 channels)")
    ap.add_argument("--budget-ms", type=int, default=50, help="cycle budget: IG and SHAP must not fit it")
    ap.add_argument("--stalled-watcher", action="store_true",
                    help="plain inspections and a watcher that never reads, instead of deferred IG and SHAP")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="write the result here")
    args = ap.parse_args(argv)
    result = {"machine": machine(args.threads),
              **asyncio.run(run(args.limit, args.count, args.side, args.budget_ms, args.threads,
                                args.stalled_watcher))}
    print(", ".join(f"{k} {v}" for k, v in result.items() if k != "machine"))
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
