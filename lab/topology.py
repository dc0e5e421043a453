"""The lab network: a client and a server namespace joined through a shaped link.

::

    netns <p>c                 root namespace                           netns <p>s
    10.77.0.1/24 [<p>c0]--veth--[<p>cb]-+ bridge <p>br +-[<p>sb]==[<p>se]-...-[<p>s0] 10.77.0.2/24
                                         (the tap: probe and   the link's far side
                                          softflowd capture)   (queues, delay, loss)

The bridge in the root namespace is the operator's vantage point: the packet probe and the
NetFlow exporter capture on it, and both reach the Kafka broker on the root namespace's
loopback. Bridging needs no IP forwarding, the bridge has no address, and the namespaces have
no route anywhere else, so nothing the lab sends can leave the machine.

The server's side of the link is a hop in the root namespace, a second veth pair and a
bridge joining it to the server's veth (or ``lab.linkemu`` in the bridge's place)::

    bridge <p>br -[<p>sb]==[<p>se]- bridge <p>bj (or lab.linkemu) -[<p>sr]==[<p>s0] netns <p>s

Each direction's capacity is a ``tbf`` where that hop forwards: the uplink's on ``<p>sb``
(towards the server), the downlink's on ``<p>se`` (towards the tap), as a router's queue is.
On a sender's own interface (where it was before) TCP small queues and autocorking kept a
saturated link's queue at a few milliseconds and merged a streamed answer's tokens. Delay,
jitter and loss are a ``netem`` above the ``tbf`` where the kernel has ``sch_netem``;
elsewhere (this project's CI machines run a Firecracker kernel offering only tbf, htb, red
and the fifos) ``lab.linkemu`` forwards between ``<p>se`` and ``<p>sr`` in user space with
those impairments. Either way the tap on the bridge sees the client's side and the whole
round trip behind it. The namespaces know each other's MAC address (static neighbours): no
ARP crosses the link.
Everything is named with one prefix (``iw`` + 6 hex digits); ``Lab.close`` removes it, and
``sweep()`` removes what a killed test left behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

CLIENT_IP = "10.77.0.1"
SERVER_IP = "10.77.0.2"
_PREFIX = re.compile(r"^iw[0-9a-f]{6}$")
_OPEN_STATES = ("syn-sent", "syn-recv", "established", "fin-wait-1", "fin-wait-2",
                "close-wait", "last-ack", "closing")  # fmt: skip


class LabError(RuntimeError):
    """The lab cannot be built here (not root, a tool missing, a command refused)."""


@dataclass(frozen=True, slots=True)
class Shape:
    """One direction of the link."""

    rate_mbit: float = 100.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    queue_packets: int | None = None  # a queue of this many packets; None: tbf's 100 ms of bytes

    @property
    def needs_netem(self) -> bool:
        return self.delay_ms > 0 or self.jitter_ms > 0 or self.loss_pct > 0

    def netem_args(self) -> list[str]:
        args = ["delay", f"{self.delay_ms}ms"]
        if self.jitter_ms > 0:
            args += [f"{self.jitter_ms}ms", "distribution", "normal"]
        if self.loss_pct > 0:
            args += ["loss", f"{self.loss_pct}%"]
        return args

    def tbf_args(self) -> list[str]:
        rate_bit = self.rate_mbit * 1e6
        burst = max(1600, int(rate_bit / 8 / 250))  # ~4 ms of traffic, at least one packet
        return ["rate", f"{int(rate_bit)}bit", "burst", str(burst), "latency", "100ms"]


@dataclass(frozen=True, slots=True)
class LinkSpec:
    uplink: Shape = field(default_factory=Shape)  # client -> server
    downlink: Shape = field(default_factory=Shape)  # server -> client


def _run(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.returncode}")
    return proc


def check_host() -> None:
    """Raise LabError naming what is missing to build a lab here."""
    if os.geteuid() != 0:
        raise LabError("the traffic lab needs root (network namespaces, veth, tc)")
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        raise LabError(f"missing tools: {', '.join(missing)} (Debian: iproute2)")


_netem: bool | None = None


def netem_available() -> bool:
    """Whether this kernel offers the netem qdisc (tried once on a throwaway veth pair)."""
    global _netem
    if _netem is None:
        name = f"iwq{secrets.token_hex(3)}"
        _run(["ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p"])
        try:
            tried = _run(["tc", "qdisc", "add", "dev", name, "root", "netem"], check=False)
            _netem = tried.returncode == 0
        finally:
            _run(["ip", "link", "del", name], check=False)
    return _netem


class Lab:
    """A client and a server namespace joined by a shaped link, bridged in the root namespace."""

    def __init__(self, link: LinkSpec | None = None, prefix: str | None = None) -> None:
        self.link = link or LinkSpec()
        self.prefix = prefix or f"iw{secrets.token_hex(3)}"
        if not _PREFIX.match(self.prefix):
            raise LabError(f"lab prefix must be iw + 6 hex digits, not {self.prefix!r}")
        p = self.prefix
        self.client_ns, self.server_ns = f"{p}c", f"{p}s"
        self.bridge = f"{p}br"
        self.client_if, self.server_if = f"{p}c0", f"{p}s0"
        self.client_ip, self.server_ip = CLIENT_IP, SERVER_IP
        self._up = False
        self.emulator: subprocess.Popen[str] | None = None

    def __enter__(self) -> Lab:
        self.open()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> None:
        check_host()
        self._up = True  # from here on, close() removes whatever was made
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        p = self.prefix
        _run(["ip", "link", "add", self.bridge, "type", "bridge"])
        # promiscuous: frames the bridge forwards between its ports reach captures on it too
        _run(["ip", "link", "set", self.bridge, "promisc", "on", "up"])
        ends = (
            (self.client_ns, self.client_if, f"{p}cb", self.client_ip),
            (self.server_ns, self.server_if, f"{p}sr", self.server_ip),
        )
        for ns, inner, port, ip in ends:
            _run(["ip", "netns", "add", ns])
            _run(["ip", "link", "add", inner, "type", "veth", "peer", "name", port])
            _run(["ip", "link", "set", inner, "netns", ns])
            _run(["ip", "link", "set", port, "promisc", "on", "up"])
            self.ip(ns, "link", "set", "lo", "up")
            self.ip(ns, "addr", "add", f"{ip}/24", "dev", inner)
            # one segment per packet: no 64 KB offload super-frames on the tap, which no real
            # link carries (the captures and packet summaries would learn from them)
            self.ip(ns, "link", "set", inner, "gso_max_segs", "1")
            self.ip(ns, "link", "set", inner, "up")
        # the client's side joins the tap; the link's far side is a hop between the tap and the
        # server: bridge <p>br -[<p>sb]==[<p>se]- (bridge <p>bj, or lab.linkemu) -[<p>sr]==[<p>s0]
        _run(["ip", "link", "add", f"{p}se", "type", "veth", "peer", "name", f"{p}sb"])
        for end in (f"{p}cb", f"{p}sb"):
            _run(["ip", "link", "set", end, "master", self.bridge])
        for end in (f"{p}sb", f"{p}se"):
            _run(["ip", "link", "set", end, "promisc", "on", "up"])
        emulate = self.needs_emulator()
        if not emulate:
            _run(["ip", "link", "add", f"{p}bj", "type", "bridge"])
            for end in (f"{p}se", f"{p}sr"):
                _run(["ip", "link", "set", end, "master", f"{p}bj"])
            _run(["ip", "link", "set", f"{p}bj", "up"])
        # Each direction's queue is on a forwarding hop (the uplink's where the tap bridge
        # sends towards the server, the downlink's where the far side sends towards the tap),
        # as a router's is: on a sender's own interface TCP small queues and autocorking
        # would keep the queue at a few milliseconds and merge the tokens of a streamed answer
        for dev, shape in ((f"{p}sb", self.link.uplink), (f"{p}se", self.link.downlink)):
            tc = ["tc", "qdisc", "add", "dev", dev]
            if shape.needs_netem and not emulate:
                _run([*tc, "root", "handle", "1:", "netem", *shape.netem_args()])
                _run([*tc, "parent", "1:1", "handle", "10:", "tbf", *shape.tbf_args()])
                tbf = "10:"
            else:
                _run([*tc, "root", "handle", "1:", "tbf", *shape.tbf_args()])
                tbf = "1:"
            if shape.queue_packets:  # a router counting packets: small ones are dropped too
                _run([*tc, "parent", f"{tbf}1", "handle", "20:", "pfifo", "limit",
                      str(shape.queue_packets)])  # fmt: skip
        # static neighbours: no ARP on the link (a lost ARP request would stall a lossy link)
        macs = {ns: self._mac(ns, inner) for ns, inner, *_ in ends}
        for (ns, inner, _, _), (peer_ns, _, _, peer_ip) in zip(ends, ends[::-1], strict=True):
            self.ip(ns, "neigh", "replace", peer_ip, "lladdr", macs[peer_ns], "dev", inner,
                    "nud", "permanent")  # fmt: skip
        # no IPv6 on the lab interfaces: no router solicitations or DAD noise in the flows
        for ns, inner in ((self.client_ns, self.client_if), (self.server_ns, self.server_if)):
            self.exec(ns, ["sysctl", "-qw", f"net.ipv6.conf.{inner}.disable_ipv6=1"])
        for outer in (f"{p}cb", f"{p}sb", f"{p}se", f"{p}sr", f"{p}bj", self.bridge):
            _run(["sysctl", "-qw", f"net.ipv6.conf.{outer}.disable_ipv6=1"], check=False)
        if emulate:
            self._start_emulator()

    def _mac(self, ns: str, interface: str) -> str:
        shown = _run(["ip", "-n", ns, "-o", "link", "show", "dev", interface]).stdout
        m = re.search(r"link/ether ([0-9a-f:]{17})", shown)
        if m is None:
            raise LabError(f"no MAC address on {interface} in {ns}: {shown.strip()}")
        return m.group(1)

    def needs_emulator(self) -> bool:
        """Delay, jitter or loss asked for on a kernel without netem: lab.linkemu does them."""
        shapes = (self.link.uplink, self.link.downlink)
        return any(s.needs_netem for s in shapes) and not netem_available()

    def _start_emulator(self) -> None:
        p, up, down = self.prefix, self.link.uplink, self.link.downlink
        argv = [sys.executable, "-m", "lab.linkemu", "--a", f"{p}se", "--b", f"{p}sr",
                "--a2b", f"{up.delay_ms}/{up.jitter_ms}/{up.loss_pct}",
                "--b2a", f"{down.delay_ms}/{down.jitter_ms}/{down.loss_pct}"]  # fmt: skip
        self.emulator = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True, cwd=Path(__file__).parents[1],
        )  # fmt: skip
        assert self.emulator.stdout is not None
        first = self.emulator.stdout.readline()  # printed once its sockets are open
        if not first.startswith("linkemu:"):
            self.emulator.wait(5)
            raise LabError(f"lab.linkemu did not start: {first}{self.emulator.stdout.read()}")
        log.info("%s", first.strip())

    def _drain(self, timeout: float = 10.0) -> None:
        """Let connections the killed processes left (closing, with data in flight) finish.

        Their sockets outlive the processes and keep retransmitting; if the emulator stopped
        first they would retry for minutes and keep the deleted namespaces, and their veths,
        alive in the kernel until then.
        """
        states = [a for st in _OPEN_STATES for a in ("state", st)]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = [
                ns for ns in (self.client_ns, self.server_ns)
                if _run(["ip", "netns", "exec", ns, "ss", "-Htan", *states], check=False)
                .stdout.strip()
            ]  # fmt: skip
            if not busy:
                return
            time.sleep(0.1)
        log.warning("lab %s: connections still closing after %.0f s", self.prefix, timeout)

    def ip(self, ns: str, *args: str) -> None:
        _run(["ip", "-n", ns, *args])

    def exec(self, ns: str, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return _run(["ip", "netns", "exec", ns, *argv])

    def popen(self, ns: str, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside namespace ``ns`` (its own session, for clean stopping)."""
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            ["ip", "netns", "exec", ns, *argv], start_new_session=True, **kwargs
        )

    def close(self) -> None:
        if not self._up:
            return
        self._up = False
        if self.emulator is not None and self.emulator.poll() is None:
            kill_processes(self.prefix)
            self._drain()
            self.emulator.terminate()
            try:
                out, _ = self.emulator.communicate(timeout=10)
                log.info("%s", out.strip())
            except subprocess.TimeoutExpired:
                self.emulator.kill()
                self.emulator.wait(5)
        remove(self.prefix)


def kill_processes(prefix: str) -> None:
    """Kill what still runs in the lab's namespaces (it would keep its interfaces alive)."""
    for ns in (f"{prefix}c", f"{prefix}s"):
        for pid in _run(["ip", "netns", "pids", ns], check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), 9)


def remove(prefix: str) -> None:
    """Delete the namespaces, veths and bridge of the lab ``prefix`` (missing parts are fine)."""
    kill_processes(prefix)
    for ns in (f"{prefix}c", f"{prefix}s"):
        _run(["ip", "netns", "del", ns], check=False)  # takes the veth pairs with it
    # The root-side ends too: deleting a namespace leaves its veth pairs to the kernel, which
    # keeps them (and the namespace) while sockets of killed processes still retransmit;
    # deleting an end destroys the pair now.
    for end in ("cb", "sb", "se", "sr", "bj", "br"):
        _run(["ip", "link", "del", f"{prefix}{end}"], check=False)


def sweep() -> list[str]:
    """Remove every lab on this machine (namespaces named iw + 6 hex + c/s); return prefixes."""
    listed = _run(["ip", "netns", "list"], check=False).stdout.split("\n")
    names = {line.split()[0] for line in listed if line.strip()}
    prefixes = sorted({n[:-1] for n in names if n[-1:] in ("c", "s") and _PREFIX.match(n[:-1])})
    links = _run(["ip", "-o", "link", "show"], check=False).stdout
    stray = re.findall(r"^\d+: ((iw[0-9a-f]{6})(?:br|bj|cb|sb|se|sr))[:@]", links, re.M)
    for _, prefix in stray:
        if prefix not in prefixes:
            prefixes.append(prefix)
    for prefix in prefixes:
        remove(prefix)
    for name, _ in stray:  # veths whose namespace is gone but not yet freed by the kernel
        _run(["ip", "link", "del", name], check=False)
    # exporters a killed run left: softflowd on a lab bridge, nfacctd with a lab config
    for pid, cmd in _processes():
        lab_softflowd = cmd.startswith("softflowd") and re.search(r"-i iw[0-9a-f]{6}br", cmd)
        if lab_softflowd or (cmd.startswith("nfacctd: Core Process") and _lab_child(pid)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, 9)
            prefixes.append(f"pid {pid}")
    return prefixes


def _processes() -> list[tuple[int, str]]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                out.append((int(d.name), cmd))
    return out


def _lab_child(pid: int) -> bool:
    """Whether nfacctd ``pid`` is the lab's: it logs to a lab work directory's nfacctd.log,
    next to the nfacctd.conf the lab wrote (lab.exporters.Nfacctd)."""
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = Path(os.readlink(fd))
            if target.name == "nfacctd.log":
                conf = target.parent / "nfacctd.conf"
                return conf.exists() and "kafka_topic[flows]" in conf.read_text()
    return False
