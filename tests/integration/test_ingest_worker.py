"""The worker against the real broker: every record accounted for, bad ones dead-lettered."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import pytest

from tests.kafka_util import committed, create_topic, produce, read_all
from tests.records import malformed_records, sample_lines, valid_records

pytestmark = pytest.mark.integration


def test_10000_mixed_records_9900_ok_100_dead_lettered(broker, names, start_worker):
    now = time.time()
    good = valid_records(9_900, seed=11, now=now)
    kinds = malformed_records(now)
    bad = [kinds[i % len(kinds)] for i in range(100)]
    messages = [(v, None) for _, v in good] + list(bad)
    random.Random(3).shuffle(messages)
    expected_reasons = Counter(reason for v, reason in messages if reason is not None)
    expected_formats = Counter(fmt for fmt, _ in good)

    # produced before the worker joins: a new group must start from the earliest record
    asyncio.run(create_topic(broker, names.raw, 4))
    asyncio.run(produce(broker, names.raw, [v for v, _ in messages]))
    worker = start_worker()

    worker.wait_total("inferwatch_flow_records_total", 10_000)
    time.sleep(2)  # anything more would be double counting
    assert worker.total("inferwatch_flow_records_total", outcome="ok") == 9_900
    assert worker.total("inferwatch_flow_records_total", outcome="invalid") == 100
    for fmt, n in expected_formats.items():
        assert worker.total("inferwatch_flow_records_total", outcome="ok", format=fmt) == n
    for reason, n in expected_reasons.items():
        assert (
            worker.total("inferwatch_flow_records_total", outcome="invalid", reason=reason) == n
        ), reason

    # the analysis stage (Faust, flows.v1) saw every normalised record
    worker.wait_total("inferwatch_analysed_records_total", 9_900)

    dlq = asyncio.run(read_all(broker, names.dlq, 100))
    assert len(dlq) == 100
    produced_bad = {v for v, r in bad}
    got_reasons = Counter()
    for m in dlq:
        h = dict(m.headers)
        got_reasons[h["reason"].decode()] += 1
        assert m.value in produced_bad  # original bytes, untouched
        assert h["source_topic"].decode() == names.raw
        assert int(h["source_partition"]) in range(4)
        assert int(h["source_offset"]) >= 0
        assert h["detail"]
    assert got_reasons == expected_reasons

    # the source records behind the DLQ headers are the refused ones
    raw = asyncio.run(read_all(broker, names.raw, 10_000))
    by_pos = {(m.partition, m.offset): m.value for m in raw}
    for m in dlq:
        h = dict(m.headers)
        assert by_pos[(int(h["source_partition"]), int(h["source_offset"]))] == m.value

    # SIGTERM: commits and exits within 10 s; the group's offsets reach the end of flows.raw
    assert worker.terminate() < 10
    assert worker.proc.returncode == 0, worker.log()[-2000:]
    group = names.env()["INFERWATCH_KAFKA__INGEST_GROUP"]
    assert asyncio.run(committed(broker, group, names.raw)) == 10_000


def test_real_exporter_samples_and_restart_resumes_from_commit(broker, names, start_worker):
    pm, gf = sample_lines("pmacct.jsonl"), sample_lines("goflow2.jsonl")
    asyncio.run(create_topic(broker, names.raw, 2))
    # The samples were recorded on another day: their timestamps are old but within max_age.
    asyncio.run(produce(broker, names.raw, pm + gf))
    worker = start_worker()
    worker.wait_total("inferwatch_flow_records_total", len(pm) + len(gf))
    assert worker.total("inferwatch_flow_records_total", outcome="ok", format="pmacct") == len(pm)
    assert worker.total("inferwatch_flow_records_total", outcome="ok", format="goflow2") == len(gf)
    status, body = worker.get("/healthz")
    assert status == 200 and b'"ok"' in body
    assert worker.total("inferwatch_processing_latency_seconds_count") == len(pm) + len(gf)
    assert worker.terminate() < 10

    # a restarted worker continues after the committed offsets: only new records are counted
    more = [v for _, v in valid_records(50, seed=5)]
    asyncio.run(produce(broker, names.raw, more))
    again = start_worker()
    again.wait_total("inferwatch_flow_records_total", 50)
    time.sleep(2)
    assert again.total("inferwatch_flow_records_total") == 50
    again.terminate()


def test_goflow2_protobuf_through_a_worker(broker, names, start_worker):
    """`inferwatch replay --framing varint` of goflow2's binary capture, a worker configured
    for goflow2-protobuf: every record counted, garbage refused as not_protobuf."""
    import subprocess

    from tests.conftest import INFERWATCH
    from tests.records import SAMPLES

    asyncio.run(create_topic(broker, names.raw, 2))
    res = subprocess.run(
        [str(INFERWATCH), "replay", str(SAMPLES / "goflow2.pb"), "--framing", "varint",
         "--broker", broker, "--topic", names.raw, "--no-progress"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    n = int(res.stdout.split("replayed ")[1].split()[0])
    asyncio.run(produce(broker, names.raw, [b"\x00\xff garbage", b'{"src_addr": "json"}']))
    worker = start_worker({"INFERWATCH_INGEST__FORMAT": "goflow2-protobuf"})
    worker.wait_total("inferwatch_flow_records_total", n + 2)
    assert worker.total("inferwatch_flow_records_total", outcome="ok", format="goflow2") == n > 10
    assert worker.total("inferwatch_flow_records_total", reason="not_protobuf") == 2
    worker.wait_total("inferwatch_analysed_records_total", n)
    worker.terminate()
