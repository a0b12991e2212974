"""Store-and-forward from a node's inspection store to the plant database.

    fwd = Forwarder(store, PlantDatabase(url), node="line3-node1")
    fwd.start()            # a thread: outbox -> PostgreSQL, until stop()
    fwd.notify()           # after a write: forward now instead of at the next poll

The node keeps answering when the plant database is down: its SQLite store is the durable record, and
the store's outbox (written in the same transaction as each inspection, deferred explanation and
verdict) is what remains to send. The forwarder sends the outbox oldest first in batches, one plant
transaction per batch, and deletes the batch's outbox rows only after that transaction committed. A
crash between the two replays the batch, which the plant's idempotent writes absorb: nothing is lost
and nothing doubled, across database restarts and node restarts alike. While the database is down it
retries with a backoff (0.5 s doubling to 10 s).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from edge.record.plant import PlantDatabase, PlantUnavailable
from edge.record.store import InspectionStore

log = logging.getLogger("edge.record")


@dataclass
class ForwardStatus:
    forwarded: int = 0                 # outbox rows the plant database committed since start
    batches: int = 0
    failures: int = 0                  # failed attempts (database down, refused)
    last_error: str | None = None      # None once a batch went through again
    last_forward_unix: float | None = None


def forward_batch(store: InspectionStore, plant: PlantDatabase, node: str, limit: int = 200) -> int:
    """Send the oldest `limit` outbox rows; returns how many (0: nothing pending). Raises PlantUnavailable
    with the outbox untouched when the database does not commit."""
    batch = store.pending(limit)
    if not batch:
        return 0
    inspections = list(dict.fromkeys(key for _, kind, key in batch if kind == "inspection"))
    verdicts = [int(key) for _, kind, key in batch if kind == "verdict"]
    plant.write(node, store.plant_rows(inspections, verdicts))
    store.acknowledge(batch[-1][0])
    return len(batch)


def forward_all(store: InspectionStore, plant: PlantDatabase, node: str, limit: int = 200,
                progress: bool = False) -> int:
    """Forward until the outbox is empty (the `edge-xai forward` command); returns rows forwarded."""
    from tqdm import tqdm

    total = 0
    with tqdm(total=store.backlog(), desc="forward", unit="row", disable=not progress) as bar:
        while n := forward_batch(store, plant, node, limit):
            total += n
            bar.update(n)
    return total


class Forwarder:
    def __init__(self, store: InspectionStore, plant: PlantDatabase, node: str, batch: int = 200,
                 poll_s: float = 0.5, backoff_s: tuple[float, float] = (0.5, 10.0)):
        self.store, self.plant, self.node = store, plant, node
        self.batch, self.poll_s, self.backoff_s = batch, poll_s, backoff_s
        self.status = ForwardStatus()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._backlog = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="plant-forwarder", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        self._wake.set()

    def backlog(self) -> int:
        """Outbox rows still to send, as of the forwarder's last look (cheap: for the metrics scrape)."""
        return self._backlog

    def _run(self) -> None:
        delay = self.backoff_s[0]
        while not self._stop.is_set():
            try:
                n = forward_batch(self.store, self.plant, self.node, self.batch)
                self._backlog = self.store.backlog()
            except PlantUnavailable as e:
                self.status.failures += 1
                if self.status.last_error != str(e):
                    log.warning("plant database: %s; the outbox keeps the rows, retrying", e)
                self.status.last_error = str(e)
                self._backlog = self.store.backlog()
                self._stop.wait(delay)
                delay = min(2 * delay, self.backoff_s[1])
                continue
            except Exception:  # noqa: BLE001 - a bad row must not stop forwarding for good; logged, retried
                log.exception("plant forwarding failed; retrying")
                self.status.failures += 1
                self._stop.wait(self.backoff_s[1])
                continue
            delay = self.backoff_s[0]
            if n:
                if self.status.last_error is not None:
                    log.info("plant database reachable again; forwarding the backlog")
                self.status.last_error = None
                self.status.forwarded += n
                self.status.batches += 1
                self.status.last_forward_unix = time.time()
                continue                        # more may be waiting
            self._wake.wait(self.poll_s)
            self._wake.clear()
        self.plant.close()
        self.store.close()          # this thread's SQLite connection

    def stop(self, drain_s: float = 5.0) -> int:
        """Give the forwarder up to `drain_s` to empty the outbox, then stop it. Returns the rows left (they
        stay in the outbox and go at the next start)."""
        deadline = time.monotonic() + drain_s
        while self._thread is not None and self._thread.is_alive() and time.monotonic() < deadline:
            if self.store.backlog() == 0 or self.status.last_error is not None:
                break
            self._wake.set()
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(1.0, deadline - time.monotonic()) + self.plant.connect_timeout_s)
        left = self.store.backlog()
        if left:
            log.warning("%d rows not yet forwarded to the plant database; they stay in the outbox", left)
        return left
