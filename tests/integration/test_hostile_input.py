"""100,000 random and mutated messages mixed with valid ones: no crash, every bad one on the
dead-letter topic, every valid one processed."""

from __future__ import annotations

import asyncio
import random
import time

import orjson
import pytest

from streams.codecs.decode import BatchDecoder
from tests.kafka_util import create_topic, produce, read_all
from tests.records import malformed_records, valid_records

pytestmark = pytest.mark.integration


def hostile(rng: random.Random, valid: list[bytes]) -> bytes:
    kind = rng.randrange(8)
    base = rng.choice(valid)
    if kind == 0:
        return rng.randbytes(rng.randint(0, 400))
    if kind == 1:  # flip bytes of a valid record
        b = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if kind == 2:  # truncated
        return base[: rng.randrange(len(base))]
    if kind == 3:  # wrong types and huge numbers
        obj = orjson.loads(base)
        key = rng.choice(list(obj))
        obj[key] = rng.choice([None, "x", [], {}, -1, 2**62, 1e308, True])
        return orjson.dumps(obj)
    if kind == 4:  # deeply nested
        return b'{"ip_src":' + b"[" * rng.randint(100, 20_000) + b"}"
    if kind == 5:  # other encodings
        return base.decode().encode(rng.choice(["utf-16", "utf-32"]))
    if kind == 6:  # oversized
        return base[:-1] + b',"pad":"' + b"x" * 70_000 + b'"}'
    return rng.choice(malformed_records())[0]


def test_100000_hostile_messages(broker, names, start_worker):
    rng = random.Random(99)
    valid = [v for _, v in valid_records(2_000, seed=7)]
    messages = []
    for i in range(100_000):
        messages.append(valid[i % len(valid)] if i % 5 == 0 else hostile(rng, valid))
    # the same decoder tells how many are valid (a mutation can leave a record valid). Times
    # are checked against the append time (at most 366 days old, 1 day ahead), which the worker
    # sees a little later than this: a mutated time at such a limit may go either way (seen
    # once in 100,000), so the count is a range, from now to ten minutes from now
    now = time.time()
    counts = [len(BatchDecoder().decode(messages, [t] * len(messages)).batch)
              for t in (now, now + 600)]  # fmt: skip
    low, high = min(counts), max(counts)
    assert low >= 20_000 and len(messages) - high >= 70_000

    asyncio.run(create_topic(broker, names.raw, 4))
    asyncio.run(produce(broker, names.raw, messages))
    worker = start_worker()
    worker.wait_total("inferwatch_flow_records_total", len(messages), timeout=180)
    n_ok = worker.total("inferwatch_flow_records_total", outcome="ok")
    n_bad = worker.total("inferwatch_flow_records_total", outcome="invalid")
    assert low <= n_ok <= high and n_ok + n_bad == len(messages), (low, n_ok, high)
    worker.wait_total("inferwatch_analysed_records_total", n_ok, timeout=120)
    assert worker.total("inferwatch_analysis_errors_total") == 0
    assert worker.total("inferwatch_flow_records_total", reason="internal_error") == 0
    dlq = asyncio.run(read_all(broker, names.dlq, int(n_bad), wait=60))
    assert len(dlq) == n_bad
    assert worker.proc.poll() is None
    assert worker.terminate() < 10
