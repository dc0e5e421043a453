"""The private parts of libraries that streams/internals.py reaches into are still there, in
the locked versions: a locked upgrade that moves one fails here, not in a worker."""

from __future__ import annotations

import asyncio
import importlib
import inspect

import pytest
from aiokafka import AIOKafkaConsumer

from streams.internals import HOOKS, queued_events, refresh_metadata, set_fetch_wait


async def test_queued_events_are_the_queue_items_and_stay_queued():
    q: asyncio.Queue[int] = asyncio.Queue()
    for i in (1, 2, 3):
        q.put_nowait(i)
    assert list(queued_events(q)) == [1, 2, 3] and q.qsize() == 3


async def test_the_fetch_wait_is_the_one_aiokafka_reads_and_metadata_can_be_refreshed():
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", fetch_max_wait_ms=1500)
    try:
        assert consumer._fetch_max_wait_ms == 1500  # the attribute its fetcher is built from
        set_fetch_wait(consumer, 100)
        assert consumer._fetch_max_wait_ms == 100
        assert callable(consumer._client.force_metadata_update)  # returns an awaitable
        assert inspect.iscoroutinefunction(refresh_metadata)
    finally:
        await consumer.stop()


@pytest.mark.parametrize(("module", "cls", "attr"), HOOKS)
def test_each_overridden_faust_hook_exists(module, cls, attr):
    assert callable(getattr(getattr(importlib.import_module(module), cls), attr))
