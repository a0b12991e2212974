"""Prometheus metrics of one node, named as Prometheus recommends: one prefix, base units, counters ending
in `_total`, and a latency bucket at the cycle budget so an SLO ratio can be read off directly:

    sum(rate(edgexai_inspection_duration_seconds_bucket{le="0.1"}[5m]))
      / sum(rate(edgexai_inspection_duration_seconds_count[5m]))

Served at `/metrics` on the HMI's port. Each node has its own registry (tests run several in a process).
"""
from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

STAGE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


def latency_buckets(cycle_budget_s: float) -> tuple[float, ...]:
    """End-to-end latency buckets, with one exactly at the cycle budget."""
    return tuple(sorted({0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, round(cycle_budget_s, 6)}))


class _PlantCollector(Collector):
    """Read from the forwarder when scraped: its counts live in the forwarder thread, not in metric objects."""

    def __init__(self, forwarder):
        self.forwarder = forwarder

    def collect(self):
        status = self.forwarder.status
        yield GaugeMetricFamily("edgexai_plant_backlog", "Outbox rows not yet in the plant database",
                                value=self.forwarder.backlog())
        yield CounterMetricFamily("edgexai_plant_forwarded", "Outbox rows the plant database committed",
                                  value=status.forwarded)
        yield CounterMetricFamily("edgexai_plant_failures", "Failed forwarding attempts (database down or refusing)",
                                  value=status.failures)


class NodeMetrics:
    def __init__(self, cycle_budget_ms: float):
        r = self.registry = CollectorRegistry()
        self.inspections = Counter("edgexai_inspections", "Inspections answered, by model, class and station",
                                   ["model", "class", "station"], registry=r)
        self.duration = Histogram("edgexai_inspection_duration_seconds",
                                  "From a request's arrival to its answer (queue, models, explanations, store)",
                                  ["model"], buckets=latency_buckets(cycle_budget_ms / 1e3), registry=r)
        self.stages = Histogram("edgexai_stage_duration_seconds", "Time per stage of an inspection",
                                ["stage"], buckets=STAGE_BUCKETS, registry=r)
        self.store_writes = Histogram("edgexai_store_write_duration_seconds",
                                      "Durable write of an inspection to the store, before its answer",
                                      buckets=STAGE_BUCKETS, registry=r)
        self.errors = Counter("edgexai_errors", "Requests answered with an error, by gRPC status code", ["code"],
                              registry=r)
        self.flagged = Counter("edgexai_review_flagged", "Inspections the review flag sent to a person, by reason",
                               ["model", "reason"], registry=r)
        self.deferred = Counter("edgexai_deferred_explanations", "Explanations deferred past the answer, by kind",
                                ["kind"], registry=r)
        self.skipped_explanations = Counter(
            "edgexai_skipped_explanations", "Explanations asked for and never computed: past the cycle budget "
            "while [serve] deferred_limit inspections already waited for deferred work, by kind",
            ["model", "kind"], registry=r)
        self.models = Gauge("edgexai_model_info", "Models on this node (1), with their audit status and whether "
                                                  "they are served", ["model", "task", "audit_status", "served"],
                            registry=r)
        self.cycle_budget = Gauge("edgexai_cycle_budget_seconds", "The node's default cycle budget", registry=r)
        self.cycle_budget.set(cycle_budget_ms / 1e3)
        self.queue_depth = Gauge("edgexai_queue_depth", "Inspections waiting for the models", registry=r)
        self.deferred_backlog = Gauge("edgexai_deferred_backlog", "Inspections whose deferred explanations are "
                                                                  "still running", registry=r)
        self.pruned = Counter("edgexai_store_pruned", "Inspections deleted from the node's store for being older "
                                                      "than [serve] retention_days", registry=r)
        self.store_bytes = Gauge("edgexai_store_bytes", "The inspection store's files on disk (database and "
                                                        "write-ahead log)", registry=r)
        self.store_free = Gauge("edgexai_store_free_bytes", "Free space on the file system that holds the "
                                                            "inspection store (alert on it: a full disk stops answers)",
                                registry=r)

    def watch(self, queue_depth: Callable[[], float], deferred_backlog: Callable[[], float]) -> None:
        """Gauges read when scraped, from the node's own state."""
        self.queue_depth.set_function(queue_depth)
        self.deferred_backlog.set_function(deferred_backlog)

    def store(self, size_bytes: Callable[[], float], free_bytes: Callable[[], float]) -> None:
        """The store's size and its disk's free space, read when scraped."""
        self.store_bytes.set_function(size_bytes)
        self.store_free.set_function(free_bytes)

    def plant(self, forwarder) -> None:
        """Store-and-forward to the plant database (edge.record.forward.Forwarder): backlog, rows sent, failures."""
        self.registry.register(_PlantCollector(forwarder))

    def model(self, name: str, task: str, audit_status: str, served: bool) -> None:
        self.models.labels(model=name, task=task, audit_status=audit_status, served=str(served).lower()).set(1)

    def inspection(self, model: str, label: str, station: str, timings_ms: dict[str, float], review: list[str] | None,
                   deferred: list[str]) -> None:
        self.inspections.labels(model=model, **{"class": label}, station=station).inc()
        self.duration.labels(model=model).observe(timings_ms.get("total", 0.0) / 1e3)
        for stage, ms in timings_ms.items():
            if stage not in ("total", "batch_size", "store"):
                self.stages.labels(stage=stage).observe(ms / 1e3)
        if "store" in timings_ms:
            self.store_writes.observe(timings_ms["store"] / 1e3)
        for reason in review or []:
            self.flagged.labels(model=model, reason=reason).inc()
        for kind in deferred:
            self.deferred.labels(kind=kind).inc()

    def skipped(self, model: str, kinds: list[str]) -> None:
        for kind in kinds:
            self.skipped_explanations.labels(model=model, kind=kind).inc()
