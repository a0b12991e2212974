"""Server configuration: one typed, commented dataclass, loaded from a TOML file; defaults run on a laptop.

    [serve]
    grpc = "0.0.0.0:50051"
    hmi = "127.0.0.1:8080"
    cycle_budget_ms = 100
    [tls]
    cert = "server.pem"
    key = "server.key"
    client_ca = "stations-ca.pem"    # set: mutual TLS, stations must present a certificate it signed
"""
from __future__ import annotations

import math
import socket
from dataclasses import dataclass, field, fields
from pathlib import Path

from edge.errors import InvalidInput
from edge.resources import data_dir, models_dir
from edge.toml_file import read_toml

SECTIONS = ("tls", "opcua", "plant")           # config sections besides [serve]
LEGACY_STORE = Path("edge-xai-audit.sqlite")    # the default before: in the working directory


def default_store() -> Path:
    """$XDG_DATA_HOME/edge-xai/inspections.sqlite, unless the working directory holds the store an older
    node created there by default: that one is kept on (nothing lost on upgrade)."""
    return LEGACY_STORE if LEGACY_STORE.is_file() else data_dir() / "inspections.sqlite"


def _beside(config_path: Path, value: str) -> Path:
    """A file named in the config: relative paths are relative to the config file, not the working directory."""
    return Path(value) if Path(value).is_absolute() else config_path.parent / value


@dataclass
class TLSConfig:
    cert: Path | None = None          # server certificate chain (PEM)
    key: Path | None = None           # its private key (PEM)
    client_ca: Path | None = None     # set = mutual TLS: clients need a certificate signed by this CA

    @property
    def enabled(self) -> bool:
        return self.cert is not None


@dataclass
class OpcUaConfig:
    """[opcua]: results for the PLC and the MES (edge/line/opcua.py)."""
    endpoint: str | None = None            # e.g. "opc.tcp://0.0.0.0:4840/edge-xai/"; None = no OPC UA server
    anonymous: bool = False                # allow anonymous sessions (off: the PLC authenticates)
    certificate: Path | None = None        # the node's certificate (DER or PEM) for Sign&Encrypt
    private_key: Path | None = None
    allow_unencrypted: bool = False        # also offer SecurityPolicy None (a lab, never a line)
    reject_classes: list[str] = field(default_factory=list)   # empty: every class but the defect-free one
    users: dict[str, str] = field(default_factory=dict)        # name -> "sha256:<hex>" (edge.line.opcua.password_hash)


@dataclass
class PlantConfig:
    """[plant]: forward every inspection, deferred explanation and verdict to a plant-wide PostgreSQL
    (edge/record/forward.py). The password goes in ~/.pgpass or PGPASSWORD, not here."""
    database: str | None = None            # "postgresql://user@host:5432/dbname"; None = no forwarding
    node: str = field(default_factory=socket.gethostname)   # this node's name in the plant record
    batch: int = 200                       # outbox rows per plant transaction
    drain_s: float = 5.0                   # at shutdown, time to empty the outbox (the rest goes at the next start)


@dataclass
class ServeConfig:
    models_dir: Path = field(default_factory=models_dir)   # $EDGE_XAI_MODELS, else the bundled models
    default_model: str | None = None          # None: "defect" if present, else the first classifier
    grpc: str = "0.0.0.0:50051"               # stations are on the line network; use TLS there
    hmi: str | None = "127.0.0.1:8080"        # localhost by default: operators' screens proxy to it; None = off
    store: Path = field(default_factory=default_store)   # the inspection record (SQLite)
    cycle_budget_ms: float = 100.0            # default line cycle when a request gives none
    # How long a micro-batch waits for company. 0: no wait; a batch is what queued while the previous one
    # ran, which is where batches form under load. Measured (benchmarks/service.py --batch-wait-ms, 2-core
    # Xeon, 2026-12-03, two runs each): 2 ms added 2-3 ms to a lone inspection (in-process p50 11.0-11.2
    # against 7.7-8.3 ms) and bought no throughput (saturation 131-140/s both ways).
    batch_wait_ms: float = 0.0
    max_batch: int = 8                        # frames per graph call
    queue_size: int = 64                      # waiting inspections before RESOURCE_EXHAUSTED
    # Inspections whose deferred explanations (IG, SHAP, ...) may wait for the background thread at once.
    # Each holds its frame until then; a station asking for IG faster than the node computes it would
    # otherwise grow the node's memory without bound. Beyond it a new inspection's deferred kinds are
    # skipped: its answer lists them in `skipped` and is not complete. 0: never defer.
    deferred_limit: int = 16
    max_message_mb: int = 64                  # 4 MPixel x 16-bit x 3 channels is 24 MiB; headroom for PNG/TIFF
    store_frames: bool = False                # keep raw frames when a request asks for it...
    frame_retention: int = 1000               # ...up to this many, oldest deleted first
    preview_retention: int = 10000            # 8-bit channel previews the HMI shows
    # Inspections older than this many days are deleted from the node's store, in the background; 0 keeps
    # every one: the store is then the whole record and grows by about 5.6 kB an inspection of a 128 px
    # frame, most of it the heatmap PNG (19 GB a day at 4 stations x 10 Hz). Never deleted: inspections
    # with an operator's verdict, and those not yet in the plant database ([plant]), where a line keeps
    # its history.
    retention_days: float = 0.0
    review_budget: float = 0.10               # share of parts the review flag may send to a person
    ig_steps: int = 32                        # Gauss-Legendre points for the regression models' IG
    shap_budget: int = 512                    # model evaluations per SHAP explanation
    threads: int | None = None                # ONNX Runtime intra-op threads; None = all cores
    backend: str = "ort-cpu"                  # or triton://HOST:PORT (every graph on a Triton server)
    deferred_backend: str | None = None       # optional kinds only (sensors, IG, SHAP), e.g. triton://gpu:8001; None = backend
    ort_spin: bool = False                    # ONNX Runtime pools busy-wait between calls (off: less interference)
    reflection: bool = True                   # gRPC server reflection, for grpcurl and friends
    grace_s: float = 10.0                     # SIGTERM: time for in-flight work before stopping
    allow_unaudited: bool = False             # serve models whose recorded audit did not pass (edge-xai gate --record)
    tls: TLSConfig = field(default_factory=TLSConfig)
    opcua: OpcUaConfig = field(default_factory=OpcUaConfig)
    plant: PlantConfig = field(default_factory=PlantConfig)

    @classmethod
    def load(cls, path: Path | None = None, **overrides) -> "ServeConfig":
        cfg = cls()
        if path is not None:
            path = Path(path)
            data = read_toml(path, "config")
            known = {f.name: f for f in fields(cls)}
            for key, value in {**data.get("serve", {})}.items():
                if key not in known or key in SECTIONS:
                    raise InvalidInput(f"config {path}: unknown setting [serve] {key!r} "
                                       f"(known: {', '.join(k for k in known if k not in SECTIONS)})")
                setattr(cfg, key, Path(value) if key in ("models_dir", "store") else value)
            tls = data.get("tls", {})
            for key, value in tls.items():
                if key not in ("cert", "key", "client_ca"):
                    raise InvalidInput(f"config {path}: unknown setting [tls] {key!r} (known: cert, key, client_ca)")
                setattr(cfg.tls, key, _beside(path, value))
            opcua_known = {f.name for f in fields(OpcUaConfig)}
            for key, value in data.get("opcua", {}).items():
                if key not in opcua_known:
                    raise InvalidInput(f"config {path}: unknown setting [opcua] {key!r} "
                                       f"(known: {', '.join(sorted(opcua_known))})")
                if key in ("certificate", "private_key"):
                    value = _beside(path, value)
                setattr(cfg.opcua, key, value)
            plant_known = {f.name for f in fields(PlantConfig)}
            for key, value in data.get("plant", {}).items():
                if key not in plant_known:
                    raise InvalidInput(f"config {path}: unknown setting [plant] {key!r} "
                                       f"(known: {', '.join(sorted(plant_known))})")
                setattr(cfg.plant, key, value)
            unknown = set(data) - {"serve", *SECTIONS}
            if unknown:
                raise InvalidInput(f"config {path}: unknown section(s) {sorted(unknown)} "
                                   f"(known: serve, {', '.join(SECTIONS)})")
        for key, value in overrides.items():
            if value is not None:
                setattr(cfg, key, value)
        if not 0 < cfg.review_budget < 1:
            raise InvalidInput(f"[serve] review_budget {cfg.review_budget}: a share of parts between 0 and 1 (0.10 = 10 %)")
        limit = cfg.deferred_limit
        if not (isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0):
            raise InvalidInput(f"[serve] deferred_limit {cfg.deferred_limit!r}: a number of inspections, 0 or more "
                               "(0: explanations that do not fit the cycle budget are skipped, never deferred)")
        if not (math.isfinite(cfg.retention_days) and cfg.retention_days >= 0):
            raise InvalidInput(f"[serve] retention_days {cfg.retention_days}: days to keep inspections, 0 or more "
                               "(0 keeps every inspection)")
        if cfg.plant.database is not None:
            from edge.record.plant import is_database_url, redact

            if not is_database_url(cfg.plant.database):
                raise InvalidInput(f"[plant] database {redact(str(cfg.plant.database))!r}: expected a postgresql:// URL")
            if not cfg.plant.node or cfg.plant.batch < 1:
                raise InvalidInput("[plant] node must be a non-empty name and batch at least 1")
        if cfg.tls.enabled and cfg.tls.key is None:
            raise InvalidInput("[tls] cert is set but key is not")
        return cfg
