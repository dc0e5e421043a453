"""The normalised flow record, held column-wise: one numpy array per field for a whole batch.

Every analysis in inferwatch works on a :class:`FlowBatch`, never on one record at a time.
"fwd" is the direction of the record's source (the flow's initiator when the exporter knows
it) to its destination; "rev" the other way. Unidirectional records (NetFlow, IPFIX, pmacct)
have zero ``rev`` counters. Counters are already multiplied by the sampling rate.

Packet-level summaries (the first packets of a flow) are flattened for the whole batch: record
i owns ``pkt_count[i]`` consecutive entries of ``pkt_size``, ``pkt_dir`` and ``pkt_iat_us``,
in record order, so statistics over them are numpy reductions, not Python loops.

>>> b = FlowBatch.from_columns(ts_start=[10.0, 20.0], ts_end=[12.5, 20.0], bytes_fwd=[1000, 5],
...                            packets=[([60, 1400], [0, 1], [0, 30000]), None])
>>> len(b), float(b.duration()[0]), b.pkt_count.tolist(), b.take([0]).pkt_size.tolist()
(2, 2.5, [2, 0], [60, 1400])
"""

from __future__ import annotations

import itertools
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
    "pkt_count": np.int32,  # packets summarised for this record (0 = no summary)
    "retrans_fwd": np.int64,  # TCP packets retransmitted src -> dst (-1 = not counted)
    "retrans_rev": np.int64,  # dst -> src
}
OBJECT = ("src_ip", "dst_ip", "exporter", "link", "server_name")
# Flat packet arrays: not one entry per record but one per summarised packet.
PACKETS: dict[str, type[np.generic]] = {
    "pkt_size": np.int32,  # bytes (IP length)
    "pkt_dir": np.int8,  # 0 fwd, 1 rev
    "pkt_iat_us": np.int64,  # microseconds since the previous packet of the flow (first: 0)
}
FORMATS = ("pmacct", "goflow2", "native")

_DEFAULTS: dict[str, Any] = {
    "sampling_rate": 1,
    "iface_in": -1,
    "iface_out": -1,
    "retrans_fwd": -1,
    "retrans_rev": -1,
    "exporter": "",
    "src_ip": "",
    "dst_ip": "",
}

Array = npt.NDArray[Any]
PacketLists = tuple[Sequence[int], Sequence[int], Sequence[int]]


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
    pkt_count: Array
    retrans_fwd: Array
    retrans_rev: Array
    src_ip: Array
    dst_ip: Array
    exporter: Array
    link: Array  # link id (set by the link catalog at ingest), or None before that
    server_name: Array  # TLS/QUIC SNI or DNS name when visible, else None
    pkt_size: Array
    pkt_dir: Array
    pkt_iat_us: Array

    def __len__(self) -> int:
        return int(self.ts_start.shape[0])

    @classmethod
    def from_columns(
        cls, packets: Sequence[PacketLists | None] | None = None, **cols: Sequence[Any] | Array
    ) -> FlowBatch:
        """Build a batch from the columns given (the others take their defaults).

        ``packets`` gives each record's summary as (sizes, directions, gaps in µs), or None;
        the flat packet arrays may instead be passed as columns with ``pkt_count``.
        """
        lengths = [len(v) for k, v in cols.items() if k not in PACKETS]
        n = max([*lengths, len(packets) if packets is not None else 0], default=0)
        built: dict[str, Array] = {}
        for name, dtype in NUMERIC.items():
            if name in cols:
                built[name] = np.asarray(cols[name], dtype=dtype)
            else:
                built[name] = np.full(n, _DEFAULTS.get(name, 0), dtype=dtype)
        for name in OBJECT:
            arr = np.empty(n, dtype=object)
            arr[:] = list(cols[name]) if name in cols else _DEFAULTS.get(name)
            built[name] = arr
        if packets is not None:
            built.update(_flatten(packets))
        else:
            for name, dtype in PACKETS.items():
                built[name] = np.asarray(cols.get(name, ()), dtype=dtype)
        for name in (*NUMERIC, *OBJECT):
            if built[name].shape != (n,):
                raise ValueError(f"column {name} has shape {built[name].shape}, expected ({n},)")
        total = int(built["pkt_count"].sum())
        for name in PACKETS:
            if built[name].shape != (total,):
                raise ValueError(
                    f"{name} holds {built[name].shape[0]} packets, pkt_count says {total}"
                )
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

    def take(self, index: Array | Sequence[int]) -> FlowBatch:
        """The records at ``index`` (an integer or boolean array), in that order."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        cols = {name: getattr(self, name)[idx] for name in (*NUMERIC, *OBJECT)}
        pos = self.packet_positions(idx)
        for name in PACKETS:
            cols[name] = getattr(self, name)[pos]
        return FlowBatch(**cols)

    def packet_starts(self) -> Array:
        """For each record, the position of its first packet in the flat packet arrays."""
        counts = self.pkt_count.astype(np.int64)
        return np.cumsum(counts) - counts

    def packet_positions(self, idx: Array) -> Array:
        """Positions in the flat packet arrays of the packets of records ``idx``, in order."""
        sel_counts = self.pkt_count.astype(np.int64)[idx]
        sel_starts = self.packet_starts()[idx]
        total = int(sel_counts.sum())
        if total == 0:
            return np.zeros(0, dtype=np.int64)
        # for each selected packet: its record's start + its rank within the record
        shift = np.repeat(sel_starts - (np.cumsum(sel_counts) - sel_counts), sel_counts)
        return np.asarray(shift + np.arange(total))

    def packet_record(self) -> Array:
        """For each entry of the flat packet arrays, the index of its record."""
        return np.repeat(np.arange(len(self)), self.pkt_count)

    def duration(self) -> Array:
        """Seconds between the first and the last packet (0 for a one-packet flow)."""
        return np.asarray(self.ts_end - self.ts_start)


def factorize(keys: Sequence[Any]) -> tuple[Array, dict[Any, int]]:
    """Integer codes for hashable keys, in order of first appearance, and the key -> code map
    (its iteration order is the codes' order).

    >>> codes, index = factorize(["b", "a", "b"])
    >>> codes.tolist(), list(index)
    ([0, 1, 0], ['b', 'a'])
    """
    index: dict[Any, int] = {}
    codes = np.fromiter((index.setdefault(k, len(index)) for k in keys), np.int64, len(keys))
    return codes, index


def _flatten(packets: Sequence[PacketLists | None]) -> dict[str, Array]:
    present = [p for p in packets if p is not None]
    counts = np.fromiter(
        (0 if p is None else len(p[0]) for p in packets), dtype=np.int32, count=len(packets)
    )
    total = int(counts.sum())
    chain = itertools.chain.from_iterable
    return {
        "pkt_count": counts,
        "pkt_size": np.fromiter(chain(p[0] for p in present), np.int32, total),
        "pkt_dir": np.fromiter(chain(p[1] for p in present), np.int8, total),
        "pkt_iat_us": np.fromiter(chain(p[2] for p in present), np.int64, total),
    }
