"""Per-flow statistics over a whole FlowBatch, with numpy (no per-record Python in the math).

Units: seconds, bytes, bytes per second, packets per second. "fwd" is from the flow's source
(initiator) to its destination, "rev" the other way; for a client talking to a server, rev is
the downlink. Ratios are rev/fwd. Statistics that need packet-level summaries (``pkt_*``) are
NaN for records that carry none.

>>> from detectors.flows import FlowBatch
>>> b = FlowBatch.from_columns(ts_start=[0.0], ts_end=[2.0], bytes_fwd=[1000], packets_fwd=[10],
...                            bytes_rev=[9000], packets_rev=[30])
>>> f = flow_features(b)
>>> float(f["bytes_per_s_rev"][0]), float(f["mean_pkt_bytes_fwd"][0]), float(f["down_up_ratio"][0])
(4500.0, 100.0, 9.0)
"""

from __future__ import annotations

import numpy as np

from detectors.flows import Array, FlowBatch

SMALL_PACKET_BYTES = 200  # a downlink packet this small or smaller is "small" (one token or so)
MIN_DURATION = 1e-3  # seconds; rates of one-packet flows use this instead of 0

PACKET_STATS = ("mean", "std", "median", "p95")
FEATURES = (
    "duration",
    "bytes_fwd", "bytes_rev", "packets_fwd", "packets_rev",
    "bytes_per_s_fwd", "bytes_per_s_rev", "packets_per_s_fwd", "packets_per_s_rev",
    "mean_pkt_bytes_fwd", "mean_pkt_bytes_rev", "down_up_ratio",
    *(f"size_{s}_{d}" for d in ("fwd", "rev") for s in PACKET_STATS),
    *(f"gap_{s}_{d}" for d in ("fwd", "rev") for s in PACKET_STATS),
    "small_rev_share", "summary_packets",
)  # fmt: skip


def _ratio(num: Array, den: Array) -> Array:
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def segment_stats(values: Array, seg: Array, n: int) -> dict[str, Array]:
    """mean, std, median and p95 of ``values`` grouped by ``seg`` (ids 0..n-1), NaN when empty.

    >>> s = segment_stats(np.array([1.0, 3.0, 10.0]), np.array([0, 0, 2]), 3)
    >>> s["mean"].tolist(), s["median"].tolist()
    ([2.0, nan, 10.0], [2.0, nan, 10.0])
    """
    out = {k: np.full(n, np.nan) for k in PACKET_STATS}
    if values.size == 0:
        return out
    counts = np.bincount(seg, minlength=n)
    sums = np.bincount(seg, weights=values, minlength=n)
    squares = np.bincount(seg, weights=values * values, minlength=n)
    has = counts > 0
    mean = np.divide(sums, counts, out=np.full(n, np.nan), where=has)
    var = np.divide(squares, counts, out=np.full(n, np.nan), where=has) - mean * mean
    out["mean"] = mean
    out["std"] = np.sqrt(np.clip(var, 0, None))
    order = np.lexsort((values, seg))
    ordered = values[order]
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    for name, q in (("median", 0.5), ("p95", 0.95)):
        # linear interpolation between closest ranks, as numpy.quantile's default
        pos = starts + (counts - 1) * q
        lo = np.floor(pos).astype(np.int64)
        hi = np.ceil(pos).astype(np.int64)
        frac = pos - lo
        lo, hi = np.clip(lo, 0, ordered.size - 1), np.clip(hi, 0, ordered.size - 1)
        val = ordered[lo] * (1 - frac) + ordered[hi] * frac
        out[name] = np.where(has, val, np.nan)
    return out


def flow_features(batch: FlowBatch, packets: bool = True) -> dict[str, Array]:
    """All per-flow statistics of the batch as float64 columns (see FEATURES); with
    ``packets`` false only those of the counters (no sorting of the packet summaries)."""
    n = len(batch)
    duration = batch.duration()
    span = np.maximum(duration, MIN_DURATION)
    bf, br = batch.bytes_fwd.astype(np.float64), batch.bytes_rev.astype(np.float64)
    pf, pr = batch.packets_fwd.astype(np.float64), batch.packets_rev.astype(np.float64)
    out: dict[str, Array] = {
        "duration": duration,
        "bytes_fwd": bf,
        "bytes_rev": br,
        "packets_fwd": pf,
        "packets_rev": pr,
        "bytes_per_s_fwd": bf / span,
        "bytes_per_s_rev": br / span,
        "packets_per_s_fwd": pf / span,
        "packets_per_s_rev": pr / span,
        "mean_pkt_bytes_fwd": _ratio(bf, pf),
        "mean_pkt_bytes_rev": _ratio(br, pr),
        "down_up_ratio": _ratio(br, bf),
    }
    if not packets:
        return out
    rec = batch.packet_record()
    size = batch.pkt_size.astype(np.float64)
    direction = batch.pkt_dir
    gap = batch.pkt_iat_us / 1e6
    clock = np.cumsum(gap)  # time of each packet; only differences within one flow are used
    for d, name in ((0, "fwd"), (1, "rev")):
        sel = direction == d
        flow_of = rec[sel]
        same_flow = flow_of[1:] == flow_of[:-1]
        # a gap is the time since the previous packet of the same direction and flow
        gaps = np.diff(clock[sel])[same_flow]
        for kind, values, seg in (
            ("size", size[sel], flow_of),
            ("gap", gaps, flow_of[1:][same_flow]),
        ):
            stats = segment_stats(values, seg, n)
            for s in PACKET_STATS:
                out[f"{kind}_{s}_{name}"] = stats[s]
    rev = direction == 1
    small = np.bincount(rec[rev], weights=(size[rev] <= SMALL_PACKET_BYTES), minlength=n)
    out["small_rev_share"] = _ratio(small, np.bincount(rec[rev], minlength=n).astype(np.float64))
    counted = np.bincount(rec, minlength=n).astype(np.float64)
    out["summary_packets"] = counted
    return out
