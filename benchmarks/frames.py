"""What a line camera's frame costs: a 2448x2048 8-bit frame through a classifier trained on smaller images
(tiled at the training scale), against one frame of the training images' own size.

    python benchmarks/frames.py [--model docs/real/neu-det/model] [--runs 10] [--out results/frames.json]

Rows (in-process, the node's own path: request -> Job -> Node.inspect, store write included):
  frame_<H>x<W>     one request with a frame of that size: decode, letterbox or tiles, one gradcam-graph
                    batch over all tiles (+ the head_gradient graph for tiles whose own class differs, or a
                    second gradcam batch for a model exported without it), stitching, sentence, PNG of the
                    frame-size heatmap, store
and the stages of the large frame measured apart (decode, tiling, Grad-CAM of all tiles, stitch, PNG).
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def frame_request(h: int, w: int, seed: int):
    """A grey 8-bit frame with a few dark scratches (what matters for cost is its size, not its content)."""
    import cv2

    from edge.serve.frames import encode_frame
    from edge.v1 import inspection_pb2 as pb

    rng = np.random.default_rng(seed)
    img = rng.normal(120, 10, (h, w)).clip(0, 255).astype(np.uint8)
    length = min(150, w // 2, h // 2)
    for _ in range(3):
        x, y = int(rng.integers(0, w - length)), int(rng.integers(0, h - length))
        cv2.line(img, (x, y), (x + length, y + length // 4), 60, 2)
    return pb.InspectRequest(frame=encode_frame({"gray": img}, "uint8"), station_id="bench")


async def node_rows(model_dir: Path, sizes: list[tuple[int, int]], runs: int, threads: int) -> dict:
    from _common import summary

    from edge.serve.config import ServeConfig
    from edge.serve.node import Node
    from edge.serve.servicer import build_job

    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        models.mkdir()
        (models / "defect").symlink_to(model_dir.resolve())
        node = Node(ServeConfig(models_dir=models, store=Path(tmp) / "s.sqlite", threads=threads, hmi=None,
                                allow_unaudited=True, cycle_budget_ms=60000))
        await node.start()
        rows = {}
        for h, w in sizes:
            req = frame_request(h, w, 0)
            lat, tiles = [], 0
            for i in range(runs + 2):
                t = time.perf_counter()
                ins = await node.inspect(build_job(req, node, None))
                if i >= 2:
                    lat.append((time.perf_counter() - t) * 1e3)
                tiles = ins.tiles
            rows[f"frame_{h}x{w}"] = {**summary(lat), "tiles": tiles, "heatmap": list(ins.heatmap.shape),
                                      "request_mb": req.ByteSize() / 2**20}
        await node.stop(5)
    return rows


def stage_rows(model_dir: Path, h: int, w: int, runs: int, threads: int) -> dict:
    from _common import summary, time_ms

    from edge.explain import GradCAMExplainer, explain_frames, frame_view
    from edge.explain.overlay import heatmap8
    from edge.runtime.model import Model
    from edge.serve.frames import decode_planes
    from edge.serve.inspector import png

    model = Model.load(model_dir, threads=threads)
    req = frame_request(h, w, 0)
    channels = model.manifest["channels"]
    planes = decode_planes(req.frame, channels, integer_scaling=True)
    view = frame_view(planes, model)
    explainer = GradCAMExplainer(model)
    [r] = explain_frames(explainer, [view])
    tile_maps = np.stack([np.zeros(view.x.shape[2:], np.float32)] * len(view.x))
    return {"decode": summary(time_ms(lambda: decode_planes(req.frame, channels, integer_scaling=True), runs)),
            "tiling": summary(time_ms(lambda: frame_view(planes, model), runs)),
            "gradcam_all_tiles": summary(time_ms(lambda: explainer.explain(view.x), runs, warmup=1)),
            "stitch": summary(time_ms(lambda: view.tiling.stitch(tile_maps), runs)) if view.tiling else None,
            "heatmap_png": summary(time_ms(lambda: png(heatmap8(r.heatmap)), runs)),
            "tiles": len(view.x), "tile_px": int(view.x.shape[-1])}


def main() -> None:
    from _common import machine, write_json

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(ROOT / "docs/real/neu-det/model"),
                    help="a classifier trained on images smaller than the frame (default: the NEU-DET model)")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    model_dir = Path(args.model)
    from edge.runtime.model import Model

    src = Model.load(model_dir).manifest["input"].get("source_size")
    if not src:
        sys.exit(f"{model_dir}: the manifest records no training image size (input.source_size): retrain it")
    sizes = [tuple(src), (2048, 2448)]
    rows = asyncio.run(node_rows(model_dir, sizes, args.runs, args.threads))
    stages = stage_rows(model_dir, 2048, 2448, args.runs, args.threads)
    result = {"machine": machine(args.threads), "model": str(model_dir), "rows": rows, "stages_2048x2448": stages}
    print(f"{'row':<22}{'median ms':>10}{'p90 ms':>10}{'tiles':>7}")
    for name, r in rows.items():
        print(f"{name:<22}{r['median_ms']:>10.1f}{r['p90_ms']:>10.1f}{r['tiles']:>7}")
    for name, r in stages.items():
        if isinstance(r, dict):
            print(f"  {name:<20}{r['median_ms']:>10.1f}{r['p90_ms']:>10.1f}")
    write_json(args.out, result)


if __name__ == "__main__":
    main()
