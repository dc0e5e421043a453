"""The Faust app: agents over flows.v1 micro-batches (a thousandth of the raw message rate).

Faust costs ~160 µs per message, so it never sees raw records: the ingest service hands it
micro-batches of up to ``ingest.micro_batch_records`` records, already partitioned by link.
Each partition's open windows live in the changelogged table ``link-windows`` (one entry per
flows.v1 partition, written after every micro-batch), so a restarted or rebalanced worker
continues from them; Faust commits flows.v1 offsets only after the agent has processed an event.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import faust
import orjson

from streams.analysis import Analyzer
from streams.config import Config
from streams.metrics import IngestMetrics
from streams.wire import WireError, decode_batch

log = logging.getLogger(__name__)


def _key(partition: int) -> bytes:
    return b"p%d" % partition


def build_app(cfg: Config, metrics: IngestMetrics, analyzer: Analyzer) -> faust.App:
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
    toptalkers = app.topic(
        cfg.analysis.toptalkers_topic, value_serializer="raw", key_serializer="raw"
    )
    windows = app.Table(
        "link-windows",
        default=None,
        partitions=k.flows_partitions,
    )  # keys and values are bytes: the app's serializers are "raw"
    restored: set[int] = set()
    pending: list[dict[str, Any]] = []
    analyzer.publish = pending.append

    @app.agent(flows)
    async def analyse(stream: Any) -> None:
        async for event in stream.events():
            partition = event.message.partition
            if partition not in restored:
                saved = windows.get(_key(partition))
                if saved:
                    analyzer.restore(partition, saved)
                restored.add(partition)
            try:
                batch = decode_batch(event.value)
            except WireError as exc:
                metrics.wire_errors.inc()
                log.warning("skipping an unreadable flows.v1 message: %s", exc)
                continue
            analyzer.process(batch, partition)
            windows[_key(partition)] = analyzer.checkpoint(partition)
            metrics.analysed.inc(len(batch))
            while pending:
                snap = pending.pop(0)
                await toptalkers.send(key=snap["link"].encode(), value=orjson.dumps(snap))

    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked: set[Any] = args[0] if args else kwargs.get("revoked", set())
        for tp in revoked:
            if tp.topic == k.topics.flows:
                analyzer.revoke(tp.partition)
                restored.discard(tp.partition)

    app.on_partitions_revoked.connect(on_revoked)
    return app
