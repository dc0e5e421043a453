"""The normalised flow record, held column-wise: one numpy array per field for a whole batch.

Every analysis in inferwatch works on a :class:`FlowBatch`, never on one record at a time.
"fwd" is the direction of the record's source (the flow's initiator when the exporter knows
it) to its destination; "rev" the other way. Unidirectional records (NetFlow, IPFIX, pmacct)
have zero ``rev`` counters. Counters are already multiplied by the sampling rate.

>>> b = FlowBatch.from_columns(ts_start=[10.0], ts_end=[12.5], bytes_fwd=[1000], packets_fwd=[4])
>>> len(b), float(b.duration()[0]), int(b.bytes_fwd.sum())
(1, 2.5, 1000)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

# Numeric columns and their dtypes; object columns hold Python str (or None).
NUMERIC: dict[str, type[np.generic]] = {
    "ts_start": np.float64,  # seconds since the epoch (UTC)
    "ts_end": np.float64,
    "src_port": np.int32,
    "dst_port": np.int32,
    "proto": np.int16,  # IANA protocol number
    "bytes_fwd": np.int64,
    "packets_fwd": np.int64,
    "bytes_rev": np.int64,
    "packets_rev": np.int64,
    "sampling_rate": np.int64,  # 1 = every packet
    "iface_in": np.int64,  # -1 = unknown
    "iface_out": np.int64,
    "tcp_flags": np.int32,  # OR of the flags seen
    "fmt": np.uint8,  # index into FORMATS
    "fwd_out": np.uint8,  # 1: fwd bytes leave the link's observation point ("out"), rev enter
    "ts_append": np.float64,  # Kafka append time of the raw record (s), for latency
}
OBJECT = ("src_ip", "dst_ip", "exporter", "link", "server_name", "pkts")
FORMATS = ("pmacct", "goflow2", "native")

_DEFAULTS: dict[str, Any] = {
    "sampling_rate": 1,
    "iface_in": -1,
    "iface_out": -1,
    "exporter": "",
    "src_ip": "",
    "dst_ip": "",
}

Array = npt.NDArray[Any]


@dataclass(slots=True)
class FlowBatch:
    """Columns of n normalised flow records (see the module docstring for their meaning)."""

    ts_start: Array
    ts_end: Array
    src_port: Array
    dst_port: Array
    proto: Array
    bytes_fwd: Array
    packets_fwd: Array
    bytes_rev: Array
    packets_rev: Array
    sampling_rate: Array
    iface_in: Array
    iface_out: Array
    tcp_flags: Array
    fmt: Array
    fwd_out: Array
    ts_append: Array
    src_ip: Array
    dst_ip: Array
    exporter: Array
    link: Array  # explicit link id, or None (then the link is exporter + interface)
    server_name: Array  # TLS/QUIC SNI or DNS name when visible, else None
    pkts: Array  # packet-level summary (a PacketSummary) or None

    def __len__(self) -> int:
        return int(self.ts_start.shape[0])

    @classmethod
    def from_columns(cls, **cols: Sequence[Any] | Array) -> FlowBatch:
        """Build a batch from whatever columns are given; the others take their defaults."""
        n = max((len(v) for v in cols.values()), default=0)
        built: dict[str, Array] = {}
        for name, dtype in NUMERIC.items():
            if name in cols:
                built[name] = np.asarray(cols[name], dtype=dtype)
            else:
                built[name] = np.full(n, _DEFAULTS.get(name, 0), dtype=dtype)
        for name in OBJECT:
            arr = np.empty(n, dtype=object)
            if name in cols:
                arr[:] = list(cols[name])
            else:
                arr[:] = _DEFAULTS.get(name)
            built[name] = arr
        for name, arr in built.items():
            if arr.shape != (n,):
                raise ValueError(f"column {name} has shape {arr.shape}, expected ({n},)")
        return cls(**built)

    @classmethod
    def empty(cls) -> FlowBatch:
        return cls.from_columns()

    @classmethod
    def concat(cls, batches: Sequence[FlowBatch]) -> FlowBatch:
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        return cls(
            **{f.name: np.concatenate([getattr(b, f.name) for b in batches]) for f in fields(cls)}
        )

    def take(self, index: Array) -> FlowBatch:
        """The records at ``index`` (an integer or boolean array), in that order."""
        return FlowBatch(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def duration(self) -> Array:
        """Seconds between the first and the last packet (0 for a one-packet flow)."""
        return np.asarray(self.ts_end - self.ts_start)
