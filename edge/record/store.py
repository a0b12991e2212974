"""The inspection record: every inspection, deferred explanation and operator verdict in SQLite.

(Named apart from `edge.audit`, the pre-deployment audit toolkit, which reads its verdicts.)

WAL journal (readers never block the writer) with synchronous=FULL, so a row is on disk when its
transaction commits: the servicer writes an inspection *before* it answers, and a crash after an
answer cannot lose it. One connection per thread (sqlite3 objects must not cross threads); the
server funnels writes through one worker thread.

Raw frames are optional and capped (`frame_retention`): the oldest are deleted as new ones arrive.
Channel previews (8-bit PNGs the HMI shows) are capped the same way (`preview_retention`).
Inspections themselves are kept until `prune` deletes those older than the node's `retention_days`
(never one with an operator's verdict, never one still waiting for the plant database).

With `outbox=True` (a node with a plant database, `edge.record.forward`) every write also appends a row
to the `outbox` table *in the same transaction*: what the plant must receive is durable exactly when the
inspection is, and the forwarder deletes outbox rows only after the plant database committed them.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from edge.errors import NotFound, Unavailable
from edge.record.inspection import Attribution, Inspection, now_ms

log = logging.getLogger("edge.record")

SCHEMA = """
CREATE TABLE IF NOT EXISTS inspections (
    id TEXT PRIMARY KEY, station_id TEXT, part_id TEXT, received_ms INTEGER, stored_ms INTEGER,
    model TEXT, model_sha256 TEXT, label TEXT, confidence REAL, probabilities TEXT,
    heatmap_target TEXT, heatmap_png BLOB, sentence TEXT, timings TEXT, requested TEXT, deferred TEXT);
CREATE INDEX IF NOT EXISTS inspections_station ON inspections (station_id, received_ms);
CREATE INDEX IF NOT EXISTS inspections_received ON inspections (received_ms);
CREATE TABLE IF NOT EXISTS explanations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, inspection_id TEXT REFERENCES inspections(id), model TEXT,
    model_sha256 TEXT, method TEXT, target TEXT, png BLOB, float16 BLOB, height INTEGER, width INTEGER,
    completeness_delta REAL, relative_completeness_delta REAL, n_steps INTEGER, sentence TEXT,
    created_ms INTEGER);
CREATE INDEX IF NOT EXISTS explanations_inspection ON explanations (inspection_id);
CREATE TABLE IF NOT EXISTS verdicts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, inspection_id TEXT REFERENCES inspections(id), agree INTEGER,
    correct_class TEXT, operator TEXT, condition TEXT, created_ms INTEGER);
CREATE INDEX IF NOT EXISTS verdicts_inspection ON verdicts (inspection_id);
CREATE TABLE IF NOT EXISTS frames (inspection_id TEXT PRIMARY KEY, data BLOB, created_ms INTEGER);
CREATE TABLE IF NOT EXISTS previews (inspection_id TEXT, channel TEXT, png BLOB, PRIMARY KEY (inspection_id, channel));
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, key TEXT NOT NULL,
    created_ms INTEGER);
"""
OUTBOX_KINDS = ("inspection", "verdict")   # an inspection event re-sends the row and all its explanations
# Columns added after the first release: a store written by an older node gains them on open.
ADDED_COLUMNS = {"inspections": (("tiles", "INTEGER DEFAULT 1"), ("tile_box", "TEXT"),
                                 ("heatmap_method", "TEXT DEFAULT 'gradcam'"), ("review", "TEXT"),
                                 ("sensors", "TEXT"), ("pixel_pitch_mm", "REAL"), ("skipped", "TEXT"))}
INSPECTION_COLUMNS = ("id", "station_id", "part_id", "received_ms", "stored_ms", "model", "model_sha256", "label",
                      "confidence", "probabilities", "heatmap_target", "heatmap_png", "sentence", "timings",
                      "requested", "deferred", "tiles", "tile_box", "heatmap_method", "review", "sensors",
                      "pixel_pitch_mm", "skipped")


class StoreError(Unavailable):
    """The store cannot be opened or written (path, permissions, disk)."""


class InspectionStore:
    def __init__(self, path: Path | str, frame_retention: int = 1000, preview_retention: int = 10000,
                 outbox: bool = False):
        self.path = str(path)
        self.outbox = outbox
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.frame_retention, self.preview_retention = frame_retention, preview_retention
        self._local = threading.local()
        conn = self._connect()
        try:
            conn.executescript(SCHEMA)
            for table, columns in ADDED_COLUMNS.items():
                have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
                for name, decl in columns:
                    if name not in have:
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
        except sqlite3.OperationalError as e:            # a full disk, a read-only file: said, not a traceback
            raise StoreError(f"inspection store {self.path}: {e}") from e

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA foreign_keys=ON")
            except sqlite3.Error as e:
                raise StoreError(f"inspection store {self.path}: {e}") from e
            self._local.conn = conn
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on this thread's connection: committed when the block ends, rolled back
        when it raises. SQLite's own failures to write (a full disk, an I/O error, a read-only file, the lock
        held past the timeout) become StoreError naming the store and the cause: UNAVAILABLE for the
        station, not an internal error, and not masked by the rollback SQLite has already done itself
        (after a failed COMMIT on a full disk no transaction is left to roll back)."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as e:
            raise StoreError(f"inspection store {self.path}: {e}") from e

    def _write(self, statements: list[tuple[str, tuple]]) -> None:
        with self._transaction() as conn:
            for sql, args in statements:
                conn.execute(sql, args)

    def put_inspection(self, ins: Inspection, previews: dict[str, bytes] | None = None,
                       frame: bytes | None = None) -> None:
        """Durable when this returns (WAL + synchronous=FULL)."""
        stmts = [(f"INSERT INTO inspections ({', '.join(INSPECTION_COLUMNS)}) "
                  f"VALUES ({', '.join('?' * len(INSPECTION_COLUMNS))})",
                  (ins.inspection_id, ins.station_id, ins.part_id, ins.received_ms, now_ms(), ins.model,
                   ins.model_sha256, ins.label, ins.confidence, json.dumps(ins.probabilities), ins.heatmap_target,
                   ins.heatmap_png, ins.sentence, json.dumps(ins.timings_ms), json.dumps(list(ins.requested)),
                   json.dumps(ins.deferred), ins.tiles, json.dumps(ins.tile_box) if ins.tile_box else None,
                   ins.heatmap_method, None if ins.review is None else json.dumps(ins.review),
                   None if ins.sensors is None else json.dumps(ins.sensors), ins.pixel_pitch_mm,
                   json.dumps(ins.skipped) if ins.skipped else None))]
        stmts += [self._attribution_stmt(ins.inspection_id, a) for a in ins.attributions]
        stmts += self._outbox_stmt("inspection", ins.inspection_id)
        for channel, png in (previews or {}).items():
            stmts.append(("INSERT INTO previews VALUES (?,?,?)", (ins.inspection_id, channel, png)))
        if previews:
            stmts.append(("DELETE FROM previews WHERE inspection_id IN (SELECT DISTINCT inspection_id FROM previews "
                          "ORDER BY inspection_id DESC LIMIT -1 OFFSET ?)", (self.preview_retention,)))
        if frame is not None:
            stmts.append(("INSERT INTO frames VALUES (?,?,?)", (ins.inspection_id, frame, now_ms())))
            stmts.append(("DELETE FROM frames WHERE inspection_id IN (SELECT inspection_id FROM frames "
                          "ORDER BY created_ms DESC, inspection_id DESC LIMIT -1 OFFSET ?)", (self.frame_retention,)))
        self._write(stmts)

    @staticmethod
    def _attribution_stmt(inspection_id: str, a: Attribution) -> tuple[str, tuple]:
        h, w = a.attribution.shape
        return ("INSERT INTO explanations (inspection_id, model, model_sha256, method, target, png, float16, height,"
                " width, completeness_delta, relative_completeness_delta, n_steps, sentence, created_ms)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (inspection_id, a.model, a.model_sha256, a.method, a.target, a.heat_png,
                 a.attribution.astype("<f2").tobytes(), h, w, a.completeness_delta, a.relative_completeness_delta,
                 a.n_steps, a.sentence, now_ms()))

    def put_deferred(self, inspection_id: str, attributions: list[Attribution], sentence: str | None = None,
                     sensors: dict[str, float] | None = None) -> None:
        """The deferred explanations, finished after the answer: the inspection is complete from then on
        (one background pass computes all of an inspection's deferred kinds)."""
        stmts = [self._attribution_stmt(inspection_id, a) for a in attributions]
        stmts.append(("UPDATE inspections SET deferred = '[]' WHERE id = ?", (inspection_id,)))
        if sentence:
            stmts.append(("UPDATE inspections SET sentence = ? WHERE id = ?", (sentence, inspection_id)))
        if sensors is not None:
            stmts.append(("UPDATE inspections SET sensors = ? WHERE id = ?", (json.dumps(sensors), inspection_id)))
        stmts += self._outbox_stmt("inspection", inspection_id)
        self._write(stmts)

    def _outbox_stmt(self, kind: str, key: str | None) -> list[tuple[str, tuple]]:
        """The outbox row of a write, for its transaction (none without a plant database). key None: the
        row just inserted (a verdict's own id)."""
        if not self.outbox:
            return []
        if key is None:
            return [("INSERT INTO outbox (kind, key, created_ms) VALUES (?, CAST(last_insert_rowid() AS TEXT), ?)",
                     (kind, now_ms()))]
        return [("INSERT INTO outbox (kind, key, created_ms) VALUES (?, ?, ?)", (kind, key, now_ms()))]

    def put_verdict(self, inspection_id: str, agree: bool, correct_class: str = "", operator: str = "",
                    condition: str = "") -> int:
        if self.get_row(inspection_id) is None:
            raise NotFound(f"inspection_id {inspection_id!r}: no such inspection")
        t = now_ms()
        self._write([("INSERT INTO verdicts (inspection_id, agree, correct_class, operator, condition, created_ms)"
                      " VALUES (?,?,?,?,?,?)", (inspection_id, int(agree), correct_class, operator, condition, t)),
                     *self._outbox_stmt("verdict", None)])
        return t

    def prune(self, before_ms: int, limit: int = 200) -> int:
        """Delete up to `limit` of the oldest inspections received before `before_ms` (Unix ms), with their
        explanations, channel previews and frames; returns how many went. Kept whatever their age: an
        inspection with an operator's verdict (training data for `edge-xai dataset --from-store`, and what
        the audit's agreement figures read) and one still waiting in the outbox for the plant database. The
        choice and the deletes are one transaction, so a verdict or a deferred explanation arriving meanwhile
        is never lost with its inspection."""
        limit = max(1, min(int(limit), 500))            # one IN list per table: SQLite's bound-parameter limit
        with self._transaction() as conn:
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM inspections WHERE received_ms < ? "
                "AND id NOT IN (SELECT inspection_id FROM verdicts) "
                "AND id NOT IN (SELECT key FROM outbox WHERE kind = 'inspection') "
                "ORDER BY received_ms LIMIT ?", (int(before_ms), limit))]
            if ids:
                marks = ", ".join("?" * len(ids))
                for table, column in (("explanations", "inspection_id"), ("previews", "inspection_id"),
                                      ("frames", "inspection_id"), ("inspections", "id")):
                    conn.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", ids)
        return len(ids)

    def size_bytes(self) -> int:
        """The store's files on disk (database and write-ahead log); 0 for an in-memory store."""
        total = 0
        if self.path != ":memory:":
            for p in (self.path, self.path + "-wal"):
                try:
                    total += Path(p).stat().st_size
                except OSError:             # no log yet, or a checkpoint just truncated it away
                    pass
        return total

    # -- the outbox (store-and-forward to the plant database) -------------------------------------
    def pending(self, limit: int = 200) -> list[tuple[int, str, str]]:
        """The oldest `limit` outbox rows: (seq, kind, key)."""
        return [tuple(r) for r in self._connect().execute(
            "SELECT seq, kind, key FROM outbox ORDER BY seq LIMIT ?", (limit,))]

    def acknowledge(self, up_to_seq: int) -> None:
        """The plant database committed every outbox row up to `up_to_seq`: forget them."""
        self._write([("DELETE FROM outbox WHERE seq <= ?", (up_to_seq,))])

    def backlog(self) -> int:
        return self._connect().execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def enqueue_all(self) -> int:
        """Queue every stored inspection and verdict for forwarding (a backfill: a store written before the
        plant database was configured). Returns the number of rows queued."""
        conn = self._connect()
        before = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()[0]
        t = now_ms()
        self._write([("INSERT INTO outbox (kind, key, created_ms) SELECT 'inspection', id, ? FROM inspections "
                      "ORDER BY received_ms, id", (t,)),
                     ("INSERT INTO outbox (kind, key, created_ms) SELECT 'verdict', CAST(id AS TEXT), ? FROM verdicts "
                      "ORDER BY id", (t,))])
        return conn.execute("SELECT COUNT(*) FROM outbox WHERE seq > ?", (before,)).fetchone()[0]

    def plant_rows(self, inspection_ids: list[str], verdict_ids: list[int]) -> dict[str, list[dict]]:
        """What the plant database receives for these outbox keys: the inspection rows (a verdict's
        inspection included, so the plant never holds a verdict without its inspection), all their
        explanations, and the verdicts. Frames and previews stay on the node."""
        conn = self._connect()
        conn.row_factory = sqlite3.Row

        def select(sql: str, keys: list) -> list[dict]:
            out = []
            for i in range(0, len(keys), 500):          # SQLite's bound-parameter limit
                chunk = keys[i:i + 500]
                out += [dict(r) for r in conn.execute(sql.format(", ".join("?" * len(chunk))), chunk)]
            return out

        verdicts = select("SELECT * FROM verdicts WHERE id IN ({}) ORDER BY id", [int(v) for v in verdict_ids])
        ids = list(dict.fromkeys([*inspection_ids, *(v["inspection_id"] for v in verdicts)]))
        inspections = select(f"SELECT {', '.join(INSPECTION_COLUMNS)} FROM inspections WHERE id IN ({{}})", ids)
        explanations = select("SELECT * FROM explanations WHERE inspection_id IN ({}) ORDER BY id", ids)
        return {"inspections": inspections, "explanations": explanations, "verdicts": verdicts}

    # -- reading -----------------------------------------------------------------------------------
    def get_row(self, inspection_id: str) -> dict | None:
        conn = self._connect()
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM inspections WHERE id = ?", (inspection_id,)).fetchone()
        return dict(row) if row else None

    def get(self, inspection_id: str) -> Inspection | None:
        row = self.get_row(inspection_id)
        return None if row is None else self._inspection(row)

    def _inspection(self, row: dict) -> Inspection:
        import cv2

        heat = cv2.imdecode(np.frombuffer(row["heatmap_png"], np.uint8), cv2.IMREAD_GRAYSCALE)
        ins = Inspection(inspection_id=row["id"], station_id=row["station_id"], part_id=row["part_id"],
                         model=row["model"], model_sha256=row["model_sha256"], label=row["label"],
                         confidence=row["confidence"], probabilities=json.loads(row["probabilities"]),
                         heatmap=heat.astype(np.float32) / 255, heatmap_png=row["heatmap_png"],
                         heatmap_target=row["heatmap_target"], sentence=row["sentence"],
                         requested=tuple(json.loads(row["requested"])), received_ms=row["received_ms"],
                         timings_ms=json.loads(row["timings"]), deferred=json.loads(row["deferred"]),
                         tiles=row.get("tiles") or 1,
                         tile_box=tuple(json.loads(row["tile_box"])) if row.get("tile_box") else None,
                         heatmap_method=row.get("heatmap_method") or "gradcam",
                         review=json.loads(row["review"]) if row.get("review") else None,
                         sensors=json.loads(row["sensors"]) if row.get("sensors") else None,
                         pixel_pitch_mm=row.get("pixel_pitch_mm"),
                         skipped=json.loads(row["skipped"]) if row.get("skipped") else [])
        conn = self._connect()
        conn.row_factory = sqlite3.Row
        for e in conn.execute("SELECT * FROM explanations WHERE inspection_id = ? ORDER BY id", (row["id"],)):
            a = np.frombuffer(e["float16"], "<f2").reshape(e["height"], e["width"]).astype(np.float32)
            ins.attributions.append(Attribution(
                model=e["model"], model_sha256=e["model_sha256"], method=e["method"], target=e["target"],
                heat_png=e["png"], attribution=a, completeness_delta=e["completeness_delta"],
                relative_completeness_delta=e["relative_completeness_delta"], n_steps=e["n_steps"],
                sentence=e["sentence"]))
        v = conn.execute("SELECT agree, correct_class FROM verdicts WHERE inspection_id = ? ORDER BY id DESC LIMIT 1",
                         (row["id"],)).fetchone()
        if v is not None:
            ins.verdict = "agree" if v["agree"] else f"disagree: {v['correct_class']}".rstrip(": ")
        return ins

    def recent(self, limit: int = 50, station_id: str | None = None) -> list[Inspection]:
        conn = self._connect()
        conn.row_factory = sqlite3.Row
        if station_id:
            rows = conn.execute("SELECT * FROM inspections WHERE station_id = ? ORDER BY id DESC LIMIT ?",
                                (station_id, limit)).fetchall()
        else:
            rows = conn.execute("SELECT * FROM inspections ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [self._inspection(dict(r)) for r in rows]

    def preview(self, inspection_id: str, channel: str) -> bytes | None:
        row = self._connect().execute("SELECT png FROM previews WHERE inspection_id = ? AND channel = ?",
                                      (inspection_id, channel)).fetchone()
        return None if row is None else row[0]

    def verdicted(self) -> list[dict]:
        """Each inspection with a verdict, once, with its latest verdict: inspection_id, model, label (the
        model's class), agree, correct_class, operator, condition, created_ms; oldest inspection first."""
        conn = self._connect()
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(
            "SELECT i.id AS inspection_id, i.model, i.label, v.agree, v.correct_class, v.operator, v.condition, "
            "v.created_ms FROM verdicts v JOIN inspections i ON i.id = v.inspection_id "
            "WHERE v.id IN (SELECT MAX(id) FROM verdicts GROUP BY inspection_id) ORDER BY i.id")]

    def frame(self, inspection_id: str) -> bytes | None:
        """The raw frame (a serialised edge.v1.Frame) kept for an inspection, if it was stored and retained."""
        row = self._connect().execute("SELECT data FROM frames WHERE inspection_id = ?", (inspection_id,)).fetchone()
        return None if row is None else row[0]

    def verdicts(self) -> list[dict]:
        conn = self._connect()
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM verdicts ORDER BY id")]

    def count(self, table: str = "inspections") -> int:
        if table not in ("inspections", "explanations", "verdicts", "frames", "previews", "outbox"):
            raise ValueError(f"unknown table {table!r}")
        return self._connect().execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def integrity_check(self) -> str:
        return self._connect().execute("PRAGMA integrity_check").fetchone()[0]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as e:
                # e.g. a full disk: every committed row is safe in the write-ahead log, and the next open
                # (or a later checkpoint) moves it into the database file; closing must not fail on it
                log.warning("inspection store %s: the write-ahead log stays beside the database (%s)", self.path, e)
            conn.close()
            self._local.conn = None
