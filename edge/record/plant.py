"""The plant-wide record: every node's inspections, explanations and verdicts in one PostgreSQL database.

    plant = PlantDatabase("postgresql://edge@plant-db/quality")
    plant.write("line3-node1", store.plant_rows(ids, verdict_ids))     # idempotent
    plant.verdicts()                                                     # every line's, for the audit

Writes are idempotent, so the forwarder (`edge.record.forward`) can replay a batch after a crash without
doubling anything: an inspection is keyed by its id (unique across nodes: time in ns and a random suffix)
and upserted, so its deferred explanations and sentence, forwarded later, complete the same row;
explanations and verdicts are keyed by (node, the node's own row id) and inserted once.

The password does not belong in the node's config file: libpq reads it from ~/.pgpass or PGPASSWORD.
Needs psycopg (`pip install 'edge-xai[plant]'`).
"""
from __future__ import annotations

import re

from edge.errors import InvalidInput, Unavailable
from edge.record.store import INSPECTION_COLUMNS

SCHEMA = """
CREATE TABLE IF NOT EXISTS edgexai_inspections (
    id TEXT PRIMARY KEY, node TEXT NOT NULL, station_id TEXT, part_id TEXT, received_ms BIGINT, stored_ms BIGINT,
    model TEXT, model_sha256 TEXT, label TEXT, confidence DOUBLE PRECISION, probabilities JSONB,
    heatmap_target TEXT, heatmap_png BYTEA, sentence TEXT, timings JSONB, requested JSONB, deferred JSONB,
    tiles INTEGER, tile_box JSONB, heatmap_method TEXT, review JSONB, sensors JSONB, pixel_pitch_mm DOUBLE PRECISION,
    skipped JSONB, forwarded_at TIMESTAMPTZ NOT NULL DEFAULT now());
-- columns added after the first release: a plant database created by an older node gains them
ALTER TABLE edgexai_inspections ADD COLUMN IF NOT EXISTS sensors JSONB;
ALTER TABLE edgexai_inspections ADD COLUMN IF NOT EXISTS pixel_pitch_mm DOUBLE PRECISION;
ALTER TABLE edgexai_inspections ADD COLUMN IF NOT EXISTS skipped JSONB;
CREATE INDEX IF NOT EXISTS edgexai_inspections_station ON edgexai_inspections (node, station_id, received_ms);
CREATE TABLE IF NOT EXISTS edgexai_explanations (
    node TEXT NOT NULL, local_id BIGINT NOT NULL, inspection_id TEXT NOT NULL REFERENCES edgexai_inspections(id),
    model TEXT, model_sha256 TEXT, method TEXT, target TEXT, png BYTEA, float16 BYTEA, height INTEGER,
    width INTEGER, completeness_delta DOUBLE PRECISION, relative_completeness_delta DOUBLE PRECISION,
    n_steps INTEGER, sentence TEXT, created_ms BIGINT, PRIMARY KEY (node, local_id));
CREATE INDEX IF NOT EXISTS edgexai_explanations_inspection ON edgexai_explanations (inspection_id);
CREATE TABLE IF NOT EXISTS edgexai_verdicts (
    node TEXT NOT NULL, local_id BIGINT NOT NULL, inspection_id TEXT NOT NULL REFERENCES edgexai_inspections(id),
    agree BOOLEAN NOT NULL, correct_class TEXT, operator TEXT, condition TEXT, created_ms BIGINT,
    PRIMARY KEY (node, local_id));
CREATE INDEX IF NOT EXISTS edgexai_verdicts_inspection ON edgexai_verdicts (inspection_id);
"""
TABLES = ("edgexai_inspections", "edgexai_explanations", "edgexai_verdicts")

# stored as JSON text on the node, cast to JSONB here (queryable plant-wide)
JSON_COLUMNS = {"probabilities", "timings", "requested", "deferred", "tile_box", "review", "sensors", "skipped"}
EXPLANATION_COLUMNS = ("model", "model_sha256", "method", "target", "png", "float16", "height", "width",
                       "completeness_delta", "relative_completeness_delta", "n_steps", "sentence", "created_ms")
VERDICT_COLUMNS = ("agree", "correct_class", "operator", "condition", "created_ms")


def is_database_url(value: str | None) -> bool:
    return bool(value) and str(value).startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def _placeholders(columns: tuple[str, ...]) -> str:
    return ", ".join("%s::jsonb" if c in JSON_COLUMNS else "%s" for c in columns)


def _upsert_inspection_sql() -> str:
    cols = ("node", *INSPECTION_COLUMNS)
    update = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c != "id")
    return (f"INSERT INTO edgexai_inspections ({', '.join(cols)}) VALUES ({_placeholders(cols)}) "
            f"ON CONFLICT (id) DO UPDATE SET {update}, forwarded_at = now()")


def _insert_once_sql(table: str, columns: tuple[str, ...]) -> str:
    cols = ("node", "local_id", "inspection_id", *columns)
    return (f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({_placeholders(cols)}) "
            f"ON CONFLICT (node, local_id) DO NOTHING")


class PlantUnavailable(Unavailable):
    """The plant database cannot be reached or refused a write (the forwarder retries)."""


class PlantDatabase:
    def __init__(self, url: str, connect_timeout_s: float = 5.0):
        if not is_database_url(url):
            raise InvalidInput(f"[plant] database {redact(str(url))!r}: expected a postgresql:// URL")
        self.url = url
        self.connect_timeout_s = connect_timeout_s
        self._conn = None

    def _connection(self):
        try:
            import psycopg
        except ImportError as e:
            raise InvalidInput("[plant] database needs psycopg: pip install 'edge-xai[plant]'") from e
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        self.close()
        try:
            conn = psycopg.connect(self.url, connect_timeout=max(1, round(self.connect_timeout_s)),
                                   application_name="edge-xai")
            with conn.transaction():
                # one schema creation at a time: CREATE ... IF NOT EXISTS races between nodes starting together
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('edge-xai plant schema'))")
                conn.execute(SCHEMA)
        except psycopg.Error as e:
            raise PlantUnavailable(f"plant database {redact(self.url)}: {str(e).strip()}") from e
        self._conn = conn
        return conn

    def write(self, node: str, rows: dict[str, list[dict]]) -> None:
        """One transaction: the inspections (upserted), their explanations and the verdicts (inserted once)."""
        import psycopg

        conn = self._connection()
        try:
            with conn.transaction(), conn.cursor() as cur:
                if rows.get("inspections"):
                    cur.executemany(_upsert_inspection_sql(),
                                    [(node, *(r[c] for c in INSPECTION_COLUMNS)) for r in rows["inspections"]])
                if rows.get("explanations"):
                    cur.executemany(_insert_once_sql("edgexai_explanations", EXPLANATION_COLUMNS),
                                    [(node, r["id"], r["inspection_id"], *(r[c] for c in EXPLANATION_COLUMNS))
                                     for r in rows["explanations"]])
                if rows.get("verdicts"):
                    cur.executemany(_insert_once_sql("edgexai_verdicts", VERDICT_COLUMNS),
                                    [(node, r["id"], r["inspection_id"], bool(r["agree"]),
                                      *(r[c] for c in VERDICT_COLUMNS[1:])) for r in rows["verdicts"]])
        except psycopg.Error as e:
            self.close()
            raise PlantUnavailable(f"plant database {redact(self.url)}: {str(e).strip()}") from e

    # -- reading (the audit, tests) ------------------------------------------------------------------
    def verdicts(self) -> list[dict]:
        """Every node's verdicts, oldest first: node, inspection_id, agree, correct_class, operator, condition,
        created_ms (the shape InspectionStore.verdicts() gives, plus the node)."""
        conn = self._connection()
        with conn.cursor() as cur:
            cur.execute("SELECT node, inspection_id, agree, correct_class, operator, condition, created_ms "
                        "FROM edgexai_verdicts ORDER BY created_ms, node, local_id")
            names = [d.name for d in cur.description]
            out = [dict(zip(names, r)) for r in cur.fetchall()]
        conn.rollback()
        return out

    def inspection_ids(self) -> list[str]:
        conn = self._connection()
        ids = [r[0] for r in conn.execute("SELECT id FROM edgexai_inspections ORDER BY id").fetchall()]
        conn.rollback()
        return ids

    def count(self, table: str) -> int:
        if table not in TABLES:
            raise InvalidInput(f"unknown table {table!r} (known: {', '.join(TABLES)})")
        conn = self._connection()
        n = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        conn.rollback()
        return n

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection must not raise
                pass
            self._conn = None
