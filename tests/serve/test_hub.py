"""The watch fan-out: a slow watcher loses its oldest events, bounded in count and in the bytes of the maps
they keep alive, and a waiting watcher wakes on the next event."""
import asyncio

import numpy as np

from edge.serve.hub import Hub, held_bytes
from helpers.records import make_inspection


def big(i: int, side: int) -> object:
    ins = make_inspection(i)
    ins.heatmap = np.zeros((side, side), np.float32)          # a frame-sized heatmap: side^2 x 4 bytes
    return ins


def test_a_slow_watcher_keeps_the_newest_events_within_its_event_and_byte_bounds():
    async def run():
        hub = Hub(per_subscriber=4, bytes_per_subscriber=3 * 1024 * 1024 * 4)
        with hub.subscribe() as sub:
            for i in range(10):                                 # small events: the count bounds them
                hub.publish(make_inspection(i))
            assert len(sub) == 4 and sub.dropped == 6
            assert [(await sub.get())[0].inspection_id for _ in range(4)] == [make_inspection(i).inspection_id
                                                                               for i in range(6, 10)]
            for i in range(5):                                  # 4 MB heatmaps: three fit the 12 MB
                hub.publish(big(i, 1024))
            assert len(sub) == 3 and held_bytes(big(0, 1024)) == 1024 * 1024 * 4
            hub.publish(big(9, 4096), update=True)              # 64 MB alone: over the bound, still delivered
            assert len(sub) == 1
            ins, update = await sub.get()
            assert update and ins.heatmap.shape == (4096, 4096)
        assert not hub._subscribers                             # leaving the block unsubscribes

    asyncio.run(run())


def test_a_waiting_watcher_wakes_on_the_next_event_and_a_timeout_loses_nothing():
    async def run():
        hub = Hub()
        with hub.subscribe() as sub:
            try:
                await asyncio.wait_for(sub.get(), timeout=0.05)       # the HMI's keep-alive timeout
            except asyncio.TimeoutError:
                pass
            waiter = asyncio.ensure_future(sub.get())
            await asyncio.sleep(0)
            hub.publish(make_inspection(1))
            ins, update = await asyncio.wait_for(waiter, timeout=5)
            assert ins.inspection_id == make_inspection(1).inspection_id and not update and len(sub) == 0

    asyncio.run(run())
