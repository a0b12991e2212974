"""Results to the PLC over OPC UA: an asyncua client subscribes to ResultReady events while four stations
inspect; every inspection arrives once, in each station's order, with the reject bit of its class."""
import asyncio
import json
import socket
import time

import grpc
import numpy as np
import pytest

from edge.serve.config import OpcUaConfig
from edge.serve.station import make_requests
from edge.v1 import inspection_pb2_grpc as pb_grpc
from helpers.server import make_config, running_server

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def scenario(grpc_port: int, url: str, per_station: int = 5, stations: int = 4):
    from asyncua import Client

    from edge.line.opcua import subscribe_results

    received: dict[str, tuple[float, object]] = {}
    order: list[str] = []

    class Handler:
        def event_notification(self, event):
            received[event.ResultId] = (time.perf_counter(), event)
            order.append(event.ResultId)

    async with Client(url) as client:
        idx, root = await subscribe_results(client, Handler())
        answers = []
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as ch:
            stub = pb_grpc.InspectionStub(ch)

            async def station(k: int):
                for r in make_requests(per_station, seed=700 + k, station=f"cell-{k}"):
                    a = await stub.Inspect(r, timeout=30)
                    answers.append((f"cell-{k}", a.inspection_id, time.perf_counter(), a.label))
            await asyncio.gather(*(station(k) for k in range(stations)))
        for _ in range(500):
            if len(received) >= len(answers):
                break
            await asyncio.sleep(0.01)
        content = await root.call_method(f"{idx}:GetResult", answers[0][1])
        last = await client.nodes.objects.get_child([f"{idx}:EdgeXai", f"{idx}:Stations", f"{idx}:cell-0",
                                                     f"{idx}:LastResult", f"{idx}:ResultId"])
        last_id = await last.read_value()
    return answers, received, order, json.loads(content), last_id


def test_every_result_reaches_the_plc_once_in_order_with_its_reject_bit(tmp_path):
    port = free_port()
    url = f"opc.tcp://127.0.0.1:{port}/edge-xai/"
    cfg = make_config(tmp_path, hmi=None, opcua=OpcUaConfig(endpoint=url, anonymous=True, allow_unencrypted=True))
    with running_server(cfg) as server:
        answers, received, order, content, last_id = asyncio.run(scenario(server.grpc_port, url))
    assert len(answers) == 20 and set(received) == {a[1] for a in answers} and len(order) == 20   # all, once
    for station in {a[0] for a in answers}:                                       # each station's order kept
        sent = [a[1] for a in answers if a[0] == station]
        assert [i for i in order if i in sent] == sent
    for st, rid, _, label in answers:
        event = received[rid][1]
        assert event.Class == label and event.StationId == st and event.Reject == (label != "ok")
        assert event.Evaluation in ("OK", "NotOK", "NotDecidable") and (event.Evaluation == "NotOK") == event.Reject
    assert content["ResultId"] == answers[0][1] and content["Class"] == answers[0][3]
    assert last_id == [a[1] for a in answers if a[0] == "cell-0"][-1]
    delay = np.array([received[rid][0] - t for _, rid, t, _ in answers]) * 1e3
    print(f"gRPC answer -> OPC UA event: p50 {np.percentile(delay, 50):.1f} ms, p99 {np.percentile(delay, 99):.1f} ms")


def test_a_node_without_certificates_refuses_to_serve_opcua_unless_told_it_is_a_lab(tmp_path):
    from edge.errors import InvalidInput

    cfg = make_config(tmp_path, hmi=None, opcua=OpcUaConfig(endpoint=f"opc.tcp://127.0.0.1:{free_port()}/x/"))
    with pytest.raises(InvalidInput, match="certificate and private_key"):
        with running_server(cfg):
            pass


def test_sign_and_encrypt_with_users_and_no_anonymous_access(tmp_path):
    from asyncua import Client, ua
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from edge.line.opcua import password_hash

    for who, use in (("server", ExtendedKeyUsageOID.SERVER_AUTH), ("client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        asyncio.run(setup_self_signed_certificate(tmp_path / f"{who}-key.pem", tmp_path / f"{who}.der",
                                                  f"urn:edge-xai:test:{who}", "localhost", [use],
                                                  {"commonName": f"edge-xai test {who}"}))
    url = f"opc.tcp://127.0.0.1:{free_port()}/edge-xai/"
    cfg = make_config(tmp_path, hmi=None, opcua=OpcUaConfig(
        endpoint=url, certificate=tmp_path / "server.der", private_key=tmp_path / "server-key.pem",
        users={"plc": password_hash("s3cret")}))

    async def connect(user=None, password=None, secure=True):
        client = Client(url, timeout=5)
        client.application_uri = "urn:edge-xai:test:client"
        if secure:
            await client.set_security_string(f"Basic256Sha256,SignAndEncrypt,{tmp_path / 'client.der'},"
                                             f"{tmp_path / 'client-key.pem'}")
        if user:
            client.set_user(user)
            client.set_password(password)
        async with client:
            return await client.nodes.server_state.read_value()

    with running_server(cfg):
        assert asyncio.run(connect("plc", "s3cret")) == ua.ServerState.Running
        from asyncua.ua.uaerrors import BadIdentityTokenRejected, BadUserAccessDenied, UaError

        with pytest.raises(BadUserAccessDenied):                       # a wrong password
            asyncio.run(connect("plc", "wrong"))
        with pytest.raises(BadIdentityTokenRejected):                  # anonymous, which this node refuses
            asyncio.run(connect())
        with pytest.raises(UaError, match="No matching endpoints"):    # unencrypted: not offered
            asyncio.run(connect("plc", "s3cret", secure=False))


def node_opcua() -> tuple[str, str]:
    """(node binary, NODE_PATH) for the JavaScript client, or skip: tests/setup.sh installs node-opcua-client
    into .node-opcua/ where npm is available."""
    import os
    import shutil
    from pathlib import Path

    node = shutil.which("node")
    modules = Path(os.environ.get("EDGE_XAI_NODE_OPCUA", Path(__file__).resolve().parents[2] / ".node-opcua")) \
        / "node_modules"
    if node is None or not (modules / "node-opcua-client").is_dir():
        pytest.skip("node-opcua-client not installed (tests/setup.sh puts it in .node-opcua/ when npm exists)")
    return node, str(modules)


def test_a_second_independent_client_node_opcua_receives_every_result(tmp_path):
    """node-opcua (JavaScript, no code shared with asyncua) subscribes to the same events: every inspection
    of a 4-station run arrives once, in each station's order, with the reject bit of its class."""
    import os
    import subprocess
    import threading
    from pathlib import Path

    node, modules = node_opcua()
    port = free_port()
    url = f"opc.tcp://127.0.0.1:{port}/edge-xai/"
    cfg = make_config(tmp_path, hmi=None, opcua=OpcUaConfig(endpoint=url, anonymous=True, allow_unencrypted=True))
    script = Path(__file__).resolve().parent / "opcua_client.js"
    with running_server(cfg) as server:
        proc = subprocess.Popen([node, str(script), url, "20", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "NODE_PATH": modules})
        lines: list[str] = []
        subscribed = threading.Event()

        def read():
            for line in proc.stdout:
                lines.append(line.strip())
                if line.strip() == "SUBSCRIBED":
                    subscribed.set()
            subscribed.set()
        threading.Thread(target=read, daemon=True).start()
        assert subscribed.wait(60) and proc.poll() is None, proc.stderr.read()

        async def stations():
            answers = []
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as ch:
                stub = pb_grpc.InspectionStub(ch)

                async def station(k: int):
                    for r in make_requests(5, seed=800 + k, station=f"cell-{k}"):
                        a = await stub.Inspect(r, timeout=30)
                        answers.append((f"cell-{k}", a.inspection_id, a.label))
                await asyncio.gather(*(station(k) for k in range(4)))
            return answers
        answers = asyncio.run(stations())
        assert proc.wait(60) == 0, proc.stderr.read()
    events = [json.loads(x) for x in lines if x.startswith("{")]
    assert len(events) == 20 and {e["ResultId"] for e in events} == {a[1] for a in answers}      # all, once
    for st in {a[0] for a in answers}:
        sent = [a[1] for a in answers if a[0] == st]
        assert [e["ResultId"] for e in events if e["ResultId"] in sent] == sent
    label = {a[1]: (a[0], a[2]) for a in answers}
    for e in events:
        st, cls = label[e["ResultId"]]
        assert e["StationId"] == st and e["Class"] == cls and e["Reject"] == (cls != "ok")
        assert (e["Evaluation"] == "NotOK") == e["Reject"]
