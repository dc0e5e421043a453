"""Per-link counters, windows, top talkers and the link cap, against the real broker."""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict

import orjson
import pytest

from tests.kafka_util import create_topic, produce, read_all
from tests.records import valid_records

pytestmark = pytest.mark.integration


def expected_bytes(values: list[bytes]) -> dict[str, float]:
    """Bytes per link computed straight from the JSON (independent of the worker's code)."""
    out: dict[str, float] = defaultdict(float)
    for v in values:
        r = orjson.loads(v)
        if "schema" in r:
            link = (
                "lab-uplink"
                if (r["exporter"], r.get("iface_in")) == ("probe-1", 1)
                else f"{r['exporter']}#{r['iface_in']}"
            )
            out[link] += (r["bytes_fwd"] + r["bytes_rev"]) * r.get("sampling_rate", 1)
        elif "src_addr" in r:
            out[f"{r['sampler_address']}#{r['in_if']}"] += r["bytes"] * max(r["sampling_rate"], 1)
        else:
            out[f"{r['peer_ip_src']}#{r['iface_in']}"] += r["bytes"] * max(r["sampling_rate"], 1)
    return out


def test_link_bytes_windows_and_top_talkers(broker, names, start_worker):
    now = time.time()
    values = [v for _, v in valid_records(12_000, seed=31, now=now)]
    asyncio.run(create_topic(broker, names.raw, 4))
    asyncio.run(produce(broker, names.raw, values))
    worker = start_worker({"INFERWATCH_ANALYSIS__TOPTALKERS_TOPIC": f"{names.raw}.top"})
    worker.wait_total("inferwatch_analysed_records_total", len(values))

    want = expected_bytes(values)
    for link, total in want.items():
        got = worker.total("inferwatch_link_bytes_total", link=link)
        assert got == pytest.approx(total, rel=1e-9), link
    assert worker.total("inferwatch_link_bytes_total") == pytest.approx(
        sum(want.values()), rel=1e-9
    )

    # windows: records end within the last ~60 s, so the older windows have closed
    worker.wait_total("inferwatch_link_window_end_timestamp_seconds", 1, link="lab-uplink")
    rate = worker.total("inferwatch_link_bytes_per_second", link="lab-uplink")
    assert rate > 0
    assert worker.total("inferwatch_link_capacity_bytes_per_second", link="lab-uplink") == 100e6 / 8
    assert worker.total("inferwatch_link_active_flows", link="lab-uplink") > 0

    status, body = worker.get("/toptalkers")
    assert status == 200
    top = orjson.loads(body)
    assert "lab-uplink" in top
    snap = top["lab-uplink"][-1]
    assert snap["flows"] and snap["hosts"]
    assert snap["flows"][0]["bytes"] <= snap["total_bytes"]
    published = asyncio.run(read_all(broker, f"{names.raw}.top", 1, wait=10))
    assert published and orjson.loads(published[0].value)["link"]
    worker.terminate()


def test_link_cap_bounds_series_under_many_exporters(broker, names, start_worker):
    rng = random.Random(8)
    now = time.time()
    values = []
    for i in range(3000):  # 3,000 distinct exporter interfaces
        values.append(
            orjson.dumps(
                {
                    "ip_src": "10.0.0.1", "ip_dst": "10.0.0.2", "packets": 1, "bytes": 100 + i,
                    "peer_ip_src": f"10.{i // 250}.{i % 250}.1", "iface_in": rng.randint(1, 4),
                    "timestamp_start": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now - 5)),
                    "timestamp_end": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now - 4)),
                }
            )
        )  # fmt: skip
    asyncio.run(create_topic(broker, names.raw, 4))
    asyncio.run(produce(broker, names.raw, values))
    worker = start_worker({"INFERWATCH_ANALYSIS__MAX_LINKS": "50"})
    worker.wait_total("inferwatch_analysed_records_total", len(values))
    samples = worker.samples()
    links = {dict(lab)["link"] for (n, lab) in samples if n == "inferwatch_link_bytes_total"}
    assert "other" in links
    assert len(links) <= 51
    assert worker.total("inferwatch_links") <= 50
    assert worker.total("inferwatch_link_cap_hits_total") >= len(values) - 50
    # nothing lost: the bytes of every record are on /metrics, under its link or "other"
    assert worker.total("inferwatch_link_bytes_total") == sum(100 + i for i in range(3000))
    worker.terminate()


def test_windows_survive_a_worker_restart_exactly(broker, names, start_worker):
    """Half the records, SIGTERM, a new worker, the other half: every window once, exact."""
    rng = random.Random(4)
    t0 = (time.time() // 10) * 10 - 120
    recs = []
    for i in range(4000):
        end = t0 + 100 * i / 4000 + rng.uniform(0, 0.5)  # end times rise through ten windows
        recs.append({
            "ip_src": "10.0.0.1", "ip_dst": "10.0.0.2", "packets": 1,
            "bytes": 1 + rng.randint(0, 5000),
            "peer_ip_src": "192.0.2.9", "iface_in": 1 + i % 2,
            "timestamp_start": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(end - 1)),
            "timestamp_end": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(end)),
        })  # fmt: skip
    values = [orjson.dumps(r) for r in recs]
    series = f"{names.raw}.series"
    env = {"INFERWATCH_ANALYSIS__SERIES_TOPIC": series}
    asyncio.run(create_topic(broker, names.raw, 1))  # one partition: records keep their order
    asyncio.run(produce(broker, names.raw, values[:2000]))
    first = start_worker(env)
    first.wait_total("inferwatch_analysed_records_total", 2000)
    assert first.terminate() < 10
    asyncio.run(produce(broker, names.raw, values[2000:]))
    # a last record far ahead closes every window of the data
    # A last record far ahead, on one of the two links: the watermark ticks carry its time
    # to every partition, so the other link's windows close too.
    far = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t0 + 200))
    closer = dict(recs[-1], bytes=0, timestamp_start=far, timestamp_end=far)
    asyncio.run(produce(broker, names.raw, [orjson.dumps(closer)]))
    second = start_worker(env)
    second.wait_total("inferwatch_analysed_records_total", 2001)
    time.sleep(2)
    # whatever Faust committed, nothing of the first run is applied twice
    assert second.total("inferwatch_analysed_records_total") == 2001
    assert second.total("inferwatch_late_records_total") == 0

    want: dict[tuple[str, float], int] = defaultdict(int)
    for r in recs:
        end = time.mktime(time.strptime(r["timestamp_end"], "%Y-%m-%d %H:%M:%S")) - time.timezone
        want[(f"192.0.2.9#{r['iface_in']}", (end // 10) * 10)] += r["bytes"]
    # data windows plus the zero-filled ones up to the closer: read all there is
    got_msgs = asyncio.run(read_all(broker, series, 10**6, wait=8))
    got: dict[tuple[str, float], float] = {}
    for m in got_msgs:
        w = orjson.loads(m.value)
        key = (w["link"], w["window_start"])
        assert key not in got, f"window {key} emitted twice"
        got[key] = sum(c["bytes_in"] for c in w["classes"].values())  # over every class
    for key, total in want.items():
        seen = sorted((w - t0, v) for (lk, w), v in got.items() if lk == key[0])
        assert got.get(key) == total, (key, key[1] - t0, seen, second.log()[-1500:])
    second.terminate()
