"""The plant-wide record in a real PostgreSQL: store-and-forward from each node's SQLite outbox, idempotent
by inspection id, across database crashes and node restarts; nothing lost, nothing doubled."""
import asyncio
import threading
import time

import grpc
import pytest

from edge.record import InspectionStore
from edge.record.forward import Forwarder, forward_all, forward_batch
from edge.record.plant import PlantDatabase, PlantUnavailable, redact
from edge.serve.config import PlantConfig
from edge.serve.station import make_requests
from edge.v1 import inspection_pb2 as pb
from edge.v1 import inspection_pb2_grpc as pb_grpc
from helpers.postgres import PostgresServer
from helpers.records import make_attribution, make_inspection
from helpers.server import make_config, running_server


@pytest.fixture
def pg():
    with PostgresServer() as server:
        yield server


def wait_for(condition, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_writes_are_idempotent_and_a_verdict_brings_its_inspection(pg, tmp_path):
    store = InspectionStore(tmp_path / "s.sqlite", outbox=True)
    plant = PlantDatabase(pg.url)
    store.put_inspection(make_inspection(1))
    store.put_deferred("00000001", [make_attribution()], "later sentence")
    store.put_verdict("00000001", False, "scratch", "anna", "map only")
    assert store.backlog() == 3
    rows = store.plant_rows(["00000001"], [1])
    plant.write("n1", rows)
    plant.write("n1", rows)                                # a replay after a crash before the acknowledge
    assert forward_batch(store, plant, "n1") == 3 and store.backlog() == 0
    assert plant.count("edgexai_inspections") == 1 and plant.count("edgexai_explanations") == 1
    [v] = plant.verdicts()
    assert v["node"] == "n1" and v["agree"] is False and v["correct_class"] == "scratch" and v["condition"] == "map only"
    # a store written before forwarding was configured: backfill, and a verdict without its inspection's event
    old = InspectionStore(tmp_path / "old.sqlite")
    old.put_inspection(make_inspection(2, inspection_id="old-2"))
    old.put_verdict("old-2", True)
    assert old.backlog() == 0
    later = InspectionStore(tmp_path / "old.sqlite", outbox=True)
    later.put_verdict("old-2", False, "crack")
    assert forward_batch(later, plant, "n2") == 1              # the verdict alone brings its inspection along
    assert "old-2" in plant.inspection_ids()
    assert later.enqueue_all() == 3 and forward_all(later, plant, "n2") == 3
    assert plant.count("edgexai_verdicts") == 3 and plant.count("edgexai_inspections") == 2
    plant.close()


def test_a_plant_database_from_an_older_node_gains_the_columns_added_since(pg, tmp_path):
    import psycopg

    plant = PlantDatabase(pg.url)
    plant.write("n1", InspectionStore(tmp_path / "a.sqlite").plant_rows([], []))     # creates the schema
    plant.close()
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("ALTER TABLE edgexai_inspections DROP COLUMN sensors, DROP COLUMN pixel_pitch_mm, "
                     "DROP COLUMN skipped")
    store = InspectionStore(tmp_path / "s.sqlite", outbox=True)
    ins = make_inspection(1)
    ins.sensors = {"thermal": 0.9, "phase": 0.1}
    ins.pixel_pitch_mm = 0.05
    ins.skipped = ["ig", "shap"]
    store.put_inspection(ins)
    plant = PlantDatabase(pg.url)
    assert forward_batch(store, plant, "n1") == 1
    plant.close()
    with psycopg.connect(pg.url) as conn:
        [(sensors, pitch, skipped)] = conn.execute(
            "SELECT sensors, pixel_pitch_mm, skipped FROM edgexai_inspections").fetchall()
    assert sensors == {"thermal": 0.9, "phase": 0.1} and pitch == 0.05 and skipped == ["ig", "shap"]


def test_the_database_down_keeps_the_outbox_and_errors_name_the_server(tmp_path):
    store = InspectionStore(tmp_path / "s.sqlite", outbox=True)
    store.put_inspection(make_inspection(1))
    plant = PlantDatabase("postgresql://edge:secret@127.0.0.1:1/postgres", connect_timeout_s=1)
    with pytest.raises(PlantUnavailable, match=r"127\.0\.0\.1:1") as e:
        forward_batch(store, plant, "n1")
    assert "secret" not in str(e.value) and store.backlog() == 1
    assert redact("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    with pytest.raises(ValueError, match="postgresql:// URL"):
        PlantDatabase("sqlite:///x")


def test_a_database_crash_and_a_node_restart_lose_and_double_nothing(pg, tmp_path):
    path = tmp_path / "s.sqlite"
    store = InspectionStore(path, outbox=True)
    fwd = Forwarder(store, PlantDatabase(pg.url, connect_timeout_s=1), "n1", batch=7, poll_s=0.05,
                    backoff_s=(0.05, 0.2))
    fwd.start()
    for i in range(40):
        store.put_inspection(make_inspection(i))
        fwd.notify()
        if i == 15:
            pg.crash()                                         # the plant database dies mid-run
        if i == 30:
            pg.start()
    assert wait_for(lambda: store.backlog() == 0)
    # the node stops while the database is down: the rest waits in the outbox for the next start
    pg.crash()
    for i in range(40, 50):
        store.put_inspection(make_inspection(i))
        store.put_verdict(f"{i:08d}", True)
    assert fwd.stop(drain_s=0.5) == 20
    store.close()
    pg.start()
    store = InspectionStore(path, outbox=True)
    fwd = Forwarder(store, PlantDatabase(pg.url), "n1", poll_s=0.05)
    fwd.start()
    assert wait_for(lambda: store.backlog() == 0)
    assert fwd.stop() == 0
    plant = PlantDatabase(pg.url)
    assert plant.inspection_ids() == [f"{i:08d}" for i in range(50)]        # every one, once (primary key)
    assert plant.count("edgexai_verdicts") == 10 and fwd.status.failures == 0
    plant.close()


@pytest.mark.slow
def test_four_stations_through_a_database_crash_reach_the_plant_record_exactly_once(pg, tmp_path):
    cfg = make_config(tmp_path, hmi=None, plant=PlantConfig(database=pg.url, node="line-1"))
    answered: list[str] = []
    crashed = threading.Event()

    async def run(port: int):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = pb_grpc.InspectionStub(ch)

            async def station(k: int):
                for j, r in enumerate(make_requests(12, seed=900 + k, station=f"cell-{k}")):
                    a = await stub.Inspect(r, timeout=30)
                    answered.append(a.inspection_id)
                    if k == 0 and j == 4:
                        pg.crash()
                        crashed.set()
                    if k == 0 and j == 9:
                        await asyncio.to_thread(pg.start)
            await asyncio.gather(*(station(k) for k in range(4)))
            for rid in answered[:5]:
                await stub.SubmitVerdict(pb.Verdict(inspection_id=rid, agree=True, operator="anna"), timeout=10)

    with running_server(cfg) as server:
        asyncio.run(run(server.grpc_port))
        store = server.node.store
        assert crashed.is_set() and wait_for(lambda: store.backlog() == 0, 60)
        forwarder = server.node.forwarder
        assert forwarder.status.failures > 0 and forwarder.status.last_error is None
        from prometheus_client import generate_latest
        from prometheus_client.parser import text_string_to_metric_families

        samples = {s.name: s.value for f in text_string_to_metric_families(
            generate_latest(server.node.metrics.registry).decode()) for s in f.samples}
        assert samples["edgexai_plant_forwarded_total"] >= 53 and samples["edgexai_plant_failures_total"] > 0
        assert wait_for(lambda: forwarder.backlog() == 0)
    plant = PlantDatabase(pg.url)
    assert len(answered) == 48 and sorted(plant.inspection_ids()) == sorted(answered)   # all acknowledged, once
    assert len(plant.verdicts()) == 5
    from edge.audit.agreement import operator_agreement

    agreement = operator_agreement(pg.url)
    assert sum(v["n"] for v in agreement.values()) == 5
    plant.close()
