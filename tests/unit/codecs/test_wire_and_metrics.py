"""flows.v1 micro-batches round-trip; the bulk histogram agrees with prometheus_client's."""

from __future__ import annotations

import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from streams.codecs.decode import BatchDecoder
from streams.codecs.wire import WireError, decode_batch, encode_batch
from streams.metrics import BulkHistogram
from tests.records import valid_records


def test_micro_batch_round_trip_keeps_every_column():
    now = time.time()
    values = [v for _, v in valid_records(90, seed=4, now=now)]
    batch = BatchDecoder().decode(values, [now] * len(values)).batch
    back = decode_batch(encode_batch(batch))
    for name in batch.__dataclass_fields__:
        a, b = getattr(batch, name), getattr(back, name)
        assert a.dtype == b.dtype, name
        assert a.tolist() == b.tolist(), name


@pytest.mark.parametrize("data", [b"", b"\x00\x01", b"\x95\x02\x01\x80\x80\x90"])
def test_unreadable_micro_batches_raise_wire_error(data):
    with pytest.raises(WireError):
        decode_batch(data)


def test_bulk_histogram_matches_prometheus_histogram():
    values = np.random.default_rng(1).exponential(0.3, 5000)
    values[:5] = [0.1, 0.25, 1.0, 0.0, 60.0]  # values exactly on bucket bounds
    buckets = (0.05, 0.1, 0.25, 1.0, 10.0)
    reg_a, reg_b = CollectorRegistry(), CollectorRegistry()
    bulk = BulkHistogram("lat_seconds", "x", buckets, registry=reg_a)
    ref = Histogram("lat_seconds", "x", buckets=buckets, registry=reg_b)
    bulk.observe_many(values[:2500])
    bulk.observe_many(values[2500:])
    for v in values:
        ref.observe(v)
    for le in ["0.05", "0.1", "0.25", "1.0", "10.0", "+Inf"]:
        assert reg_a.get_sample_value("lat_seconds_bucket", {"le": le}) == reg_b.get_sample_value(
            "lat_seconds_bucket", {"le": le}
        ), le
    assert reg_a.get_sample_value("lat_seconds_sum") == pytest.approx(
        reg_b.get_sample_value("lat_seconds_sum")
    )


async def test_metrics_endpoint_serves_only_the_families_asked_for():
    """`/metrics?name[]=...` (as prometheus_client's own handlers): a cheap scrape for pollers."""
    import aiohttp
    from prometheus_client import Counter, Gauge

    from streams.worker.http import HttpService

    registry = CollectorRegistry()
    Counter("demo_records", "Records.", registry=registry).inc(3)
    Gauge("demo_links", "Links.", registry=registry).set(7)
    svc = HttpService("127.0.0.1", 0, registry, lambda: (True, "ok"))
    await svc.on_start()
    try:
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{svc.port}/metrics"
            async with session.get(base) as r:
                everything = await r.text()
            async with session.get(base, params={"name[]": "demo_records_total"}) as r:
                only = await r.text()
    finally:
        await svc.on_stop()
    assert "demo_records_total 3.0" in everything and "demo_links 7.0" in everything
    assert "demo_records_total 3.0" in only and "demo_links" not in only


def test_labelled_bulk_histogram_matches_prometheus_histogram():
    """The QoE histograms per (link, class) are observed a group of flows at a time: the
    exposition is what prometheus_client's own labelled Histogram gives."""
    from prometheus_client.exposition import generate_latest

    from streams.links.metrics import GAP_BUCKETS

    rng = np.random.default_rng(2)
    reg_a, reg_b = CollectorRegistry(), CollectorRegistry()
    bulk = BulkHistogram("gap_seconds", "x", GAP_BUCKETS, ["link", "class"], registry=reg_a)
    ref = Histogram("gap_seconds", "x", ["link", "class"], buckets=GAP_BUCKETS, registry=reg_b)
    for link, cls in [("r1", "ai-api"), ("r2", "ai-chat-stream"), ("r1", "ai-api")]:
        values = rng.exponential(0.05, 300)
        bulk.observe_many(values, (link, cls))
        for v in values:
            ref.labels(link, cls).observe(v)
    bulk.remove("r2", "ai-chat-stream")
    ref.remove("r2", "ai-chat-stream")

    def lines(reg: CollectorRegistry) -> list[str]:
        text = generate_latest(reg).decode()
        return sorted(ln for ln in text.splitlines() if "_created" not in ln and "_sum" not in ln)

    assert lines(reg_a) == lines(reg_b)
    assert reg_a.get_sample_value(
        "gap_seconds_sum", {"link": "r1", "class": "ai-api"}
    ) == pytest.approx(reg_b.get_sample_value("gap_seconds_sum", {"link": "r1", "class": "ai-api"}))


def test_the_worker_exposition_passes_promtool_check_metrics():
    """Every metric family a worker registers (with a sample each where labels allow), and
    the process's own: names, units and help as Prometheus's linter wants them."""
    import shutil
    import subprocess

    from prometheus_client.exposition import generate_latest

    from streams.links.metrics import (
        AnomalyMetrics,
        ClassifierMetrics,
        CongestionMetrics,
        LinkMetrics,
        LinkStateMetrics,
    )
    from streams.metrics import worker_registry
    from streams.worker.metrics import IngestMetrics

    registry = worker_registry()
    for part in (IngestMetrics, LinkMetrics, AnomalyMetrics, LinkStateMetrics,
                 CongestionMetrics, ClassifierMetrics):  # fmt: skip
        part(registry)
    text = generate_latest(registry)
    assert b"process_cpu_seconds_total" in text and b"inferwatch_link_capacity_bytes" in text
    tool = shutil.which("promtool")
    assert tool, "promtool is missing (Debian package prometheus; make test installs it)"
    res = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True)
    assert res.returncode == 0 and not res.stdout and not res.stderr, res.stdout + res.stderr
