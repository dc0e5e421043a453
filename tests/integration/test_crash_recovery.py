"""kill -9 a worker mid-stream and start another: every record is accounted for, and the
duplicates are bounded by what was processed since the last offset commit."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter

import pytest

from streams.codecs.decode import BatchDecoder
from streams.codecs.wire import TICK_KEY, decode_batch
from tests.kafka_util import committed, create_topic, produce, read_all
from tests.records import malformed_records, valid_records

pytestmark = pytest.mark.integration


def test_kill_9_mid_stream(broker, names, start_worker):
    good = [v for _, v in valid_records(150_000, seed=41)]
    bad = [v for v, _ in malformed_records()] * 40
    values = good + bad
    asyncio.run(create_topic(broker, names.raw, 4))
    asyncio.run(produce(broker, names.raw, values))
    env = {"INFERWATCH_INGEST__MAX_BATCH_RECORDS": "300"}
    group = names.env()["INFERWATCH_KAFKA__INGEST_GROUP"]
    first = start_worker(env)
    # kill it mid-stream, once it has committed something and moved on since
    while asyncio.run(committed(broker, group, names.raw)) < 10_000:
        time.sleep(0.1)
    at_kill = first.total("inferwatch_flow_records_total")
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    resumed_from = asyncio.run(committed(broker, group, names.raw))
    assert 0 < resumed_from < len(values)

    second = start_worker(env)
    deadline = time.monotonic() + 120
    while asyncio.run(committed(broker, group, names.raw)) < len(values):
        assert time.monotonic() < deadline, "the second worker did not finish"
        time.sleep(1)
    # the second worker counted exactly what came after the committed offsets
    second.wait_total("inferwatch_flow_records_total", len(values) - resumed_from)
    assert second.total("inferwatch_flow_records_total") == len(values) - resumed_from

    # every good record reached flows.v1 and every bad one the DLQ, at least once
    def keys(batch) -> list[tuple]:
        cols = (batch.src_ip, batch.src_port, batch.bytes_fwd, batch.ts_start, batch.ts_end)
        return list(zip(*(c.tolist() for c in cols), strict=True))

    want = keys(BatchDecoder().decode(good, [time.time()] * len(good)).batch)
    published: list[tuple] = []
    for m in asyncio.run(read_all(broker, names.flows, 10**9, wait=15)):
        if m.key != TICK_KEY:
            published += keys(decode_batch(m.value))
    assert not (set(want) - set(published)), "records lost"
    dlq = asyncio.run(read_all(broker, names.dlq, len(bad), wait=15))
    assert not (Counter(bad) - Counter(m.value for m in dlq)), "refused records lost"
    # duplicates: only what the first worker processed after its last commit (plus the batch
    # in flight and those it finished between the last scrape and the kill)
    duplicates = (len(published) - len(good)) + (len(dlq) - len(bad))
    assert 0 <= duplicates <= at_kill - resumed_from + 10_000
    second.terminate()
