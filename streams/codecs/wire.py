"""flows.v1 micro-batches: a FlowBatch encoded column-wise in one Kafka message (msgpack).

Numeric columns travel as raw little-endian arrays, so encoding and decoding cost a copy, not
a loop; string columns as msgpack arrays. The schema is versioned by ``v``.

>>> from detectors.flows import FlowBatch
>>> b = FlowBatch.from_columns(ts_start=[1.0, 2.0], bytes_fwd=[10, 20], src_ip=["a", "b"])
>>> back = decode_batch(encode_batch(b))
>>> back.bytes_fwd.tolist(), back.src_ip.tolist()
([10, 20], ['a', 'b'])
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from detectors.flows import NUMERIC, OBJECT, PACKETS, FlowBatch

WIRE_VERSION = 1
# Columns added to version 1 after its first release: a micro-batch of an older ingest stage
# lacks them (a rolling upgrade) and they take their defaults.
LATER = frozenset({"retrans_fwd", "retrans_rev"})


class _Wire(msgspec.Struct, array_like=True):
    v: int
    n: int
    num: dict[str, bytes]  # per-record numeric columns and the flat packet arrays, raw
    obj: dict[str, list[Any]]


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_Wire)


TICK_KEY = b"~tick"  # key of watermark ticks on flows.v1; the value is a float64 (seconds)


def encode_tick(watermark: float) -> bytes:
    return np.asarray([watermark], dtype="<f8").tobytes()


def decode_tick(data: bytes) -> float:
    if len(data) != 8:
        raise WireError(f"a watermark tick has 8 bytes, not {len(data)}")
    return float(np.frombuffer(data, dtype="<f8")[0])


class WireError(ValueError):
    """A flows.v1 message that is not a micro-batch of a version we read."""


def encode_batch(batch: FlowBatch) -> bytes:
    num = {name: _raw(getattr(batch, name), t) for name, t in (NUMERIC | PACKETS).items()}
    obj = {name: getattr(batch, name).tolist() for name in OBJECT}
    return _ENCODER.encode(_Wire(WIRE_VERSION, len(batch), num, obj))


def _raw(values: np.ndarray, t: type[np.generic]) -> bytes:
    return np.ascontiguousarray(values, dtype=np.dtype(t).newbyteorder("<")).tobytes()


def decode_batch(data: bytes) -> FlowBatch:
    try:
        wire = _DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise WireError(f"not a flows.v1 micro-batch: {exc}") from exc
    if wire.v != WIRE_VERSION:
        raise WireError(f"flows.v1 micro-batch version {wire.v}, this worker reads {WIRE_VERSION}")
    cols: dict[str, Any] = {}
    for name, t in (NUMERIC | PACKETS).items():
        raw = wire.num.get(name)
        if raw is None and name in LATER:  # from a worker older than the column: its default
            continue
        if raw is None:
            raise WireError(f"micro-batch lacks column {name}")
        cols[name] = np.frombuffer(raw, dtype=np.dtype(t).newbyteorder("<")).astype(t, copy=False)
    for name in OBJECT:
        cols[name] = wire.obj.get(name, [None] * wire.n)
    try:
        return FlowBatch.from_columns(**cols)
    except ValueError as exc:
        raise WireError(str(exc)) from exc
