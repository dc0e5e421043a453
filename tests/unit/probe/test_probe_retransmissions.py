"""The probe counts TCP retransmissions per direction, on a capture written packet by packet.

The capture is built here with dpkt so that every retransmission in it is known by
construction (a repeated SYN, a resent segment across the 2^32 sequence wrap, a gap left by a
loss before the meter and filled later, a repeated FIN), beside what must not count (a
keep-alive, new data after a gap, pure ACKs). It is metered by nfstream through the probe's
own code, as ``inferwatch probe --pcap`` does, and the records are read by the worker's decoder.
"""

from __future__ import annotations

import socket

import dpkt
import orjson
import pytest

from streams.codecs.decode import BatchDecoder
from streams.probe.meter import ProbeOptions, Retransmissions, meter, to_record

C4, S4 = "10.0.0.1", "10.0.0.2"
C6, S6 = "fd00::1", "fd00::2"
WRAP = 2**32


def _frame(src: str, dst: str, sport: int, dport: int, seq: int, flags: int, payload: int) -> bytes:
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq % WRAP, ack=1, flags=flags, win=65535)
    tcp.data = b"x" * payload
    if ":" in src:
        ip6 = dpkt.ip6.IP6(src=socket.inet_pton(socket.AF_INET6, src),
                           dst=socket.inet_pton(socket.AF_INET6, dst), nxt=6, hlim=64)  # fmt: skip
        ip6.data, ip6.plen = tcp, len(bytes(tcp))
        eth = dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP6, data=ip6)
    else:
        ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=6, ttl=64)
        ip.data = tcp
        ip.len = 20 + len(bytes(tcp))
        eth = dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
    eth.src, eth.dst = b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02"
    return bytes(eth)


SYN, ACK, PSH, FIN = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_PUSH, dpkt.tcp.TH_FIN
S_ISN = WRAP - 3  # the server's sequence numbers wrap during the flow


def _ipv4_flow() -> list[tuple[str, int, int, int]]:
    """(who, seq, flags, payload bytes) of one connection; its retransmissions: 3 by the
    client, 2 by the server."""
    return [
        ("c", 1000, SYN, 0),
        ("c", 1000, SYN, 0),  # the SYN again: retransmitted (client 1)
        ("s", S_ISN, SYN | ACK, 0),
        ("c", 1001, ACK, 0),
        ("c", 1001, ACK | PSH, 100),  # the request
        ("s", S_ISN + 1, ACK, 1000),  # crosses 2^32
        ("s", S_ISN + 1001, ACK, 1000),
        ("s", S_ISN + 1, ACK, 1000),  # the first segment again, across the wrap (server 1)
        ("s", S_ISN + 2001, ACK | PSH, 500),
        ("s", S_ISN + 1001, ACK, 1500),  # the last two again in one segment (server 2)
        ("c", 1100, ACK, 1),  # keep-alive: one byte at next - 1, not counted
        ("c", 1101, ACK | PSH, 50),
        ("c", 1200, ACK | PSH, 50),  # a gap: 1151-1199 was lost before the meter
        ("c", 1151, ACK | PSH, 49),  # the gap filled: retransmitted (client 2)
        ("c", 1250, FIN | ACK, 0),
        ("c", 1250, FIN | ACK, 0),  # the FIN again (client 3)
        ("s", S_ISN + 2501, FIN | ACK, 0),
        ("c", 1251, ACK, 0),
    ]


def _frames(flows):
    for (cli, srv, sport), packets in flows:
        for who, seq, flags, payload in packets:
            src, dst, sp, dp = (cli, srv, sport, 443) if who == "c" else (srv, cli, 443, sport)
            yield _frame(src, dst, sp, dp, seq, flags, payload)


def _udp_frame() -> bytes:
    udp = dpkt.udp.UDP(sport=5353, dport=53, data=b"q" * 30)
    udp.ulen = len(bytes(udp))
    ip = dpkt.ip.IP(src=socket.inet_aton(C4), dst=socket.inet_aton(S4), p=17, data=udp)
    ip.len = 20 + udp.ulen
    return bytes(dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


def _records(path, **opts):
    o = ProbeOptions(source=str(path), **opts)
    return [to_record(f, o) for f in meter(o)]


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    path = tmp_path_factory.mktemp("retrans") / "retrans.pcap"
    ipv6 = [("c", 7, SYN, 0), ("s", 900, SYN | ACK, 0), ("c", 8, ACK | PSH, 300),
            ("c", 8, ACK | PSH, 300), ("s", 901, ACK, 200)]  # fmt: skip
    frames = [*_frames([((C4, S4, 40000), _ipv4_flow()), ((C6, S6, 40001), ipv6)]), _udp_frame()]
    with path.open("wb") as f:
        w = dpkt.pcap.Writer(f)
        for i, frame in enumerate(frames):  # and a UDP flow, which has no retransmission count
            w.writepkt(frame, ts=1_795_000_000.0 + 0.01 * i)
    return path


def test_every_retransmission_in_the_capture_is_counted_in_its_direction(capture):
    recs = {(r["src_ip"], r["proto"]): r for r in _records(capture)}
    v4 = recs[(C4, 6)]
    assert (v4["packets_fwd"], v4["packets_rev"]) == (11, 7)
    assert (v4["retrans_fwd"], v4["retrans_rev"]) == (3, 2)
    v6 = recs[(C6, 6)]
    assert (v6["retrans_fwd"], v6["retrans_rev"]) == (1, 0)
    assert "retrans_fwd" not in recs[(C4, 17)]  # not TCP: not counted, not zero

    values = [orjson.dumps(r) for r in recs.values()]
    result = BatchDecoder().decode(values, [r["ts_end"] for r in recs.values()])
    assert not result.rejects
    batch = result.batch
    got = {(batch.src_ip[i], int(batch.proto[i])): (int(batch.retrans_fwd[i]),
           int(batch.retrans_rev[i])) for i in range(len(batch))}  # fmt: skip
    assert got == {(C4, 6): (3, 2), (C6, 6): (1, 0), (C4, 17): (-1, -1)}


def test_without_counting_the_records_carry_no_retransmission_field(capture):
    assert all("retrans_fwd" not in r for r in _records(capture, retransmissions=False))


def test_a_segment_resent_long_after_the_wrap_still_counts_and_new_data_never_does():
    r = Retransmissions()
    seq = WRAP - 10_000
    for _ in range(100):  # 100 segments of 1000 bytes: 90 of them after the wrap
        r.segment(0, seq % WRAP, 1000, True)
        seq += 1000
    assert r.count == [0, 0]
    r.segment(0, (WRAP - 10_000) % WRAP, 1000, True)  # the first one, 100 kB back
    r.segment(0, 5000, 1000, True)  # one after the wrap
    r.segment(0, seq % WRAP, 1000, True)  # and new data again
    assert r.count == [2, 0]
