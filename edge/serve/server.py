"""`edge-xai serve`: the gRPC server (grpc.aio) and the operator HMI in one process.

Lifecycle: health NOT_SERVING while the models warm up, SERVING once they answer; SIGTERM or SIGINT
flips health back, stops accepting, lets in-flight inspections finish within `grace_s`, gives deferred
explanations the same grace, and flushes the audit store.
"""
from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from edge.serve.config import ServeConfig
from edge.serve.node import Node
from edge.serve.servicer import InspectionServicer
from edge.v1 import inspection_pb2 as pb
from edge.v1 import inspection_pb2_grpc as pb_grpc

log = logging.getLogger("edge.serve")
SERVICE = pb.DESCRIPTOR.services_by_name["Inspection"].full_name


def _credentials(config: ServeConfig) -> grpc.ServerCredentials | None:
    tls = config.tls
    if not tls.enabled:
        return None
    try:
        key, cert = tls.key.read_bytes(), tls.cert.read_bytes()
        ca = tls.client_ca.read_bytes() if tls.client_ca else None
    except OSError as e:
        raise FileNotFoundError(f"TLS: cannot read {e.filename}: {e.strerror}") from e
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


class Server:
    """The running node: `await start()`, then `await stop()` (or `await run()` until a signal)."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.node: Node | None = None
        self.grpc_port: int | None = None
        self.hmi_port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._health = health_aio.HealthServicer()
        self._hmi = None
        self._hmi_task: asyncio.Task | None = None
        self.stopping = asyncio.Event()

    async def start(self) -> None:
        mb = self.config.max_message_mb * 1024 * 1024
        self._server = grpc.aio.server(options=[("grpc.max_receive_message_length", mb),
                                                ("grpc.max_send_message_length", mb)])
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self._servicer = InspectionServicer()
        pb_grpc.add_InspectionServicer_to_server(self._servicer, self._server)
        for name in ("", SERVICE):
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self.config.reflection:
            from grpc_reflection.v1alpha import reflection

            reflection.enable_server_reflection([SERVICE, "grpc.health.v1.Health", reflection.SERVICE_NAME],
                                                self._server)
        creds = _credentials(self.config)
        self.grpc_port = (self._server.add_secure_port(self.config.grpc, creds) if creds
                          else self._server.add_insecure_port(self.config.grpc))
        if not self.grpc_port:
            raise OSError(f"cannot listen for gRPC on {self.config.grpc} (in use, or not an address)")
        await self._server.start()   # health answers NOT_SERVING while the models load and warm up
        loop = asyncio.get_running_loop()
        self.node = await loop.run_in_executor(None, Node, self.config)
        await self.node.start()
        self._servicer.node = self.node
        if self.config.hmi:
            await self._start_hmi()
        for name in ("", SERVICE):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving gRPC on port %s%s", self.grpc_port, f", HMI on port {self.hmi_port}" if self.hmi_port else "")

    async def _start_hmi(self) -> None:
        import socket

        import uvicorn

        from edge.hmi.app import create_app

        host, _, port = self.config.hmi.rpartition(":")
        sock = socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), int(port)))
        except OSError as e:
            raise OSError(f"cannot listen for the HMI on {self.config.hmi}: {e.strerror}") from e
        self.hmi_port = sock.getsockname()[1]
        self._hmi = uvicorn.Server(uvicorn.Config(create_app(self.node), log_level="warning", lifespan="off"))
        self._hmi_task = asyncio.get_running_loop().create_task(self._hmi.serve(sockets=[sock]))
        while not self._hmi.started and not self._hmi_task.done():
            await asyncio.sleep(0.01)
        if self._hmi_task.done():
            self._hmi_task.result()

    async def stop(self) -> None:
        grace = self.config.grace_s
        for name in ("", SERVICE):
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._hmi is not None:
            self._hmi.should_exit = True
        if self._server is not None:
            # Refuse new RPCs, let the running ones finish (their work drains through the batcher).
            stopping = asyncio.ensure_future(self._server.stop(grace))
            if self.node is not None:
                await self.node.stop(grace)
            await stopping
        if self._hmi_task is not None:
            await asyncio.wait([self._hmi_task], timeout=grace)

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT, stop cleanly."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        await self.start()
        await self.stopping.wait()
        log.info("stopping: draining in-flight inspections (grace %.0f s)", self.config.grace_s)
        await self.stop()
