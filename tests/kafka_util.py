"""Small aiokafka helpers for tests: produce a list, read a whole topic, committed offsets."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.kafka import committed

__all__ = ["committed", "create_topic", "produce", "read_all"]


async def create_topic(broker: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def produce(
    broker: str, topic: str, values: list[bytes], keys: list[bytes | None] | None = None
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=broker, acks="all", linger_ms=5, max_request_size=8 << 20
    )
    await producer.start()
    try:
        futures = []
        for i, v in enumerate(values):
            futures.append(await producer.send(topic, v, key=keys[i] if keys else None))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_all(broker: str, topic: str, expect: int, wait: float = 30.0) -> list[Any]:
    """Read a topic from the beginning until ``expect`` messages (or the timeout), no group."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker, enable_auto_commit=False, max_partition_fetch_bytes=8 << 20
    )
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        deadline = time.monotonic() + wait
        while not parts and time.monotonic() < deadline:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        while len(out) < expect and time.monotonic() < deadline:
            got = await consumer.getmany(timeout_ms=500)
            for msgs in got.values():
                out.extend(msgs)
        # anything beyond ``expect`` would be a bug too: drain briefly
        extra = await consumer.getmany(timeout_ms=1000)
        for msgs in extra.values():
            out.extend(msgs)
        return out
    finally:
        await consumer.stop()
