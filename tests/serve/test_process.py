"""`edge-xai serve` as a real process: kill -9 under load loses no acknowledged inspection, SIGTERM
drains, and mutual TLS refuses a station without a client certificate."""
import datetime
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers.server import make_config, running_server

from edge.record import InspectionStore
from edge.serve.station import make_requests
from edge.v1 import inspection_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(tmp_path, *extra):
    port = free_port()
    store = tmp_path / "inspections.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "serve", "--grpc", f"127.0.0.1:{port}", "--hmi", "off",
                             "--store", str(store), "--threads", "1", "--allow-unaudited", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    health = health_pb2_grpc.HealthStub(ch)
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                return proc, ch, store
        except grpc.RpcError:
            pass
        if proc.poll() is not None:
            raise AssertionError(f"serve exited early: {proc.stdout.read()}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("serve did not become SERVING in 90 s")


def load(ch, stop: threading.Event, acked: list, errors: list, workers: int = 4):
    stub = pb_grpc.InspectionStub(ch)
    reqs = make_requests(6, seed=1000, station="load")

    def worker(k):
        i = 0
        while not stop.is_set():
            try:
                acked.append(stub.Inspect(reqs[(i + k) % 6], timeout=5).inspection_id)
            except grpc.RpcError as e:
                errors.append(e.code())
            i += 1

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(workers)]
    for t in threads:
        t.start()
    return threads


def under_load(tmp_path, acked_before: int):
    """A serve process with 4 stations sending, once `acked_before` inspections were answered."""
    proc, ch, store_path = start_serve(tmp_path)
    stop, acked, errors = threading.Event(), [], []
    threads = load(ch, stop, acked, errors)
    deadline = time.time() + 120
    while len(acked) < acked_before:                  # a condition, polled; never a fixed wait
        time.sleep(0.05)
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, f"only {len(acked)} answers in 120 s; errors: {set(errors)}"

    def finish():
        stop.set()
        for t in threads:
            t.join(10)
        ch.close()
    return proc, store_path, acked, errors, finish


def test_kill_9_under_load_loses_no_acknowledged_inspection(tmp_path):
    proc, store_path, acked, errors, finish = under_load(tmp_path, 30)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    seen = list(acked)                   # everything acknowledged before the kill
    finish()
    store = InspectionStore(store_path)
    assert store.integrity_check() == "ok"
    missing = [i for i in seen if store.get_row(i) is None]
    assert not missing, f"{len(missing)} acknowledged inspections lost"
    assert store.count() >= len(seen)


def test_sigterm_drains_in_flight_work_and_exits_cleanly(tmp_path):
    proc, store_path, acked, errors, finish = under_load(tmp_path, 10)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    finish()
    assert proc.returncode == 0, out
    # requests after the signal are refused (UNAVAILABLE), never half-done
    assert set(errors) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
    store = InspectionStore(store_path)
    assert all(store.get_row(i) is not None for i in acked)
    assert store.integrity_check() == "ok"


def _certificates(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def make(name, issuer_key=None, issuer_name=None, ca=False, san=None):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name or subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            import ipaddress

            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                             x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        cert = b.sign(issuer_key or key, hashes.SHA256())
        return key, cert

    ca_key, ca = make("edge-xai test CA", ca=True)
    srv_key, srv = make("edge node", ca_key, ca.subject, san=True)
    cli_key, cli = make("station-1", ca_key, ca.subject)
    files = {}
    for stem, key, cert in (("ca", ca_key, ca), ("server", srv_key, srv), ("station", cli_key, cli)):
        (tmp_path / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (tmp_path / f"{stem}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                                 serialization.PrivateFormat.PKCS8,
                                                                 serialization.NoEncryption()))
        files[stem] = (tmp_path / f"{stem}.pem", tmp_path / f"{stem}.key")
    return files


def test_mutual_tls_refuses_a_station_without_a_certificate(tmp_path):
    from edge.serve.config import TLSConfig

    f = _certificates(tmp_path)
    cfg = make_config(tmp_path, hmi=None, tls=TLSConfig(cert=f["server"][0], key=f["server"][1], client_ca=f["ca"][0]))
    req = make_requests(1, seed=1000, station="tls")[0]
    ca = f["ca"][0].read_bytes()
    with running_server(cfg) as s:
        target = f"localhost:{s.grpc_port}"
        good = grpc.ssl_channel_credentials(ca, f["station"][1].read_bytes(), f["station"][0].read_bytes())
        with grpc.secure_channel(target, good) as ch:
            assert pb_grpc.InspectionStub(ch).Inspect(req, timeout=10).label
        for creds in (grpc.ssl_channel_credentials(ca), None):       # no client certificate; no TLS at all
            ch = grpc.secure_channel(target, creds) if creds else grpc.insecure_channel(target)
            with ch, pytest.raises(grpc.RpcError) as e:
                pb_grpc.InspectionStub(ch).Inspect(req, timeout=5)
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
