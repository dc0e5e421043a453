"""`inferwatch bench pipeline`: the worker's throughput against the raw consume rate, in one run.

Over 400 lines: one harness and its runs (pipeline, soak, classification cost, start-up,
scale-out, crash) share the worker process, private topics and scraping helpers.

Against a real broker, on private topics: (a) produce N records, (b) time a bare aiokafka
consumer reading them (getmany, no decoding), (c) time a worker process (ingest + analysis)
processing the same records, from its first to its last analysed record, then measure the
end-to-end latency (Kafka append time -> link metrics updated) while records arrive at half
that rate, and (d) read the worker's peak RSS. Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from streams.codecs.decode import BatchDecoder
from streams.kafka import committed, read_to_end, topic_partitions
from streams.tools import synth

INFERWATCH = Path(sys.executable).parent / "inferwatch"
RAW_PARTITIONS = 4


@dataclass
class Plan:
    broker: str
    records: int
    mix: dict[str, int]
    distinct: bool
    latency_seconds: float
    latency_rate: float = 0.0  # 0: half the measured worker rate
    seed: int = 1


def parse_mix(text: str) -> dict[str, int]:
    """ "pmacct:4,goflow2:4,native:2" -> {"pmacct": 4, ...}."""
    out = {}
    for part in text.split(","):
        name, _, weight = part.partition(":")
        if name not in ("pmacct", "goflow2", "native"):
            raise ValueError(f"unknown format in --mix: {name!r}")
        out[name] = int(weight or 1)
    return out


def make_records(plan: Plan, now: float) -> list[bytes]:
    """N records in the mix: a pool of at most 200,000 distinct ones, repeated."""
    rng = random.Random(plan.seed)
    named = functools.partial(synth.native, names=synth.LEARNED_NAMES)  # the worker learns
    kinds: dict[str, Callable[[random.Random, float], dict[str, object]]] = {
        "pmacct": synth.pmacct, "goflow2": synth.goflow2, "native": named,
    }  # fmt: skip
    gens = [g for name, g in kinds.items() for _ in range(plan.mix.get(name, 0))]
    pool = [orjson.dumps(gens[i % len(gens)](rng, now)) for i in range(min(plan.records, 200_000))]
    return [pool[i % len(pool)] for i in range(plan.records)]


def distinct_records(start: int, n: int, now: float) -> list[bytes]:
    """Records ``start`` .. ``start + n - 1``, each a distinct 5-tuple from its own address."""
    ts = synth.pmacct_time(now - 2)
    out = []
    for i in range(start, start + n):
        a, b, c = (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF  # 16.7M distinct sources
        port = 1024 + (i * 7919) % 64000
        out.append(
            b'{"ip_src":"10.%d.%d.%d","ip_dst":"198.51.100.%d","port_src":%d,"port_dst":443,'
            b'"ip_proto":"tcp","packets":%d,"bytes":%d,"peer_ip_src":"192.0.2.%d","iface_in":%d,'
            b'"timestamp_start":"%s","timestamp_end":"%s"}'
            % (
                a,
                b,
                c,
                i % 250 + 1,
                port,
                1 + i % 40,
                60 + i % 9000,
                1 + i % 4,
                1 + i % 3,
                ts.encode(),
                ts.encode(),
            )
        )
    return out


async def _create_topics(broker: str, names: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(names["raw"], RAW_PARTITIONS, 1)])
    finally:
        await admin.close()


async def produce(broker: str, topic: str, values: list[bytes], rate: float = 0.0) -> float:
    """Publish values round-robin over the partitions; returns seconds taken."""
    producer = AIOKafkaProducer(
        bootstrap_servers=broker, acks=1, linger_ms=5, max_batch_size=1 << 20
    )
    await producer.start()
    t0 = time.monotonic()
    try:
        chunk = 2000
        sent = 0
        for start in range(0, len(values), chunk):
            part = (start // chunk) % RAW_PARTITIONS
            batch = producer.create_batch()
            for v in values[start : start + chunk]:
                if batch.append(key=None, value=v, timestamp=None) is None:
                    await producer.send_batch(batch, topic, partition=part)
                    batch = producer.create_batch()
                    batch.append(key=None, value=v, timestamp=None)
            await producer.send_batch(batch, topic, partition=part)
            sent += len(values[start : start + chunk])
            if rate > 0:
                ahead = sent / rate - (time.monotonic() - t0)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()
    return time.monotonic() - t0


async def raw_consume_rate(broker: str, topic: str, n: int) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=32 << 20,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(RAW_PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got = 0
        t0 = time.monotonic()
        while got < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            got += sum(len(m) for m in batch.values())
        return n / (time.monotonic() - t0)
    finally:
        await consumer.stop()


def _samples(port: int, only: str | None = None) -> Iterator[Sample]:
    """The worker's metric samples (``only``: just that family, a cheap scrape for polling)."""
    query = f"?name[]={only}" if only else ""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics{query}", timeout=5) as r:
        body = r.read().decode()
    for fam in text_string_to_metric_families(body):
        yield from fam.samples


def _scrape(port: int, only: str | None = None) -> dict[str, Any]:
    """The worker's metrics (``only``: just that family)."""
    out: dict[str, Any] = {"buckets": {}, "ingest_buckets": {}, "queue_buckets": {}}
    for s in _samples(port, only):
        if s.name == "inferwatch_analysis_latency_seconds_bucket":
            out["buckets"][float(s.labels["le"])] = s.value
        elif s.name == "inferwatch_analysis_queue_seconds_bucket":
            out["queue_buckets"][float(s.labels["le"])] = s.value
        elif s.name == "inferwatch_processing_latency_seconds_bucket":
            out["ingest_buckets"][float(s.labels["le"])] = s.value
        elif not s.labels:
            out[s.name] = s.value
        elif s.name in ("inferwatch_flow_records_total", "inferwatch_consumer_lag_records",
                        "inferwatch_top_talker_evictions_total"):  # fmt: skip
            out[s.name] = out.get(s.name, 0.0) + s.value  # summed over their labels
    return out


def quantile_from_buckets(
    before: dict[float, float], after: dict[float, float], q: float
) -> float | None:
    """Quantile of the observations between two scrapes of a histogram, interpolated in buckets."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1]
    if total <= 0:
        return None
    target = q * total
    prev_bound, prev_count = 0.0, 0.0
    for b, c in zip(bounds, counts, strict=True):
        if c >= target:
            if b == float("inf"):
                return prev_bound
            span = c - prev_count
            frac = (target - prev_count) / span if span > 0 else 1.0
            return prev_bound + (b - prev_bound) * frac
        prev_bound, prev_count = b, c
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _memory(pid: int, field: str) -> int:
    """A memory figure of /proc/PID/status in bytes: VmRSS (now) or VmHWM (peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _wait(
    port: int, name: str, value: float, proc: subprocess.Popen[bytes], timeout: float
) -> tuple[float, float]:
    """Poll until metric ``name`` reaches ``value``; (time it first moved, time it got there)."""
    first = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited with {proc.returncode}")
        try:
            got = _scrape(port, only=name).get(name, 0.0)
        except OSError:
            time.sleep(0.2)
            continue
        now = time.monotonic()
        if got > 0 and first is None:
            first = now
        if got >= value:
            return first or now, now
        time.sleep(0.02)
    raise RuntimeError(f"{name} did not reach {value} within {timeout}s")


@dataclass
class _Worker:
    proc: subprocess.Popen[bytes]
    port: int
    log: Any
    names: dict[str, str]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _names(suffix: str) -> dict[str, str]:
    topics = {"raw": "flows.raw", "flows": "flows.v1", "dlq": "flows.dlq.v1", "alerts": "alerts.v1",
              "top": "toptalkers.v1", "series": "linkseries.v1"}  # fmt: skip
    return {k: f"bench-{suffix}.{v}" for k, v in topics.items()}


def _topics(broker: str, suffix: str) -> dict[str, str]:
    """The private topic names of a run, its raw topic created."""
    names = _names(suffix)
    asyncio.run(_create_topics(broker, names))
    return names


def _start_worker(
    broker: str, suffix: str, names: dict[str, str], extra: dict[str, str] | None = None
) -> _Worker:
    """A worker process on private topics and groups, its log in a temporary folder."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERWATCH_")}
    work = Path(tempfile.mkdtemp(prefix=f"inferwatch-bench-{suffix}-"))
    env.update(
        {
            "INFERWATCH_KAFKA__TOPICS__RAW": names["raw"],
            "INFERWATCH_KAFKA__TOPICS__FLOWS": names["flows"],
            "INFERWATCH_KAFKA__TOPICS__DLQ": names["dlq"],
            "INFERWATCH_KAFKA__TOPICS__ALERTS": names["alerts"],
            "INFERWATCH_ANALYSIS__TOPTALKERS_TOPIC": names["top"],
            "INFERWATCH_ANALYSIS__SERIES_TOPIC": names["series"],
            "INFERWATCH_KAFKA__INGEST_GROUP": f"bench-{suffix}-ingest",
            "INFERWATCH_KAFKA__APP_ID": f"bench-{suffix}",
            "INFERWATCH_WORKER__STATE_DIR": str(work / "state"),
            "INFERWATCH_LOG_LEVEL": "warning",
            "INFERWATCH_CLASSIFY__FEEDBACK_TOPIC": f"bench-{suffix}.labels.v1",
            "INFERWATCH_CLASSIFY__CHECKPOINT": "off",
            **(extra or {}),
        }
    )
    log = (work / "worker.log").open("wb")
    proc = subprocess.Popen(  # noqa: S603
        [str(INFERWATCH), "worker", "--broker", broker, "--metrics-port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    return _Worker(proc, port, log, names)


def decode_rate(values: list[bytes], batch: int = 10_000) -> float:
    """Records/s of the ingest's decoding alone (JSON to checked columns, as the worker does),
    in this process: with the raw consume rate, the ceiling of a one-process worker."""
    decoder = BatchDecoder()
    appended = np.full(batch, time.time())
    t0 = time.perf_counter()
    for start in range(0, len(values), batch):
        chunk = values[start : start + batch]
        decoder.decode(chunk, appended[: len(chunk)])
    return len(values) / max(time.perf_counter() - t0, 1e-9)


def _backlog_rate(worker: _Worker, broker: str, values: list[bytes]) -> tuple[float, float]:
    """Once the worker is ready (its classifier bootstrapped: startup, not throughput), produce
    ``values`` as a backlog and time the worker from the first record sent until it analysed
    them all; (records/s, seconds the producer took). The producer runs beside the worker for
    its first seconds, so the rate errs low."""
    _wait(worker.port, "inferwatch_analysis_ready", 1, worker.proc, 300)
    t0 = time.monotonic()
    produce_s = asyncio.run(produce(broker, worker.names["raw"], values))
    _, last = _wait(worker.port, "inferwatch_analysed_records_total", len(values), worker.proc, 900)
    return len(values) / max(last - t0, 1e-9), produce_s


def run(plan: Plan) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    names = _topics(plan.broker, suffix)
    now = time.time()
    values = distinct_records(0, plan.records, now) if plan.distinct else make_records(plan, now)
    worker = _start_worker(plan.broker, suffix, names)
    proc, port = worker.proc, worker.port
    try:
        worker_rate, produce_s = _backlog_rate(worker, plan.broker, values)
        # latency at about half the maximum rate
        rate = plan.latency_rate or max(worker_rate / 2, 100.0)
        n_lat = max(int(rate * plan.latency_seconds), 100)
        lat_plan = Plan(plan.broker, n_lat, plan.mix, plan.distinct, 0, seed=plan.seed + 1)
        lat_values = (
            distinct_records(plan.records, n_lat, time.time())
            if plan.distinct
            else make_records(lat_plan, time.time())
        )
        s0 = _scrape(port)
        asyncio.run(produce(plan.broker, names["raw"], lat_values, rate=rate))
        _wait(port, "inferwatch_analysed_records_total", plan.records + n_lat, proc, 120)
        s1 = _scrape(port)
        p50 = quantile_from_buckets(s0["buckets"], s1["buckets"], 0.5)
        p99 = quantile_from_buckets(s0["buckets"], s1["buckets"], 0.99)
        i50 = quantile_from_buckets(s0["ingest_buckets"], s1["ingest_buckets"], 0.5)
        i99 = quantile_from_buckets(s0["ingest_buckets"], s1["ingest_buckets"], 0.99)
        rss = _memory(proc.pid, "VmHWM")
        final = _scrape(port)
        ok = final.get("inferwatch_flow_records_total", 0.0)
        analysed_batches = final.get("inferwatch_analysis_batches_total", 0.0)
        published = final.get("inferwatch_flow_batches_published_total", 0.0)
        evictions = final.get("inferwatch_top_talker_evictions_total", 0.0)
    finally:
        worker.stop()
    # with the worker gone, as nothing ran beside the worker
    raw_rate = asyncio.run(raw_consume_rate(plan.broker, names["raw"], plan.records))
    decoded_rate = decode_rate(values[:1_000_000])
    return {
        "benchmark": "pipeline",
        "records": plan.records,
        "mix": "distinct-5-tuples"
        if plan.distinct
        else ",".join(f"{k}:{v}" for k, v in plan.mix.items()),
        "produce_seconds": round(produce_s, 3),
        "raw_consume_records_per_s": round(raw_rate),
        "worker_records_per_s": round(worker_rate),
        "ratio_worker_to_raw": round(worker_rate / raw_rate, 3) if raw_rate else None,
        "decode_only_records_per_s": round(decoded_rate),
        "latency_rate_records_per_s": round(rate),
        "latency_p50_seconds": None if p50 is None else round(p50, 4),
        "latency_p99_seconds": None if p99 is None else round(p99, 4),
        "ingest_latency_p50_seconds": None if i50 is None else round(i50, 4),
        "ingest_latency_p99_seconds": None if i99 is None else round(i99, 4),
        "peak_rss_bytes": rss,
        "top_talker_evictions": int(evictions),
        "flows_v1_batches_published": int(published),
        "analysis_batches": int(analysed_batches),
        "records_counted": int(ok),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "numpy": np.__version__,
    }


def _stall(after: float, seconds: float) -> None:
    """After ``after`` seconds, keep every core busy for ``seconds`` (a noisy neighbour)."""
    time.sleep(after)
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 1)
    ]
    time.sleep(seconds)
    for b in burners:
        b.kill()
        b.wait()


def soak(
    broker: str,
    minutes: float,
    rate: float,
    sample_seconds: float = 10.0,
    stall: tuple[float, float] | None = None,
) -> list[dict[str, Any]]:
    """Feed a worker ``rate`` distinct records/s for ``minutes``; sample it every
    ``sample_seconds``; with ``stall`` (at, seconds), busy every core for a while (the worker
    must come back to its latency after it). Returns the samples and, last, a summary."""
    suffix = uuid.uuid4().hex[:8]
    names = _topics(broker, suffix)
    worker = _start_worker(broker, suffix, names)
    samples: list[dict[str, Any]] = []
    try:
        # warm up: both stages running (the Faust stage joins its group after ingest starts)
        asyncio.run(produce(broker, names["raw"], distinct_records(0, 1000, time.time())))
        _wait(worker.port, "inferwatch_analysed_records_total", 1000, worker.proc, 120)

        async def feed() -> None:
            sent, t0 = 1000, time.monotonic()
            end = t0 + minutes * 60
            while time.monotonic() < end:
                chunk = distinct_records(sent, int(rate), time.time())  # one second's worth
                await produce(broker, names["raw"], chunk, rate=rate)
                sent += len(chunk)

        async def sample() -> None:
            t0 = time.monotonic()
            prev = await asyncio.to_thread(_scrape, worker.port)

            def q(kind: str, now: dict[str, Any], p: float) -> float | None:
                return quantile_from_buckets(prev[kind], now[kind], p)  # within the interval

            while time.monotonic() - t0 < minutes * 60:
                await asyncio.sleep(sample_seconds)
                now = await asyncio.to_thread(_scrape, worker.port)
                samples.append({
                    "t_seconds": round(time.monotonic() - t0, 1),
                    "records": int(now.get("inferwatch_flow_records_total", 0)),
                    "rss_bytes": _memory(worker.proc.pid, "VmRSS"),
                    "lag_records": now.get("inferwatch_consumer_lag_records", 0.0),
                    "latency_p50_seconds": q("buckets", now, 0.5),
                    "latency_p99_seconds": q("buckets", now, 0.99),
                    "queue_p50_seconds": q("queue_buckets", now, 0.5),
                    "ingest_latency_p99_seconds": q("ingest_buckets", now, 0.99),
                })  # fmt: skip
                prev = now

        async def both() -> None:
            jobs = [feed(), sample()]
            if stall is not None:
                jobs.append(asyncio.to_thread(_stall, *stall))
            await asyncio.gather(*jobs)

        asyncio.run(both())
    finally:
        worker.stop()
    return [*samples, soak_summary(samples, rate)]


def soak_summary(samples: list[dict[str, Any]], rate: float) -> dict[str, Any]:
    """RSS trend over the second half (MB per minute, a least-squares slope), worst lag and p99.

    >>> s = [{"t_seconds": 60.0 * i, "rss_bytes": 100e6 + i * 1e6, "lag_records": 0,
    ...       "latency_p99_seconds": 0.1, "records": i} for i in range(10)]
    >>> soak_summary(s, 1000.0)["rss_slope_mb_per_minute_second_half"]
    1.0
    """
    half = samples[len(samples) // 2 :] or samples
    t = np.asarray([s["t_seconds"] for s in half]) / 60.0
    rss = np.asarray([s["rss_bytes"] for s in half]) / 1e6
    slope = float(np.polyfit(t, rss, 1)[0]) if len(half) >= 2 else 0.0
    p99 = [s["latency_p99_seconds"] for s in samples if s["latency_p99_seconds"] is not None]
    last = samples[-max(1, len(samples) // 4) :]  # the last quarter: back to normal after a stall
    last_p50 = [s["latency_p50_seconds"] for s in last if s.get("latency_p50_seconds") is not None]
    return {
        "benchmark": "soak",
        "rate_records_per_s": rate,
        "minutes": round(samples[-1]["t_seconds"] / 60, 2) if samples else 0,
        "records": samples[-1]["records"] if samples else 0,
        "rss_first_bytes": samples[0]["rss_bytes"] if samples else 0,
        "rss_last_bytes": samples[-1]["rss_bytes"] if samples else 0,
        "rss_max_bytes": max((s["rss_bytes"] for s in samples), default=0),
        "rss_slope_mb_per_minute_second_half": round(slope, 3),
        "lag_max_records": max((s["lag_records"] for s in samples), default=0),
        "latency_p99_max_seconds": max(p99, default=None),
        "latency_p50_last_quarter_max_seconds": max(last_p50, default=None),
    }


def run_classify_cost(plan: Plan, pairs: int = 3) -> dict[str, Any]:
    """The worker's throughput with classification off and on, on the same records, one run.

    The same records go to a worker without classification, then to one with it (the default),
    each on its own topics and groups and timed once it is ready; ``pairs`` times, alternating,
    so that a machine slowing down or speeding up in the middle shows as a spread of the
    pairs' costs rather than as the cost. The figure is the median pair's.
    """
    suffix = uuid.uuid4().hex[:8]
    values = make_records(plan, time.time())
    rates: dict[str, list[float]] = {"off": [], "on": []}
    learned: dict[str, dict[str, float]] = {}
    for pair in range(pairs):
        for mode in ("off", "on"):
            run = f"{suffix}-{mode}{pair}"
            names = _topics(plan.broker, run)
            worker = _start_worker(
                plan.broker, run, names,
                {"INFERWATCH_CLASSIFY__ENABLED": "true" if mode == "on" else "false"},
            )  # fmt: skip
            try:
                rates[mode].append(_backlog_rate(worker, plan.broker, values)[0])
                if mode == "on":  # the last such worker's
                    learned = {
                        k: _scrape_labelled(
                            worker.port, f"inferwatch_classifier_{k}_flows_total", "source"
                        )
                        for k in ("learned", "unlearned")
                    }
            finally:
                worker.stop()
    costs = [1 - on / off for off, on in zip(rates["off"], rates["on"], strict=True)]
    return {
        "benchmark": "classify-cost",
        "records": plan.records,
        "mix": ",".join(f"{k}:{v}" for k, v in plan.mix.items()),
        "worker_records_per_s_classify_off": [round(r) for r in rates["off"]],
        "worker_records_per_s_classify_on": [round(r) for r in rates["on"]],
        "classification_cost_per_pair": [round(c, 3) for c in costs],
        "classification_cost": round(float(np.median(costs)), 3),
        # with classification on (the last run), per source: flows learned, and left
        # unlearned by the learning budget (bootstrap: each of its passes)
        **{
            f"classify_on_{k}_flows": {src: int(n) for src, n in learned.get(k, {}).items()}
            for k in ("learned", "unlearned")
        },
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }


STARTUP_BURST = 1000


def run_startup(plan: Plan, workers: int = 3) -> dict[str, Any]:
    """How soon a new worker serves: ``workers`` workers, one after the other, each started on
    fresh topics. Per worker, seconds from its start until it reports ready (the classifier's
    bootstrap included), then from a burst of 1,000 distinct records produced at once until
    all are analysed (the wait the first records see), and the same for a second burst 3 s
    after the first (a worker already serving, after an idle pause)."""
    runs = []
    for i in range(workers):
        suffix = uuid.uuid4().hex[:8]
        names = _topics(plan.broker, suffix)
        t0 = time.monotonic()
        worker = _start_worker(plan.broker, suffix, names)
        try:
            _, ready = _wait(worker.port, "inferwatch_analysis_ready", 1, worker.proc, 300)
            waits = []
            for k in (1, 2):
                if k > 1:
                    time.sleep(3)
                burst = distinct_records((2 * i + k) * STARTUP_BURST, STARTUP_BURST, time.time())
                t1 = time.monotonic()
                asyncio.run(produce(plan.broker, names["raw"], burst))
                _, done = _wait(worker.port, "inferwatch_analysed_records_total",
                                k * STARTUP_BURST, worker.proc, 120)  # fmt: skip
                waits.append(round(done - t1, 3))
        finally:
            worker.stop()
        runs.append({"ready_seconds": round(ready - t0, 2), "first_burst_seconds": waits[0],
                     "second_burst_seconds": waits[1]})  # fmt: skip
    return {
        "benchmark": "startup",
        "workers": workers,
        "burst_records": STARTUP_BURST,
        "runs": runs,
        "first_burst_seconds_max": max(r["first_burst_seconds"] for r in runs),
        "second_burst_seconds_max": max(r["second_burst_seconds"] for r in runs),
        "cores": os.cpu_count(),
    }


def _sum_metric(workers: list[_Worker], name: str) -> float:
    total = 0.0
    for w in workers:
        if w.proc.poll() is not None:
            raise RuntimeError(f"a worker exited with {w.proc.returncode}")
        with contextlib.suppress(OSError):  # not serving yet: counts as nothing analysed
            total += _scrape(w.port).get(name, 0.0)
    return total


def run_scale(plan: Plan, counts: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    """Throughput of 1, 2, ... workers in one group on the same input, one run.

    Per count: a private raw topic (4 partitions) and groups; the workers start, get ready
    and join first (8 s), then N records are produced, and the rate runs from the first record any
    worker analyses to the last (their analysed totals summed).
    """
    now = time.time()
    values = make_records(plan, now)
    rates: dict[int, float] = {}
    for count in counts:
        suffix = f"{uuid.uuid4().hex[:8]}-w{count}"
        names = _topics(plan.broker, suffix)
        workers = [_start_worker(plan.broker, suffix, names) for _ in range(count)]
        try:
            for w in workers:  # classifiers bootstrapped: startup is not throughput
                _wait(w.port, "inferwatch_analysis_ready", 1, w.proc, 300)
            time.sleep(8)  # every worker joined both groups before the records come
            asyncio.run(produce(plan.broker, names["raw"], values))
            first = None
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline:
                got = _sum_metric(workers, "inferwatch_analysed_records_total")
                now_m = time.monotonic()
                if got > 0 and first is None:
                    first = now_m
                if got >= plan.records:
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError(f"{count} workers did not analyse {plan.records} records")
            rates[count] = plan.records / max(now_m - (first or now_m), 1e-9)
        finally:
            for w in workers:
                w.stop()
    base = rates[counts[0]]
    return {
        "benchmark": "scale",
        "records": plan.records,
        "mix": ",".join(f"{k}:{v}" for k, v in plan.mix.items()),
        **{f"records_per_s_{c}_workers": round(r) for c, r in rates.items()},
        **{f"speedup_{c}_workers": round(r / base, 3) for c, r in rates.items() if c != counts[0]},
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }


async def _count_published(broker: str, topic: str) -> int:
    """Records in the micro-batches of a flows.v1 topic (ticks excluded), read to its end."""
    from streams.codecs.wire import TICK_KEY, decode_batch

    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker, enable_auto_commit=False, max_partition_fetch_bytes=16 << 20
    )
    await consumer.start()
    try:
        total = 0
        async for msgs in read_to_end(consumer, topic):
            total += sum(len(decode_batch(m.value)) for m in msgs if m.key != TICK_KEY)
        return total
    finally:
        await consumer.stop()


def run_crash(plan: Plan, kill_at: float = 0.4) -> dict[str, Any]:
    """kill -9 a worker once ``kill_at`` of N records are committed, start another: account for
    every record and count the duplicates (what was processed after the last commit)."""
    suffix = uuid.uuid4().hex[:8]
    names = _topics(plan.broker, suffix)
    good = make_records(plan, time.time())
    bad = [b'{"ip_src": "10.0.0.1", "bytes": "lots"}'] * (plan.records // 100)  # 1 % refused
    values = good + bad
    random.Random(plan.seed).shuffle(values)
    group = f"bench-{suffix}-ingest"
    extra = {"INFERWATCH_CLASSIFY__CHECKPOINT": "kafka",  # the model must come back too
             "INFERWATCH_CLASSIFY__CHECKPOINT_TOPIC": f"bench-{suffix}.classifier.v1",
             "INFERWATCH_CLASSIFY__CHECKPOINT_SECONDS": "5"}  # fmt: skip
    first = _start_worker(plan.broker, suffix, names, extra)
    try:  # the records come once the model is bootstrapped: its first checkpoint is then due
        _wait(first.port, "inferwatch_analysis_ready", 1, first.proc, 300)
        asyncio.run(produce(plan.broker, names["raw"], values))
        deadline = time.monotonic() + 600
        while (
            asyncio.run(committed(plan.broker, group, names["raw"])) < kill_at * len(values)
            or _checkpoints(first.port).get("written", 0.0) < 1  # acknowledged by the broker
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("the first worker did not get far enough")
            time.sleep(0.2)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
    finally:  # also when the benchmark fails: never leave the worker running
        if first.proc.poll() is None:
            first.proc.kill()
            first.proc.wait()
        first.log.close()
    resumed_from = asyncio.run(committed(plan.broker, group, names["raw"]))
    second = _start_worker(plan.broker, suffix, names, extra)
    try:
        deadline = time.monotonic() + 900
        while asyncio.run(committed(plan.broker, group, names["raw"])) < len(values):
            if time.monotonic() > deadline:
                raise RuntimeError("the second worker did not finish")
            time.sleep(0.5)
        _wait(second.port, "inferwatch_flow_records_total", len(values) - resumed_from,
              second.proc, 120)  # fmt: skip
        after = _scrape(second.port)
        restored = _checkpoints(second.port).get("restored", 0.0)
    finally:
        second.stop()
    published = asyncio.run(_count_published(plan.broker, names["flows"]))
    dlq = asyncio.run(_count(plan.broker, names["dlq"]))
    ingested_second = after.get("inferwatch_flow_records_total", 0.0)
    return {
        "benchmark": "crash",
        "records": len(values),
        "refused": len(bad),
        "killed_with_committed": resumed_from,
        "second_worker_ingested": int(ingested_second),
        "accounted_exactly": int(ingested_second) == len(values) - resumed_from,
        "flows_v1_records": published,
        "flows_v1_duplicates": published - len(good),
        "dlq_records": dlq,
        "dlq_duplicates": dlq - len(bad),
        "model_restored": restored >= 1,
    }


def _checkpoints(port: int) -> dict[str, float]:
    """The worker's classifier checkpoints by outcome (written, restored, ...)."""
    return _scrape_labelled(port, "inferwatch_classifier_checkpoints_total", "outcome")


def _scrape_labelled(port: int, name: str, label: str) -> dict[str, float]:
    """A labelled family of the worker's metrics, summed by the value of one label."""
    out: dict[str, float] = {}
    for s in _samples(port, name):
        if s.name == name:
            key = s.labels.get(label, "")
            out[key] = out.get(key, 0.0) + s.value
    return out


async def _count(broker: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await topic_partitions(consumer, topic)
        begin, end = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        return sum(end[tp] - begin[tp] for tp in tps)
    finally:
        await consumer.stop()
