"""Results for the PLC and the MES over OPC UA (asyncua), shaped after OPC 40100-1 (Machine Vision):

    Objects/EdgeXai/Stations/<station id>/LastResult/{ResultId, IsPartial, ResultState, Evaluation, JobId,
        CreationTime, PartId, ProcessingTimes, Class, Confidence, Reject, Review, Sentence, ModelSha256}
    Objects/EdgeXai                 emits ResultReadyEventType (the same fields) once per inspection
    Objects/EdgeXai/GetResult(ResultId) -> ResultContent (JSON of the stored inspection)

- ResultState 1 = complete, 2 = partial (explanations still deferred); Evaluation after OPC 40001-101:
  "NotOK" when the reject rule fires, "NotDecidable" when the review flag asks for a person, else "OK".
- Reject: the class is not the model's defect-free class (or, with `reject_classes`, is one of those).
- Security as OPC UA users expect: Basic256Sha256 Sign&Encrypt with the node's certificate and key; users
  by name and password (`[opcua] users`, password hashes: `password_hash`); anonymous access only when
  `anonymous = true` (off in deploy/node.example.toml); no unencrypted endpoint unless
  `allow_unencrypted = true` (a lab).

The publisher follows the node's watch hub, so a result is announced as soon as the inspection is stored,
in the order the node answered.
"""
from __future__ import annotations

import asyncio
import datetime
import hashlib
import hmac
import json
import logging
from edge.record import Inspection
from edge.serve.config import OpcUaConfig

log = logging.getLogger("edge.line")
NAMESPACE = "urn:edge-xai:machine-vision"
FIELDS = (("ResultId", "String"), ("IsPartial", "Boolean"), ("ResultState", "Int32"), ("Evaluation", "String"),
          ("JobId", "String"), ("CreationTime", "DateTime"), ("PartId", "String"), ("ProcessingTimes", "Double"),
          ("Class", "String"), ("Confidence", "Double"), ("Reject", "Boolean"), ("Review", "String"),
          ("Sentence", "String"), ("ModelSha256", "String"), ("StationId", "String"))


# Before a station's first result (OPC UA scalars cannot be null).
INITIAL = {"String": "", "Boolean": False, "Int32": 0, "Double": 0.0,
           "DateTime": datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)}


def password_hash(password: str) -> str:
    """What `[opcua] users` stores for a password: "sha256:<hex>" (the config never holds it in clear)."""
    return "sha256:" + hashlib.sha256(password.encode()).hexdigest()


def user_manager(config: OpcUaConfig):
    """Sessions: anonymous only when the config allows it; a user name only with its password's hash in
    `users`; nothing else (no certificate-only users)."""
    from asyncua.server.user_managers import User, UserManager, UserRole

    class Users(UserManager):
        def get_user(self, iserver, username=None, password=None, certificate=None):
            if username is None:
                return User(role=UserRole.User) if config.anonymous else None
            expected = config.users.get(username)
            if expected is None or password is None:
                return None
            return User(role=UserRole.User) if hmac.compare_digest(expected, password_hash(password)) else None
    return Users()


def evaluation(ins: Inspection, reject: bool) -> str:
    if reject:
        return "NotOK"
    return "NotDecidable" if ins.review else "OK"


class OpcUaResults:
    def __init__(self, node, config: OpcUaConfig):
        self.node, self.config = node, config
        self.server = None
        self.endpoint: str | None = None
        self._task: asyncio.Task | None = None
        self._stations: dict[str, dict] = {}

    def reject(self, ins: Inspection) -> bool:
        if self.config.reject_classes:
            return ins.label in self.config.reject_classes
        model = self.node.inspector.models.get(ins.model)
        return ins.label != (model.ok_class if model else "ok")

    async def start(self) -> str:
        from edge.errors import InvalidInput, Unavailable

        try:
            from asyncua import Server, ua
        except ImportError as e:
            raise Unavailable(f"[opcua] needs asyncua ({e}): pip install 'edge-xai[opcua]'") from e

        cfg = self.config
        server = Server(user_manager=user_manager(cfg))
        await server.init()
        server.set_endpoint(cfg.endpoint)
        server.set_server_name("edge-xai inspection node")
        policies = []
        if cfg.certificate and cfg.private_key:
            await server.load_certificate(str(cfg.certificate))
            await server.load_private_key(str(cfg.private_key))
            policies.append(ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt)
        if cfg.allow_unencrypted or not policies:
            if not cfg.anonymous and not policies:
                raise InvalidInput("[opcua] needs certificate and private_key (Basic256Sha256 Sign&Encrypt), or "
                                   "anonymous = true with allow_unencrypted = true for a lab set-up")
            policies.append(ua.SecurityPolicyType.NoSecurity)
        server.set_security_policy(policies)
        server.set_security_IDs(["Anonymous", "Username"] if cfg.anonymous else ["Username"])
        idx = await server.register_namespace(NAMESPACE)
        root = await server.nodes.objects.add_object(idx, "EdgeXai")
        self._stations_folder = await root.add_folder(idx, "Stations")
        etype = await server.create_custom_event_type(
            idx, "ResultReadyEventType", ua.ObjectIds.BaseEventType,
            [(name, getattr(ua.VariantType, t)) for name, t in FIELDS])
        self._event = await server.get_event_generator(etype, root)
        self._idx, self._root, self._ua = idx, root, ua

        async def get_result(parent, result_id):
            ins = await self.node.get(result_id.Value)
            if ins is None:
                return [ua.Variant("", ua.VariantType.String)]
            return [ua.Variant(json.dumps(self.content(ins)), ua.VariantType.String)]

        await root.add_method(idx, "GetResult", get_result, [ua.VariantType.String], [ua.VariantType.String])
        await server.start()
        self.server = server
        self.endpoint = cfg.endpoint
        self._ready = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._follow())
        await self._ready.wait()
        return self.endpoint

    def content(self, ins: Inspection) -> dict:
        reject = self.reject(ins)
        return {"ResultId": ins.inspection_id, "IsPartial": not ins.complete, "ResultState": 2 if ins.deferred else 1,
                "Evaluation": evaluation(ins, reject), "JobId": ins.model, "PartId": ins.part_id,
                "StationId": ins.station_id, "CreationTime": ins.received_ms,
                "ProcessingTimes": ins.timings_ms.get("total", 0.0), "Class": ins.label,
                "Confidence": ins.confidence, "Reject": reject, "Review": ", ".join(ins.review or []),
                "Sentence": ins.sentence, "ModelSha256": ins.model_sha256}

    async def _station(self, station_id: str) -> dict:
        if station_id not in self._stations:
            ua = self._ua
            obj = await self._stations_folder.add_object(self._idx, station_id)
            last = await obj.add_object(self._idx, "LastResult")
            variables = {}
            for name, t in FIELDS:
                variables[name] = await last.add_variable(self._idx, name, ua.Variant(INITIAL[t], getattr(ua.VariantType, t)))
            self._stations[station_id] = variables
        return self._stations[station_id]

    async def publish(self, ins: Inspection) -> None:
        ua = self._ua
        c = self.content(ins)
        c["CreationTime"] = datetime.datetime.fromtimestamp(ins.received_ms / 1e3, datetime.timezone.utc)
        variables = await self._station(ins.station_id)
        for name, t in FIELDS:
            await variables[name].write_value(ua.Variant(c[name], getattr(ua.VariantType, t)))
        for name, _ in FIELDS:
            setattr(self._event.event, name, c[name])
        await self._event.trigger(message=f"{ins.station_id}: {ins.label} ({c['Evaluation']})")

    async def _follow(self) -> None:
        with self.node.hub.subscribe() as queue:
            self._ready.set()
            while True:
                ins, update = await queue.get()
                if update:            # a deferred explanation or a verdict: the decision was announced already
                    continue
                try:
                    await self.publish(ins)
                except Exception:  # noqa: BLE001 - one bad result must not stop the PLC's feed
                    log.exception("OPC UA: publishing inspection %s failed", ins.inspection_id)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self.server is not None:
            await self.server.stop()


async def subscribe_results(client, handler, period_ms: float = 5) -> tuple[int, object]:
    """Subscribe an asyncua client's `handler` (its `event_notification`) to ResultReady events; returns the
    namespace index and the EdgeXai node (for GetResult and the stations' LastResult)."""
    idx = await client.get_namespace_index(NAMESPACE)
    root = await client.nodes.objects.get_child([f"{idx}:EdgeXai"])
    etype = await client.nodes.base_event_type.get_child([f"{idx}:ResultReadyEventType"])
    subscription = await client.create_subscription(period_ms, handler)
    await subscription.subscribe_events(root, etype)
    return idx, root
