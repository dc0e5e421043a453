"""Kafka for every service: the topics (created before anything subscribes to them), reading
compacted state back, and producers of flow records.

Create the topics the worker uses, before anything subscribes to them.

A consumer that subscribes to a missing topic waits for a metadata refresh (minutes) before it
sees partitions appear, so the worker makes sure its topics exist first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from streams.config import Config
from streams.errors import ServiceError
from streams.internals import refresh_metadata

log = logging.getLogger(__name__)

# The largest message of the compacted state topics (the classifier's checkpoint: about 14 MB
# once bootstrapped, bounded by classify.max_tree_leaves; the link states).
STATE_MESSAGE_BYTES = 64 << 20


def replication(cfg: Config, brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) of the topics to create on ``brokers``:
    as configured, else safe on a cluster of three or more (3 and 2) and still right on one.

    >>> cfg = Config()
    >>> replication(cfg, 1), replication(cfg, 3), replication(cfg, 5)
    ((1, 1), (3, 2), (3, 2))
    """
    rf = cfg.kafka.replication_factor or min(3, brokers)
    if rf > brokers:
        raise ServiceError(
            f"kafka.replication_factor is {rf} but the cluster has {brokers} brokers"
        )
    isr = cfg.kafka.min_insync_replicas or min(2, rf)
    if isr > rf:
        raise ServiceError(f"kafka.min_insync_replicas {isr} is above the replication factor {rf}")
    return rf, isr


def wanted_topics(cfg: Config, brokers: int = 1) -> list[NewTopic]:
    """Every topic the worker uses, replicated for a cluster of ``brokers``."""
    k = cfg.kafka
    rf, isr = replication(cfg, brokers)
    base = {"min.insync.replicas": str(isr)}
    big = {**base, "max.message.bytes": str(k.max_message_bytes)}
    state = {**base, "cleanup.policy": "compact", "max.message.bytes": str(STATE_MESSAGE_BYTES)}
    return [
        NewTopic(k.topics.raw, k.raw_partitions, rf, topic_configs=base),
        NewTopic(k.topics.flows, k.flows_partitions, rf, topic_configs=big),
        NewTopic(k.topics.dlq, k.raw_partitions, rf, topic_configs=big),
        NewTopic(k.topics.alerts, 1, rf, topic_configs=base),
        NewTopic(cfg.analysis.toptalkers_topic, 1, rf, topic_configs=base),
        NewTopic(cfg.analysis.series_topic, 1, rf, topic_configs=base),
        NewTopic(cfg.classify.feedback_topic, 1, rf, topic_configs=base),
        NewTopic(cfg.classify.checkpoint_topic, 1, rf, topic_configs=state),
        NewTopic(cfg.linkstate.topic, k.flows_partitions, rf, topic_configs=state),
    ]


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The partitions of ``topic`` (a started consumer's first metadata may not list it yet:
    refreshed for up to 5 s)."""
    parts = consumer.partitions_for_topic(topic)
    for _ in range(50):
        if parts:
            break
        await asyncio.sleep(0.1)
        await refresh_metadata(consumer)
        parts = consumer.partitions_for_topic(topic)
    return [TopicPartition(topic, p) for p in sorted(parts or ())]


async def read_to_end(
    consumer: AIOKafkaConsumer, topic: str, partitions: Sequence[int] | None = None
) -> AsyncIterator[list[Any]]:
    """Every message of ``topic`` (or of some of its partitions) from the beginning to the end
    offsets of now, in batches (no consumer group: the started ``consumer`` is assigned them)."""
    tps = await topic_partitions(consumer, topic)
    if partitions is not None:
        tps = [tp for tp in tps if tp.partition in partitions]
    if not tps:
        return
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    end = await consumer.end_offsets(tps)
    while any([await consumer.position(tp) < end[tp] for tp in tps]):
        for msgs in (await consumer.getmany(timeout_ms=500)).values():
            yield msgs


async def read_compacted(
    cfg: Config, topic: str, wait: float = 30.0, partitions: Sequence[int] | None = None
) -> dict[bytes, bytes]:
    """The last value of every key in ``topic`` or some of its partitions (read to the end; for
    compacted state topics). A key whose last value is empty (a tombstone) is left out."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=cfg.kafka.broker, client_id=f"{cfg.kafka.client_id}-restore",
        enable_auto_commit=False, max_partition_fetch_bytes=STATE_MESSAGE_BYTES,
        fetch_max_bytes=STATE_MESSAGE_BYTES,
    )  # fmt: skip
    try:
        await asyncio.wait_for(consumer.start(), wait)
        latest: dict[bytes, bytes] = {}
        async for msgs in read_to_end(consumer, topic, partitions):
            for m in msgs:
                if m.key is None:
                    continue
                if m.value:
                    latest[m.key] = m.value
                else:
                    latest.pop(m.key, None)
        return latest
    except (KafkaError, OSError, TimeoutError) as exc:
        raise ServiceError(f"cannot read {topic} on {cfg.kafka.broker}: {exc!r}") from exc
    finally:
        await consumer.stop()


async def read_latest(cfg: Config, topic: str, key: bytes, wait: float = 30.0) -> bytes | None:
    """The last value under ``key`` in ``topic``."""
    return (await read_compacted(cfg, topic, wait)).get(key)


async def committed(broker: str, group: str, topic: str) -> int:
    """Sum over partitions of the offsets ``group`` has committed on ``topic``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic)


async def ensure_topics(cfg: Config, wait: float = 30.0) -> tuple[list[str], int]:
    """Create the missing topics; return the names created and the replication factor for
    this cluster (``replication``), which the Faust app's own topics take too. Raises
    ServiceError on failure."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=cfg.kafka.broker,
        client_id=f"{cfg.kafka.client_id}-admin",
        request_timeout_ms=int(wait * 1000),
    )
    try:
        await asyncio.wait_for(admin.start(), wait)
    except (KafkaError, OSError, TimeoutError) as exc:
        await admin.close()
        raise ServiceError(f"cannot reach the Kafka broker at {cfg.kafka.broker}: {exc!r}") from exc
    try:
        existing = set(await admin.list_topics())
        brokers = len((await admin.describe_cluster())["brokers"])
        missing = [t for t in wanted_topics(cfg, brokers) if t.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker was quicker
                await admin.create_topics(missing)
            log.info("created topics: %s (replicas %d, min in sync %s)",
                     ", ".join(t.name for t in missing), missing[0].replication_factor,
                     missing[0].topic_configs["min.insync.replicas"])  # fmt: skip
        return [t.name for t in missing], replication(cfg, brokers)[0]
    except KafkaError as exc:
        raise ServiceError(f"cannot create topics on {cfg.kafka.broker}: {exc!r}") from exc
    finally:
        await admin.close()


async def start_producer(cfg: Config, role: str, **settings: Any) -> AIOKafkaProducer:
    """A started producer of flow records (acks=all) for ``role``; ServiceError when the
    broker cannot be reached in 30 s. ``settings`` add to or override the defaults."""
    producer = AIOKafkaProducer(
        **{
            "bootstrap_servers": cfg.kafka.broker,
            "client_id": f"{cfg.kafka.client_id}-{role}",
            "acks": "all",
            "max_batch_size": 1 << 20,
            "max_request_size": cfg.kafka.max_message_bytes,
            **settings,
        }
    )
    try:
        await asyncio.wait_for(producer.start(), 30)
    except (KafkaError, OSError, TimeoutError) as exc:
        await producer.stop()
        raise ServiceError(f"cannot reach the Kafka broker at {cfg.kafka.broker}: {exc!r}") from exc
    return producer
