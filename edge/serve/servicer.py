"""The gRPC servicer: proto <-> domain, nothing else. One function maps exceptions to status codes."""
from __future__ import annotations

import asyncio
import logging
import math
import time

import grpc
import numpy as np

from edge.errors import DeadlineExceeded, EdgeError, InvalidInput, NotFound, Refused, Saturated, Unavailable
from edge.explain import frame_view
from edge.record import Inspection
from edge.serve.batcher import ShuttingDown
from edge.serve.domain import DEFAULT_EXPLANATIONS, Job
from edge.serve.frames import FieldError, decode_frame, decode_planes, preview_plane
from edge.serve.inspector import UnknownName
from edge.serve.node import Node
from edge.v1 import inspection_pb2 as pb
from edge.v1 import inspection_pb2_grpc as pb_grpc

log = logging.getLogger("edge.serve")
KIND_NAMES = {pb.GRADCAM: "gradcam", pb.SENTENCE: "sentence", pb.IG: "ig", pb.SHAP: "shap",
              pb.RAW_HEATMAP: "raw_heatmap", pb.SENSORS: "sensors", pb.GUIDED: "guided"}
KIND_ENUMS = {v: k for k, v in KIND_NAMES.items()}
# Frames larger than this (their encoded bytes) are decoded on the node's decode threads, not on the event
# loop: a 128 px three-channel float16 frame is 98 kB and decodes in 0.1 ms, a 2448 x 2048 one 100-200 ms.
INLINE_DECODE_BYTES = 1 << 20


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The one place where errors become gRPC status codes. Only the project's errors (edge.errors)
    carry a message meant for the client; anything else is a bug: INTERNAL, logged with its traceback
    by the caller, and its text is not sent (it may describe internals, not the request)."""
    if isinstance(exc, InvalidInput):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, NotFound):
        return grpc.StatusCode.NOT_FOUND, str(exc)
    if isinstance(exc, Unavailable):
        return grpc.StatusCode.UNAVAILABLE, str(exc)
    if isinstance(exc, Saturated):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
    if isinstance(exc, DeadlineExceeded):
        return grpc.StatusCode.DEADLINE_EXCEEDED, str(exc) or "cycle budget spent"
    if isinstance(exc, Refused):
        return grpc.StatusCode.PERMISSION_DENIED, str(exc)
    if isinstance(exc, EdgeError):
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__} (logged on the server)"


def build_job(request: pb.InspectRequest, node: Node, time_remaining_s: float | None) -> Job:
    """Decode and validate a request into a Job (FieldError / UnknownName on bad input)."""
    inspector = node.inspector
    model = inspector.classifier(request.model)
    kinds = tuple(KIND_NAMES[k] for k in request.explanations if k in KIND_NAMES) or DEFAULT_EXPLANATIONS
    unknown = [k for k in request.explanations if k not in KIND_NAMES]
    if unknown:
        raise FieldError("explanations", f"unknown kind(s) {unknown}")
    if request.target_class and request.target_class not in model.classes:
        raise UnknownName(f"target_class {request.target_class!r}: model {model.name} has {', '.join(model.classes)}")
    budget = float(request.cycle_budget_ms) if request.cycle_budget_ms else node.config.cycle_budget_ms
    if time_remaining_s is not None:
        if time_remaining_s <= 0:
            raise DeadlineExceeded("the request's deadline had passed on arrival")
        budget = min(budget, time_remaining_s * 1e3) if request.cycle_budget_ms else time_remaining_s * 1e3
    decoded: dict[int, np.ndarray] = {}        # each channel decoded once, whichever models read it
    planes = decode_planes(request.frame, model.channels,
                           integer_scaling=bool(model.input_spec.get("integer_scaling")), decoded=decoded)
    pitch = request.frame.pixel_pitch_mm or None            # 0, the field's default: not given
    if pitch is not None and not (math.isfinite(pitch) and pitch > 0):
        raise FieldError("frame.pixel_pitch_mm", f"{pitch!r}: expected a positive number of mm per pixel (0: not given)")
    view = frame_view(planes, model, pitch)     # at the model's training pitch where both are known
    regression = {}
    if "ig" in kinds:
        wanted = list(request.regression_models) or list(inspector.regression_models())
        for name in wanted:
            m = inspector.regression_models().get(name)
            if m is None:
                raise UnknownName(f"regression_models: {name!r} is not served here{inspector.refusal(name)} "
                                  f"({', '.join(inspector.regression_models()) or 'none'})")
            try:
                regression[name] = decode_frame(request.frame, m.channels, m.input_shape[1:], decoded=decoded)
            except FieldError:
                if request.regression_models:      # asked for by name: say why it cannot be done
                    raise
                # implicit "all": a model whose channels this frame lacks is skipped
    # shrunk here, drawn as PNGs by the node beside the inspection (Node._inspect): not on the event loop
    previews = {n: preview_plane(planes[i]) for i, n in enumerate(model.channels)}
    return Job(station_id=request.station_id or "unnamed", part_id=request.part_id, model=model.name, view=view,
               explanations=kinds, budget_ms=budget, target_class=request.target_class or None,
               regression_inputs=regression, pixel_pitch_mm=pitch, preview_planes=previews,
               store_frame=request.store_frame,
               raw_frame=request.frame.SerializeToString() if request.store_frame else None)


def to_proto(ins: Inspection) -> pb.InspectResponse:
    h, w = ins.heatmap.shape
    r = pb.InspectResponse(
        inspection_id=ins.inspection_id, station_id=ins.station_id, part_id=ins.part_id, model=ins.model,
        model_sha256=ins.model_sha256, label=ins.label, confidence=ins.confidence,
        heatmap=pb.Heatmap(method=ins.heatmap_method, target=ins.heatmap_target, height=h, width=w,
                           png=ins.heatmap_png),
        sentence=ins.sentence, received_unix_ms=ins.received_ms, complete=ins.complete, verdict=ins.verdict,
        tiles=ins.tiles)
    if ins.tile_box is not None:
        r.deciding_tile.CopyFrom(pb.Region(x0=ins.tile_box[0], y0=ins.tile_box[1], x1=ins.tile_box[2],
                                           y1=ins.tile_box[3]))
    r.probabilities.update(ins.probabilities)
    if ins.review is not None:
        r.review.CopyFrom(pb.Review(flagged=bool(ins.review), reasons=ins.review))
    for channel, share in (ins.sensors or {}).items():
        r.sensors.add(channel=channel, share=share)
    if "raw_heatmap" in ins.requested:
        r.heatmap.float16 = ins.heatmap.astype("<f2").tobytes()
    for a in ins.attributions:
        ah, aw = a.attribution.shape
        r.attributions.add(model=a.model, model_sha256=a.model_sha256, method=a.method, target=a.target, height=ah,
                           width=aw, png=a.heat_png, float16=a.attribution.astype("<f2").tobytes(),
                           completeness_delta=a.completeness_delta,
                           relative_completeness_delta=a.relative_completeness_delta, n_steps=a.n_steps)
    for stage, ms in ins.timings_ms.items():
        r.timings.add(stage=stage, ms=ms)
    r.deferred.extend(KIND_ENUMS[k] for k in ins.deferred)
    r.skipped.extend(KIND_ENUMS[k] for k in ins.skipped)
    return r


class InspectionServicer(pb_grpc.InspectionServicer):
    """Registered before the server starts (gRPC cannot add services later); answers UNAVAILABLE
    until `node` is set and warm, so health and reflection work while the models load."""

    def __init__(self, node: Node | None = None):
        self.node = node

    async def _ready(self, context) -> Node:
        if self.node is None or not self.node.ready:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the node is warming up or shutting down; "
                                "watch grpc.health.v1 for SERVING")
        return self.node

    def _count(self, exc: BaseException) -> tuple[grpc.StatusCode, str]:
        """The status for an error, logged if it is a bug and counted in the node's metrics."""
        code, message = status_for(exc)
        if code == grpc.StatusCode.INTERNAL:
            log.exception("internal error", exc_info=exc)
        self._tally(code)
        return code, message

    def _tally(self, code: grpc.StatusCode) -> None:
        if self.node is not None:
            self.node.metrics.errors.labels(code=code.name).inc()

    async def _abort(self, context, exc: BaseException):
        code, message = self._count(exc)
        await context.abort(code, message)

    async def _fail(self, context, code: grpc.StatusCode, message: str):
        self._tally(code)
        await context.abort(code, message)

    async def _answer(self, request: pb.InspectRequest, context) -> pb.InspectResponse:
        """Decode, inspect, answer. The answer's `handler` timing is the decode and the inspection, what an
        in-process caller pays too: a station's round trip minus it is what answering over gRPC costs
        (building the answer message, (de)serialising, the loopback and asyncio hops)."""
        t = time.perf_counter()
        remaining = context.time_remaining()
        if request.frame.ByteSize() > INLINE_DECODE_BYTES:
            job = await asyncio.get_running_loop().run_in_executor(self.node.decode_pool, build_job, request,
                                                                   self.node, remaining)
        else:
            job = build_job(request, self.node, remaining)
        ins = await self.node.inspect(job)
        handled_ms = (time.perf_counter() - t) * 1e3
        r = to_proto(ins)
        r.timings.add(stage="handler", ms=handled_ms)
        return r

    async def _inspect(self, request: pb.InspectRequest, context) -> pb.InspectResponse:
        await self._ready(context)
        try:
            return await self._answer(request, context)
        except Exception as e:  # noqa: BLE001 - translated to a status, the server keeps serving
            await self._abort(context, e)

    async def Inspect(self, request, context):
        return await self._inspect(request, context)

    async def InspectStream(self, request_iterator, context):
        # One bad frame must not end a station's stream: it gets a response carrying the error, in
        # order, and the next frame is inspected. Only a node that is stopping ends the stream.
        await self._ready(context)
        async for request in request_iterator:
            try:
                yield await self._answer(request, context)
            except ShuttingDown as e:
                await self._abort(context, e)
            except Exception as e:  # noqa: BLE001 - reported in the stream, the stream goes on
                code, message = self._count(e)
                yield pb.InspectResponse(station_id=request.station_id, part_id=request.part_id,
                                         error=pb.RequestError(code=code.name, message=message))

    async def GetInspection(self, request, context):
        await self._ready(context)
        ins = await self.node.get(request.inspection_id)
        if ins is None:
            await self._fail(context, grpc.StatusCode.NOT_FOUND,
                             f"inspection_id {request.inspection_id!r}: no such inspection")
        return to_proto(ins)

    async def WatchInspections(self, request, context):
        await self._ready(context)
        with self.node.hub.subscribe() as queue:
            # Headers once subscribed: a client that waits for them (`call.initial_metadata()`) knows that
            # every inspection from then on reaches it, with no sleep and no probe.
            await context.send_initial_metadata((("edge-xai-watch", "subscribed"),))
            while True:
                ins, update = await queue.get()
                if update and not request.include_updates:
                    continue
                if request.station_id and ins.station_id != request.station_id:
                    continue
                yield to_proto(ins)

    async def SubmitVerdict(self, request, context):
        await self._ready(context)
        try:
            if not request.agree and not request.correct_class:
                raise FieldError("correct_class", "is required when the operator disagrees")
            t = await self.node.verdict(request.inspection_id, request.agree, request.correct_class,
                                        request.operator, request.condition)
        except Exception as e:  # noqa: BLE001
            await self._abort(context, e)
        return pb.VerdictAck(inspection_id=request.inspection_id, recorded_unix_ms=t)

    def _info(self, name: str) -> pb.ModelInfo:
        inspector = self.node.inspector
        m = inspector.models.get(name) or inspector.withheld[name]
        c, h, w = m.input_shape
        return pb.ModelInfo(name=name, task=m.task, sha256=m.sha256,
                            channels=m.channels, classes=m.classes, height=h, width=w,
                            graphs=m.graphs, audit_status=m.audit_status,
                            served=name in inspector.models)

    async def ListModels(self, request, context):
        await self._ready(context)
        names = [*self.node.inspector.models, *self.node.inspector.withheld]
        return pb.ListModelsResponse(models=[self._info(n) for n in names])

    async def GetModelInfo(self, request, context):
        await self._ready(context)
        inspector = self.node.inspector
        if request.name not in inspector.models and request.name not in inspector.withheld:
            await self._fail(context, grpc.StatusCode.NOT_FOUND, f"name {request.name!r}: no such model "
                                f"({', '.join([*inspector.models, *inspector.withheld])})")
        return self._info(request.name)
