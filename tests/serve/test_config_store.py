"""Configuration files and the inspection store on their own."""
import sqlite3

import pytest

from edge.errors import NotFound
from edge.record import InspectionStore
from edge.serve.config import ServeConfig
from helpers.records import make_attribution, make_inspection


def test_config_file_overrides_and_names_unknown_settings(tmp_path):
    f = tmp_path / "node.toml"
    f.write_text('[serve]\ncycle_budget_ms = 50\nstore = "a.sqlite"\n[tls]\ncert = "c.pem"\nkey = "k.pem"\n')
    c = ServeConfig.load(f, grpc="127.0.0.1:1")
    assert c.cycle_budget_ms == 50 and str(c.store) == "a.sqlite" and c.grpc == "127.0.0.1:1"
    assert c.tls.cert == tmp_path / "c.pem" and c.tls.enabled
    for text, message in (("[serve]\ncycle_time = 3\n", "unknown setting [serve] 'cycle_time'"),
                          ("[tls]\nca = 'x'\n", "unknown setting [tls] 'ca'"),
                          ("[server]\n", "unknown section"), ("[serve\n", "not valid TOML"),
                          ("[tls]\ncert = 'c.pem'\n", "key is not")):
        f.write_text(text)
        with pytest.raises(ValueError, match=message.replace("[", r"\[")):
            ServeConfig.load(f)
    with pytest.raises(FileNotFoundError, match="no such file"):
        ServeConfig.load(tmp_path / "missing.toml")


def test_round_trip_deferred_verdicts_and_retention(tmp_path):
    store = InspectionStore(tmp_path / "a.sqlite", frame_retention=2, preview_retention=2)
    for i in range(4):
        store.put_inspection(make_inspection(i), {"thermal": b"png"}, frame=b"raw" * 10)
    got = store.get("00000003")
    assert got.label == "crack" and got.deferred == ["ig"] and got.heatmap.shape == (8, 8)
    assert abs(got.heatmap.max() - 1) < 1e-6
    a = make_attribution(16)
    store.put_deferred("00000003", [a], "better sentence")
    got = store.get("00000003")
    assert got.complete and got.sentence == "better sentence" and got.attributions[0].n_steps == 16
    store.put_verdict("00000003", False, "scratch", "anna")
    assert store.get("00000003").verdict == "disagree: scratch"
    with pytest.raises(NotFound, match="inspection_id 'nope'"):
        store.put_verdict("nope", True)
    assert store.count("frames") == 2 and store.count("previews") == 2      # oldest deleted
    assert store.preview("00000000", "thermal") is None and store.preview("00000003", "thermal") == b"png"
    assert [r.inspection_id for r in store.recent(2)] == ["00000003", "00000002"]
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        store.put_inspection(make_inspection(3))                  # ids are unique
    assert store.integrity_check() == "ok"
    store.close()


def test_the_review_flag_and_its_reasons_are_kept(tmp_path):
    store = InspectionStore(tmp_path / "a.sqlite")
    flagged, unjudged = make_inspection(1), make_inspection(2)
    flagged.review = ["low confidence", "unlike the training data"]
    store.put_inspection(flagged)
    store.put_inspection(unjudged)
    assert store.get("00000001").review == ["low confidence", "unlike the training data"] and store.get("00000001").flagged
    assert store.get("00000002").review is None and not store.get("00000002").flagged   # a model without a flag


def test_evidence_per_sensor_is_kept_inline_or_deferred_and_an_older_store_gains_it(tmp_path):
    import sqlite3

    # a store written by a node from before evidence per sensor: no `sensors` column
    path = tmp_path / "old.sqlite"
    InspectionStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE inspections DROP COLUMN sensors")
    store = InspectionStore(path)
    inline, later = make_inspection(1), make_inspection(2)
    inline.sensors = {"thermal": 0.7, "phase": 0.25, "intensity": 0.05}
    store.put_inspection(inline)
    store.put_inspection(later)
    assert store.get("00000001").sensors == inline.sensors and store.get("00000002").sensors is None
    store.put_deferred("00000002", [], "sentence. Evidence by sensor: 100 % phase.", {"thermal": 0.0, "phase": 1.0})
    got = store.get("00000002")
    assert got.sensors == {"thermal": 0.0, "phase": 1.0} and got.complete and got.sentence.endswith("100 % phase.")


def test_the_frames_pitch_is_kept_and_an_older_store_gains_its_column(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"             # a store from before frames were read at their pitch
    InspectionStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE inspections DROP COLUMN pixel_pitch_mm")
        conn.execute("ALTER TABLE inspections DROP COLUMN skipped")
    store = InspectionStore(path)
    sent, unsent = make_inspection(1), make_inspection(2)
    sent.pixel_pitch_mm = 0.05
    sent.skipped = ["ig"]                     # the node's deferred queue was full: IG never computed
    store.put_inspection(sent)
    store.put_inspection(unsent)
    assert store.get("00000001").pixel_pitch_mm == 0.05 and store.get("00000002").pixel_pitch_mm is None
    assert store.get("00000001").skipped == ["ig"] and not store.get("00000001").complete
    assert store.get("00000002").skipped == []


def test_default_locations_follow_the_environment_not_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("EDGE_XAI_MODELS", str(tmp_path / "models"))
    c = ServeConfig()
    assert c.store == tmp_path / "data" / "edge-xai" / "inspections.sqlite" and c.models_dir == tmp_path / "models"
    (tmp_path / "edge-xai-audit.sqlite").write_bytes(b"")      # an older node's store here: kept on
    assert ServeConfig().store.name == "edge-xai-audit.sqlite"
    monkeypatch.delenv("EDGE_XAI_MODELS")
    assert (ServeConfig().models_dir / "defect" / "manifest.json").is_file()     # the bundled models


def test_prune_deletes_old_inspections_but_not_verdicted_or_unforwarded_ones(tmp_path):
    """retention_days' deletes: the oldest first, a batch at a time, with their explanations, previews and
    frames; an inspection an operator judged, or one the plant database has not received yet, stays."""
    store = InspectionStore(tmp_path / "a.sqlite", outbox=True)
    for i in range(10):                                       # received at 1000 + i ms
        store.put_inspection(make_inspection(i), {"thermal": b"png"}, frame=b"raw")
    store.put_deferred("00000000", [make_attribution()])
    store.put_verdict("00000002", True)
    store.acknowledge(max(seq for seq, kind, key in store.pending(100) if kind == "inspection"))
    store.put_deferred("00000003", [make_attribution()])      # the plant has not received this update yet
    # received before 1008 ms: 0-7; 2 is verdicted, 3 waits for the plant database
    assert store.prune(1008, limit=1) == 1                    # the oldest first: 0, with its explanation
    assert store.get("00000000") is None and store.count("explanations") == 1
    assert store.prune(1008, limit=2) == 2                    # 1 and 4
    assert store.prune(1008) == 3                             # 5, 6, 7
    assert store.prune(1008) == 0
    assert {r.inspection_id for r in store.recent(20)} == {"00000002", "00000003", "00000008", "00000009"}
    store.acknowledge(10 ** 9)                                # the plant has everything now
    assert store.prune(1008) == 1                             # 3; never 2 (verdicted) nor 8, 9 (recent)
    assert {r.inspection_id for r in store.recent(20)} == {"00000002", "00000008", "00000009"}
    assert store.count("previews") == 3 and store.count("frames") == 3 and store.count("explanations") == 0
    assert store.get("00000002").verdict == "agree" and store.integrity_check() == "ok"
    assert store.size_bytes() > 0
    store.close()


def test_retention_days_must_be_a_number_of_days(tmp_path):
    f = tmp_path / "node.toml"
    f.write_text("[serve]\nretention_days = 30\n")
    assert ServeConfig.load(f).retention_days == 30 and ServeConfig().retention_days == 0
    for bad in ("-1", "nan"):
        f.write_text(f"[serve]\nretention_days = {bad}\n")
        with pytest.raises(ValueError, match="retention_days"):
            ServeConfig.load(f)


def test_deferred_limit_must_be_a_count(tmp_path):
    f = tmp_path / "node.toml"
    f.write_text("[serve]\ndeferred_limit = 0\n")
    assert ServeConfig.load(f).deferred_limit == 0 and ServeConfig().deferred_limit == 16
    for bad in ("-1", "2.5", '"many"'):
        f.write_text(f"[serve]\ndeferred_limit = {bad}\n")
        with pytest.raises(ValueError, match="deferred_limit"):
            ServeConfig.load(f)


def test_a_full_disk_is_said_as_such_and_writes_resume_when_space_returns(tmp_path):
    """SQLite's "database or disk is full" (here from a page limit, the same error a full disk gives) comes
    out as StoreError naming the store and the cause (UNAVAILABLE for the station), not as the rollback's
    "no transaction is active" that hid it; nothing written before is lost, writes resume once there is
    room, and closing does not fail on it."""
    from edge.errors import Unavailable
    from edge.record.store import StoreError

    store = InspectionStore(tmp_path / "a.sqlite")
    conn = store._connect()
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0] + 3}")
    written = 0
    with pytest.raises(StoreError, match=r"a\.sqlite: database or disk is full") as failure:
        for i in range(100):
            store.put_inspection(make_inspection(i), {"thermal": b"p" * 3000})
            written += 1
    assert isinstance(failure.value, Unavailable) and 0 < written < 100
    assert store.count() == written and not conn.in_transaction
    store.close()
    store = InspectionStore(tmp_path / "a.sqlite")                    # room again (the limit was per connection)
    store.put_inspection(make_inspection(1000))
    assert store.count() == written + 1 and store.integrity_check() == "ok"

    class FullOnCheckpoint:            # a checkpoint on a full disk: the rows are safe in the write-ahead log
        def __init__(self, conn):
            self.conn = conn

        def execute(self, sql, *args):
            if "wal_checkpoint" in sql:
                raise sqlite3.OperationalError("database or disk is full")
            return self.conn.execute(sql, *args)

        def close(self):
            self.conn.close()

    store._local.conn = FullOnCheckpoint(store._local.conn)
    store.close()                                                     # logged, not raised: shutdown goes on
    assert InspectionStore(tmp_path / "a.sqlite").count() == written + 1
