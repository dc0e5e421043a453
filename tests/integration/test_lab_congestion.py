"""Congestion (and link anomalies) on real packets: a tc-shaped lab link (20 Mbit/s each way;
another with LAB_MBIT=N, the load profiles are in % of it), loaded by
paced TCP (lab.load), metered live by `inferwatch probe` into the real broker, analysed by a
worker with the default congestion configuration. Needs root.

In every `make test`: 40 % for 40 s, then 150 % offered (the link saturates) for 45 s,
then 30 % and nothing: critical within 30 s of the saturation's onset (event time), resolved
within 60 s of the load dropping, nothing before. And the same streaming chats beside 30 % and
beside a saturating load: the worker's QoE histograms show the answers' later first tokens, by
as much as the chat client's own clock.

With LONG_LAB=1 (about an hour, not in CI): ten minutes at 30 to 60 % with bursts
raise nothing; a linear ramp from 30 % to 100 % over 15 minutes is predicted at least 2 minutes
before the warning; link anomalies (2-s windows so the detectors' warm-up takes 7 minutes, not
37): over ten quiet minutes, then a traffic surge, an AI-traffic surge, a link failure and a
slow drift, each raised within 60 s."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import yaml

from lab.run import _wait_file
from lab.topology import LinkSpec, Shape
from tests.kafka_util import create_topic, read_all

pytestmark = pytest.mark.integration

MBIT = float(os.environ.get("LAB_MBIT", "20"))  # the link's capacity, each way
# the queue's length in packets (a router that counts packets), or tbf's 100 ms of bytes
QUEUE = int(os.environ.get("LAB_QUEUE_PACKETS", "0")) or None
LINK = f"lab-{MBIT:g}m"
PY = sys.executable
INFERWATCH = shutil.which("inferwatch", path=str(Path(PY).parent)) or "inferwatch"
SKIP_LONG = pytest.mark.skipif(
    not os.environ.get("LONG_LAB"), reason="long lab scenario: LONG_LAB=1"
)


def LONG(test: Any) -> Any:  # a marker: opt-in, and its own timeout
    return SKIP_LONG(pytest.mark.timeout(3600)(test))


@dataclass
class LoadRun:
    t0: float  # wall-clock start of the profile
    events: list[dict[str, Any]]  # congestion and prediction events, in order
    utilisation: list[tuple[float, float]]  # (window start - t0, "in" utilisation)
    worker: Any


@contextlib.contextmanager
def metered_lab(broker, names, start_worker, make_lab, tmp_path: Path,
                env: dict[str, str] | None = None, active_timeout: int = 5):  # fmt: skip
    """A fresh lab link of MBIT each way, metered live by the probe into a worker; yields (lab,
    worker, procs): processes appended to ``procs`` are stopped on the way out."""
    shape = Shape(rate_mbit=MBIT, queue_packets=QUEUE)
    lab = make_lab(LinkSpec(shape, shape))
    links = tmp_path / "links.yaml"
    links.write_text(yaml.safe_dump({"links": [
        {"id": LINK, "name": f"Lab link, {MBIT:g} Mbit/s", "capacity_bps": MBIT * 1e6,
         "exporter": "lab-probe", "iface": 1}]}))  # fmt: skip
    asyncio.run(create_topic(broker, names.raw, 1))
    worker = start_worker({
        "INFERWATCH_ANALYSIS__LINKS_FILE": str(links),
        "INFERWATCH_CLASSIFY__ENABLED": "false",
        "INFERWATCH_ANOMALY__ENABLED": "false",
        "INFERWATCH_ANALYSIS__SERIES_TOPIC": f"{names.raw}.series",
        **(env or {}),
    })  # fmt: skip
    timeout = str(active_timeout)
    probe = subprocess.Popen(
        [INFERWATCH, "probe", "--interface", lab.bridge, "--broker", broker, "--topic",
         names.raw, "--exporter", "lab-probe", "--link", LINK, "--active-timeout", timeout,
         "--idle-timeout", "5"],
        stdout=(tmp_path / "probe.log").open("wb"), stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if not k.startswith("INFERWATCH_")},
    )  # fmt: skip
    procs = [probe]
    time.sleep(5)  # the probe captures
    assert probe.poll() is None, (tmp_path / "probe.log").read_text()
    try:
        yield lab, worker, procs
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()


def pct(profile: str) -> str:
    """A lab.load profile in % of the link's capacity -> the same in Mbit/s (at 20 Mbit/s,
    ``"60:40,30:30-100"`` -> ``"60:8,30:6-20"``)."""
    phases = []
    for part in profile.split(","):
        seconds, _, rate = part.partition(":")
        phases.append(
            f"{seconds}:" + "-".join(f"{float(r) * MBIT / 100:g}" for r in rate.split("-"))
        )
    return ",".join(phases)


def start_load(lab, procs: list[Any], profile: str, seconds: float, connections: int = 4,
               pings: bool = False) -> tuple[float, Any]:  # fmt: skip
    """lab.load's server and client on the lab link, ``profile`` in % of its capacity;
    (the profile's start, the client)."""
    server = lab.popen(lab.server_ns, [PY, "-m", "lab.load", "server", "--port", "5201",
                                       "--profile", pct(profile), "--connections",
                                       str(connections)])  # fmt: skip
    procs.append(server)
    time.sleep(1)
    t0 = time.time()  # the profile starts when the connections arrive
    client = lab.popen(lab.client_ns, [PY, "-m", "lab.load", "client", "--server",
                                       lab.server_ip, "--connections", str(connections),
                                       "--seconds", str(seconds + 30), "--ping-every",
                                       "1" if pings else "0"])  # fmt: skip
    procs.append(client)
    return t0, client


def run_load(broker, names, start_worker, make_lab, tmp_path: Path, profile: str,
             seconds: float, wait_for: str, env: dict[str, str] | None = None,
             alerts: str = "InferwatchLinkCongestion", pings: bool = False,
             connections: int = 4) -> LoadRun:  # fmt: skip
    """Play ``profile`` (% of capacity) through a fresh lab link metered by the probe; return the
    worker's congestion events once one with status ``wait_for`` is there (or 60 s after)."""
    with metered_lab(broker, names, start_worker, make_lab, tmp_path, env) as (lab, worker, procs):
        t0, client = start_load(lab, procs, profile, seconds, connections, pings)
        assert client.wait(seconds + 60) == 0
        deadline = time.monotonic() + 60
        events: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            msgs = asyncio.run(read_all(broker, names.alerts, 10_000, wait=3))
            events = [orjson.loads(m.value) for m in msgs]
            events = [e for e in events if e["labels"]["alertname"].startswith(alerts)]
            if any(e["status"] == wait_for for e in events):
                break
        series = []
        # (all there by now: the read ends at its timeout, having no count to wait for)
        for m in asyncio.run(read_all(broker, f"{names.raw}.series", 100_000, wait=5)):
            w = orjson.loads(m.value)
            b = sum(c["bytes_in"] for c in w["classes"].values())
            series.append((w["window_start"] - t0, b * 8 / w["window_seconds"] / MBIT / 1e6))
        for start, u in series:  # for the record (pytest -s)
            print(f"{start:6.0f} s  {u:5.2f}")
        return LoadRun(t0, events, series, worker)


@pytest.mark.timeout(600)
def test_saturated_lab_link_goes_critical_then_resolves(
    broker, names, start_worker, make_lab, tmp_path: Path
):
    # offered: 40 % (the calm baselines), 150 % (saturated), 30 % and then nothing (calm
    # again, until it resolves); eight connections, so that one stalled in loss recovery (its
    # socket buffer is small) leaves the others to fill the link
    calm, busy, after = 40, 45, 25
    run = run_load(broker, names, start_worker, make_lab, tmp_path,
                   f"{calm}:40,{busy}:150,{after}:30", calm + busy + after, wait_for="resolved",
                   pings=True, connections=8)  # fmt: skip
    events = [e for e in run.events if e["labels"]["alertname"] == "InferwatchLinkCongestion"]
    seq = [(e["status"], e["labels"]["severity"], e["labels"]["direction"]) for e in events]
    assert seq == [("firing", "critical", "in"), ("resolved", "critical", "in")], seq
    fire, done = events
    onset = fire["context"]["window_start"] + fire["context"]["window_seconds"] - (run.t0 + calm)
    assert onset <= 30, fire["context"]  # the window that raised it ends within 30 s
    assert fire["context"]["utilisation"] >= 0.9
    # new connections wait in the queue: their handshakes take longer than the calm ones (the
    # calm round trip is under the probe's 1-ms resolution: the baseline's floor)
    assert fire["context"]["tcp_handshake_rtt_ratio"] >= 2, fire["context"]
    # and the full queue drops packets: the probe counts their retransmissions (15-17 %)
    assert fire["context"]["tcp_retransmitted_share"] >= 0.02, fire["context"]
    dropped = run.t0 + calm + busy
    assert done["ends_at"] - dropped <= 60, done
    print(f"critical {onset:.0f} s after the onset, resolved "
          f"{done['ends_at'] - dropped:.0f} s after the drop; handshakes "
          f"{fire['context']['tcp_handshake_rtt_median_s']} s against "
          f"{fire['context']['tcp_handshake_rtt_baseline_s']} s; retransmitted "
          f"{fire['context']['tcp_retransmitted_share']} of "
          f"{fire['context']['tcp_packets_counted']} packets")  # fmt: skip
    assert run.worker.total("inferwatch_link_congestion_state", link=LINK, direction="in") == 0


def _bursty(minutes: int) -> str:
    """30 to 60 % of the link, changing every 30 s, with a 5-s burst to 90 % every minute."""
    phases = []
    for k in range(minutes * 2):
        base = (30, 45, 60, 40, 50, 35)[k % 6]
        phases.append(f"30:{base}" if k % 2 else f"25:{base},5:90")
    return ",".join(phases)


@LONG
def test_ten_quiet_minutes_raise_nothing(broker, names, start_worker, make_lab, tmp_path):
    run = run_load(broker, names, start_worker, make_lab, tmp_path, _bursty(10), 600,
                   wait_for="firing")  # fmt: skip
    assert run.events == [], [(e["labels"], e["status"]) for e in run.events]
    # and the worker did see the link all along (quiet, not deaf)
    assert run.worker.total("inferwatch_link_congestion_state", link=LINK, direction="in") == 0
    assert run.worker.total("inferwatch_analysed_records_total") > 100, run.worker.log()[-3000:]
    busy = [u for start, u in run.utilisation if 0 <= start < 590]
    assert len(busy) >= 55, (len(busy), run.worker.log()[-3000:])
    assert 0.3 <= sum(busy) / len(busy) <= 0.6, busy  # a 30-60 % link, bursts included


@LONG
def test_a_fifteen_minute_ramp_is_predicted_two_minutes_ahead(
    broker, names, start_worker, make_lab, tmp_path
):
    run = run_load(broker, names, start_worker, make_lab, tmp_path, "300:30,900:30-100,60:100",
                   1260, wait_for="firing")  # fmt: skip
    first = {}
    for e in run.events:
        first.setdefault((e["labels"]["alertname"], e["status"]), e["context"]["window_start"])
    predicted = first.get(("InferwatchLinkCongestionPredicted", "firing"))
    warning = first.get(("InferwatchLinkCongestion", "firing"))
    assert predicted is not None and warning is not None, run.events
    print(f"predicted {warning - predicted:.0f} s before the warning")
    assert warning - predicted >= 120


@LONG
def test_lab_anomalies_quiet_then_incidents(broker, names, start_worker, make_lab, tmp_path):
    """Link anomalies on real packets, 2-s windows (the detectors' warm-up, 150 + 20 + 50
    windows, ends at 440 s): the bursty normal load with a trickle of streaming chats every
    minute, judged quiet from 640 to 1,320 s (over ten minutes, after a margin); then a
    traffic surge to 90 % for a minute, an AI-traffic surge (80 chat and agentic sessions in
    36 s) at 1,440 s, a link failure (no traffic at all) at 1,500 s for a minute, and from
    1,620 s a slow drift: the usual bursts over a level rising from 45 % to 85 % in five
    minutes. Each incident must be raised within 60 s of its onset; the drift's onset as an
    anomaly is when its level leaves the usual 30-60 %, at 1,740 s (45 + 4 x 4 = 61 %): a
    drift still inside the usual levels is nothing to raise. The probe cuts long flows every
    2 s, the window's length, as docs/congestion.md asks of exporters: with a longer active
    timeout a record's bytes all land in the window of its end and every series is jagged
    (windows alternately empty and double)."""
    here = Path(__file__).parents[2] / "lab" / "scenarios"
    normal = _bursty(22)  # 1320 s
    # the drift: the usual bursts, but the level under them rising from 45 % to 85 %
    drift = ",".join(f"25:{45 + 4 * k}-{45 + 4 * k + 3.3:g},5:90" for k in range(10))
    profile = f"{normal},60:90,{_bursty(2)},60:0,{_bursty(1)},{drift}"  # ends at 1920 s
    env = {
        "INFERWATCH_ANALYSIS__WINDOW_SECONDS": "2",
        "INFERWATCH_ANALYSIS__GRACE_SECONDS": "3",
        "INFERWATCH_ANALYSIS__MAX_IDLE_WINDOWS": "2000",
        "INFERWATCH_ANOMALY__ENABLED": "true",
        "INFERWATCH_CONGESTION__ENABLED": "false",
        "INFERWATCH_CLASSIFY__ENABLED": "true",
    }
    with metered_lab(broker, names, start_worker, make_lab, tmp_path, env, active_timeout=2) as (
        lab,
        worker,
        procs,
    ):
        server = lab.popen(lab.server_ns, [PY, "-m", "lab.traffic", "server", "--dir",
                                           str(tmp_path), "--scenario",
                                           str(here / "ai-surge.yaml")],
                           stdout=(tmp_path / "server.log").open("wb"),
                           stderr=subprocess.STDOUT)  # fmt: skip
        procs.append(server)
        _wait_file(tmp_path / "server.ready", server, 30)
        t0, load = start_load(lab, procs, profile, 1920)
        # the trickle every minute but during the failure; the AI surge at 1,440 s
        plays = [(at, "ai-trickle") for at in range(5, 1920, 60) if not 1490 <= at < 1565]
        plays = sorted([*plays, (1440, "ai-surge")])
        clients = []
        for k, (at, scenario) in enumerate(plays):
            time.sleep(max(0.0, t0 + at - time.time()))
            clients.append(lab.popen(lab.client_ns, [
                PY, "-m", "lab.traffic", "client", "--scenario", str(here / f"{scenario}.yaml"),
                "--out", str(tmp_path / f"chats-{k}.jsonl")],
                stdout=(tmp_path / "client.log").open("ab"), stderr=subprocess.STDOUT))  # fmt: skip
            procs.append(clients[-1])
        assert load.wait(max(60.0, t0 + 1980 - time.time())) == 0
        time.sleep(20)  # the last windows close
        events = [orjson.loads(m.value)
                  for m in asyncio.run(read_all(broker, names.alerts, 10_000, wait=3))]  # fmt: skip
        answers = worker.total("inferwatch_ai_time_to_first_token_seconds_count", link=LINK)
        failed_clients = [c.returncode for c in clients if c.poll()]
        if keep := os.environ.get("LAB_KEEP"):  # the run's series, to study detectors offline
            _keep(Path(keep), broker, names, t0, events, tmp_path)
    fired = [(e["context"]["window_start"] - t0, e["labels"]["series"]) for e in events
             if e["labels"]["alertname"] == "InferwatchLinkAnomaly"
             and e["status"] == "firing"]  # fmt: skip
    print("anomalies:", [(round(t), s) for t, s in fired])
    print("chat clients:", len(clients), "failed:", len(failed_clients), "AI answers:", answers)
    assert answers > 100  # the chats were seen and classified as AI

    def first(lo: float, hi: float, series: set[str] | None = None) -> float | None:
        times = [t for t, s in fired if lo <= t < hi and (series is None or s in series)]
        return min(times) - lo if times else None

    quiet = [f for f in fired if 640 <= f[0] < 1315]
    surge = first(1315, 1380, {"bytes", "packets"})
    ai_surge = first(1435, 1500, {"ai_share", "ai_ttft_p95", "flows"})
    failure = first(1495, 1560, {"bytes", "packets"})
    drifted = first(1615, 1920, {"bytes", "packets"})
    print(f"surge {surge}, AI surge {ai_surge}, failure {failure}, drift {drifted} s after onset")
    assert not quiet, quiet
    assert surge is not None and ai_surge is not None and failure is not None, fired
    # at the latest 60 s after it leaves the usual levels (1,740 s)
    assert drifted is not None and drifted <= 1740 + 60 - 1615, fired


def _keep(keep: Path, broker: str, names: Any, t0: float, events: list[Any], tmp: Path) -> None:
    """Save a run's closed windows (linkseries), its events and the chat clients' logs."""
    keep.mkdir(parents=True, exist_ok=True)
    windows = asyncio.run(read_all(broker, f"{names.raw}.series", 100_000, wait=15))
    (keep / "series.jsonl").write_bytes(b"".join(m.value + b"\n" for m in windows))
    (keep / "alerts.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    (keep / "t0").write_text(f"{t0}\n")
    for log in tmp.glob("chats-*.jsonl"):
        shutil.copy(log, keep / log.name)


def _qoe_totals(worker) -> dict[str, float]:
    """The lab link's AI QoE histograms' sums and counts and its stall count, all AI classes."""
    out = {}
    for name in ("inferwatch_ai_time_to_first_token_seconds", "inferwatch_ai_tokens_per_second"):
        for part in ("sum", "count"):
            out[f"{name}_{part}"] = worker.total(f"{name}_{part}", link=LINK)
    out["stalls"] = worker.total("inferwatch_ai_stalls_total", link=LINK)
    return out


def _per_chat(raw: list[bytes], log: Path) -> list[tuple[int, float, float]]:
    """(client port, estimated TTFT, true TTFT) of each chat in ``log``: its probe record
    (the one with most packets, of the 5-tuple) through the worker's estimator."""
    from detectors.behaviour import qoe
    from streams.codecs.decode import BatchDecoder

    batch = BatchDecoder().decode(raw, [time.time()] * len(raw)).batch
    est = qoe(batch)["ttft_s"]
    ports, starts, packets = batch.src_port, batch.ts_start, batch.packets_fwd
    rows = []
    for line in log.read_text().splitlines():
        chat = orjson.loads(line)
        if not chat.get("requests"):
            continue
        mine = np.flatnonzero((ports == chat["client_port"]) & (abs(starts - chat["start"]) < 10))
        k = mine[np.argmax(packets[mine])] if len(mine) else -1
        rows.append((chat["client_port"], float(est[k]) if k >= 0 else math.nan,
                     chat["requests"][0]["ttft_s"]))  # fmt: skip
    return rows


def _truth_means(path: Path) -> tuple[float, float]:
    """Mean time to first token and mean tokens/s of the chats, as their client measured."""
    ttft, rate = [], []
    for line in path.read_text().splitlines():
        for r in orjson.loads(line).get("requests", []):
            times = r["token_times_s"]
            ttft.append(r["ttft_s"])
            if len(times) > 2:
                rate.append((len(times) - 2) / (times[-1] - times[1]))
    return sum(ttft) / len(ttft), sum(rate) / len(rate)


@pytest.mark.timeout(600)
def test_ai_answers_on_a_congested_link_come_later_as_the_client_saw(
    broker, names, start_worker, make_lab, tmp_path: Path
):
    """The same 16 streaming chats twice on one lab link: first beside a 30 % load, then
    beside 150 % of the link's capacity offered (its queue fills: tens of milliseconds
    more on every answer). The worker's QoE metrics, read between the two, show the later
    first tokens, by as much as the client's own clock says."""
    scenario = Path(__file__).parents[2] / "lab" / "scenarios" / "chat-only.yaml"
    env = {"INFERWATCH_CLASSIFY__ENABLED": "true", "INFERWATCH_CONGESTION__ENABLED": "false"}
    with metered_lab(broker, names, start_worker, make_lab, tmp_path, env, active_timeout=30) as (
        lab,
        worker,
        procs,
    ):
        server = lab.popen(lab.server_ns, [PY, "-m", "lab.traffic", "server", "--dir",
                                           str(tmp_path), "--scenario", str(scenario)],
                           stdout=(tmp_path / "server.log").open("wb"),
                           stderr=subprocess.STDOUT)  # fmt: skip
        procs.append(server)
        _wait_file(tmp_path / "server.ready", server, 30)
        # 30 % for 62 s, then 150 % to the end (the test stops it when the chats are read)
        t0, load = start_load(lab, procs, "62:30,120:150", 182)

        def chats(at: float, out: Path, seen: dict[str, float], settle: float) -> dict[str, float]:
            """Play the chats at ``at``; the QoE totals once they are analysed (``seen``:
            the totals before) and ``settle`` seconds more."""
            time.sleep(max(0.0, t0 + at - time.time()))
            client = lab.popen(lab.client_ns, [PY, "-m", "lab.traffic", "client", "--scenario",
                                               str(scenario), "--out", str(out)],
                               stdout=(tmp_path / "client.log").open("ab"),
                               stderr=subprocess.STDOUT)  # fmt: skip
            assert client.wait(120) == 0, (tmp_path / "client.log").read_text()[-3000:]
            sent = sum(len(orjson.loads(x)["requests"]) for x in out.read_text().splitlines())
            # the chats' records are out (idle timeout) and analysed: one TTFT each
            before = seen.get("inferwatch_ai_time_to_first_token_seconds_count", 0.0)
            worker.wait_total("inferwatch_ai_time_to_first_token_seconds_count", before + sent,
                              timeout=60, link=LINK)  # fmt: skip
            time.sleep(settle)
            return _qoe_totals(worker)

        # the calm ones are read by about 58 s; a late extra answer of theirs (a bulk flow
        # taken for a chat) would be counted with the busy ones, which settle 12 s: not more
        # than one each, in both
        calm = chats(10, tmp_path / "calm.jsonl", {}, 0)
        busy = chats(77, tmp_path / "busy.jsonl", calm, 12)  # 15 s into the saturation
        assert load.poll() is None  # the load ran all along
        raw = [m.value for m in asyncio.run(read_all(broker, names.raw, 100_000, wait=3))]
    per_chat = {
        phase: _per_chat(raw, tmp_path / f"{phase}.jsonl") for phase in ("calm", "busy")
    }  # the probe's records through the estimator again, chat by chat, for the record
    for phase, rows in per_chat.items():
        print(phase, "client port, TTFT estimated / true:",
              " ".join(f"{p}:{e:.3f}/{t:.3f}" for p, e, t in rows))  # fmt: skip

    def mean(totals: dict[str, float], base: dict[str, float], name: str) -> tuple[float, float]:
        n = totals[f"{name}_count"] - base.get(f"{name}_count", 0.0)
        return (totals[f"{name}_sum"] - base.get(f"{name}_sum", 0.0)) / n, n

    ttft = "inferwatch_ai_time_to_first_token_seconds"
    rate = "inferwatch_ai_tokens_per_second"
    (calm_ttft, n_calm), (busy_ttft, n_busy) = mean(calm, {}, ttft), mean(busy, calm, ttft)
    calm_rate, busy_rate = mean(calm, {}, rate)[0], mean(busy, calm, rate)[0]
    truth_calm, truth_busy = (
        _truth_means(tmp_path / "calm.jsonl"),
        _truth_means(tmp_path / "busy.jsonl"),
    )
    print(f"TTFT estimated {calm_ttft:.3f} -> {busy_ttft:.3f} s (true {truth_calm[0]:.3f} -> "
          f"{truth_busy[0]:.3f}); tokens/s {calm_rate:.1f} -> {busy_rate:.1f} (true "
          f"{truth_calm[1]:.1f} -> {truth_busy[1]:.1f}); stalls {calm['stalls']:.0f} -> "
          f"{busy['stalls'] - calm['stalls']:.0f}; flows {n_calm:.0f}, {n_busy:.0f}")  # fmt: skip
    assert n_calm == n_busy == 16, (n_calm, n_busy)  # every chat once, nothing else
    # the answers came later, and the estimates say by as much as the client's clock
    waited = truth_busy[0] - truth_calm[0]  # the queue, on the client's clock
    assert waited >= 0.01, (truth_calm, truth_busy)
    assert busy_ttft - calm_ttft >= 0.7 * waited, (calm_ttft, busy_ttft, waited)
    for est, true, rows in ((calm_ttft, truth_calm[0], per_chat["calm"]),
                            (busy_ttft, truth_busy[0], per_chat["busy"])):  # fmt: skip
        assert abs(est - true) <= 0.15 * true, (est, true, rows)
    # the token rate is the server's pace, which a queue delays but does not slow: the
    # estimate keeps to what the client saw
    for est, true in ((calm_rate, truth_calm[1]), (busy_rate, truth_busy[1])):
        assert abs(est - true) <= 0.15 * true, (est, true)
