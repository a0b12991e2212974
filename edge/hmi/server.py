"""The HMI's web server (uvicorn) on its own socket, started and stopped inside a running event loop."""
from __future__ import annotations

import asyncio
import socket

from edge.errors import Unavailable
from edge.serve import Node


class HmiServer:
    def __init__(self, node: Node, address: str):
        self.node, self.address = node, address
        self.port: int | None = None
        self._server = None
        self._task: asyncio.Task | None = None

    async def start(self) -> int:
        """Listen on `address` (HOST:PORT, port 0 for a free one); returns the port once it answers."""
        import uvicorn

        from edge.hmi.app import create_app

        host, _, port = self.address.rpartition(":")
        host = host.strip("[]")
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, int(port)))
        except (OSError, ValueError) as e:
            sock.close()
            raise Unavailable(f"cannot listen for the HMI on {self.address}: {getattr(e, 'strerror', None) or e}") from e
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(create_app(self.node), log_level="warning", lifespan="off"))
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]))
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()
        return self.port

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.should_exit = True

    async def wait_stopped(self, timeout_s: float) -> None:
        if self._task is not None:
            await asyncio.wait([self._task], timeout=timeout_s)
