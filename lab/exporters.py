"""The operator's metering path from Debian packages: softflowd, NetFlow v9, nfacctd, Kafka.

softflowd meters the lab's bridge live and exports IPFIX
over loopback to pmacct's nfacctd, whose Kafka plugin publishes pmacct JSON to the raw topic:
the same records an operator's nfacctd would publish from its routers' exports. The daemons
run in their own sessions and are stopped with their children; ``Softflowd.flush`` expires
every flow softflowd holds.

IPFIX with millisecond absolute times, not NetFlow v9: softflowd 1.1.0 sets the v9 header's
record count to its data records only, and nfacctd 1.7.7 stops reading a packet after that
many flowsets, so the data in a packet that also carries the templates (the first one, and
every re-send) was dropped whenever it held fewer records than flowsets: the lab lost 1 to 4
of 14 flows per run that way (docs/lab.md). IPFIX headers give a length, not a count.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from lab.topology import LabError

AGGREGATE = (
    "src_host, dst_host, src_port, dst_port, proto, tcpflags, peer_src_ip, in_iface, out_iface, "
    "timestamp_start, timestamp_end, sampling_rate"
)


def check_exporters() -> None:
    missing = [t for t in ("softflowd", "softflowctl", "nfacctd") if shutil.which(t) is None]
    if missing:
        raise LabError(
            f"missing: {', '.join(missing)} (Debian packages softflowd and pmacct; "
            "services/debian/install.sh installs them)"
        )


class _Daemon:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def _start(self, argv: list[str], log_name: str) -> None:
        log = (self.workdir / log_name).open("ab")
        self.proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # nfacctd's plugins are its children
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class Nfacctd(_Daemon):
    """pmacct's NetFlow collector, publishing pmacct JSON to ``topic`` with its Kafka plugin."""

    def __init__(self, workdir: Path, broker: str, topic: str, port: int) -> None:
        super().__init__(workdir)
        host, _, kport = broker.rpartition(":")
        self.port = port
        self.config = workdir / "nfacctd.conf"
        self.config.write_text(
            "daemonize: false\n"
            f"nfacctd_ip: 127.0.0.1\nnfacctd_port: {port}\n"
            "plugins: kafka[flows]\n"
            f"kafka_broker_host[flows]: {host}\nkafka_broker_port[flows]: {kport}\n"
            f"kafka_topic[flows]: {topic}\n"
            "kafka_output[flows]: json\n"
            "kafka_refresh_time[flows]: 1\n"
            f"aggregate[flows]: {AGGREGATE}\n"
        )

    def start(self) -> Nfacctd:
        check_exporters()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:  # nfacctd binds with SO_REUSEPORT: a leftover one would take the exports
                probe.bind(("127.0.0.1", self.port))
            except OSError as exc:
                raise LabError(
                    f"UDP port {self.port} is taken ({exc.strerror}): another collector runs "
                    "(a killed lab run leaves one? `inferwatch lab sweep` stops them)"
                ) from exc
        self._start(["nfacctd", "-f", str(self.config)], "nfacctd.log")
        time.sleep(0.5)
        if self.proc is not None and self.proc.poll() is not None:
            log = (self.workdir / "nfacctd.log").read_text(errors="replace")[-800:]
            raise LabError(f"nfacctd exited at start:\n{log}")
        return self


class Softflowd(_Daemon):
    """softflowd live on ``interface``, exporting IPFIX to ``127.0.0.1:port``."""

    def __init__(self, workdir: Path, interface: str, port: int) -> None:
        super().__init__(workdir)
        self.interface = interface
        self.port = port
        self.ctl = workdir / "softflowd.ctl"

    def start(self) -> Softflowd:
        check_exporters()
        timeouts = ["maxlife=60", "expint=1", "tcp=15", "tcp.rst=5", "tcp.fin=5", "udp=10"]
        argv = ["softflowd", "-d", "-i", self.interface, "-n", f"127.0.0.1:{self.port}",
                "-v", "10", "-A", "milli",
                "-c", str(self.ctl), "-p", str(self.workdir / "softflowd.pid")]  # fmt: skip
        for t in timeouts:
            argv += ["-t", t]
        self._start(argv, "softflowd.log")
        for _ in range(50):  # ready when its control socket exists
            if self.ctl.exists():
                return self
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.1)
        log = (self.workdir / "softflowd.log").read_text(errors="replace")[-800:]
        raise LabError(f"softflowd did not start on {self.interface}:\n{log}")

    def flush(self) -> None:
        """Expire and export every flow softflowd holds; its statistics go to softflowctl.log."""
        with (self.workdir / "softflowctl.log").open("ab") as log:
            for cmd in ("expire-all", "statistics"):
                subprocess.run(["softflowctl", "-c", str(self.ctl), cmd], stdout=log, stderr=log)
