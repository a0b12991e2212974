"""The edge node as one process: the gRPC service (`edge.serve`) and the operator HMI (`edge.hmi`) over
one Node, composed here so that neither package imports the other's server.

    app = EdgeApp(ServeConfig.load(path))
    await app.run()            # until SIGTERM / SIGINT, then a clean stop

Lifecycle: gRPC listens first (health NOT_SERVING while the models load and warm up), then the HMI,
then health turns SERVING. Stopping reverses it: health NOT_SERVING, the HMI stops accepting, in-flight
inspections and deferred explanations get `grace_s`, the inspection store is flushed.
"""
from __future__ import annotations

import asyncio
import logging
import signal

from edge.hmi.server import HmiServer
from edge.serve import Node, ServeConfig, Server

log = logging.getLogger("edge.serve")


class EdgeApp:
    def __init__(self, config: ServeConfig):
        self.config = config
        self.grpc = Server(config)
        self.hmi: HmiServer | None = None
        self.opcua = None
        self.stopping = asyncio.Event()

    @property
    def node(self) -> Node | None:
        return self.grpc.node

    @property
    def grpc_port(self) -> int | None:
        return self.grpc.grpc_port

    @property
    def hmi_port(self) -> int | None:
        return self.hmi.port if self.hmi else None

    async def start(self) -> None:
        await self.grpc.start()
        if self.config.hmi:
            self.hmi = HmiServer(self.grpc.node, self.config.hmi)
            try:
                await self.hmi.start()
            except BaseException:
                await self.grpc.stop()      # no half-started node left listening
                raise
        if self.config.opcua.endpoint:
            from edge.line.opcua import OpcUaResults

            self.opcua = OpcUaResults(self.grpc.node, self.config.opcua)
            try:
                await self.opcua.start()
            except BaseException:
                await self.stop()
                raise
        await self.grpc.set_serving()
        log.info("serving gRPC on port %s%s", self.grpc_port, f", HMI on port {self.hmi_port}" if self.hmi_port else "")

    async def stop(self) -> None:
        if self.hmi is not None:
            self.hmi.stop_accepting()
        await self.grpc.stop()
        if self.opcua is not None:          # after the drain: the last answers are announced too
            await self.opcua.stop()
        if self.hmi is not None:
            await self.hmi.wait_stopped(self.config.grace_s)

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT, stop cleanly."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        await self.start()
        await self.stopping.wait()
        log.info("stopping: draining in-flight inspections (grace %.0f s)", self.config.grace_s)
        await self.stop()
