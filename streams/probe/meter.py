"""``inferwatch probe``: packets to native flow records with packet summaries, into flows.raw.

The flow metering is nfstream's (a maintained C flow meter with nDPI inside, driven from
Python): it reassembles bidirectional flows from a live interface or a capture file, survives
malformed packets, reads the TLS/QUIC server name, and records the first packets of each flow
(``splt_analysis``). Writing our own packet parser would repeat all of that, less well; see
docs/probe.md. Each expired flow becomes one ``inferwatch.flow/1`` record (docs/formats.md).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from streams.config import Config
from streams.errors import InferwatchError
from streams.kafka import start_producer

log = logging.getLogger(__name__)

SCHEMA = "inferwatch.flow/1"


@dataclass(frozen=True, slots=True)
class ProbeOptions:
    source: str  # an interface name or a capture file
    exporter: str = "probe-1"
    iface_in: int = 1
    link: str | None = None
    first_packets: int = 64  # packet summaries per flow (0: none; at most 255)
    idle_timeout: int = 15  # seconds without packets before a flow is exported
    active_timeout: int = 120  # a longer flow is exported in pieces of this length
    bpf_filter: str | None = None
    retransmissions: bool = True  # count TCP retransmissions (costs Python per packet)


class Initiators:
    """Who opened each flow that nfstream cut into pieces. A flow longer than the active
    timeout is exported in pieces, and nfstream orients each piece by its first packet, which
    after the first piece is often the server's: the "forward" direction would flip mid-flow
    (and with it a link's "in" and "out"). The probe keeps the first piece's orientation for
    the later ones. Bounded: the oldest open flows are forgotten beyond ``cap``."""

    ACTIVE_TIMEOUT = 1  # nfstream's expiration_id of a piece cut by the active timeout

    def __init__(self, cap: int = 100_000) -> None:
        self.cap = cap
        self.open: collections.OrderedDict[tuple[Any, ...], tuple[str, int]] = (
            collections.OrderedDict()
        )

    def orient(self, rec: dict[str, Any], expiration_id: int) -> dict[str, Any]:
        a, b = (rec["src_ip"], rec["src_port"]), (rec["dst_ip"], rec["dst_port"])
        key = (min(a, b), max(a, b), rec["proto"])
        first = self.open.pop(key, None)
        if first is not None and first != a:
            _swap(rec)
        if expiration_id == self.ACTIVE_TIMEOUT:  # more pieces will come
            self.open[key] = (rec["src_ip"], rec["src_port"])
            while len(self.open) > self.cap:
                self.open.popitem(last=False)
        return rec


def _swap(rec: dict[str, Any]) -> None:
    for x, y in (("src_ip", "dst_ip"), ("src_port", "dst_port"), ("bytes_fwd", "bytes_rev"),
                 ("packets_fwd", "packets_rev"), ("retrans_fwd", "retrans_rev")):  # fmt: skip
        if x not in rec:
            continue
        rec[x], rec[y] = rec[y], rec[x]
    if "pkts" in rec:
        rec["pkts"]["dir"] = [1 - d for d in rec["pkts"]["dir"]]


class Retransmissions:
    """TCP retransmissions per flow direction, from the sequence numbers of every packet.

    A segment that starts before the highest sequence number the direction has sent (its
    ``next``) carries data sent before: a retransmission, whether the first copy was lost
    before or after the meter (the meter saw the first copy, or the gap it left). A SYN or a
    FIN counts for one sequence number, so a repeated SYN or FIN counts too; a keep-alive (one
    byte at ``next - 1``) does not. Reordering before the meter counts as well: a meter cannot
    tell it from a fast retransmission without timing, and it is rare on one path. Counts are
    packets per direction, ``[fwd, rev]``; direction 0 is the flow's first packet's."""

    __slots__ = ("count", "next")

    def __init__(self) -> None:
        self.next = [-1, -1]  # per direction: the sequence number after its highest segment
        self.count = [0, 0]

    def segment(self, direction: int, seq: int, length: int, keepalive_ok: bool) -> None:
        """One TCP segment: its sequence number and the sequence numbers it occupies (payload,
        plus one for SYN and for FIN); ``keepalive_ok``: a one-number segment may be a
        keep-alive (no SYN or FIN)."""
        if length <= 0:
            return
        end = (seq + length) & 0xFFFFFFFF
        nxt = self.next[direction]
        behind = (nxt - seq) & 0xFFFFFFFF
        if nxt < 0 or behind == 0 or behind >= 1 << 31:  # new data (or a gap: loss upstream)
            self.next[direction] = end
            return
        if not (keepalive_ok and length == 1 and behind == 1):
            self.count[direction] += 1
        if 0 < (end - nxt) & 0xFFFFFFFF < 1 << 31:  # old data with new after it
            self.next[direction] = end


def _tcp_segment(packet: Any) -> tuple[int, int, bool] | None:
    """(sequence number, sequence numbers occupied, may be a keep-alive) of an nfstream packet
    if it is TCP, else None."""
    if packet.protocol != 6:
        return None
    ip = packet.ip_packet
    if packet.ip_version == 4:
        off = (ip[0] & 15) * 4
    elif len(ip) > 6 and ip[6] == 6:  # IPv6 without extension headers
        off = 40
    else:
        return None
    if len(ip) < off + 8:
        return None
    flags = int(packet.syn) + int(packet.fin)
    seq = int.from_bytes(ip[off + 4 : off + 8], "big")
    return seq, packet.payload_size + flags, flags == 0


def retransmission_plugin() -> Any:
    """An nfstream plugin keeping a :class:`Retransmissions` per flow in ``udps.retrans``."""
    from nfstream import NFPlugin

    class TcpRetransmissions(NFPlugin):  # type: ignore[misc]
        def on_init(self, packet: Any, flow: Any) -> None:
            flow.udps.retrans = Retransmissions()
            self.on_update(packet, flow)

        def on_update(self, packet: Any, flow: Any) -> None:
            seg = _tcp_segment(packet)
            if seg is not None:
                flow.udps.retrans.segment(packet.direction, *seg)

    return TcpRetransmissions()


def to_record(
    flow: Any, opts: ProbeOptions, initiators: Initiators | None = None
) -> dict[str, Any]:
    """One nfstream NFlow as an inferwatch.flow/1 record (oriented from the flow's initiator
    across active-timeout pieces when ``initiators`` is given)."""
    rec: dict[str, Any] = {
        "schema": SCHEMA,
        "ts_start": flow.bidirectional_first_seen_ms / 1000.0,
        "ts_end": flow.bidirectional_last_seen_ms / 1000.0,
        "src_ip": flow.src_ip,
        "dst_ip": flow.dst_ip,
        "src_port": flow.src_port,
        "dst_port": flow.dst_port,
        "proto": flow.protocol,
        "bytes_fwd": flow.src2dst_bytes,
        "packets_fwd": flow.src2dst_packets,
        "bytes_rev": flow.dst2src_bytes,
        "packets_rev": flow.dst2src_packets,
        "exporter": opts.exporter,
        "iface_in": opts.iface_in,
    }
    if opts.link:
        rec["link"] = opts.link
    name = flow.requested_server_name
    if name:
        rec["server_name"] = name[:253]
    if opts.first_packets:
        dirs, sizes, gaps = flow.splt_direction, flow.splt_ps, flow.splt_piat_ms
        n = next((i for i, d in enumerate(dirs) if d < 0), len(dirs))  # -1 pads the lists
        if n:
            rec["pkts"] = {
                "size": list(sizes[:n]),
                "dir": list(dirs[:n]),
                "iat_us": [max(0, int(g * 1000)) for g in gaps[:n]],
            }
    retrans = getattr(getattr(flow, "udps", None), "retrans", None)
    if retrans is not None and flow.protocol == 6:
        rec["retrans_fwd"], rec["retrans_rev"] = retrans.count
    if initiators is not None:
        initiators.orient(rec, int(getattr(flow, "expiration_id", 0)))
    return rec


# the first four bytes of a pcap file (either byte order, micro- or nanosecond) and of pcapng
CAPTURE_MAGIC = {
    bytes.fromhex(m) for m in ("d4c3b2a1", "a1b2c3d4", "4d3cb2a1", "a1b23c4d", "0a0d0d0a")
}


def check_capture(path: Path) -> None:
    """InferwatchError naming ``path`` unless it starts as a pcap or pcapng capture does.

    >>> check_capture(Path(__file__))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streams.errors.InferwatchError: .../meter.py: not a pcap or pcapng capture (it starts with ...)
    """
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise InferwatchError(f"{path}: cannot read: {exc.strerror}") from exc
    if head not in CAPTURE_MAGIC:
        shown = head.decode("ascii", "replace")
        raise InferwatchError(f"{path}: not a pcap or pcapng capture (it starts with {shown!r})")


def meter(opts: ProbeOptions) -> Iterator[Any]:
    """nfstream's flows for ``opts.source`` (blocking; runs in a thread)."""
    if Path(opts.source).is_file():
        check_capture(Path(opts.source))
    try:
        from nfstream import NFStreamer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise InferwatchError("the probe needs nfstream: pip install 'inferwatch[probe]'") from exc
    if not 0 <= opts.first_packets <= 255:
        raise InferwatchError("--first-packets must be between 0 and 255")
    try:
        streamer = NFStreamer(
            source=opts.source,
            bpf_filter=opts.bpf_filter,
            idle_timeout=opts.idle_timeout,
            active_timeout=opts.active_timeout,
            accounting_mode=1,  # IP bytes, as NetFlow/IPFIX count them
            splt_analysis=opts.first_packets,
            n_dissections=20,
            statistical_analysis=False,
            n_meters=1,
            udps=retransmission_plugin() if opts.retransmissions else None,
        )
    except (ValueError, OSError) as exc:
        raise InferwatchError(f"cannot meter {opts.source!r}: {exc}") from exc
    return iter(streamer)


async def run_probe(
    opts: ProbeOptions,
    cfg: Config,
    topic: str,
    on_record: Callable[[int], None] | None = None,
) -> int:
    """Meter ``opts.source`` into ``topic`` until the capture ends (or forever on a live
    interface); return the number of records published."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=10_000)
    stop = threading.Event()

    def read() -> None:
        initiators = Initiators()
        try:
            for flow in meter(opts):
                if stop.is_set():
                    break
                data = orjson.dumps(to_record(flow, opts, initiators))
                asyncio.run_coroutine_threadsafe(queue.put(data), loop).result()
        except BaseException as exc:  # noqa: BLE001 - handed to the event loop, raised there
            asyncio.run_coroutine_threadsafe(queue.put(exc), loop).result()
        else:
            asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

    producer = await start_producer(cfg, "probe", linger_ms=20, enable_idempotence=True)
    reader = threading.Thread(target=read, name="probe-meter", daemon=True)
    reader.start()
    sent = 0
    pending: list[asyncio.Future[Any]] = []
    try:
        while True:
            item = await queue.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            pending.append(await producer.send(topic, item, key=opts.exporter.encode()))
            if len(pending) >= 1000 or queue.empty():
                await asyncio.gather(*pending)  # a refused delivery raises here, not silently
                sent += len(pending)
                pending.clear()
                if on_record:
                    on_record(sent)
        await asyncio.gather(*pending)
        sent += len(pending)
    finally:
        stop.set()
        await producer.stop()
    log.info("probe: %d flow records from %s published to %s", sent, opts.source, topic)
    return sent
