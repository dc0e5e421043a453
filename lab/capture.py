"""A packet recorder for the lab: every frame crossing an interface into a pcap file.

Only the lab's own traffic on its own bridge is recorded (an AF_PACKET socket bound to that
interface; root). Frames are written as they are, with their capture time; parsing them is the
probe's job (nfstream), not this module's.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from types import TracebackType

import dpkt

ETH_P_ALL = 0x0003
SNAPLEN = 65535


class Recorder:
    """Record ``interface`` into ``path`` from ``start()`` until ``stop()``."""

    def __init__(self, interface: str, path: Path) -> None:
        self.interface = interface
        self.path = path
        self.frames = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self._sock.bind((interface, 0))
        self._sock.settimeout(0.2)

    def start(self) -> Recorder:
        self._thread = threading.Thread(target=self._run, name="lab-recorder", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        with self.path.open("wb") as f:
            writer = dpkt.pcap.Writer(f, snaplen=SNAPLEN, linktype=dpkt.pcap.DLT_EN10MB)
            while not self._stop.is_set():
                try:
                    frame = self._sock.recv(SNAPLEN)
                except TimeoutError:
                    continue
                writer.writepkt(frame, ts=time.time())
                self.frames += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._sock.close()

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
