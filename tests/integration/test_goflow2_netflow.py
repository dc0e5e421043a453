""" "Point your router here", natively: NetFlow v5 datagrams -> goflow2 (the release the compose
stack pins, built from the Go module proxy by `make test`) -> Kafka -> the worker. Every flow
sent is counted once as a goflow2 record, and the link's byte counter is their sum."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
GOFLOW2 = os.environ.get("GOFLOW2") or str(ROOT / ".cache" / "bin" / "goflow2")


def netflow_v5(flows: list[tuple[str, str, int, int, int, int]], now: float, seq: int) -> bytes:
    """One NetFlow v5 export datagram of ``flows`` (src, dst, sport, dport, packets, bytes),
    each on input interface 3, lasting the 2 s before the export (router uptime 1000 s)."""
    uptime_ms = 1_000_000
    header = struct.pack("!HHIIIIBBH", 5, len(flows), uptime_ms, int(now),
                         int(now % 1 * 1e9), seq, 0, 0, 0)  # fmt: skip
    body = b""
    for src, dst, sport, dport, packets, octets in flows:
        body += struct.pack(
            "!4s4s4sHHIIIIHHBBBBHHBBH",
            socket.inet_aton(src), socket.inet_aton(dst), socket.inet_aton("0.0.0.0"),
            3, 4, packets, octets, uptime_ms - 2000, uptime_ms - 100, sport, dport,
            0, 0x18, 6, 0, 0, 0, 24, 24, 0,
        )  # fmt: skip
    return header + body


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/__health", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def test_netflow_through_goflow2_is_counted_once_on_its_link(broker, names, start_worker, tmp_path):
    assert shutil.which(GOFLOW2), f"{GOFLOW2} is missing (make test builds it: make goflow2)"
    udp, http = free_port(), free_port()
    log = (tmp_path / "goflow2.log").open("wb")
    goflow2 = subprocess.Popen(
        [GOFLOW2, f"-listen=netflow://127.0.0.1:{udp}", "-transport=kafka",
         f"-transport.kafka.brokers={broker}", f"-transport.kafka.topic={names.raw}",
         "-format=json", f"-addr=127.0.0.1:{http}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        worker = start_worker({"INFERWATCH_CLASSIFY__ENABLED": "false"})
        deadline = time.monotonic() + 30
        while not _healthy(http):
            assert goflow2.poll() is None and time.monotonic() < deadline, (
                tmp_path / "goflow2.log"
            ).read_text()
            time.sleep(0.3)
        sent = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for seq in range(3):
                flows = [(f"10.0.{seq}.{i + 1}", "198.51.100.7", 40000 + i, 443, 10 + i,
                          1000 * (i + 1) + seq) for i in range(10)]  # fmt: skip
                s.sendto(netflow_v5(flows, time.time(), seq * 10), ("127.0.0.1", udp))
                sent += flows
        worker.wait_total("inferwatch_flow_records_total", len(sent), timeout=60)
        worker.wait_total("inferwatch_link_bytes_total", sum(f[5] for f in sent), timeout=60,
                          link="127.0.0.1#3")  # fmt: skip
        time.sleep(2)  # anything more would be counted twice
        assert worker.total("inferwatch_flow_records_total", format="goflow2", outcome="ok") == 30
        assert worker.total("inferwatch_flow_records_total") == 30
        assert worker.total("inferwatch_link_bytes_total", link="127.0.0.1#3") == sum(
            f[5] for f in sent
        )
    finally:
        goflow2.terminate()
        goflow2.wait(10)
