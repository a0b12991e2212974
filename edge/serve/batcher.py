"""Micro-batching across concurrent stations, with a bounded wait and a bounded queue.

The first waiting job opens a batch; others join until `max_batch` or until `max_wait_ms` has passed,
so batching costs a station at most that wait. With no wait (the node's default) a batch is whatever
queued while the previous batch ran: batches form under load and a lone frame goes at once. The queue
holds at most `queue_size` jobs; beyond that `submit` raises QueueFull at once instead of letting memory
and latency grow without bound. Batches run in a worker thread so the event loop keeps accepting and
answering. (Answering each caller of a batch as soon as its own sentence was written was tried on
2026-12-03 and dropped: 4 stations x 10 Hz p50 1-2 ms lower, saturation 6 % lower on two cores.)
"""
from __future__ import annotations

import asyncio
from collections import defaultdict
from concurrent.futures import Executor
from typing import Callable

from edge.errors import DeadlineExceeded, Saturated, Unavailable
from edge.record import Inspection
from edge.serve.domain import Job


class QueueFull(Saturated):
    """The queue is full: the node is saturated."""


class ShuttingDown(Unavailable):
    """The node is stopping: the caller should retry on another node or after the restart."""


class MicroBatcher:
    def __init__(self, process: Callable[[list[Job]], list[Inspection]], executor: Executor, max_batch: int = 8,
                 max_wait_ms: float = 0.0, queue_size: int = 64):
        self.process, self.executor = process, executor
        self.max_batch, self.max_wait_s, self.queue_size = max_batch, max_wait_ms / 1e3, queue_size
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=queue_size)
        self.in_flight = 0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def submit(self, job: Job) -> Inspection:
        fut = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((job, fut))
        except asyncio.QueueFull:
            raise QueueFull(f"{self.queue_size} inspections already waiting: the node is saturated; "
                            "retry after a short back-off or lower the station rate") from None
        return await fut

    async def _collect(self) -> list:
        batch = [await self.queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:
                batch.append(self.queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            timeout = deadline - loop.time()
            if timeout <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), timeout))
            except asyncio.TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            self.in_flight = len(batch)
            groups: dict[str, list] = defaultdict(list)
            for job, fut in batch:
                if fut.cancelled():           # the caller gave up (deadline, disconnect)
                    continue
                if job.remaining_ms() <= 0:
                    fut.set_exception(DeadlineExceeded(f"cycle budget of {job.budget_ms:.0f} ms spent while queued"))
                    continue
                groups[job.model].append((job, fut))
            for items in groups.values():
                try:
                    results = await loop.run_in_executor(self.executor, self.process, [j for j, _ in items])
                except Exception as e:  # noqa: BLE001 - handed to every caller of the batch
                    for _, fut in items:
                        if not fut.done():
                            fut.set_exception(e)
                    continue
                for (_, fut), r in zip(items, results):
                    if not fut.done():
                        fut.set_result(r)
            self.in_flight = 0

    async def drain(self, timeout_s: float) -> None:
        """Wait until the queue is empty and no batch is running (or the timeout passes)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while (not self.queue.empty() or self.in_flight) and loop.time() < end:
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        # A job still queued would otherwise wait on its future until the caller's deadline.
        while not self.queue.empty():
            _, fut = self.queue.get_nowait()
            if not fut.done():
                fut.set_exception(ShuttingDown("the node stopped before this inspection ran"))
