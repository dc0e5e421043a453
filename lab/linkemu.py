"""Delay, jitter and loss on the lab link, in user space, for kernels without ``sch_netem``.

``python -m lab.linkemu --a IF_A --b IF_B --a2b DELAY_MS[/JITTER_MS[/LOSS_PCT]] --b2a ...
[--seed N]`` forwards every frame between two interfaces of the root namespace, each direction
with its own delay, jitter (normal, sigma in ms) and random loss. Frames of one direction
keep their order (a frame is never sent before the one ahead of it, as netem does with a rate
or a fifo child). The lab puts it between the bridge and the server's veth, so the tap on the
bridge sees the client's side of the link and the whole round trip behind it.

The sockets use ``PACKET_VNET_HDR``: a frame read from a veth may still carry a partial
checksum or be one TCP segmentation-offload super-frame; its virtio-net header travels with it
and the kernel completes the checksum and segments on the way out, as it does for a VM's tap.
Loss is drawn per frame (a super-frame is lost whole). It stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import collections
import random
import signal
import socket
import threading
import time
from dataclasses import dataclass

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_OUTGOING = 4
FRAME = 65536 + 64


@dataclass(frozen=True, slots=True)
class Impairment:
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Impairment:
        """``DELAY[/JITTER[/LOSS]]``: milliseconds, milliseconds, percent."""
        parts = [float(p) for p in text.split("/")]
        if not 1 <= len(parts) <= 3 or any(p < 0 for p in parts) or parts[2:3] > [100.0]:
            raise ValueError(f"impairment {text!r}: DELAY_MS[/JITTER_MS[/LOSS_PCT]]")
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.delay_ms:g}/{self.jitter_ms:g}/{self.loss_pct:g}"


def open_port(interface: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    sock.bind((interface, ETH_P_ALL))
    sock.settimeout(0.2)
    return sock


class Direction:
    """Frames read on ``rx`` are sent on ``tx`` after the impairment."""

    def __init__(
        self, rx: socket.socket, tx: socket.socket, imp: Impairment, rng: random.Random
    ) -> None:
        self.rx, self.tx, self.imp, self.rng = rx, tx, imp, rng
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.ready = threading.Condition()
        self.stop = threading.Event()
        self.forwarded = self.dropped = 0
        self._last_due = 0.0

    def receive(self) -> None:
        base, jitter = self.imp.delay_ms / 1e3, self.imp.jitter_ms / 1e3
        loss = self.imp.loss_pct / 100.0
        while not self.stop.is_set():
            try:
                frame, addr = self.rx.recvfrom(FRAME)
            except TimeoutError:
                continue
            if addr[2] == PACKET_OUTGOING:  # what the other direction just sent out here
                continue
            if loss and self.rng.random() < loss:
                self.dropped += 1
                continue
            delay = max(0.0, base + (self.rng.gauss(0.0, jitter) if jitter else 0.0))
            due = max(self._last_due, time.monotonic() + delay)
            self._last_due = due
            with self.ready:
                self.queue.append((due, frame))
                self.ready.notify()

    def send(self) -> None:
        while not self.stop.is_set():
            with self.ready:
                while not self.queue and not self.stop.is_set():
                    self.ready.wait(0.2)
                if not self.queue:
                    continue
                due, frame = self.queue.popleft()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                self.tx.send(frame)
                self.forwarded += 1
            except OSError:  # the interface went away (lab closing): count it as lost
                self.dropped += 1

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=f, daemon=True) for f in (self.receive, self.send)]
        for t in threads:
            t.start()
        return threads


def run(a: str, b: str, a2b: Impairment, b2a: Impairment, seed: int) -> None:
    port_a, port_b = open_port(a), open_port(b)
    directions = [
        Direction(port_a, port_b, a2b, random.Random(f"{seed}/a2b")),
        Direction(port_b, port_a, b2a, random.Random(f"{seed}/b2a")),
    ]
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    threads = [t for d in directions for t in d.start()]
    print(f"linkemu: {a} -> {b} {a2b}, {b} -> {a} {b2a} (delay/jitter ms, loss %)", flush=True)
    done.wait()
    for d in directions:
        d.stop.set()
    for t in threads:
        t.join(2)
    for name, d in zip(("a2b", "b2a"), directions, strict=True):
        print(f"linkemu: {name} forwarded {d.forwarded} dropped {d.dropped}", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lab.linkemu", description=__doc__.split("\n")[0])
    ap.add_argument("--a", required=True, help="interface A")
    ap.add_argument("--b", required=True, help="interface B")
    ap.add_argument("--a2b", type=Impairment.parse, default=Impairment())
    ap.add_argument("--b2a", type=Impairment.parse, default=Impairment())
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    run(args.a, args.b, args.a2b, args.b2a, args.seed)


if __name__ == "__main__":
    main()
