"""A real node (gRPC + HMI on free ports, a temporary store) running in a background thread."""
from __future__ import annotations

import asyncio
import threading
from contextlib import contextmanager
from pathlib import Path

from edge.app import EdgeApp
from edge.serve.config import ServeConfig


@contextmanager
def running_server(config: ServeConfig):
    loop = asyncio.new_event_loop()
    server = EdgeApp(config)
    started = threading.Event()
    failure: list[BaseException] = []

    def run():
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start())
        except BaseException as e:  # noqa: BLE001 - re-raised in the test thread
            failure.append(e)
            started.set()
            return
        started.set()
        loop.run_until_complete(server.stopping.wait())
        loop.run_until_complete(server.stop())

    t = threading.Thread(target=run, daemon=True)
    t.start()
    started.wait(120)
    if failure:
        raise failure[0]
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(server.stopping.set)
        t.join(60)


def make_config(tmp: Path, **kw) -> ServeConfig:
    return ServeConfig(**{"grpc": "127.0.0.1:0", "hmi": "127.0.0.1:0", "store": tmp / "inspections.sqlite", "threads": 2,
                          "ig_steps": 8, "shap_budget": 64, "allow_unaudited": True, **kw})
