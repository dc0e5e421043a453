"""Paced bulk load through the lab link, following a rate profile over time.

``python -m lab.load server --port P --profile "60:8,60:30,60:6" [--connections N]`` listens in
the server namespace; each client connection receives data paced so that all connections
together offer the profile's rate: ``seconds:mbit`` phases, one after another, from the moment
the first connection arrives (``seconds:mbit-mbit`` ramps linearly within a phase). Offering
more than the link's capacity saturates it (the tbf queue drops the excess; TCP backs off).

``python -m lab.load client --server IP --port P --connections N --seconds S`` opens the
connections from the client namespace and reads until the server closes them (or ``S``).
With ``--ping-every T`` it also opens a short connection to port ``P + 1`` every ``T``
seconds (connect, close): new TCP handshakes throughout, whose round trip shows the queue the
load builds on the link.

Used by the congestion test (tests/integration/test_lab_congestion.py): the load is the
downlink ("in" at the client's side of the link).
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import threading
import time
from dataclasses import dataclass

from lab.topology import SERVER_IP

CHUNK = 16 * 1024
SNDBUF = 128 * 1024
TICK = 0.01


@dataclass(frozen=True)
class Phase:
    seconds: float
    start_mbit: float
    end_mbit: float


def parse_profile(text: str) -> list[Phase]:
    """``"60:8,30:8-20"`` -> 60 s at 8 Mbit/s, then 30 s ramping from 8 to 20."""
    phases = []
    for part in text.split(","):
        seconds, _, rate = part.partition(":")
        lo, _, hi = rate.partition("-")
        phases.append(Phase(float(seconds), float(lo), float(hi or lo)))
    if not phases or any(p.seconds <= 0 or p.start_mbit < 0 or p.end_mbit < 0 for p in phases):
        raise ValueError(f"profile {text!r}: seconds:mbit[-mbit],... with positive numbers")
    return phases


def rate_at(phases: list[Phase], t: float) -> float | None:
    """Offered Mbit/s at ``t`` seconds into the profile; None after its end."""
    for p in phases:
        if t < p.seconds:
            return p.start_mbit + (p.end_mbit - p.start_mbit) * t / p.seconds
        t -= p.seconds
    return None


def _serve(conn: socket.socket, phases: list[Phase], t0: float, share: int) -> None:
    # a small send buffer: when the offered rate drops, the link's load drops with it instead
    # of draining megabytes queued in the socket
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
    payload = b"\x00" * CHUNK
    owed = 0.0
    last = time.monotonic()
    with conn:
        try:
            while True:
                now = time.monotonic()
                rate = rate_at(phases, now - t0)
                if rate is None:
                    return
                per_second = rate * 1e6 / 8 / share
                # what the profile asks for since the last round, without catching up on what
                # a full link could not take (at most a tenth of a second's worth)
                owed = min(owed + per_second * (now - last), max(per_second / 10, CHUNK))
                last = now
                while owed >= CHUNK:
                    conn.sendall(payload)  # blocks while the link's queue is full
                    owed -= CHUNK
                time.sleep(TICK)
        except OSError:
            return


def _answer_pings(lsock: socket.socket) -> None:
    while True:
        try:
            conn, _ = lsock.accept()
        except OSError:
            return
        conn.close()


def server(port: int, phases: list[Phase], connections: int, bind: str = SERVER_IP) -> None:
    pings = socket.create_server((bind, port + 1), backlog=64)
    threading.Thread(target=_answer_pings, args=(pings,), daemon=True).start()
    lsock = socket.create_server((bind, port), backlog=connections)
    t0: float | None = None
    threads = []
    for _ in range(connections):
        conn, _ = lsock.accept()
        t0 = time.monotonic() if t0 is None else t0
        th = threading.Thread(target=_serve, args=(conn, phases, t0, connections), daemon=True)
        th.start()
        threads.append(th)
    for th in threads:
        th.join()
    lsock.close()
    pings.close()


def _drain(sock: socket.socket, deadline: float) -> None:
    with sock:
        sock.settimeout(1.0)
        while time.monotonic() < deadline:
            try:
                if not sock.recv(1 << 16):
                    return
            except TimeoutError:
                continue
            except OSError:
                return


def _ping(host: str, port: int, every: float, deadline: float) -> None:
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):  # a handshake lost in a full queue: the next comes
            socket.create_connection((host, port), timeout=5).close()
        time.sleep(every)


def client(host: str, port: int, connections: int, seconds: float, ping_every: float = 0) -> None:
    deadline = time.monotonic() + seconds
    socks = [socket.create_connection((host, port), timeout=10) for _ in range(connections)]
    threads = [threading.Thread(target=_drain, args=(s, deadline)) for s in socks]
    if ping_every > 0:
        args = (host, port + 1, ping_every, deadline)
        threads.append(threading.Thread(target=_ping, args=args, daemon=True))
    for th in threads:
        th.start()
    for th in threads[:connections]:
        th.join()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lab.load", description=__doc__)
    sub = ap.add_subparsers(dest="role", required=True)
    s = sub.add_parser("server")
    s.add_argument("--port", type=int, default=5201)
    s.add_argument("--profile", required=True)
    s.add_argument("--connections", type=int, default=4)
    c = sub.add_parser("client")
    c.add_argument("--server", required=True)
    c.add_argument("--port", type=int, default=5201)
    c.add_argument("--connections", type=int, default=4)
    c.add_argument("--seconds", type=float, default=600)
    c.add_argument("--ping-every", type=float, default=0.0, help="seconds; 0: no pings")
    args = ap.parse_args(argv)
    if args.role == "server":
        server(args.port, parse_profile(args.profile), args.connections)
    else:
        client(args.server, args.port, args.connections, args.seconds, args.ping_every)


if __name__ == "__main__":
    main()
