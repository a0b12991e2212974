"""Stopping a node while stations keep sending: every inspection that was answered is in the store,
every one that was not is refused as ShuttingDown (UNAVAILABLE on the wire), and nothing hangs."""
import asyncio

import pytest
from helpers.server import make_config

from edge.record import InspectionStore
from edge.serve.batcher import ShuttingDown
from edge.serve.node import Node
from edge.serve.servicer import build_job
from edge.serve.station import make_requests

pytestmark = pytest.mark.slow


def test_stop_under_load_answers_or_refuses_every_inspection(tmp_path):
    cfg = make_config(tmp_path, hmi=None, threads=1)
    requests = make_requests(4, seed=1000, station="drain")

    async def scenario():
        node = Node(cfg)
        await node.start()
        answered, refused = [], []

        async def station(k):
            for i in range(40):
                try:
                    answered.append((await node.inspect(build_job(requests[(i + k) % 4], node, None))).inspection_id)
                except ShuttingDown:
                    refused.append(k)
                    return
                await asyncio.sleep(0)

        stations = [asyncio.ensure_future(station(k)) for k in range(4)]
        while len(answered) < 4:
            await asyncio.sleep(0.005)
        # stop in the middle of the load; the stations keep submitting while it drains
        await asyncio.wait_for(node.stop(grace_s=10), 30)
        await asyncio.wait_for(asyncio.gather(*stations), 30)   # none left waiting on a dead batcher
        return answered, refused

    answered, refused = asyncio.run(scenario())
    assert len(refused) == 4                  # every station was told, none hung
    store = InspectionStore(cfg.store)
    assert all(store.get_row(i) is not None for i in answered)
    assert store.integrity_check() == "ok"


def test_a_batcher_stopped_with_queued_jobs_fails_them_instead_of_stranding_them():
    from concurrent.futures import ThreadPoolExecutor

    from edge.serve.batcher import MicroBatcher

    async def scenario():
        b = MicroBatcher(lambda jobs: jobs, ThreadPoolExecutor(1))   # never started: jobs stay queued
        waiting = asyncio.ensure_future(b.submit(object()))
        await asyncio.sleep(0)
        await b.stop()
        with pytest.raises(ShuttingDown):
            await asyncio.wait_for(waiting, 5)

    asyncio.run(scenario())


def test_a_node_with_retention_days_deletes_old_inspections_in_the_background(tmp_path, monkeypatch):
    """[serve] retention_days: the node deletes inspections past it while it serves (the one an operator
    judged stays), counts them for Prometheus, and stops its pruning with the node."""
    import edge.serve.node as node_module

    monkeypatch.setattr(node_module, "PRUNE_INTERVAL_S", 0.05)
    cfg = make_config(tmp_path, hmi=None, threads=1, retention_days=0.3 / 86_400)      # 0.3 s
    requests = make_requests(3, seed=1000, station="retention")

    async def scenario():
        node = Node(cfg)
        await node.start()
        ids = [(await node.inspect(build_job(r, node, None))).inspection_id for r in requests]
        await node.verdict(ids[1], True)
        for _ in range(100):
            await asyncio.sleep(0.05)
            if node.store.count() == 1:
                break
        kept = [i.inspection_id for i in node.store.recent(10)]
        pruned = node.metrics.pruned._value.get()
        await asyncio.wait_for(node.stop(grace_s=5), 30)
        assert node._pruner.done()
        return ids, kept, pruned

    ids, kept, pruned = asyncio.run(scenario())
    assert kept == [ids[1]] and pruned == 2
