"""Forwarding throughput to the plant database: a node's store with N inspections (each with its heatmap
PNG and a deferred IG map at frame size, as a node writes them), forwarded to a real PostgreSQL started
in a temporary directory (Debian's `postgresql` package; tests/helpers/postgres.py), batch sizes compared.
Also the outbox's cost on the write the node makes before each answer (SQLite with and without it).

    python benchmarks/plant.py --n 2000 --json benchmarks/measured/plant-cpu.json
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))        # helpers.postgres: the throwaway server the tests use
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, summary, write_json  # noqa: E402


def fill(path: Path, n: int, outbox: bool, size: int, seed: int = 0) -> list[float]:
    """Write n inspections (+ a deferred IG map each); returns the put_inspection times in ms."""
    import cv2

    from edge.record import Attribution, InspectionStore
    from helpers.records import make_inspection

    rng = np.random.default_rng(seed)
    store = InspectionStore(path, outbox=outbox)
    heat = rng.random((size, size), dtype=np.float32)
    png = cv2.imencode(".png", (heat * 255).astype(np.uint8))[1].tobytes()
    times = []
    for i in range(n):
        ins = make_inspection(i, station=f"cell-{i % 4}")
        ins.heatmap_png = png
        t = time.perf_counter()
        store.put_inspection(ins)
        times.append((time.perf_counter() - t) * 1e3)
        store.put_deferred(ins.inspection_id, [Attribution(
            model="defect", model_sha256="ab" * 32, method="ig", target="class crack", heat_png=png,
            attribution=heat, completeness_delta=0.01, relative_completeness_delta=0.001, n_steps=32)])
    store.close()
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="inspections in the store (default 2000)")
    ap.add_argument("--size", type=int, default=128, help="heatmap / IG map side in px (default 128)")
    ap.add_argument("--batches", default="1,50,200,1000", help="outbox rows per plant transaction to compare")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)

    from edge.record import InspectionStore
    from edge.record.forward import forward_all
    from edge.record.plant import PlantDatabase
    from helpers.postgres import PostgresServer

    tmp = Path(tempfile.mkdtemp(prefix="edge-xai-plant-bench-"))
    write_plain = fill(tmp / "plain.sqlite", min(args.n, 500), outbox=False, size=args.size)
    write_outbox = fill(tmp / "outbox.sqlite", min(args.n, 500), outbox=True, size=args.size)
    results = {"machine": machine(1), "inspections": args.n, "map_px": args.size,
               "store_write_without_outbox": summary(write_plain), "store_write_with_outbox": summary(write_outbox),
               "forward": {}}
    print(f"store write before the answer: {np.median(write_plain):.2f} ms without the outbox, "
          f"{np.median(write_outbox):.2f} ms with it (median of {len(write_plain)})")
    with PostgresServer() as pg:
        for k, batch in enumerate(int(b) for b in args.batches.split(",")):
            path = tmp / f"forward-{batch}.sqlite"
            fill(path, args.n, outbox=True, size=args.size)
            store = InspectionStore(path, outbox=True)
            rows = store.backlog()
            plant = PlantDatabase(pg.url)
            t = time.perf_counter()
            sent = forward_all(store, plant, f"bench-{k}", batch)
            seconds = time.perf_counter() - t
            assert sent == rows and store.backlog() == 0
            results["forward"][str(batch)] = {"outbox_rows": rows, "seconds": round(seconds, 3),
                                              "rows_per_s": round(rows / seconds, 1),
                                              "inspections_per_s": round(args.n / seconds, 1)}
            print(f"batch {batch:5d}: {rows} outbox rows ({args.n} inspections, each with its IG map) in "
                  f"{seconds:.2f} s = {args.n / seconds:.0f} inspections/s")
            plant.close()
            store.close()
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
