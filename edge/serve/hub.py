"""Fan-out of new and updated inspections to watchers (gRPC WatchInspections, the HMI's live feed, OPC UA).

Each subscriber has a bounded backlog, in events and in the bytes of the arrays they hold (the heatmap and
attribution maps come at the frame's size: 20 MB each for a 5 MPixel frame); a subscriber too slow to keep
up loses its oldest events rather than making the server hold an unbounded backlog (it can always re-read
the store).
"""
from __future__ import annotations

import asyncio
from collections import deque
from contextlib import contextmanager

import numpy as np

from edge.record import Inspection

EVENTS_PER_SUBSCRIBER = 256
BYTES_PER_SUBSCRIBER = 64 << 20   # a stalled HMI tab must not keep hundreds of frame-sized maps alive


def held_bytes(ins: Inspection) -> int:
    """The array memory an event keeps alive: the frame-sized heatmap, attribution maps, the tile's arrays."""
    arrays = [ins.heatmap, ins.tile_heatmap, ins.tile_logits, ins.tile_map, *(a.attribution for a in ins.attributions)]
    return sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))


class Subscription:
    """One watcher's backlog: `await get()` the next (inspection, update) event, oldest first."""

    def __init__(self, max_events: int, max_bytes: int):
        self.max_events, self.max_bytes = max_events, max_bytes
        self._events: deque[tuple[Inspection, bool, int]] = deque()
        self._bytes = 0
        self._ready = asyncio.Event()
        self.dropped = 0

    def put(self, inspection: Inspection, update: bool) -> None:
        size = held_bytes(inspection)
        self._events.append((inspection, update, size))
        self._bytes += size
        # the newest event always stays, even one larger than the byte bound on its own
        while len(self._events) > 1 and (len(self._events) > self.max_events or self._bytes > self.max_bytes):
            self._bytes -= self._events.popleft()[2]
            self.dropped += 1
        self._ready.set()

    async def get(self) -> tuple[Inspection, bool]:
        while not self._events:
            self._ready.clear()
            await self._ready.wait()
        inspection, update, size = self._events.popleft()
        self._bytes -= size
        return inspection, update

    def __len__(self) -> int:
        return len(self._events)


class Hub:
    def __init__(self, per_subscriber: int = EVENTS_PER_SUBSCRIBER, bytes_per_subscriber: int = BYTES_PER_SUBSCRIBER):
        self.per_subscriber, self.bytes_per_subscriber = per_subscriber, bytes_per_subscriber
        self._subscribers: set[Subscription] = set()

    @contextmanager
    def subscribe(self):
        sub = Subscription(self.per_subscriber, self.bytes_per_subscriber)
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)

    def publish(self, inspection: Inspection, update: bool = False) -> None:
        for sub in list(self._subscribers):
            sub.put(inspection, update)
