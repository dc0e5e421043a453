"""The lab's link does what its spec says: capacity, delay and loss, measured through it.

Capacity is tc's tbf. Delay, jitter and loss are netem's where the kernel has it, else
lab.linkemu's (this project's CI kernel has no sch_netem); either way they are measured here
with real TCP and UDP between the namespaces. Needs root.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from lab.topology import LinkSpec, Shape, sweep

pytestmark = pytest.mark.integration

SERVER = r"""
import socket, sys
tcp = socket.socket(); tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("10.77.0.2", 9000)); tcp.listen(64)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("10.77.0.2", 9001))
udp.settimeout(3)
mode = sys.argv[1]
if mode == "bulk":
    c, _ = tcp.accept(); c.sendall(b"x" * 3_000_000); c.close()
elif mode == "udp":
    got = 0
    try:
        while True:
            udp.recv(2048); got += 1
    except TimeoutError:
        print(got, flush=True)
else:
    while True:
        c, _ = tcp.accept(); c.close()
"""

CLIENT = r"""
import json, socket, statistics, sys, time
mode = sys.argv[1]
if mode == "bulk":
    s = socket.create_connection(("10.77.0.2", 9000)); t = time.monotonic(); got = 0
    while (b := s.recv(1 << 20)):
        got += len(b)
    print(json.dumps({"mbit": got * 8 / (time.monotonic() - t) / 1e6}))
elif mode == "udp":
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(1000):
        u.sendto(b"x" * 200, ("10.77.0.2", 9001)); time.sleep(0.001)
else:
    socket.create_connection(("10.77.0.2", 9000)).close()  # ARP resolved
    rtts = []
    for _ in range(10):
        t = time.monotonic(); socket.create_connection(("10.77.0.2", 9000)).close()
        rtts.append((time.monotonic() - t) * 1000)
    print(json.dumps({"rtt_ms": statistics.median(rtts)}))
"""


def measure(make_lab, spec: LinkSpec, mode: str) -> dict[str, float]:
    lab = make_lab(spec)
    server = lab.popen(
        lab.server_ns, [sys.executable, "-c", SERVER, mode], stdout=subprocess.PIPE, text=True
    )
    time.sleep(0.5)
    out = lab.exec(lab.client_ns, [sys.executable, "-c", CLIENT, mode]).stdout
    if mode == "udp":
        return {"received": float(server.communicate(timeout=30)[0])}
    server.kill()
    server.wait(5)
    lab.close()
    return dict(json.loads(out))


def test_capacity_is_the_downlink_rate(make_lab):
    got = measure(make_lab, LinkSpec(downlink=Shape(rate_mbit=20)), "bulk")["mbit"]
    assert 12 < got < 22


def test_delay_adds_up_to_the_round_trip(make_lab):
    flat = measure(make_lab, LinkSpec(), "rtt")["rtt_ms"]
    delayed = measure(
        make_lab, LinkSpec(Shape(delay_ms=20, jitter_ms=1), Shape(delay_ms=30)), "rtt"
    )["rtt_ms"]
    assert flat < 5
    assert 48 < delayed < 75  # 20 ms up + 30 ms down, plus scheduling


def test_loss_drops_that_share_of_datagrams(make_lab):
    received = measure(make_lab, LinkSpec(uplink=Shape(loss_pct=20)), "udp")["received"]
    assert 720 < received < 880  # 1000 sent, 20 % lost: 800 expected, binomial sd 13


def test_a_closed_lab_leaves_nothing_even_after_delayed_transfers(make_lab):
    measure(make_lab, LinkSpec(Shape(delay_ms=20), Shape(delay_ms=20)), "bulk")
    time.sleep(1)
    assert sweep() == []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert " iw" not in links.replace(":", " ")
