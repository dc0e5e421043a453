"""Two workers in one consumer group share the links; together they count what one would."""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict

import orjson
import pytest

from tests.integration.test_link_series import expected_bytes
from tests.kafka_util import create_topic, produce, read_all
from tests.records import valid_records

pytestmark = pytest.mark.integration


def test_two_workers_share_partitions_and_add_up(broker, names, start_worker):
    asyncio.run(create_topic(broker, names.raw, 4))
    a = start_worker()
    b = start_worker()
    time.sleep(5)  # both groups (ingest and Faust) rebalanced before the records come
    values = [v for _, v in valid_records(20_000, seed=23)]
    asyncio.run(produce(broker, names.raw, values))

    def both(name: str, **labels: str) -> float:
        return a.total(name, **labels) + b.total(name, **labels)

    deadline = time.monotonic() + 90
    while both("inferwatch_analysed_records_total") < len(values) and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)
    assert both("inferwatch_flow_records_total") == len(values)
    assert both("inferwatch_analysed_records_total") == len(values)
    # the work was shared
    assert (
        a.total("inferwatch_flow_records_total") > 0
        and b.total("inferwatch_flow_records_total") > 0
    )
    assert (
        a.total("inferwatch_analysed_records_total") > 0
        and b.total("inferwatch_analysed_records_total") > 0
    )
    # each link is owned by one worker, and the sums equal the produced records
    for link, total in expected_bytes(values).items():
        in_a, in_b = (
            a.total("inferwatch_link_bytes_total", link=link),
            b.total("inferwatch_link_bytes_total", link=link),
        )
        assert in_a == 0 or in_b == 0, link
        assert in_a + in_b == pytest.approx(total, rel=1e-9), link
    a.terminate()
    b.terminate()


def live_records(n: int, links: int, rng: random.Random) -> list[dict]:
    """pmacct records ending now (live traffic), spread over ``links`` links."""
    end = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(end))
    begin = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(end - 1))
    return [
        {"ip_src": f"10.0.{i % 250}.1", "ip_dst": "10.9.0.2", "packets": 1,
         "bytes": 1 + rng.randint(0, 5000), "peer_ip_src": "192.0.2.77",
         "iface_in": 1 + rng.randrange(links), "timestamp_start": begin, "timestamp_end": stamp}
        for i in range(n)
    ]  # fmt: skip


def test_workers_joining_and_leaving_mid_stream_count_every_window_once(
    broker, names, start_worker
):
    """Live traffic for about 30 s: one worker, then three (two join), then two (one leaves).
    Nothing is lost; a record is read twice only if it was in flight (fetched, not yet
    committed) on a partition that moved: at most one batch per rebalance (500 records here).
    Every window of every link is published once, with at least its records' bytes and at
    most those of the re-read ones more. The grace period is 30 s: while partitions move, some
    records reach their link's partition seconds after others of the same window."""
    rng = random.Random(31)
    series = f"{names.raw}.series"
    env = {"INFERWATCH_ANALYSIS__SERIES_TOPIC": series, "INFERWATCH_ANALYSIS__GRACE_SECONDS": "30",
           "INFERWATCH_INGEST__MAX_BATCH_RECORDS": "500"}  # fmt: skip
    asyncio.run(create_topic(broker, names.raw, 6))
    recs: list[dict] = []

    def play(seconds: float) -> None:
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            chunk = live_records(500, 6, rng)
            recs.extend(chunk)
            asyncio.run(produce(broker, names.raw, [orjson.dumps(r) for r in chunk]))
            time.sleep(0.5)

    a = start_worker(env)
    play(8)
    b, c = start_worker(env), start_worker(env)  # join while records arrive
    play(10)
    c_ingested = c.total("inferwatch_flow_records_total")
    assert c.terminate() < 15  # leaves mid-stream: commits what it did
    c_ingested = max(c_ingested, 0.0)
    play(8)
    far = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() + 120))
    closer = dict(recs[-1], bytes=0, timestamp_start=far, timestamp_end=far)
    asyncio.run(produce(broker, names.raw, [orjson.dumps(closer)]))
    n = len(recs) + 1
    deadline = time.monotonic() + 120
    while a.total("inferwatch_flow_records_total") + b.total("inferwatch_flow_records_total") \
            + c_ingested < n:  # fmt: skip
        assert time.monotonic() < deadline, "the remaining workers did not ingest the rest"
        time.sleep(0.5)
    time.sleep(5)
    ingested = a.total("inferwatch_flow_records_total") + b.total("inferwatch_flow_records_total")
    reread = ingested + c_ingested - n
    assert 0 <= reread <= 2 * 500, reread  # two rebalances, one in-flight batch each at most
    assert a.total("inferwatch_late_records_total") + b.total("inferwatch_late_records_total") == 0

    want: dict[tuple[str, float], int] = defaultdict(int)
    for r in recs:
        end = time.mktime(time.strptime(r["timestamp_end"], "%Y-%m-%d %H:%M:%S")) - time.timezone
        want[(f"192.0.2.77#{r['iface_in']}", (end // 10) * 10)] += r["bytes"]
    got: dict[tuple[str, float], float] = {}
    for m in asyncio.run(read_all(broker, series, 10**6, wait=8)):
        w = orjson.loads(m.value)
        key = (w["link"], w["window_start"])
        assert key not in got, f"window {key} published twice"
        got[key] = sum(cls["bytes_in"] for cls in w["classes"].values())
    short = {k: (v, got.get(k)) for k, v in want.items() if (got.get(k) or 0) < v}
    assert not short, list(short.items())[:5]  # nothing lost from any window
    excess = sum(got.get(k, 0) for k in want) - sum(want.values())
    assert excess <= reread * 5001  # the re-read records' bytes at most (5,001 B the largest)
    assert set(got) - set(want) <= {k for k in got if got[k] == 0}  # the rest: empty windows
    a.terminate()
    b.terminate()
