"""The webhook dispatcher against a receiver that is down, fails, throttles, times out and
comes back, with a dispatcher restart in the middle: every alert and every resolution is
delivered once (by webhook-id), signed, and nothing is lost."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.codecs.alerts import alert_event
from tests.conftest import INFERWATCH, free_port
from tests.kafka_util import create_topic, produce

pytestmark = pytest.mark.integration

KEY = b"a test signing key"


class Receiver:
    """A webhook receiver whose first answers are scripted: 500, 429 (Retry-After 1), a reply
    slower than the dispatcher's timeout, then 200."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.requests: list[dict[str, Any]] = []
        self.script = ["500", "429", "slow"]
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                action = rec.script.pop(0) if rec.script else "200"
                h = self.headers
                rec.requests.append({
                    "id": h["webhook-id"], "action": action, "body": body,
                    "ts": h["webhook-timestamp"], "sig": h["webhook-signature"],
                })  # fmt: skip
                if action == "slow":
                    time.sleep(2.5)  # the dispatcher gave up after 1 s: it will send this again
                    action = "200"
                code = int(action)
                self.send_response(code)
                if code == 429:
                    self.send_header("Retry-After", "1")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self) -> dict[tuple[str, str], set[str]]:
        """(fingerprint, status) -> the webhook-ids of the notifications that carried it and
        that the receiver processed (200, including the slow one)."""
        out: dict[tuple[str, str], set[str]] = defaultdict(set)
        for r in self.requests:
            if r["action"] in ("200", "slow"):
                for a in json.loads(r["body"])["alerts"]:
                    out[(a["fingerprint"], a["status"])].add(r["id"])
        return out


def start_dispatcher(broker: str, names: Any, tmp: Path, port: int) -> subprocess.Popen[bytes]:
    (tmp / "key").write_bytes(base64.b64encode(KEY))
    receivers = [{"name": "ops", "url": f"http://127.0.0.1:{port}/hook",
                  "secret_file": str(tmp / "key.whsec"), "timeout_seconds": 1}]  # fmt: skip
    (tmp / "key.whsec").write_text("whsec_" + base64.b64encode(KEY).decode())
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERWATCH_")}
    env.update(names.env())
    env.update({
        "INFERWATCH_DISPATCH__RECEIVERS": json.dumps(receivers),
        "INFERWATCH_DISPATCH__GROUP": f"t{names.suffix}-dispatch",
        "INFERWATCH_DISPATCH__STATE_PATH": str(tmp / "dispatch.json"),
        "INFERWATCH_DISPATCH__GROUP_WAIT_SECONDS": "1",
        "INFERWATCH_DISPATCH__RETRY_INITIAL_SECONDS": "0.2",
        "INFERWATCH_DISPATCH__RETRY_MAX_SECONDS": "2",
    })  # fmt: skip
    log = (tmp / "dispatch.log").open("ab")
    return subprocess.Popen([str(INFERWATCH), "dispatch", "--broker", broker], env=env,
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp)  # fmt: skip


def events(status: str, n: int, start: float) -> list[bytes]:
    return [orjson.dumps(alert_event(
        status, {"alertname": "InferwatchTestAlert", "severity": "warning", "link": f"l{i}"},
        {"summary": f"test alert {i}"}, start, None if status == "firing" else start + 60,
    )) for i in range(n)]  # fmt: skip


def test_every_alert_and_resolution_arrives_once_through_outage_errors_and_a_restart(
    broker, names, tmp_path
):
    asyncio.run(create_topic(broker, names.alerts, 1))
    port = free_port()
    receiver = Receiver(port)  # down: nothing listens on its port yet
    d = start_dispatcher(broker, names, tmp_path, port)
    try:
        t0 = time.time()
        asyncio.run(produce(broker, names.alerts, events("firing", 5, t0)))
        time.sleep(4)  # grouped, tried, refused (connection refused), retried
        asyncio.run(produce(broker, names.alerts, events("firing", 5, t0)))  # still firing
        d.send_signal(signal.SIGTERM)  # a restart while the receiver is down
        assert d.wait(15) == 0
        state = orjson.loads((tmp_path / "dispatch.json").read_bytes())
        assert len(state["outbox"]) == 1 and state["outbox"][0]["attempts"] >= 1
        d = start_dispatcher(broker, names, tmp_path, port)
        asyncio.run(produce(broker, names.alerts, events("resolved", 5, t0)))
        time.sleep(3)
        receiver.start()  # back, answering 500, 429, too slowly, then 200
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = receiver.delivered()
            if len(got) == 10:
                break
            time.sleep(0.5)
        time.sleep(3)  # anything more would be a duplicate
        got = receiver.delivered()
        log = (tmp_path / "dispatch.log").read_text()
        assert len(got) == 10, (got, log[-2000:])
        # each firing and each resolution in exactly one notification (one webhook-id)
        assert all(len(ids) == 1 for ids in got.values()), got
        actions = [r["action"] for r in receiver.requests]
        assert actions[:3] == ["500", "429", "slow"]
        # the slow reply was sent again under the same id: the receiver can tell
        slow_id = receiver.requests[2]["id"]
        assert slow_id in [r["id"] for r in receiver.requests[3:]]
        for r in receiver.requests:  # Standard Webhooks signatures
            signed = f"{r['id']}.{r['ts']}.".encode() + r["body"]
            want = base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
            assert r["sig"] == f"v1,{want}"
        assert "test signing key" not in log and base64.b64encode(KEY).decode() not in log
    finally:
        if d.poll() is None:
            d.send_signal(signal.SIGTERM)
            d.wait(15)
        if receiver.server is not None:
            receiver.server.shutdown()


@pytest.mark.timeout(900)
@pytest.mark.skipif(
    not os.environ.get("LONG_DISPATCH"),
    reason="five-minute outage: LONG_DISPATCH=1",
)
def test_an_alert_storm_through_a_five_minute_outage_arrives_exactly_once(broker, names, tmp_path):
    """60 alerts fire over the outage, 30 of them resolve during it, 10 fire again; the
    receiver is down for 300 s; once it is back every firing and resolution arrives once."""
    asyncio.run(create_topic(broker, names.alerts, 1))
    port = free_port()
    receiver = Receiver(port)
    receiver.script = []  # back means 200
    d = start_dispatcher(broker, names, tmp_path, port)
    try:
        t0 = time.time()
        for minute in range(5):  # a storm: 12 new alerts a minute, resolutions as they go
            batch = [orjson.dumps(alert_event(
                "firing", {"alertname": "InferwatchStorm", "severity": "warning",
                           "link": f"l{minute * 12 + i}"}, {"summary": "storm"}, t0 + minute * 60,
            )) for i in range(12)]  # fmt: skip
            if minute >= 1:
                batch += [orjson.dumps(alert_event(
                    "resolved", {"alertname": "InferwatchStorm", "severity": "warning",
                                 "link": f"l{(minute - 1) * 12 + i}"}, {"summary": "storm"},
                    t0 + (minute - 1) * 60, t0 + minute * 60,
                )) for i in range(0, 12, 2)]  # fmt: skip
            asyncio.run(produce(broker, names.alerts, batch))
            time.sleep(max(0.0, t0 + (minute + 1) * 60 - time.time()))
        receiver.start()  # after 300 s down
        back = time.monotonic()
        want = 60 + 4 * 6  # firings + resolutions
        while time.monotonic() - back < 120 and len(receiver.delivered()) < want:
            time.sleep(0.5)
        took = time.monotonic() - back
        time.sleep(5)  # anything more would be a duplicate
        got = receiver.delivered()
        assert len(got) == want, (len(got), (tmp_path / "dispatch.log").read_text()[-2000:])
        assert all(len(ids) == 1 for ids in got.values())
        ids = [r["id"] for r in receiver.requests]
        assert len(ids) == len(set(ids))  # no notification sent twice once the receiver was up
        print(f"all {want} delivered {took:.0f} s after the receiver came back")
    finally:
        if d.poll() is None:
            d.send_signal(signal.SIGTERM)
            d.wait(15)
        if receiver.server is not None:
            receiver.server.shutdown()
