"""Fan-out of new and updated inspections to watchers (gRPC WatchInspections, the HMI's live feed).

Each subscriber has a bounded queue; a subscriber too slow to keep up loses its oldest events rather
than making the server hold an unbounded backlog (it can always re-read the store).
"""
from __future__ import annotations

import asyncio
from contextlib import contextmanager

from edge.record import Inspection


class Hub:
    def __init__(self, per_subscriber: int = 256):
        self.per_subscriber = per_subscriber
        self._subscribers: set[asyncio.Queue] = set()

    @contextmanager
    def subscribe(self):
        q: asyncio.Queue = asyncio.Queue(maxsize=self.per_subscriber)
        self._subscribers.add(q)
        try:
            yield q
        finally:
            self._subscribers.discard(q)

    def publish(self, inspection: Inspection, update: bool = False) -> None:
        for q in list(self._subscribers):
            if q.full():
                q.get_nowait()
            q.put_nowait((inspection, update))
