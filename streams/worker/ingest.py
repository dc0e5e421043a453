"""The ingest stage: flows.raw (any format, any key) -> flows.v1 micro-batches keyed by link.

Over 400 lines: one service whose commit, retry, rewind and revocation paths share the
in-flight batch and must be read together to see that nothing is lost.

It reads with aiokafka's batch API (``getmany``), decodes whole batches, publishes normalised
records to flows.v1 (one message per flows.v1 partition and chunk, so a link's records always
land in the same partition) and refused ones to flows.dlq.v1 with their reason, waits until
the broker has acknowledged all of them, and only then counts them and commits the offsets of
flows.raw (at-least-once). On a Kafka error the batch is read again from its first offsets.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections import defaultdict
from typing import Any

import mode
import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from detectors.flows import FlowBatch
from streams.codecs.decode import BatchDecoder, DecodeResult, Reject
from streams.codecs.reasons import Reason
from streams.codecs.wire import TICK_KEY, encode_batch, encode_tick
from streams.config import Config
from streams.links.catalog import LinkCatalog
from streams.retry import StopRetrying, delay, retrying
from streams.worker.metrics import IngestMetrics

log = logging.getLogger(__name__)


class LinkPartitioner:
    """Maps a link id to a flows.v1 partition with a hash that is the same in every process.

    >>> p = LinkPartitioner(8)
    >>> p.partition("192.0.2.1#3") == LinkPartitioner(8).partition("192.0.2.1#3")
    True
    """

    def __init__(self, partitions: int, cache_size: int = 100_000) -> None:
        self.partitions = partitions
        self._cache: dict[str, int] = {}
        self._cache_size = cache_size

    def partition(self, link: str) -> int:
        part = self._cache.get(link)
        if part is None:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            part = self._cache[link] = zlib.crc32(link.encode()) % self.partitions
        return part

    def partitions_of(self, links: np.ndarray) -> np.ndarray:
        get = self.partition
        return np.fromiter((get(k) for k in links.tolist()), dtype=np.int32, count=len(links))


async def _stop_client(client: AIOKafkaConsumer | AIOKafkaProducer | None, name: str) -> None:
    """Stop a Kafka client within 5 s; with the broker gone it may not stop cleanly."""
    if client is None:
        return
    try:
        await asyncio.wait_for(client.stop(), timeout=5.0)
    except (TimeoutError, KafkaError) as exc:
        log.warning("ingest: %s did not stop cleanly: %r", name, exc)


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: IngestService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.service.commit()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("ingest assigned %s", sorted((tp.topic, tp.partition) for tp in assigned))


class IngestService(mode.Service):
    """Inert until started; ``start()`` connects to Kafka, ``stop()`` commits and disconnects."""

    def __init__(
        self, cfg: Config, metrics: IngestMetrics, links: LinkCatalog, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.cfg = cfg
        self.metrics = metrics
        self.links = links
        self.decoder = BatchDecoder(
            fmt=cfg.ingest.format,
            max_record_bytes=cfg.ingest.max_record_bytes,
            max_age_seconds=cfg.ingest.max_age_seconds,
            max_future_seconds=cfg.ingest.max_future_seconds,
        )
        self.partitioner = LinkPartitioner(cfg.kafka.flows_partitions)
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._pending: dict[TopicPartition, int] = {}
        self._positions: dict[TopicPartition, int] = {}  # next offset to read, per partition
        self._last_commit = time.monotonic()
        self._runner: asyncio.Task[None] | None = None
        self._prober: asyncio.Task[None] | None = None
        self._stopping = False
        self.last_fetch = 0.0  # monotonic time of the last successful getmany
        self.broker_ok = False
        self.event_time = float("-inf")  # latest end time of the records published
        self._last_input = time.monotonic()
        self._last_tick = 0.0

    # -- lifecycle -------------------------------------------------------------------------
    def _new_producer(self) -> AIOKafkaProducer:
        k = self.cfg.kafka
        return AIOKafkaProducer(
            bootstrap_servers=k.broker,
            client_id=f"{k.client_id}-ingest",
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=1 << 20,
            max_request_size=k.max_message_bytes,
            request_timeout_ms=30_000,
        )

    async def _replace_producer(self) -> None:
        """A failed batch may leave the idempotent producer unusable (after a broker restart
        every retry fails with OutOfOrderSequenceNumber): start over with a new one, swapped
        in only once it has connected."""
        await _stop_client(self._producer, "old producer")
        async for attempt in retrying((KafkaError, OSError), "ingest: a new producer", log, 1.0):
            with attempt:
                new = self._new_producer()
                try:
                    await new.start()
                except (KafkaError, OSError):
                    await new.stop()
                    if self._stopping:
                        raise StopRetrying from None
                    raise
                self._producer = new

    async def on_start(self) -> None:
        k = self.cfg.kafka
        self._producer = self._new_producer()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=k.broker,
            client_id=f"{k.client_id}-ingest",
            group_id=k.ingest_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 << 20,
            fetch_max_bytes=32 << 20,
            session_timeout_ms=int(k.session_timeout_seconds * 1000),
            heartbeat_interval_ms=max(1000, int(k.session_timeout_seconds * 1000) // 5),
            max_poll_interval_ms=300_000,
        )
        await self._producer.start()
        await self._consumer.start()
        self._consumer.subscribe([k.topics.raw], listener=_CommitOnRevoke(self))
        self.broker_ok = True
        self.metrics.broker_up.set(1)
        self._runner = asyncio.ensure_future(self._run())
        self._prober = asyncio.ensure_future(self._probe())

    async def _probe(self, every: float = 3.0) -> None:
        """Ask the broker for metadata every few seconds: aiokafka reconnects quietly, so a
        fetch loop alone would not notice an outage while no records flow."""
        assert self._producer is not None
        while not self._stopping:
            try:
                await asyncio.wait_for(self._producer.client.fetch_all_metadata(), timeout=every)
                self._set_broker(True)
            except (KafkaError, TimeoutError, OSError) as exc:
                self._set_broker(False, exc)
            await asyncio.sleep(every)

    async def on_stop(self) -> None:
        self._stopping = True
        if self._prober is not None:
            self._prober.cancel()
        if self._runner is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._runner), timeout=7.0)
            except TimeoutError:
                log.warning("ingest: batch still in flight at shutdown; it will be read again")
                self._runner.cancel()
        try:
            await asyncio.wait_for(self.commit(), timeout=2.0)
        except (TimeoutError, KafkaError) as exc:
            log.warning(
                "ingest: final commit failed (%r); records since the last commit are read again",
                exc,
            )
        try:
            await _stop_client(self._consumer, "consumer")
        finally:
            await _stop_client(self._producer, "producer")

    # -- the loop --------------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._consumer is not None
        ic = self.cfg.ingest
        timeout_ms = int(ic.poll_timeout_seconds * 1000)
        while not self._stopping:
            try:
                fetched = await self._consumer.getmany(
                    timeout_ms=timeout_ms, max_records=ic.max_batch_records
                )
            except KafkaError as exc:
                self._set_broker(False, exc)
                await asyncio.sleep(1.0)
                continue
            except Exception:  # an unexpected fetch failure must not end ingestion silently
                log.exception("ingest: fetching failed unexpectedly; retrying in 1s")
                await asyncio.sleep(1.0)
                continue
            self.last_fetch = time.monotonic()
            for tp, tp_msgs in fetched.items():
                if tp_msgs:
                    self._positions[tp] = tp_msgs[-1].offset + 1
            if fetched:
                await self._process_with_retry(fetched)
            now = time.monotonic()
            if now - self._last_tick >= ic.tick_interval_seconds:
                try:
                    # an acknowledged tick says the broker answers: without it a commit or tick
                    # that failed once would leave the gauge at 0 for good once records stop
                    if await self.tick():
                        self._set_broker(True)
                except KafkaError as exc:
                    self._set_broker(False, exc)
            if now - self._last_commit >= ic.commit_interval_seconds:
                try:
                    await self.commit()
                except KafkaError as exc:
                    self._set_broker(False, exc)

    async def _process_with_retry(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        failures = 0
        while True:
            try:
                await self.process(fetched)
                self._set_broker(True)
                return
            except KafkaError as exc:
                self._set_broker(False, exc)
                self.metrics.retries.inc()
                if self._stopping:
                    # not committed: the next worker reads these records again
                    self._rewind(fetched)
                    return
                failures += 1
                await asyncio.sleep(delay(failures, 0.5, 10.0))
                try:
                    await self._replace_producer()
                except StopRetrying:
                    self._rewind(fetched)  # stopping with the broker gone
                    return

    def _rewind(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        assert self._consumer is not None
        for tp, msgs in fetched.items():
            if msgs:
                self._consumer.seek(tp, msgs[0].offset)
                self._positions[tp] = msgs[0].offset

    def _set_broker(self, ok: bool, exc: Exception | None = None) -> None:
        if ok != self.broker_ok:
            if ok:
                log.info("ingest: Kafka broker reachable again")
            else:
                log.warning("ingest: Kafka error: %r", exc)
        self.broker_ok = ok
        self.metrics.broker_up.set(1 if ok else 0)

    async def process(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        """Decode, publish and dead-letter one fetched batch; raise KafkaError if not durable."""
        assert self._producer is not None
        msgs = [
            m for tp in sorted(fetched, key=lambda t: (t.topic, t.partition)) for m in fetched[tp]
        ]
        values = [m.value for m in msgs]
        appended = np.fromiter((m.timestamp for m in msgs), dtype=np.float64, count=len(msgs)) / 1e3
        try:
            result = self.decoder.decode(values, appended)
            futures = await self._publish(result)
        except KafkaError:
            raise
        except Exception as exc:  # a bug: keep every record, on the dead-letter topic
            log.exception("ingest: failed on a batch of %d records; dead-lettering it", len(msgs))
            detail = f"inferwatch failed on this batch: {exc!r}"[:300]
            rejects = [
                Reject(i, Reason.INTERNAL_ERROR, detail, "unknown") for i in range(len(msgs))
            ]
            result = DecodeResult(FlowBatch.empty(), np.zeros(0, dtype=np.int64), rejects)
            futures = []
        futures += await self._dead_letter(result, msgs)
        if futures:
            await asyncio.gather(*futures)
        # durable: count and mark offsets
        self._count(result)
        if len(result.batch):
            self.event_time = max(self.event_time, float(result.batch.ts_end.max()))
            self._last_input = time.monotonic()
        self.metrics.latency.observe_many(time.time() - appended)
        self.metrics.batches.inc()
        for tp, tp_msgs in fetched.items():
            if tp_msgs:
                self._pending[tp] = tp_msgs[-1].offset + 1

    async def _publish(self, result: DecodeResult) -> list[asyncio.Future[Any]]:
        assert self._producer is not None
        batch = result.batch
        if len(batch) == 0:
            return []
        self.links.attribute(batch)
        parts = self.partitioner.partitions_of(batch.link)
        order = np.argsort(parts, kind="stable")
        bounds = np.flatnonzero(np.diff(parts[order])) + 1
        chunk = self.cfg.ingest.micro_batch_records
        topic = self.cfg.kafka.topics.flows
        futures = []
        for group in np.split(order, bounds):
            part = int(parts[group[0]])
            for start in range(0, len(group), chunk):
                sub = batch.take(group[start : start + chunk])
                futures.append(await self._send(topic, encode_batch(sub), partition=part))
                self.metrics.published.inc()
        return futures

    async def _dead_letter(
        self, result: DecodeResult, msgs: list[Any]
    ) -> list[asyncio.Future[Any]]:
        futures = []
        topic = self.cfg.kafka.topics.dlq
        now = str(int(time.time() * 1000)).encode()
        for r in result.rejects:
            m = msgs[r.index]
            headers = [
                ("reason", r.reason.value.encode()),
                ("detail", r.detail[:300].encode("utf-8", "replace")),
                ("format", r.fmt.encode()),
                ("source_topic", m.topic.encode()),
                ("source_partition", str(m.partition).encode()),
                ("source_offset", str(m.offset).encode()),
                ("dead_lettered_at_ms", now),
            ]
            futures.append(await self._send(topic, m.value or b"", key=m.key, headers=headers))
        return futures

    async def _send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        """Append one message to the producer's accumulator; return its delivery future."""
        assert self._producer is not None
        delivery: asyncio.Future[Any] = await self._producer.send(
            topic, value, key=key, partition=partition, headers=headers
        )
        return delivery

    def _count(self, result: DecodeResult) -> None:
        records = self.metrics.records
        for fmt, n in result.ok_by_format().items():
            records.labels("ok", fmt, "").inc(n)
        invalid: dict[tuple[str, str], int] = defaultdict(int)
        for r in result.rejects:
            invalid[(r.fmt, r.reason.value)] += 1
        for (fmt, reason), n in invalid.items():
            records.labels("invalid", fmt, reason).inc(n)

    def watermark(self) -> float:
        """Event time for the ticks: the latest end time published, or, once the input has
        been idle for ``ingest.idle_seconds``, the wall clock minus that allowance."""
        idle = time.monotonic() - self._last_input
        if idle >= self.cfg.ingest.idle_seconds:
            return max(self.event_time, time.time() - self.cfg.ingest.idle_seconds)
        return self.event_time

    async def tick(self) -> bool:
        """Send the watermark to every flows.v1 partition, so idle partitions close windows;
        False when there is none yet (nothing was sent)."""
        self._last_tick = time.monotonic()
        wm = self.watermark()
        if wm == float("-inf"):
            return False
        value = encode_tick(wm)
        topic = self.cfg.kafka.topics.flows
        futures = [
            await self._send(topic, value, key=TICK_KEY, partition=p)
            for p in range(self.cfg.kafka.flows_partitions)
        ]
        await asyncio.gather(*futures)
        return True

    async def commit(self) -> None:
        """Commit the offsets of every batch whose effects are durable."""
        if not self._pending or self._consumer is None:
            self._last_commit = time.monotonic()
            return
        pending, self._pending = self._pending, {}
        assigned = self._consumer.assignment()
        offsets = {tp: off for tp, off in pending.items() if tp in assigned}
        try:
            if offsets:
                await self._consumer.commit(offsets)
        except KafkaError:
            for tp, off in pending.items():  # keep them for the next attempt
                self._pending.setdefault(tp, off)
            raise
        self._last_commit = time.monotonic()

    # -- what /metrics and /healthz read --------------------------------------------------
    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind the end of each assigned partition (known once it has been fetched)."""
        if self._consumer is None:
            return {}
        out: dict[tuple[str, int], int] = {}
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            position = self._positions.get(tp)
            if high is None or position is None:
                continue
            out[(tp.topic, tp.partition)] = max(0, high - position)
        return out

    def healthy(self) -> tuple[bool, str]:
        if self._consumer is None:
            return False, "ingest not started"
        if self._runner is not None and self._runner.done():
            return False, "ingest loop stopped (see the log)"
        if not self.broker_ok:
            return False, "Kafka broker unreachable"
        age = time.monotonic() - self.last_fetch
        limit = max(30.0, 10 * self.cfg.ingest.poll_timeout_seconds)
        if self.last_fetch and age > limit:
            return False, f"no fetch from Kafka for {age:.0f}s"
        return True, "ok"
