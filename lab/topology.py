"""The lab network: a client and a server namespace joined through a shaped link.

::

    netns <p>c                 root namespace                  netns <p>s
    10.77.0.1/24 [<p>c0]--veth--[<p>cb]-+ bridge <p>br +-[<p>sb]--veth--[<p>s0] 10.77.0.2/24
                  uplink shaping          (the tap: probe and        downlink shaping
                  (tc on <p>c0 egress)     softflowd capture here)    (tc on <p>s0 egress)

The bridge in the root namespace is the operator's vantage point: the packet probe and the
NetFlow exporter capture on it, and both reach the Kafka broker on the root namespace's
loopback. Bridging needs no IP forwarding, the bridge has no address, and the namespaces have
no route anywhere else, so nothing the lab sends can leave the machine.

Each link direction gets a ``tbf`` (capacity) and, when the direction asks for delay, jitter
or loss, a ``netem`` above it. Kernels without ``sch_netem`` (this project's CI machines: a
Firecracker kernel offering only tbf, htb and the fifos) can still shape capacity; a spec that
needs netem there fails with a LabError saying so, instead of silently running unshaped.
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType

log = logging.getLogger(__name__)

CLIENT_IP = "10.77.0.1"
SERVER_IP = "10.77.0.2"
_PREFIX = re.compile(r"^iw[0-9a-f]{6}$")


class LabError(RuntimeError):
    """The lab cannot be built here (not root, a tool missing, a command refused)."""


@dataclass(frozen=True, slots=True)
class Shape:
    """One direction of the link."""

    rate_mbit: float = 100.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0

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
            (self.client_ns, self.client_if, f"{p}cb", self.client_ip, self.link.uplink),
            (self.server_ns, self.server_if, f"{p}sb", self.server_ip, self.link.downlink),
        )
        for ns, inner, outer, ip, shape in ends:
            _run(["ip", "netns", "add", ns])
            _run(["ip", "link", "add", inner, "type", "veth", "peer", "name", outer])
            _run(["ip", "link", "set", inner, "netns", ns])
            _run(["ip", "link", "set", outer, "master", self.bridge])
            _run(["ip", "link", "set", outer, "up"])
            self.ip(ns, "link", "set", "lo", "up")
            self.ip(ns, "addr", "add", f"{ip}/24", "dev", inner)
            self.ip(ns, "link", "set", inner, "up")
            tc = ["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", inner]
            if shape.needs_netem:
                if not netem_available():
                    raise LabError(
                        "this kernel has no sch_netem: the lab can shape capacity (tbf) but "
                        "not delay, jitter or loss; use a spec without them"
                    )
                _run([*tc, "root", "handle", "1:", "netem", *shape.netem_args()])
                _run([*tc, "parent", "1:1", "handle", "10:", "tbf", *shape.tbf_args()])
            else:
                _run([*tc, "root", "handle", "1:", "tbf", *shape.tbf_args()])
        # no IPv6 on the lab interfaces: no router solicitations or DAD noise in the flows
        for ns, inner in ((self.client_ns, self.client_if), (self.server_ns, self.server_if)):
            self.exec(ns, ["sysctl", "-qw", f"net.ipv6.conf.{inner}.disable_ipv6=1"])
        for outer in (f"{p}cb", f"{p}sb", self.bridge):
            _run(["sysctl", "-qw", f"net.ipv6.conf.{outer}.disable_ipv6=1"], check=False)

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
        remove(self.prefix)


def remove(prefix: str) -> None:
    """Delete the namespaces, veths and bridge of the lab ``prefix`` (missing parts are fine)."""
    for ns in (f"{prefix}c", f"{prefix}s"):
        pids = _run(["ip", "netns", "pids", ns], check=False).stdout.split()
        for pid in pids:  # a process left in the namespace would keep its interfaces alive
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), 9)
        _run(["ip", "netns", "del", ns], check=False)  # takes the veth pairs with it
    _run(["ip", "link", "del", f"{prefix}br"], check=False)


def sweep() -> list[str]:
    """Remove every lab on this machine (namespaces named iw + 6 hex + c/s); return prefixes."""
    listed = _run(["ip", "netns", "list"], check=False).stdout.split("\n")
    names = {line.split()[0] for line in listed if line.strip()}
    prefixes = sorted({n[:-1] for n in names if n[-1:] in ("c", "s") and _PREFIX.match(n[:-1])})
    links = _run(["ip", "-o", "link", "show", "type", "bridge"], check=False).stdout
    for m in re.finditer(r"^\d+: (iw[0-9a-f]{6})br[:@]", links, re.M):
        if m.group(1) not in prefixes:
            prefixes.append(m.group(1))
    for prefix in prefixes:
        remove(prefix)
    return prefixes
