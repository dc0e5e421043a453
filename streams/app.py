"""The Faust app: agents over flows.v1 micro-batches (a thousandth of the raw message rate).

Faust costs ~160 µs per message, so it never sees raw records: the ingest service hands it
micro-batches of up to ``ingest.micro_batch_records`` records, already keyed by link.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import faust

from streams.config import Config
from streams.metrics import IngestMetrics
from streams.wire import WireError, decode_batch

log = logging.getLogger(__name__)


def build_app(cfg: Config, metrics: IngestMetrics) -> faust.App:
    k = cfg.kafka
    state_dir = Path(cfg.worker.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        k.app_id,
        broker=f"kafka://{k.broker}",
        datadir=str(state_dir),
        store="memory://",
        web_enabled=False,
        value_serializer="raw",
        key_serializer="raw",
        consumer_auto_offset_reset="earliest",
        topic_partitions=k.flows_partitions,
        topic_replication_factor=1,
        producer_max_request_size=k.max_message_bytes,
        consumer_max_fetch_size=k.max_message_bytes,
        broker_session_timeout=k.session_timeout_seconds,
        broker_heartbeat_interval=max(1.0, k.session_timeout_seconds / 5),
        stream_wait_empty=False,
        loghandlers=[],
    )
    flows = app.topic(k.topics.flows, value_serializer="raw", key_serializer="raw")

    @app.agent(flows)
    async def analyse(stream: Any) -> None:
        async for value in stream:
            try:
                batch = decode_batch(value)
            except WireError as exc:
                metrics.wire_errors.inc()
                log.warning("skipping an unreadable flows.v1 message: %s", exc)
                continue
            metrics.analysed.inc(len(batch))

    return app
