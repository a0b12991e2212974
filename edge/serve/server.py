"""The gRPC server (grpc.aio) over one Node: inspection service, health and reflection.

Lifecycle: health NOT_SERVING while the models warm up, SERVING once they answer (`set_serving`, which
`edge.app` calls once the HMI is up too); `stop` flips health back, stops accepting, lets in-flight
inspections finish within `grace_s`, gives deferred explanations the same grace, and flushes the
inspection store.
"""
from __future__ import annotations

import asyncio
import logging

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from edge.errors import MissingFile, Unavailable
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
        raise MissingFile(f"TLS: cannot read {e.filename}: {e.strerror}") from e
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


class Server:
    """`await start()`, `await set_serving()`, then `await stop()`."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.node: Node | None = None
        self.grpc_port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._health = health_aio.HealthServicer()

    async def start(self) -> None:
        """Listen (health answers NOT_SERVING), load and warm the models."""
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
            raise Unavailable(f"cannot listen for gRPC on {self.config.grpc} (in use, or not an address)")
        await self._server.start()   # health answers NOT_SERVING while the models load and warm up
        loop = asyncio.get_running_loop()
        try:
            self.node = await loop.run_in_executor(None, Node, self.config)
            await self.node.start()
        except BaseException:
            # e.g. no audited model to serve: close the listening server here, in its loop, or gRPC's
            # finaliser tries to later, after the loop is gone, and prints a traceback under the error
            await self._server.stop(None)
            self._server = None
            raise
        self._servicer.node = self.node

    async def set_serving(self) -> None:
        for name in ("", SERVICE):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self) -> None:
        grace = self.config.grace_s
        for name in ("", SERVICE):
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._server is not None:
            # Refuse new RPCs, let the running ones finish (their work drains through the batcher).
            stopping = asyncio.ensure_future(self._server.stop(grace))
            if self.node is not None:
                await self.node.stop(grace)
            await stopping
