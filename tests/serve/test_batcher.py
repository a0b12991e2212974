"""The micro-batcher without models: what forms a batch by default."""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from edge.serve.batcher import MicroBatcher


class FakeJob:
    model = "defect"

    def __init__(self, name: str):
        self.name = name

    def remaining_ms(self) -> float:
        return 1e9


def test_without_a_wait_the_frames_that_queued_while_a_batch_ran_form_the_next_batch():
    """The default: a lone frame goes at once, and frames arriving while the engine is busy are batched."""
    busy, batches = threading.Event(), []

    def process(jobs):
        batches.append([j.name for j in jobs])
        if len(batches) == 1:
            assert busy.wait(10)
        return [j.name for j in jobs]

    async def scenario():
        b = MicroBatcher(process, ThreadPoolExecutor(1))
        assert b.max_wait_s == 0
        b.start()
        lone = asyncio.ensure_future(b.submit(FakeJob("a")))
        while not batches:               # the lone frame's batch is running, without waiting for company
            await asyncio.sleep(0.001)
        later = [asyncio.ensure_future(b.submit(FakeJob(n))) for n in ("b", "c")]
        await asyncio.sleep(0)
        busy.set()
        assert await asyncio.wait_for(lone, 10) == "a"
        assert await asyncio.wait_for(asyncio.gather(*later), 10) == ["b", "c"]
        await b.stop()

    asyncio.run(scenario())
    assert batches == [["a"], ["b", "c"]]
