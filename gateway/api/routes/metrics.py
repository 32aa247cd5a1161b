"""GET /metrics: the gateway's figures in the Prometheus text format, for the plant's monitoring.

Read at scrape time from what the gateway already keeps (each machine's supervisor and adapter,
the store, the forwarders), so the per-sample path carries no metric work; only API request
latencies are observed as they happen (a histogram per route). Names follow Prometheus
conventions: `linegw_` prefix, `_total` for counters, base units (seconds, bytes).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway import __version__
from gateway.api.deps import ForwardStatus, Store, View, caller

router = APIRouter(tags=["health"], dependencies=[Depends(caller)])
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus-client leaves it unannotated; no *_created series

# Adapter counters a protocol may report in its health's `extra` (Modbus scans; OPC UA notifications).
ADAPTER_COUNTERS = {
    "scans": "scans run",
    "overruns": "scan ticks missed because a scan took longer than its interval",
    "exceptions": "protocol exception answers",
    "timeouts": "requests that got no answer in time",
}


def request_latency() -> Histogram:
    """The API's request latencies, per route template and method (the app keeps one)."""
    return Histogram("linegw_api_request_duration_seconds", "API request latency, by route and method",
                     ["route", "method"], registry=None,
                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))


class Snapshot(Collector):
    """The gateway's state at one scrape, as metric families."""

    def __init__(self, line: str, runtime: dict[str, Any], classes: dict[str, tuple[str, str]],
                 store: dict[str, Any], forward: dict[str, Any]) -> None:
        self.line, self.runtime, self.classes, self.store, self.forward = line, runtime, classes, store, forward

    def collect(self) -> Iterator[Metric]:
        yield InfoMetricFamily("linegw_build", "the gateway's version", value={"version": __version__, "line": self.line})
        lag = self.runtime.get("loop_lag") or {}
        if lag:
            yield GaugeMetricFamily("linegw_event_loop_lag_seconds", "how late the event loop woke, last measure",
                                    value=lag.get("last_ms", 0.0) / 1000)
            yield GaugeMetricFamily("linegw_event_loop_lag_max_seconds", "the worst event loop lag within the last minute",
                                    value=lag.get("max_1m_ms", 0.0) / 1000)
        gc_time = self.runtime.get("gc") or {}
        if gc_time:
            spent = CounterMetricFamily("linegw_gc_seconds", "time in Python's garbage collector, per generation",
                                        labels=["generation"])
            for generation, seconds in enumerate(gc_time["seconds"]):
                spent.add_metric([str(generation)], seconds)
            yield spent
        if "tasks" in self.runtime:
            yield GaugeMetricFamily("linegw_asyncio_tasks", "asyncio tasks alive in the gateway's event loop",
                                    value=self.runtime["tasks"])
        yield from self._machines()
        yield from self._store()
        yield from self._forward()

    def _machines(self) -> Iterator[Metric]:
        labels = ["equipment", "class", "protocol"]
        up = GaugeMetricFamily("linegw_machine_available", "1 when the machine is linked and its heartbeat moves", labels=labels)
        linked = GaugeMetricFamily("linegw_machine_link_up", "1 when the adapter holds a connection", labels=labels)
        samples = CounterMetricFamily("linegw_machine_samples", "samples read from the machine", labels=labels)
        stored = CounterMetricFamily("linegw_machine_samples_stored", "samples handed to the store (new values only)",
                                     labels=labels)
        last = GaugeMetricFamily("linegw_machine_last_data_timestamp_seconds", "when the machine last delivered data",
                                 labels=labels)
        restarts = CounterMetricFamily("linegw_machine_restarts", "supervisor restarts of the machine's task", labels=labels)
        dropped = CounterMetricFamily("linegw_machine_records_dropped", "alarm/event records lost to a full queue",
                                      labels=labels)
        queue = GaugeMetricFamily("linegw_machine_record_queue", "records waiting for the store", labels=labels)
        reconnects = CounterMetricFamily("linegw_adapter_reconnects", "reconnections of the adapter", labels=labels)
        reads = CounterMetricFamily("linegw_adapter_reads", "reads (scans or notifications) delivered", labels=labels)
        requests = CounterMetricFamily("linegw_adapter_requests", "protocol requests issued", labels=labels)
        errors = CounterMetricFamily("linegw_adapter_errors", "adapter errors, by kind", labels=[*labels, "kind"])
        extra = {k: CounterMetricFamily(f"linegw_adapter_{k}", doc, labels=labels) for k, doc in ADAPTER_COUNTERS.items()}
        for eq, h in (self.runtime.get("equipment") or {}).items():
            cls, protocol = self.classes.get(eq, ("", ""))
            values = [eq, cls, protocol]
            up.add_metric(values, 1.0 if h.get("available") else 0.0)
            samples.add_metric(values, h.get("samples", 0))
            stored.add_metric(values, h.get("samples_stored", 0))
            if h.get("last_data_ts") is not None:
                last.add_metric(values, h["last_data_ts"])
            restarts.add_metric(values, h.get("restarts", 0))
            dropped.add_metric(values, h.get("records_dropped", 0))
            queue.add_metric(values, h.get("record_queue", 0))
            adapter = h.get("adapter") or {}
            linked.add_metric(values, 1.0 if adapter.get("connected") else 0.0)
            reconnects.add_metric(values, adapter.get("reconnects", 0))
            reads.add_metric(values, adapter.get("reads", 0))
            requests.add_metric(values, adapter.get("requests", 0))
            errors.add_metric([*values, "read"], adapter.get("read_errors", 0))
            more = adapter.get("extra") or {}
            for k, family in extra.items():
                if isinstance(more.get(k), (int, float)):
                    family.add_metric(values, more[k])
        yield from (up, linked, samples, stored, last, restarts, dropped, queue, reconnects, reads, requests, errors,
                    *extra.values())

    def _store(self) -> Iterator[Metric]:
        s = self.store
        counters = {"written": "samples committed", "dropped": "samples the store could not take",
                    "rejected": "samples refused as invalid", "write_errors": "failed commits",
                    "retention_deleted": "samples deleted by retention", "budget_deleted": "samples deleted by the disk budget",
                    "budget_unforwarded": "samples deleted by the disk budget before every sink had them",
                    "sealed_samples": "samples sealed into compressed chunks"}
        for key, doc in counters.items():
            if isinstance(s.get(key), (int, float)):
                yield CounterMetricFamily(f"linegw_store_{key}", doc, value=s[key])
        gauges = {"queued": ("linegw_store_queue", "samples waiting for the writer"),
                  "held": ("linegw_store_held", "samples in memory, not yet committed"),
                  "series": ("linegw_store_series", "series in the store"),
                  "db_size_bytes": ("linegw_store_size_bytes", "size of the database file"),
                  "db_used_bytes": ("linegw_store_used_bytes", "bytes the database uses"),
                  "last_commit_ts": ("linegw_store_last_commit_timestamp_seconds", "when the writer last committed")}
        for key, (name, doc) in gauges.items():
            if isinstance(s.get(key), (int, float)):
                yield GaugeMetricFamily(name, doc, value=s[key])
        yield GaugeMetricFamily("linegw_store_running", "1 when the writer runs", value=1.0 if s.get("running") else 0.0)

    def _forward(self) -> Iterator[Metric]:
        backlog = GaugeMetricFamily("linegw_forward_backlog", "samples waiting for the sink", labels=["sink"])
        lag = GaugeMetricFamily("linegw_forward_lag_seconds", "age of the oldest sample waiting", labels=["sink"])
        discards = CounterMetricFamily("linegw_forward_discards", "samples the disk budget deleted before the sink had them",
                                       labels=["sink"])
        delivered = CounterMetricFamily("linegw_forward_delivered", "samples delivered", labels=["sink"])
        refused = CounterMetricFamily("linegw_forward_refused", "points the sink refused, set aside", labels=["sink"])
        retries = CounterMetricFamily("linegw_forward_retries", "delivery retries", labels=["sink"])
        failing = GaugeMetricFamily("linegw_forward_failing", "1 while the sink is not delivering", labels=["sink"])
        for name, sink in self.forward.items():
            backlog.add_metric([name], sink.get("backlog", 0))
            lag.add_metric([name], sink.get("lag_s", 0.0))
            discards.add_metric([name], sink.get("discarded", 0))
            delivered.add_metric([name], sink.get("written", sink.get("published", 0)))  # InfluxDB / MQTT
            refused.add_metric([name], sink.get("rejected_total", 0))
            retries.add_metric([name], sink.get("retries", 0))
            failing.add_metric([name], 1.0 if sink.get("failing_since") is not None else 0.0)
        yield from (backlog, lag, discards, delivered, refused, retries, failing)


@router.get("/metrics", include_in_schema=True, response_class=Response,
            summary="Prometheus metrics: each machine's link, samples, errors and reconnects; the store's queue and "
                    "commits; each sink's backlog, lag and discards; API request latencies")
async def get_metrics(request: Request, view: View, store: Store, forward: ForwardStatus) -> Response:
    runtime = dict(view.health())
    stats = runtime.pop("store", None)
    if inspect.iscoroutine(stats):
        stats.close()
    store_stats = store.stats() if hasattr(store, "stats") else {}
    if inspect.isawaitable(store_stats):
        store_stats = await store_stats
    classes = {eq.id: (eq.cls, eq.protocol) for eq in view.equipment()}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot(view.line_id, runtime, classes, store_stats or {}, forward or {}))
    registry.register(request.app.state.request_latency)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def observe_latency(app: Any, started: float, route: str, method: str) -> None:
    app.state.request_latency.labels(route, method).observe(time.perf_counter() - started)
