"""The probe on nDPI's test captures, flow by flow against nDPI's expected results.

``python -m lab.ndpi [DIR] [--idle-timeout S] [--active-timeout S] [--record OUT]`` meters
every capture in DIR (default ``lab/thirdparty/ndpi``: nDPI's captures and its ``*.out`` results,
LGPL-3.0) with the probe's own metering (``streams.probe.meter`` and ``to_record``, exactly
what ``inferwatch probe --pcap`` publishes), and compares the flows with the ``.out`` file's:
how many each side counts, and how many of nDPI's flows the probe has (same protocol and the
same two endpoints, either direction). A capture the probe cannot read, or a record it cannot
build, is reported as a failure, never skipped. docs/probe.md explains the differences.

``--record OUT`` also writes the captures as a labelled dataset in the lab recordings' layout
(``flows.jsonl``: the probe's records; ``truth.jsonl``: one line per flow nDPI lists, with the
class ``class_of`` gives its nDPI protocol and category): real traffic of none of the AI
classes, which ``inferwatch eval classify --dataset OUT`` judges the classifier on.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from streams.codecs.decode import BatchDecoder
from streams.probe.meter import ProbeOptions, meter, to_record

HERE = Path(__file__).parent / "thirdparty" / "ndpi"
CAPTURES = (".pcap", ".pcapng")
PROTOCOLS = {"TCP": 6, "UDP": 17, "ICMP": 1, "IGMP": 2, "ICMPV6": 58, "SCTP": 132}
_LINE = re.compile(r"^\t\d+\t(\S+) (\S+) (?:<->|->) (\S+) \[")  # then [VLAN: ..] or [proto: ..]
_PROTO = re.compile(r"\[proto: [^/\]]*/([^\]]+)\]")
_CATEGORY = re.compile(r"\[cat: ([^/\]]+)")

Key = tuple[int, frozenset[tuple[str, int]]]


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return str(ipaddress.ip_address(host.strip("[]"))), int(port)


def key(proto: int, a: tuple[str, int], b: tuple[str, int]) -> Key:
    return proto, frozenset((a, b))


def expected(out_file: Path) -> list[Key]:
    """The flows nDPI lists in ``out_file``."""
    return [k for k, _, _ in listed(out_file)]


def listed(out_file: Path) -> list[tuple[Key, str, str]]:
    """The flows nDPI lists in ``out_file``, each with its nDPI protocol and category."""
    flows = []
    for line in out_file.read_text(errors="replace").splitlines():
        m = _LINE.match(line)
        if m:
            name = m.group(1).upper()
            proto = PROTOCOLS.get(name)
            if proto is None:
                proto = int(name) if name.isdigit() else -1
            p, c = _PROTO.search(line), _CATEGORY.search(line)
            k = key(proto, _endpoint(m.group(2)), _endpoint(m.group(3)))
            flows.append((k, p.group(1) if p else "Unknown", c.group(1) if c else "Unknown"))
    return flows


_REALTIME = ("RTP", "STUN", "DTLS", "Skype_TeamsCall", "GoogleCall", "Discord", "Zoom")
_OTHER = ("DNS", "ICMP", "DHCP", "IGMP", "SSDP", "SSH", "NTP", "Steam", "Dota2")
_BULK = ("BitTorrent", "FTP_DATA", "TFTP")


def class_of(protocol: str, category: str) -> str:
    """Our class for a flow nDPI names (``TLS.NetFlix``, ``Video``): a rule of thumb, by the
    application's usual behaviour; none is an AI class (nDPI's captures hold no AI traffic).

    >>> class_of("TLS.NetFlix", "Video"), class_of("DNS.NetFlix", "Network")
    ('video', 'other')
    >>> class_of("Discord", "Collaborative"), class_of("TLS.Instagram", "SocialNetwork")
    ('realtime-media', 'web')
    """
    parts = protocol.split(".")
    if parts[0] in _OTHER or category in ("Network", "System", "RemoteAccess", "Game"):
        return "other"
    if any(p in _REALTIME for p in parts) or category == "VoIP":
        return "realtime-media"
    if category in ("Video", "Streaming") or any(p in ("YouTube", "NetFlix") for p in parts):
        return "video"
    if parts[0] in _BULK or category in ("Download", "DataTransfer"):
        return "bulk"
    return "web"


@dataclass
class CaptureReport:
    name: str
    ndpi: int = 0
    probe: int = 0
    matched: int = 0  # nDPI's flows the probe has
    records_ok: int = 0  # probe records the worker's decoder accepts
    error: str | None = None
    extra: Counter[int] = field(default_factory=Counter)  # probe-only flows per protocol
    missing: list[Key] = field(default_factory=list)


def _ends(record: dict[str, Any]) -> tuple[tuple[str, int], tuple[str, int]]:
    """A probe record's (source, destination) endpoints, addresses as nDPI writes them."""
    return (
        (str(ipaddress.ip_address(record["src_ip"])), record["src_port"]),
        (str(ipaddress.ip_address(record["dst_ip"])), record["dst_port"]),
    )


def check(
    capture: Path, idle_timeout: int = 15, active_timeout: int = 120,
    keep: list[dict[str, Any]] | None = None,
) -> CaptureReport:  # fmt: skip
    """Meter ``capture`` and compare with nDPI's flows; the records go to ``keep`` if given."""
    report = CaptureReport(capture.name)
    want = expected(capture.with_name(capture.name + ".out"))
    report.ndpi = len(want)
    opts = ProbeOptions(
        str(capture), exporter="ndpi-check", idle_timeout=idle_timeout,
        active_timeout=active_timeout,
    )  # fmt: skip
    records: list[dict[str, Any]] = []
    try:
        records.extend(to_record(flow, opts) for flow in meter(opts))
    except Exception as exc:  # noqa: BLE001 - reported per capture, the run goes on
        report.error = f"{type(exc).__name__}: {exc}"
    report.probe = len(records)
    if keep is not None:
        keep.extend(records)
    values = [orjson.dumps(r) for r in records]
    appended = np.array([r["ts_end"] for r in records], dtype=np.float64)  # as if sent live
    report.records_ok = len(BatchDecoder().decode(values, appended).batch) if values else 0
    got = Counter(key(r["proto"], *_ends(r)) for r in records)
    need = Counter(want)
    for k, n in need.items():
        report.matched += min(n, got.get(k, 0))
        if got.get(k, 0) < n:
            report.missing.append(k)
    for k, n in got.items():
        if n > need.get(k, 0):
            report.extra[k[0]] += n - need.get(k, 0)
    return report


def check_all(
    directory: Path, idle_timeout: int = 15, active_timeout: int = 120, record: Path | None = None
) -> list[CaptureReport]:
    captures = sorted(p for p in directory.iterdir() if p.suffix in CAPTURES)
    reports = []
    flows: list[dict[str, Any]] = []
    truth = []
    for p in captures:
        records: list[dict[str, Any]] | None = None if record is None else []
        reports.append(check(p, idle_timeout, active_timeout, records))
        if records is None:
            continue
        labels = {k: (proto, cat) for k, proto, cat in listed(p.with_name(p.name + ".out"))}
        flows.extend(records)
        for r in records:
            client, server = _ends(r)
            found = labels.get(key(r["proto"], client, server))
            if found is not None:
                truth.append({
                    "class": class_of(*found), "proto": r["proto"], "client_ip": client[0],
                    "client_port": client[1], "server_ip": server[0], "server_port": server[1],
                    "capture": p.name, "ndpi_protocol": found[0], "ndpi_category": found[1],
                })  # fmt: skip
    if record is not None:
        record.mkdir(parents=True, exist_ok=True)
        (record / "flows.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in flows))
        (record / "truth.jsonl").write_bytes(b"".join(orjson.dumps(t) + b"\n" for t in truth))
    return reports


def table(reports: list[CaptureReport]) -> str:
    rows = [
        "| capture | nDPI flows | probe flows | nDPI flows found | probe-only (by IP protocol) |",
        "|---|---:|---:|---:|---|",
    ]
    for r in reports:
        extra = ", ".join(f"{n}×{p}" for p, n in sorted(r.extra.items())) or ""
        name = r.name + (f" (error: {r.error})" if r.error else "")
        rows.append(f"| {name} | {r.ndpi} | {r.probe} | {r.matched} | {extra} |")
    t = [sum(x) for x in zip(*((r.ndpi, r.probe, r.matched) for r in reports), strict=True)]
    rows.append(f"| **all {len(reports)}** | {t[0]} | {t[1]} | {t[2]} | |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.ndpi", description=__doc__.split("\n")[0])
    ap.add_argument("directory", nargs="?", type=Path, default=HERE)
    ap.add_argument("--idle-timeout", type=int, default=15)
    ap.add_argument("--active-timeout", type=int, default=120)
    ap.add_argument("--record", type=Path, metavar="OUT",
                    help="also write the flows and their classes as a dataset here")  # fmt: skip
    args = ap.parse_args(argv)
    reports = check_all(args.directory, args.idle_timeout, args.active_timeout, args.record)
    print(table(reports))
    failed = [r.name for r in reports if r.error or r.records_ok != r.probe]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
