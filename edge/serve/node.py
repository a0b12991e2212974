"""One edge node: the inspector, the inspection store, the watch hub and the micro-batcher, wired together.
Plain async domain functions: the gRPC servicer and the HMI both call these.
"""
from __future__ import annotations

import asyncio
import logging
import math
import shutil
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from edge.record import Inspection, InspectionStore
from edge.record.inspection import now_ms
from edge.serve.batcher import MicroBatcher, ShuttingDown
from edge.serve.config import ServeConfig
from edge.serve.domain import Job
from edge.serve.frames import preview_pngs
from edge.serve.hub import Hub
from edge.serve.inspector import Extra, Inspector
from edge.serve.metrics import NodeMetrics

log = logging.getLogger("edge.serve")

PRUNE_INTERVAL_S = 60.0      # how often inspections past [serve] retention_days are looked for
PRUNE_BATCH = 100            # inspections deleted per store transaction


def apply_extra(ins: Inspection, extra: Extra) -> None:
    ins.attributions += extra.attributions
    ins.sentence = extra.sentence or ins.sentence
    if extra.sensors is not None:
        ins.sensors = extra.sensors


class Node:
    def __init__(self, config: ServeConfig):
        self.config = config
        self.inspector = Inspector(config.models_dir, threads=config.threads, backend=config.backend,
                                   default_model=config.default_model, ig_steps=config.ig_steps,
                                   shap_budget=config.shap_budget, allow_unaudited=config.allow_unaudited,
                                   spin=config.ort_spin, review_budget=config.review_budget,
                                   deferred_backend=config.deferred_backend)
        self.store = InspectionStore(config.store, config.frame_retention, config.preview_retention,
                                     outbox=config.plant.database is not None)
        self.forwarder = None
        if config.plant.database:
            from edge.record.forward import Forwarder
            from edge.record.plant import PlantDatabase

            self.forwarder = Forwarder(self.store, PlantDatabase(config.plant.database), config.plant.node,
                                       batch=config.plant.batch)
        self.hub = Hub()
        # One thread runs the models (ONNX Runtime parallelises inside each call); one writes the store;
        # one computes deferred explanations, so they never hold up inline work in the model thread.
        self.model_pool = ThreadPoolExecutor(1, thread_name_prefix="models")
        self.store_pool = ThreadPoolExecutor(1, thread_name_prefix="store")
        self.background_pool = ThreadPoolExecutor(1, thread_name_prefix="deferred")
        # Large frames are decoded and cut into the model's inputs here, not on the event loop: a 5 MPixel
        # three-channel frame took 100 ms (raw) to 200 ms (16-bit PNG), during which no other station, health
        # check or HMI request was answered. Small frames stay on the loop (a thread hop costs more than them).
        self.decode_pool = ThreadPoolExecutor(2, thread_name_prefix="decode")
        # Reads for the HMI and GetInspection on their own threads (SQLite in WAL mode lets readers run beside
        # the writer): the HMI's list of 50 inspections of 1024 px frames decodes 50 heatmaps (0.4 s), which
        # on the store's one thread held every inspection's write, and so its answer, for as long. An
        # in-memory store is one database per connection, so it keeps to the store's thread.
        self.read_pool = (self.store_pool if str(config.store) == ":memory:"
                          else ThreadPoolExecutor(2, thread_name_prefix="store-read"))
        self.batcher = MicroBatcher(self.inspector.inspect_batch, self.model_pool, config.max_batch,
                                    config.batch_wait_ms, config.queue_size)
        self.background: set[asyncio.Task] = set()
        self.metrics = NodeMetrics(config.cycle_budget_ms)
        self.metrics.watch(self.batcher.queue.qsize, lambda: len(self.background))
        self.metrics.store(self.store.size_bytes, self._store_free_bytes)
        if self.forwarder is not None:
            self.metrics.plant(self.forwarder)
        for name, m in [*self.inspector.models.items(), *self.inspector.withheld.items()]:
            self.metrics.model(name, m.task, self.inspector.audit[name], name in self.inspector.models)
        self.recent = deque(maxlen=2000)      # (monotonic s, total ms, label) for the HMI's statistics
        self.ready = False
        # Inspections between arrival and their answer (queue, batch, inline explanations, store write):
        # stop() waits for these, not just for the batcher, so no acknowledged work is cut off.
        self.active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._pruner: asyncio.Task | None = None
        self._skipped_warned = -math.inf

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self.model_pool, self.inspector.warm_up)
        if self.forwarder is not None:          # also sends what an earlier run left in the outbox
            self.forwarder.start()
        self.batcher.start()
        if self.config.retention_days > 0:
            self._pruner = asyncio.get_running_loop().create_task(self._prune())
        self.ready = True

    async def inspect(self, job: Job) -> Inspection:
        if not self.ready:
            raise ShuttingDown("the node is warming up or shutting down; watch grpc.health.v1 for SERVING")
        self.active += 1
        self._idle.clear()
        try:
            return await self._inspect(job)
        finally:
            self.active -= 1
            if self.active == 0:
                self._idle.set()

    async def _inspect(self, job: Job) -> Inspection:
        loop = asyncio.get_running_loop()
        t_queue = time.perf_counter()
        # The stored previews are drawn on the store's thread while the models work (1.0-1.5 ms for three
        # 128 px planes on the 2-core CPU, which on the event loop delayed every request behind this one)
        previews = loop.run_in_executor(self.store_pool, preview_pngs, job.preview_planes)
        try:
            ins = await self.batcher.submit(job)
        except BaseException:
            previews.cancel()
            raise
        inline, deferred = self.inspector.plan(job, ins)
        if inline:
            t = time.perf_counter()
            extra = await loop.run_in_executor(self.model_pool, self.inspector.explain_extra, job, ins, inline)
            apply_extra(ins, extra)
            ins.timings_ms["inline_explanations"] = (time.perf_counter() - t) * 1e3
        if deferred and len(self.background) >= self.config.deferred_limit:
            # Each waiting inspection holds its frame: past the limit its deferred kinds are skipped and
            # the answer says so, rather than the node's memory growing with every frame it falls behind on.
            ins.skipped, deferred = deferred, []
            self.metrics.skipped(ins.model, ins.skipped)
            self._warn_skipped(len(self.background))
        ins.deferred = deferred
        ins.timings_ms["queue_and_batch"] = (time.perf_counter() - t_queue) * 1e3 - sum(
            ins.timings_ms.get(k, 0.0) for k in ("graph", "cam", "sentence", "inline_explanations"))
        t = time.perf_counter()         # the store's time includes what is left of drawing the previews
        await loop.run_in_executor(self.store_pool, self.store.put_inspection, ins, await previews,
                                   job.raw_frame if (job.store_frame and self.config.store_frames) else None)
        ins.timings_ms["store"] = (time.perf_counter() - t) * 1e3
        ins.timings_ms["total"] = (time.perf_counter() - job.arrived) * 1e3
        self.recent.append((time.monotonic(), ins.timings_ms["total"], ins.label))
        self.metrics.inspection(ins.model, ins.label, ins.station_id, ins.timings_ms, ins.review, deferred)
        self._stored()
        self.hub.publish(ins)
        if deferred:
            # what the deferred work does not read leaves memory now, not when it has run (the previews are
            # drawn, the raw frame stored): benchmarks/deferred_backlog.py's peak 2.54 -> 2.45 GB at 1024 px
            job.preview_planes, job.raw_frame = {}, None
            task = loop.create_task(self._deferred(job, ins, deferred))
            self.background.add(task)
            task.add_done_callback(self.background.discard)
        return ins

    async def _deferred(self, job: Job, ins: Inspection, kinds: list[str]) -> None:
        loop = asyncio.get_running_loop()
        try:
            extra = await loop.run_in_executor(self.background_pool, self.inspector.explain_extra, job, ins, kinds)
            await loop.run_in_executor(self.store_pool, self.store.put_deferred, ins.inspection_id,
                                       extra.attributions, extra.sentence, extra.sensors)
            self._stored()
        except Exception:  # noqa: BLE001 - a failed background explanation must not take the node down
            log.exception("deferred %s for inspection %s failed", kinds, ins.inspection_id)
            return
        apply_extra(ins, extra)
        ins.deferred = []
        self.hub.publish(ins, update=True)

    async def verdict(self, inspection_id: str, agree: bool, correct_class: str = "", operator: str = "",
                      condition: str = "") -> int:
        loop = asyncio.get_running_loop()
        t = await loop.run_in_executor(self.store_pool, self.store.put_verdict, inspection_id, agree,
                                       correct_class, operator, condition)
        self._stored()
        ins = await loop.run_in_executor(self.read_pool, self.store.get, inspection_id)
        if ins is not None:
            self.hub.publish(ins, update=True)
        return t

    async def _prune(self) -> None:
        """Delete inspections older than [serve] retention_days (InspectionStore.prune says which are kept),
        now and every PRUNE_INTERVAL_S. A batch at a time on the store's thread, so an inspection's write
        waits behind at most one batch (PRUNE_BATCH inspections: a few ms), never behind a whole backlog."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                cutoff = now_ms() - round(self.config.retention_days * 86_400_000)
                while True:
                    n = await loop.run_in_executor(self.store_pool, self.store.prune, cutoff, PRUNE_BATCH)
                    self.metrics.pruned.inc(n)
                    if n < PRUNE_BATCH:
                        break
            except Exception:           # a failed pass must not stop the node; the next one retries
                log.exception("deleting inspections older than %g days failed; retrying in %d s",
                              self.config.retention_days, PRUNE_INTERVAL_S)
            await asyncio.sleep(PRUNE_INTERVAL_S)

    def _store_free_bytes(self) -> float:
        """Free space where the store lives (NaN for an in-memory store, or if it cannot be read)."""
        try:
            if str(self.config.store) == ":memory:":
                return float("nan")
            return float(shutil.disk_usage(Path(self.config.store).resolve().parent).free)
        except OSError:
            return float("nan")

    def _warn_skipped(self, waiting: int) -> None:
        """A log line at most once a minute while explanations are being skipped (the metric counts each)."""
        now = time.monotonic()
        if now - self._skipped_warned >= 60.0:
            self._skipped_warned = now
            log.warning("%d inspections already wait for deferred explanations ([serve] deferred_limit %d): "
                        "the explanations of new ones that do not fit the cycle budget are skipped; ask for "
                        "IG/SHAP less often, raise the budget, or move them to a faster deferred_backend",
                        waiting, self.config.deferred_limit)

    def _stored(self) -> None:
        if self.forwarder is not None:
            self.forwarder.notify()

    async def get(self, inspection_id: str) -> Inspection | None:
        return await asyncio.get_running_loop().run_in_executor(self.read_pool, self.store.get, inspection_id)

    def statistics(self, window_s: float = 60.0) -> dict:
        now = time.monotonic()
        rows = [r for r in self.recent if now - r[0] <= window_s]
        lat = np.array([r[1] for r in rows]) if rows else np.zeros(0)
        labels = [r[2] for r in rows]
        classes = sorted(set(labels))
        return {"window_s": window_s, "inspections": len(rows),
                "throughput_hz": len(rows) / window_s,
                "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
                "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None,
                "cycle_budget_ms": self.config.cycle_budget_ms,
                "rate_by_class": {c: labels.count(c) / len(labels) for c in classes}}

    async def stop(self, grace_s: float) -> None:
        """Drain in-flight inspections, give deferred work the grace period, flush the store."""
        self.ready = False
        try:
            await asyncio.wait_for(self._idle.wait(), grace_s)
        except asyncio.TimeoutError:
            log.warning("%d inspections still running after the %.0f s grace; they are cut off", self.active, grace_s)
        await self.batcher.drain(grace_s)
        if self.background:
            await asyncio.wait(list(self.background), timeout=grace_s)
        await self.batcher.stop()
        if self._pruner is not None:
            self._pruner.cancel()
            await asyncio.gather(self._pruner, return_exceptions=True)
        loop = asyncio.get_running_loop()
        if self.forwarder is not None:
            await loop.run_in_executor(None, self.forwarder.stop, self.config.plant.drain_s)
        await loop.run_in_executor(self.store_pool, self.store.close)
        for pool in {self.model_pool, self.store_pool, self.background_pool, self.decode_pool, self.read_pool}:
            pool.shutdown(wait=False, cancel_futures=True)
        self.inspector.close()
