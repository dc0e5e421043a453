"""goflow2's protobuf output (``-format bin``): one varint-length-prefixed FlowMessage per
Kafka record. Parsed by the protobuf runtime (upb, in C) against a schema declared here with
only the fields inferwatch reads; the field numbers are goflow2's (its pb/flow.proto).

>>> msg = build_message(src_addr=bytes([10, 0, 0, 1]), dst_addr=bytes([10, 0, 0, 2]),
...                     bytes=1500, packets=3, proto=6, src_port=5000, dst_port=443)
>>> rec = decode(frame(msg.SerializeToString()))
>>> rec.src_addr, rec.dst_addr, rec.bytes, rec.proto
('10.0.0.1', '10.0.0.2', 1500, 6)
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import msgspec
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from streams.codecs.formats import Goflow2Record

_F = descriptor_pb2.FieldDescriptorProto
# name, number, type: the subset of goflow2's FlowMessage that inferwatch reads
FIELDS = (
    ("type", 1, _F.TYPE_UINT32),
    ("sampling_rate", 3, _F.TYPE_UINT64),
    ("src_addr", 6, _F.TYPE_BYTES),
    ("dst_addr", 7, _F.TYPE_BYTES),
    ("bytes", 9, _F.TYPE_UINT64),
    ("packets", 10, _F.TYPE_UINT64),
    ("sampler_address", 11, _F.TYPE_BYTES),
    ("in_if", 18, _F.TYPE_UINT32),
    ("out_if", 19, _F.TYPE_UINT32),
    ("proto", 20, _F.TYPE_UINT32),
    ("src_port", 21, _F.TYPE_UINT32),
    ("dst_port", 22, _F.TYPE_UINT32),
    ("tcp_flags", 26, _F.TYPE_UINT32),
    ("time_received_ns", 110, _F.TYPE_UINT64),
    ("time_flow_start_ns", 111, _F.TYPE_UINT64),
    ("time_flow_end_ns", 112, _F.TYPE_UINT64),
)


def _message_class() -> Any:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="inferwatch/goflow2_flow.proto", package="inferwatch.goflow2", syntax="proto3"
    )
    msg = fdp.message_type.add(name="FlowMessage")
    for name, number, ftype in FIELDS:
        msg.field.add(name=name, number=number, type=ftype, label=_F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("inferwatch.goflow2.FlowMessage")
    )


FlowMessage = _message_class()


_COPIED = (
    "bytes", "packets", "time_flow_start_ns", "time_flow_end_ns", "time_received_ns",
    "src_port", "dst_port", "proto", "in_if", "out_if", "tcp_flags",
)  # fmt: skip


class ProtobufError(ValueError):
    """Not a goflow2 FlowMessage; the message says why."""


def build_message(**fields: Any) -> Any:
    return FlowMessage(**fields)


def frame(payload: bytes) -> bytes:
    """Prefix ``payload`` with its length as a varint (goflow2's framing)."""
    out = bytearray()
    n = len(payload)
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out) + payload


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while i < len(data) and shift < 64:
        c = data[i]
        i += 1
        value |= (c & 0x7F) << shift
        if not c & 0x80:
            return value, i
        shift += 7
    raise ProtobufError("truncated length prefix")


def _address(raw: bytes, name: str) -> str:
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    if len(raw) == 16:
        return socket.inet_ntop(socket.AF_INET6, raw)
    raise ProtobufError(f"{name} has {len(raw)} bytes, not 4 or 16")


def decode(value: bytes) -> Goflow2Record:
    """One Kafka record -> the same record type as goflow2's JSON, or ProtobufError."""
    try:
        length, start = _varint(value, 0)
    except ProtobufError:
        length, start = -1, 0
    body = value[start:] if length == len(value) - start else value
    msg = FlowMessage()
    try:
        msg.ParseFromString(body)
    except DecodeError as exc:
        raise ProtobufError(f"not a protobuf FlowMessage: {exc}") from exc
    if not msg.src_addr or not msg.dst_addr:
        raise ProtobufError("missing src_addr or dst_addr")
    fields = {
        "src_addr": _address(msg.src_addr, "src_addr"),
        "dst_addr": _address(msg.dst_addr, "dst_addr"),
        "sampler_address": (
            _address(msg.sampler_address, "sampler_address") if msg.sampler_address else ""
        ),
        "sampling_rate": min(msg.sampling_rate, 2**31),
    }
    for name in _COPIED:
        fields[name] = getattr(msg, name)
    try:  # the ranges are Goflow2Record's own, as for goflow2's JSON
        return msgspec.convert(fields, Goflow2Record)
    except msgspec.ValidationError as exc:
        raise ProtobufError(f"out of range: {exc}") from exc


def split_file(data: bytes) -> Iterator[bytes]:
    """The Kafka records of a goflow2 file transport capture (``frame`` + "\\n" each)."""
    i = 0
    while i < len(data):
        length, start = _varint(data, i)
        end = start + length
        if end > len(data):
            raise ProtobufError("truncated message at the end of the file")
        yield data[i:end]
        i = end + 1 if end < len(data) and data[end] == 0x0A else end
