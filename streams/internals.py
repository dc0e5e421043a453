"""Every reach into a library's private parts, in one place.

inferwatch needs four things its libraries do not offer publicly: the events waiting in a
Faust agent's buffer (to analyse a partition's queued micro-batches together), a shorter fetch
wait for Faust's aiokafka consumer (Faust fixes it at 1.5 s), a forced metadata refresh of an
aiokafka consumer (a new topic's partitions), and three Faust hooks it overrides (``HOOKS``).
The versions are locked (requirements.lock); ``tests/unit/test_internals.py`` fails as soon
as a locked upgrade moves any of them, before a worker would.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# (module, class, attribute): private methods inferwatch's subclasses override
HOOKS = (
    ("faust.transport.drivers.aiokafka", "AIOKafkaConsumerThread", "_create_worker_consumer"),
    ("faust.transport.drivers.aiokafka", "Consumer", "_new_consumer_thread"),
    ("faust.tables.table", "Table", "_verify_source_topic_partitions"),
)


def queued_events(queue: Any) -> Iterable[Any]:
    """The items an asyncio.Queue holds, without taking them (its internal deque)."""
    items: Iterable[Any] = queue._queue
    return items


def set_fetch_wait(consumer: Any, ms: int) -> None:
    """An aiokafka consumer's fetch wait (``fetch_max_wait_ms``), set after construction: read
    when the consumer starts its fetcher."""
    consumer._fetch_max_wait_ms = ms


async def refresh_metadata(consumer: Any) -> None:
    """Ask an aiokafka consumer's client for fresh cluster metadata now."""
    await consumer._client.force_metadata_update()
