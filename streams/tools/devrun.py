"""`make run`: a worker and the demo's endless traffic against a broker; Ctrl-C stops both.

python -m streams.tools.devrun --broker 127.0.0.1:9092 --metrics-port 9108

It prints one banner of what runs where, then a status line every 10 s read from the worker's
own /metrics (records/s, the AI share of the bytes, the lab link's utilisation, open alerts),
and a summary when it stops. The worker logs warnings and errors only.

>>> s = Status.parse('inferwatch_analysed_records_total 10\\n'
...     'inferwatch_link_bytes_total{link="l",direction="in",class="ai-api"} 30\\n'
...     'inferwatch_link_bytes_total{link="l",direction="in",class="web"} 70\\n'
...     'inferwatch_link_congestion_state{link="l",direction="in"} 2\\n')
>>> s.records, s.ai_share, s.open_alerts
(10.0, 0.3, ['congestion critical on l (in)'])
>>> Status.parse('inferwatch_link_anomaly_active{link="l",series="flows"} 1\\n'
...     'inferwatch_link_anomaly_active{link="l",series="bytes"} 1\\n').open_alerts
['anomaly on l (bytes, flows)']
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from streams.errors import ServiceError
from streams.tools.bench import quantile_from_buckets
from streams.worker.http import check_port

INFERWATCH = Path(sys.executable).parent / "inferwatch"
LINK = "lab-uplink"  # where the demo's records go (config/links.yaml)


@dataclass
class Status:
    """What the status line shows, from one scrape of /metrics."""

    records: float = 0.0
    late: float = 0.0
    dead_lettered: float = 0.0
    ai_share: float = 0.0
    ai_flows: float = 0.0
    utilisation: float | None = None
    eta: float | None = None
    open_alerts: list[str] = field(default_factory=list)
    alerts_raised: float = 0.0
    ttft: dict[float, float] = field(default_factory=dict)  # cumulative buckets, all AI flows

    @classmethod
    def parse(cls, text: str) -> Status:
        s = cls()
        ai = total = ai_flows = flows = 0.0
        anomalies: dict[str, list[str]] = {}  # link -> its series with an open anomaly
        events = ("inferwatch_anomaly_events_total", "inferwatch_congestion_events_total")
        ours = {"link": LINK}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                name, labels, value = sample.name, sample.labels, sample.value
                if name == "inferwatch_analysed_records_total":
                    s.records += value
                elif name == "inferwatch_late_records_total":
                    s.late += value
                elif name == "inferwatch_flow_records_total" and labels.get("outcome") == "invalid":
                    s.dead_lettered += value
                elif name == "inferwatch_flows_classified_total":
                    flows += value
                    ai_flows += value if labels.get("class", "").startswith("ai-") else 0.0
                elif name == "inferwatch_link_bytes_total":
                    total += value
                    ai += value if labels.get("class", "").startswith("ai-") else 0.0
                elif name == "inferwatch_link_utilisation_ratio" and ours.items() <= labels.items():
                    s.utilisation = max(s.utilisation or 0.0, value)
                elif (
                    name == "inferwatch_link_saturation_eta_seconds" and labels.get("link") == LINK
                ):
                    s.eta = value if s.eta is None else min(s.eta, value)
                elif name == "inferwatch_link_congestion_state" and value > 0:
                    level = "critical" if value >= 2 else "warning"
                    s.open_alerts.append(
                        f"congestion {level} on {labels['link']} ({labels['direction']})"
                    )
                elif name == "inferwatch_link_anomaly_active" and value > 0:
                    anomalies.setdefault(labels["link"], []).append(labels["series"])
                elif name == "inferwatch_ai_time_to_first_token_seconds_bucket":
                    le = float(labels["le"])
                    s.ttft[le] = s.ttft.get(le, 0.0) + value
                elif name in events:
                    s.alerts_raised += value if labels.get("status") == "firing" else 0.0
        s.open_alerts += [f"anomaly on {link} ({', '.join(sorted(series))})"
                          for link, series in sorted(anomalies.items())]  # fmt: skip
        s.ai_share = ai / total if total else 0.0
        s.ai_flows = ai_flows / flows if flows else 0.0
        return s

    def line(self, rate: float, before: Status | None = None) -> str:
        util = f"{self.utilisation:.0%}" if self.utilisation is not None else "-"
        eta = ""
        if self.eta is not None and self.eta < 1e6:
            left = f"{self.eta:.0f} s" if self.eta < 120 else f"{self.eta / 60:.0f} min"
            eta = f", saturates in {left}"
        alerts = "; ".join(self.open_alerts) or "none"
        p50 = quantile_from_buckets(before.ttft if before else {}, self.ttft, 0.5)
        ttft = f"  AI first token p50 {p50:.2f} s" if p50 is not None else ""
        return (
            f"{time.strftime('%H:%M:%S')}  {rate:6.1f} records/s  AI {self.ai_flows:4.0%} of flows,"
            f" {self.ai_share:4.0%} of bytes"
            f"{ttft}  {LINK} {util}{eta}  open alerts: {alerts}"
        )


def _scrape(port: int) -> Status | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as r:
            return Status.parse(r.read().decode())
    except OSError:
        return None


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes], name: str) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        print(f"{name} did not stop within 15s; killing it", file=sys.stderr)
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--broker", required=True)
    ap.add_argument("--metrics-port", type=int, default=9108)
    ap.add_argument("--status-seconds", type=float, default=10.0)
    args = ap.parse_args(argv)
    try:
        check_port("127.0.0.1", args.metrics_port)
    except ServiceError:
        print(
            f"make run: port {args.metrics_port} is taken (another `make run`?); stop it, or "
            f"choose another: make run METRICS_PORT=9109",
            file=sys.stderr,
        )
        return 1
    env = {"INFERWATCH_LIBRARY_LOG_LEVEL": "warning", **os.environ}
    worker = subprocess.Popen(  # noqa: S603
        [str(INFERWATCH), "worker", "--broker", args.broker, "--metrics-port",
         str(args.metrics_port)],
        env=env,
    )  # fmt: skip
    demo: subprocess.Popen[bytes] | None = None
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    last = Status()
    try:
        print("make run: starting the worker (it learns its classifier first: ~15 s) ...")
        deadline = time.monotonic() + 120
        while not _healthy(args.metrics_port):
            if stopping:
                return 0
            if worker.poll() is not None or time.monotonic() > deadline:
                print("make run: the worker did not become healthy; see its log above",
                      file=sys.stderr)  # fmt: skip
                return 1
            time.sleep(0.5)
        demo = subprocess.Popen(  # noqa: S603
            [str(INFERWATCH), "demo", "--broker", args.broker], env=env
        )
        url = f"http://127.0.0.1:{args.metrics_port}"
        print(
            f"\ninferwatch is running ({time.monotonic() - started:.0f} s to start)\n"
            f"  broker        {args.broker} (topics flows.raw -> flows.v1, alerts.v1)\n"
            f"  worker        metrics {url}/metrics, health {url}/healthz, "
            f"top talkers {url}/toptalkers\n"
            f"  demo traffic  every class on {LINK} (100 Mbit/s): a day every 10 min, a surge "
            f"over capacity at 2.5 min then every 5 min\n"
            f"  Ctrl-C stops everything\n",
            flush=True,
        )
        prev_t, prev_records = time.monotonic(), 0.0
        next_status = prev_t + args.status_seconds
        while not stopping:
            if worker.poll() is not None:
                print(f"make run: the worker exited with {worker.returncode}", file=sys.stderr)
                return 1
            if demo.poll() is not None:
                print(f"make run: the demo traffic exited with {demo.returncode}", file=sys.stderr)
                return 1
            if time.monotonic() >= next_status:
                status = _scrape(args.metrics_port)
                now = time.monotonic()
                if status is not None:
                    rate = (status.records - prev_records) / (now - prev_t)
                    print(status.line(rate, last), flush=True)
                    prev_t, prev_records, last = now, status.records, status
                next_status = now + args.status_seconds
            time.sleep(0.2)
        final = _scrape(args.metrics_port) or last
        minutes = (time.monotonic() - started) / 60
        print(
            f"\nmake run: stopped after {minutes:.1f} min: {final.records:,.0f} records analysed, "
            f"{final.late:,.0f} late, {final.dead_lettered:,.0f} dead-lettered; AI "
            f"{final.ai_flows:.0%} of flows, {final.ai_share:.0%} of bytes; "
            f"{final.alerts_raised:.0f} alerts raised",
            flush=True,
        )
        return 0
    finally:
        if demo is not None:
            _stop(demo, "demo")
        _stop(worker, "worker")


if __name__ == "__main__":
    sys.exit(main())
