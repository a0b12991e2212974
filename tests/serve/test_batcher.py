"""The micro-batcher without models: what forms a batch, and when each caller of a batch is answered."""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from edge.serve.batcher import MicroBatcher


class FakeJob:
    model = "defect"

    def __init__(self, name: str):
        self.name = name

    def remaining_ms(self) -> float:
        return 1e9


async def _enqueue(b: MicroBatcher, *names: str) -> list[asyncio.Future]:
    futs = [asyncio.ensure_future(b.submit(FakeJob(n))) for n in names]
    await asyncio.sleep(0)            # each submit has put its job in the queue
    return futs


def test_each_caller_of_a_batch_is_answered_as_soon_as_its_result_exists():
    release, batches = threading.Event(), []

    def process(jobs):
        batches.append([j.name for j in jobs])
        yield jobs[0].name
        assert release.wait(10), "the test never released the second result"
        yield jobs[1].name

    async def scenario():
        b = MicroBatcher(process, ThreadPoolExecutor(1))
        first, second = await _enqueue(b, "a", "b")
        b.start()
        assert await asyncio.wait_for(first, 10) == "a"
        assert not second.done()       # its result does not exist yet; the first caller did not wait for it
        release.set()
        assert await asyncio.wait_for(second, 10) == "b"
        await b.stop()

    asyncio.run(scenario())
    assert batches == [["a", "b"]]


def test_an_error_mid_batch_reaches_the_callers_not_yet_answered():
    def process(jobs):
        yield jobs[0].name
        raise ValueError("the graph failed on the second frame")

    async def scenario():
        b = MicroBatcher(process, ThreadPoolExecutor(1))
        first, second = await _enqueue(b, "a", "b")
        b.start()
        assert await asyncio.wait_for(first, 10) == "a"
        with pytest.raises(ValueError, match="second frame"):
            await asyncio.wait_for(second, 10)
        await b.stop()

    asyncio.run(scenario())


def test_a_batch_that_answers_too_few_jobs_fails_the_rest_instead_of_leaving_them_waiting():
    async def scenario():
        b = MicroBatcher(lambda jobs: [jobs[0].name], ThreadPoolExecutor(1))
        first, second = await _enqueue(b, "a", "b")
        b.start()
        assert await asyncio.wait_for(first, 10) == "a"
        with pytest.raises(RuntimeError, match="1 answers for 2 jobs"):
            await asyncio.wait_for(second, 10)
        await b.stop()

    asyncio.run(scenario())


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
        [lone] = await _enqueue(b, "a")
        while not batches:               # the lone frame's batch is running
            await asyncio.sleep(0.001)
        later = await _enqueue(b, "b", "c")
        busy.set()
        assert await asyncio.wait_for(lone, 10) == "a"
        assert await asyncio.wait_for(asyncio.gather(*later), 10) == ["b", "c"]
        await b.stop()

    asyncio.run(scenario())
    assert batches == [["a"], ["b", "c"]]
