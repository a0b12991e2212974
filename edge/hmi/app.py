"""The operator HMI: a FastAPI app served by the edge node next to gRPC.

    GET  /                                   the page (static/index.html)
    GET  /api/inspections?limit=50           newest first
    GET  /api/inspections/{id}               one, with sentence, timings, probabilities, verdict
    GET  /api/inspections/{id}/heatmap.png   the Grad-CAM map (8-bit)
    GET  /api/inspections/{id}/channels/{c}.png   8-bit preview of an input channel
    GET  /api/stream                         server-sent events: new and updated inspections
    GET  /api/stats                          throughput, p50/p99 latency vs the cycle time, class rates
    GET  /api/models                         what the node serves
    GET  /metrics                            Prometheus metrics (edge/serve/metrics.py)
    POST /api/verdicts                       {inspection_id, agree, correct_class?, operator?, condition?}
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel

from edge.errors import NotFound, Unavailable
from edge.record import Inspection
from edge.serve import Node

STATIC = Path(__file__).parent / "static"


class VerdictIn(BaseModel):
    inspection_id: str
    agree: bool
    correct_class: str = ""
    operator: str = ""
    condition: str = ""


def summary(ins: Inspection, node: Node) -> dict:
    """One inspection for the page. The store outlives the models: a row made by a model this node no
    longer serves still lists (its classes from its stored probabilities, no channel previews named)."""
    inspector = node.inspector
    model = inspector.models.get(ins.model) or inspector.withheld.get(ins.model)
    return {"id": ins.inspection_id, "station": ins.station_id, "part": ins.part_id, "model": ins.model,
            "model_sha256": ins.model_sha256, "label": ins.label, "confidence": ins.confidence,
            "probabilities": ins.probabilities, "sentence": ins.sentence, "target": ins.heatmap_target,
            "timings_ms": ins.timings_ms, "received_ms": ins.received_ms, "deferred": ins.deferred,
            "skipped": ins.skipped,
            "verdict": ins.verdict, "channels": list(model.channels) if model else [],
            "classes": model.classes if model else list(ins.probabilities),
            "ok_class": model.ok_class if model else None,
            "audit_status": model.audit_status if model else "not served by this node",
            "attributions": [{"model": a.model, "method": a.method, "target": a.target,
                              "completeness_delta": a.completeness_delta} for a in ins.attributions],
            "heatmap_size": list(ins.heatmap.shape), "tiles": ins.tiles, "review": ins.review,
            "sensors": ins.sensors, "pixel_pitch_mm": ins.pixel_pitch_mm,
            "tile_box": list(ins.tile_box) if ins.tile_box else None}


def create_app(node: Node) -> FastAPI:
    app = FastAPI(title="edge-xai HMI", docs_url=None, redoc_url=None)
    store = node.store

    async def in_store(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(node.read_pool, fn, *args)

    @app.get("/")
    async def index():
        return FileResponse(STATIC / "index.html")

    @app.get("/api/inspections")
    async def inspections(limit: int = 50, station: str | None = None):
        rows = await in_store(store.recent, max(1, min(limit, 500)), station)
        return [summary(i, node) for i in rows]

    async def one(inspection_id: str) -> Inspection:
        ins = await in_store(store.get, inspection_id)
        if ins is None:
            raise HTTPException(404, f"no inspection {inspection_id!r}")
        return ins

    @app.get("/api/inspections/{inspection_id}")
    async def inspection(inspection_id: str):
        return summary(await one(inspection_id), node)

    @app.get("/api/inspections/{inspection_id}/heatmap.png")
    async def heatmap(inspection_id: str):
        return Response((await one(inspection_id)).heatmap_png, media_type="image/png")

    @app.get("/api/inspections/{inspection_id}/maps/{index}.png")
    async def attribution_map(inspection_id: str, index: int):
        """The inspection's index-th later map (guided, SHAP, IG: `attributions` in its summary), as PNG."""
        ins = await one(inspection_id)
        if not 0 <= index < len(ins.attributions):
            raise HTTPException(404, f"inspection {inspection_id!r} has {len(ins.attributions)} later maps, no {index}")
        return Response(ins.attributions[index].heat_png, media_type="image/png")

    @app.get("/api/inspections/{inspection_id}/channels/{channel}.png")
    async def channel(inspection_id: str, channel: str):
        data = await in_store(store.preview, inspection_id, channel)
        if data is None:
            raise HTTPException(404, f"no preview of channel {channel!r} for {inspection_id!r} (retention may have "
                                     "removed it)")
        return Response(data, media_type="image/png")

    @app.get("/metrics")
    async def metrics():
        """Prometheus exposition (edge/serve/metrics.py)."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(node.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/stats")
    async def stats():
        return node.statistics()

    @app.get("/api/models")
    async def models():
        inspector = node.inspector
        return [{"name": n, "task": m.task, "classes": m.classes, "channels": m.channels,
                 "audit_status": m.audit_status, "served": n in inspector.models}
                for n, m in [*inspector.models.items(), *inspector.withheld.items()]]

    @app.post("/api/verdicts")
    async def verdict(v: VerdictIn):
        if not v.agree and not v.correct_class:
            raise HTTPException(422, "correct_class is required when disagreeing")
        try:
            t = await node.verdict(v.inspection_id, v.agree, v.correct_class, v.operator, v.condition)
        except NotFound as e:
            raise HTTPException(404, str(e)) from None
        except Unavailable as e:          # the store cannot write (a full disk): the operator's page says so
            raise HTTPException(503, str(e)) from None
        return {"inspection_id": v.inspection_id, "recorded_ms": t}

    @app.get("/api/stream")
    async def stream():
        async def events():
            with node.hub.subscribe() as queue:
                yield "retry: 2000\n\n"
                while node.ready:
                    try:
                        ins, update = await asyncio.wait_for(queue.get(), timeout=15)
                    except asyncio.TimeoutError:
                        yield ": keep-alive\n\n"   # proxies close idle connections
                        continue
                    kind = "update" if update else "inspection"
                    yield f"event: {kind}\ndata: {json.dumps(summary(ins, node))}\n\n"
        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return app
