"""A bug while processing a batch loses nothing: the batch goes to the DLQ as internal_error."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry

from streams.config import load_config
from streams.links.catalog import LinkCatalog
from streams.worker.ingest import IngestService
from streams.worker.metrics import IngestMetrics
from tests.kafka_util import create_topic, produce, read_all
from tests.records import valid_records

pytestmark = pytest.mark.integration


class _Broken:
    def decode(self, values, ts):
        raise RuntimeError("simulated bug")


def test_a_failing_batch_is_dead_lettered_whole(broker, names):
    values = [v for _, v in valid_records(300, seed=2)]
    asyncio.run(create_topic(broker, names.raw, 2))
    asyncio.run(produce(broker, names.raw, values))
    cfg = load_config(None, env={"INFERWATCH_KAFKA__BROKER": broker, **names.env()})
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)

    async def run() -> None:
        svc = IngestService(cfg, metrics, LinkCatalog([]))
        svc.decoder = _Broken()  # type: ignore[assignment]
        await svc.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = registry.get_sample_value(
                "inferwatch_flow_records_total",
                {"outcome": "invalid", "format": "unknown", "reason": "internal_error"},
            )
            if got == len(values):
                break
            await asyncio.sleep(0.2)
        await svc.stop()

    asyncio.run(run())
    assert registry.get_sample_value(
        "inferwatch_flow_records_total",
        {"outcome": "invalid", "format": "unknown", "reason": "internal_error"},
    ) == len(values)
    dlq = asyncio.run(read_all(broker, names.dlq, len(values)))
    assert sorted(m.value for m in dlq) == sorted(values)
    assert {dict(m.headers)["reason"] for m in dlq} == {b"internal_error"}
    assert b"simulated bug" in dict(dlq[0].headers)["detail"]
