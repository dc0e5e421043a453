"""The wire formats accepted on flows.raw, as typed msgspec structs decoded in C.

Each struct states the types and ranges of its fields; msgspec checks them while parsing, so
a well-formed record costs about a microsecond and a bad one raises with a precise message
that :func:`classify_error` maps onto the bounded :class:`Reason` set.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from streams.codecs.reasons import Reason

MAX_COUNTER = 2**53  # exact in float64; far beyond any real flow
Counter = Annotated[int, Meta(ge=0, le=MAX_COUNTER)]
Port = Annotated[int, Meta(ge=0, le=65535)]
ProtoNum = Annotated[int, Meta(ge=0, le=255)]
Iface = Annotated[int, Meta(ge=0, le=2**32 - 1)]
Rate = Annotated[int, Meta(ge=0, le=2**31)]
Flags = Annotated[int, Meta(ge=0, le=0xFFFF)]
Addr = Annotated[str, Meta(min_length=2, max_length=45)]
Name = Annotated[str, Meta(max_length=253)]
LinkId = Annotated[str, Meta(min_length=1, max_length=128)]
Seconds = Annotated[float, Meta(ge=0, le=4e9)]
Nanos = Annotated[int, Meta(ge=0, le=4 * 10**18)]


class PmacctRecord(Struct, gc=False):
    """pmacct JSON (nfacctd/pmacctd print or Kafka plugin); field set depends on ``aggregate``."""

    ip_src: Addr
    ip_dst: Addr
    packets: Counter
    bytes: Counter
    port_src: Port = 0
    port_dst: Port = 0
    ip_proto: str | ProtoNum = 0
    tcp_flags: str | Flags = 0
    timestamp_start: str | Seconds | None = None
    timestamp_end: str | Seconds | None = None
    peer_ip_src: Annotated[str, Meta(max_length=45)] = ""
    iface_in: Iface = -1  # -1: unknown (defaults are not range-checked)
    iface_out: Iface = -1
    sampling_rate: Rate = 1


class Goflow2Record(Struct, gc=False):
    """goflow2 v2 JSON (``-format json``); ``proto`` comes as a name ("TCP") or a number."""

    src_addr: Addr
    dst_addr: Addr
    bytes: Counter
    packets: Counter
    time_flow_start_ns: Nanos = 0
    time_flow_end_ns: Nanos = 0
    time_received_ns: Nanos = 0
    src_port: Port = 0
    dst_port: Port = 0
    proto: str | ProtoNum = 0
    in_if: Iface = -1
    out_if: Iface = -1
    sampler_address: Annotated[str, Meta(max_length=45)] = ""
    sampling_rate: Rate = 0  # 0 = unknown, taken as 1
    tcp_flags: Flags = 0


PacketList = Annotated[list[Annotated[int, Meta(ge=0, le=2**31)]], Meta(max_length=255)]


class PacketSummary(Struct, gc=False, array_like=False):
    """The first packets of a flow: sizes (bytes), directions (0 fwd, 1 rev) and gaps (µs)."""

    size: PacketList
    dir: PacketList
    iat_us: PacketList


class NativeRecord(Struct, gc=False):
    """inferwatch's own record, schema ``inferwatch.flow/1`` (docs/formats.md)."""

    schema: Literal["inferwatch.flow/1"]
    ts_start: Seconds
    ts_end: Seconds
    src_ip: Addr
    dst_ip: Addr
    proto: ProtoNum
    bytes_fwd: Counter
    packets_fwd: Counter
    src_port: Port = 0
    dst_port: Port = 0
    bytes_rev: Counter = 0
    packets_rev: Counter = 0
    sampling_rate: Annotated[int, Meta(ge=1, le=2**31)] = 1
    exporter: Annotated[str, Meta(max_length=45)] = ""
    iface_in: Iface = -1  # -1: unknown (defaults are not range-checked)
    iface_out: Iface = -1
    link: LinkId | None = None
    tcp_flags: Flags = 0
    server_name: Name | None = None
    pkts: PacketSummary | None = None
    retrans_fwd: Counter = -1  # -1: not counted (defaults are not range-checked)
    retrans_rev: Counter = -1


DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    "pmacct": msgspec.json.Decoder(PmacctRecord),
    "goflow2": msgspec.json.Decoder(Goflow2Record),
    "native": msgspec.json.Decoder(NativeRecord),
}
_GENERIC = msgspec.json.Decoder()

COUNTER_FIELDS = frozenset(
    {"bytes", "packets", "bytes_fwd", "packets_fwd", "bytes_rev", "packets_rev"}
)


def sniff(value: bytes) -> str | None:
    """Guess the format of one message from the keys it contains (cheap substring tests).

    >>> sniff(b'{"ip_src": "10.0.0.1"}'), sniff(b'{"src_addr": "a", "time_flow_start_ns": 1}')
    ('pmacct', 'goflow2')
    >>> sniff(b'{"schema": "inferwatch.flow/1"}'), sniff(b'[1, 2]')
    ('native', None)
    """
    if b'"schema"' in value:
        return "native"
    if b'"src_addr"' in value or b'"sampler_address"' in value:
        return "goflow2"
    if b'"ip_src"' in value or b'"peer_ip_src"' in value:
        return "pmacct"
    return None


def classify_error(exc: Exception) -> tuple[Reason, str]:
    """Map a msgspec error onto a reason and a short human detail.

    >>> classify_error(msgspec.ValidationError("Object missing required field `bytes`"))[0]
    <Reason.MISSING_FIELD: 'missing_field'>
    >>> classify_error(msgspec.ValidationError("Expected `int` >= 0 - at `$.bytes`"))[0]
    <Reason.NEGATIVE_COUNTER: 'negative_counter'>
    >>> classify_error(msgspec.ValidationError("Expected `int`, got `str` - at `$.port_src`"))[0]
    <Reason.WRONG_TYPE: 'wrong_type'>
    """
    msg = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        field = msg.rsplit("$.", 1)[-1].rstrip("`") if "$." in msg else ""
        if field == "schema":
            return Reason.UNKNOWN_FORMAT, msg
        if "missing required field" in msg:
            return Reason.MISSING_FIELD, msg
        if ">= 0" in msg and field in COUNTER_FIELDS:
            return Reason.NEGATIVE_COUNTER, msg
        if "Expected `object`" in msg and "at `$`" not in msg and "$." not in msg:
            return Reason.NOT_OBJECT, msg
        if ", got `" in msg:
            return Reason.WRONG_TYPE, msg
        return Reason.INVALID_VALUE, msg
    low = msg.lower()
    if "utf-8" in low or "utf8" in low:
        return Reason.BAD_ENCODING, msg
    return Reason.NOT_JSON, msg


def diagnose_unknown(value: bytes) -> tuple[Reason, str]:
    """Why a message that matched no format is refused: not JSON, not an object, or unknown."""
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Reason.BAD_ENCODING, f"not UTF-8 at byte {exc.start}"
    try:
        obj = _GENERIC.decode(value)
    except (msgspec.DecodeError, RecursionError, ValueError) as exc:
        return Reason.NOT_JSON, str(exc)[:200]
    if not isinstance(obj, dict):
        return Reason.NOT_OBJECT, f"a JSON {type(obj).__name__}, not an object"
    keys = ", ".join(sorted(str(k) for k in obj)[:8])
    return Reason.UNKNOWN_FORMAT, f"no supported format has the keys: {keys}"
