"""What a flow does, as numbers: behaviour features for the classifier, and AI QoE estimates.

Both come from the per-flow counters and, when a record carries them, its packet summaries
(the first packets' sizes, directions and gaps). Everything runs over whole batches with numpy.

A *data packet* is one that carries payload: larger than ``DATA_MIN_BYTES`` for TCP (a bare
ACK with timestamps is 52 IP bytes), larger than ``QUIC_DATA_MIN_BYTES`` for QUIC (UDP to or
from port 443: its acknowledgements are 60 to 90 IP bytes), any packet for other UDP. QUIC
carries what TCP and TLS carry (browsers reach chat services over HTTP/3), so the features see
it as a stream transport, not as datagrams: the ``datagram`` feature is UDP but not QUIC.
A *turn* is a downlink data packet that follows an uplink one: a request answered. The
*answer* of a flow is the downlink data packet after its longest silence that has a request
before it; the *request* is the run of uplink data packets before it (back to the previous
downlink data packet, skipping downlink packets after the request such as a TLS session
ticket). The *think pause* runs from the request's first packet to the answer: for a language
model, the time to first token as the user sees it on an open connection (it includes
sending the request, as the client's clock does; not the TCP and TLS handshakes). Answer and
request are found without the *interstitial* packet a server sends before it sees the
request (``_interstitial``).

QoE estimates (NaN where they do not apply): ``ttft_s`` (the think pause), ``token_gap_s``
(median gap between the downlink data packets after it: one SSE event, about one token, each),
``tokens_per_s`` (those packets over their span) and ``stalls`` (gaps above ``STALL_FACTOR``
times the flow's median gap). The lab measures how close they come to the source's truth
(``inferwatch eval classify``).

>>> from detectors.flows import FlowBatch
>>> pk = ([60, 60, 52, 900, 52, 52, 200, 52, 200, 200, 200, 200],
...       [0, 1, 0, 0, 1, 0, 1, 0, 1, 1, 1, 1],
...       [0, 1000, 1000, 1000, 1000, 1000, 500_000, 1000, 1000, 25_000, 25_000, 25_000])
>>> b = FlowBatch.from_columns(packets=[pk], proto=[6], ts_start=[0.0], ts_end=[1.0],
...                            bytes_fwd=[1100], packets_fwd=[5], bytes_rev=[1000], packets_rev=[6])
>>> q = qoe(b)
>>> round(float(q["ttft_s"][0]), 3), round(float(q["token_gap_s"][0]), 3)
(0.502, 0.025)
"""

from __future__ import annotations

import numpy as np

from detectors.features import flow_features
from detectors.flows import Array, FlowBatch

DATA_MIN_BYTES = 80
QUIC_DATA_MIN_BYTES = 100
QUIC_PORT = 443
SMALL_DATA_BYTES = 400
STALL_FACTOR = 4.0
INTERSTITIAL_BYTES = 600  # a TLS 1.3 server's two session tickets fit (562 bytes in the lab)
INTERSTITIAL_RTTS = 1.5
INTERSTITIAL_SLACK_S = 0.002
PERIODIC_S = (0.015, 0.025)  # the 20 ms media cadence, with slack
ANSWER_LEAD = 3  # downlink data packets an answer may follow its request by (tickets, headers)

FEATURES: tuple[str, ...] = (
    "datagram", "log_duration", "log_bytes_fwd", "log_bytes_rev", "log_packets_fwd",
    "log_packets_rev", "log_down_up", "mean_pkt_fwd", "mean_pkt_rev",
    "data_size_med_rev", "data_size_p95_rev", "data_size_med_fwd",
    "data_gap_med_rev", "data_gap_p95_rev", "data_gap_cv_rev", "data_gap_med_fwd",
    "small_data_share_rev", "periodic_share_fwd", "periodic_share_rev",
    "think_pause", "turns", "answer_packets", "answer_rate", "data_share", "summary_packets",
    "log_rate_rev", "burst_ratio_rev",
)  # fmt: skip
QOE = ("ttft_s", "token_gap_s", "tokens_per_s", "stalls")


def is_quic(batch: FlowBatch) -> Array:
    """Per record: UDP to or from port 443, which is QUIC (HTTP/3) on today's networks."""
    return np.asarray(
        (batch.proto == 17) & ((batch.src_port == QUIC_PORT) | (batch.dst_port == QUIC_PORT))
    )


def is_datagram(batch: FlowBatch) -> Array:
    """Per record: UDP that is not QUIC (media, DNS, games): every packet is data."""
    return np.asarray((batch.proto == 17) & ~is_quic(batch))


class _Packets:
    """The data packets of a batch's summaries, in record order, with their times."""

    def __init__(self, batch: FlowBatch) -> None:
        n = len(batch)
        rec = batch.packet_record()
        clock = np.cumsum(batch.pkt_iat_us.astype(np.float64)) / 1e6
        quic, datagram = is_quic(batch)[rec], is_datagram(batch)[rec]
        data = datagram | (batch.pkt_size > np.where(quic, QUIC_DATA_MIN_BYTES, DATA_MIN_BYTES))
        self.n = n
        self.summary = np.bincount(rec, minlength=n).astype(np.float64)
        self._set(rec[data], clock[data], batch.pkt_size[data].astype(np.float64),
                  batch.pkt_dir[data])  # fmt: skip

    def _set(self, rec: Array, t: Array, size: Array, direction: Array) -> None:
        self.rec, self.t, self.size, self.dir = rec, t, size, direction
        self.count = np.bincount(self.rec, minlength=self.n).astype(np.float64)
        same = self.rec[1:] == self.rec[:-1]
        self.gap = np.diff(self.t)  # gap to the previous data packet (valid where same)
        self.same = same
        # a turn: a downlink data packet right after an uplink one, in the same flow
        self.turn = same & (self.dir[1:] == 1) & (self.dir[:-1] == 0)

    def without(self, drop: Array) -> _Packets:
        """The same view without the data packets where ``drop`` is true."""
        out = object.__new__(_Packets)
        out.n, out.summary = self.n, self.summary
        keep = ~drop
        out._set(self.rec[keep], self.t[keep], self.size[keep], self.dir[keep])
        return out


def _interstitial(p: _Packets, rtt: Array) -> Array:
    """Per data packet: whether it is the small downlink one a server sends before it sees
    the first request, such as a TLS 1.3 session ticket (sent on the client's Finished, just
    before the request).

    It opens the flow's second run of downlink data packets (the first answers the
    handshake), arrives within ``INTERSTITIAL_RTTS`` handshake round trips (``rtt``, per
    record; NaN: never) of the last uplink data packet before it, and more data follows. On a
    calm link it comes right after the request and does no harm; behind a queue it comes a
    round trip late, in the middle of a long upload (cutting the request short) or after a
    silence as long as the think pause (taken for the answer).
    """
    idx = np.arange(p.rec.size)
    if idx.size == 0:
        return np.zeros(0, dtype=bool)
    flow_start = np.searchsorted(p.rec, p.rec, "left")
    last_up = np.maximum.accumulate(np.where(p.dir == 0, idx, -1))
    # a downlink run starts here: the flow's first packet, or a turn
    opens = ((idx == flow_start) & (p.dir == 1)) | np.r_[False, p.turn]
    runs = np.cumsum(opens)
    run_no = runs - runs[flow_start] + opens[flow_start]
    since_up = p.t - p.t[np.maximum(last_up, 0)]
    window = INTERSTITIAL_RTTS * rtt[p.rec] + INTERSTITIAL_SLACK_S
    more = np.r_[p.same, False]  # another data packet of the flow follows
    with np.errstate(invalid="ignore"):
        near = since_up <= window  # NaN round trip: False
    out: Array = (
        opens & (run_no == 2) & (p.size <= INTERSTITIAL_BYTES) & (last_up >= flow_start)
        & near & more
    )  # fmt: skip
    return out


def _seg(values: Array, seg: Array, n: int, q: float) -> Array:
    """Quantile ``q`` of ``values`` per segment id (NaN when a segment is empty)."""
    out = np.full(n, np.nan)
    if values.size == 0:
        return out
    order = np.lexsort((values, seg))
    v, s = values[order], seg[order]
    starts = np.searchsorted(s, np.arange(n), "left")
    ends = np.searchsorted(s, np.arange(n), "right")
    has = ends > starts
    pos = starts + np.floor((ends - starts - 1) * q).astype(np.int64)
    out[has] = v[pos[has]]
    return out


def _dir_gaps(p: _Packets, d: int) -> tuple[Array, Array]:
    """Gaps between consecutive data packets of direction ``d`` in one flow, and their flow."""
    sel = np.flatnonzero(p.dir == d)
    rec, t = p.rec[sel], p.t[sel]
    same = rec[1:] == rec[:-1]
    return np.diff(t)[same], rec[1:][same]


def _think(p: _Packets) -> tuple[Array, Array]:
    """Per flow: the think pause and the index (into p's arrays) of the answer's first packet.

    The answer is the downlink data packet after the flow's longest silence (between data
    packets of either direction: a TLS 1.3 session ticket may arrive between the request and
    the answer) that has an uplink data packet before it and at most ``ANSWER_LEAD``
    downlink data packets since that one; the pause runs from the request's first packet.
    """
    pause = np.full(p.n, np.nan)
    where = np.full(p.n, -1, dtype=np.int64)
    idx = np.arange(p.rec.size)
    flow_start = np.searchsorted(p.rec, p.rec, "left")
    last_up = np.maximum.accumulate(np.where(p.dir == 0, idx, -1)) if idx.size else idx
    last_down = np.maximum.accumulate(np.where(p.dir == 1, idx, -1)) if idx.size else idx
    # candidate i + 1: a downlink data packet after a silence, with an uplink one before it
    cand = np.flatnonzero(p.same & (p.dir[1:] == 1) & (last_up[:-1] >= flow_start[1:])) + 1
    # and at most ANSWER_LEAD downlink data packets between that uplink one and it (session
    # tickets, response headers): a stall inside an answer (a retransmission timeout on a
    # lossy link, after the answer's first tokens) is a silence too, often the longest
    downs = np.cumsum(p.dir == 1)
    cand = cand[downs[cand - 1] - downs[last_up[cand - 1]] <= ANSWER_LEAD]
    if cand.size:
        silence, recs = p.gap[cand - 1], p.rec[cand]
        order = np.lexsort((silence, recs))
        last = np.r_[recs[order][1:] != recs[order][:-1], True]
        best = cand[order[last]]
        # the request: the run of uplink data packets ending with the last one before the
        # answer (downlink packets after it, such as a TLS session ticket, do not end it)
        up = last_up[best - 1]
        begin = np.maximum(last_down[up] + 1, flow_start[up])
        pause[p.rec[best]] = p.t[best] - p.t[begin]
        where[p.rec[best]] = best
    return pause, where


def _answer(p: _Packets, where: Array) -> tuple[Array, Array, Array]:
    """Downlink data packets from each flow's think-pause answer on: their count, and the
    gaps between them (with their flows) from the second on: an answer's first event often
    carries a header or the role and arrives with the first token."""
    first = np.full(p.n, np.inf)
    ok = where >= 0
    first[ok] = where[ok]
    idx = np.arange(p.rec.size)
    after = (p.dir == 1) & (idx >= first[p.rec]) if p.rec.size else np.zeros(0, dtype=bool)
    sel = np.flatnonzero(after)
    rec, t = p.rec[sel], p.t[sel]
    first_of = np.r_[True, rec[1:] != rec[:-1]] if rec.size else np.zeros(0, dtype=bool)
    keep = (rec[1:] == rec[:-1]) & ~first_of[:-1]
    count = np.bincount(rec, minlength=p.n).astype(np.float64)
    return count, np.diff(t)[keep], rec[1:][keep]


class _Answers:
    """A batch's data packets, and per flow its think pause and answer: what the features and
    the QoE estimates both read, computed once. The pause and the answer are found without
    the interstitial packets (``_interstitial``)."""

    def __init__(self, batch: FlowBatch) -> None:
        self.p = _Packets(batch)
        talk = self.p.without(_interstitial(self.p, handshake_rtt(batch)))
        self.pause, where = _think(talk)
        self.count, self.gaps, self.grec = _answer(talk, where)


def qoe(batch: FlowBatch, answers: _Answers | None = None) -> dict[str, Array]:
    """AI QoE estimates per flow (NaN without packet summaries or without an answer)."""
    a = answers or _Answers(batch)
    p, pause, gaps, grec = a.p, a.pause, a.gaps, a.grec
    med = _seg(gaps, grec, p.n, 0.5)
    span = np.bincount(grec, weights=gaps, minlength=p.n)
    n_gaps = np.bincount(grec, minlength=p.n).astype(np.float64)
    rate = np.full(p.n, np.nan)
    np.divide(n_gaps, span, out=rate, where=span > 0)
    stalls = np.bincount(grec, weights=(gaps > STALL_FACTOR * med[grec]), minlength=p.n)
    stalls = np.where(n_gaps > 0, stalls, np.nan)
    return {"ttft_s": pause, "token_gap_s": med, "tokens_per_s": rate, "stalls": stalls}


def features_and_qoe(
    batch: FlowBatch, counters: FlowBatch | None = None
) -> tuple[Array, dict[str, Array]]:
    """``behaviour_features`` and ``qoe`` of a batch with one pass over its packets; the
    counter features from ``counters`` (the same records, e.g. directions joined) if given."""
    answers = _Answers(batch)
    return behaviour_features(counters or batch, answers), qoe(batch, answers)


def behaviour_features(batch: FlowBatch, answers: _Answers | None = None) -> Array:
    """The (n, len(FEATURES)) matrix of behaviour features; NaN becomes -1 (never a value).
    ``answers``: the packet view of a batch with these records' packet summaries."""
    n = len(batch)
    f = flow_features(batch, packets=False)  # the counters' statistics: packets are below
    a = answers or _Answers(batch)
    p = a.p
    cols: dict[str, Array] = {
        "datagram": is_datagram(batch).astype(np.float64),
        "log_duration": np.log10(f["duration"] + 1e-3),
        "log_bytes_fwd": np.log10(f["bytes_fwd"] + 1),
        "log_bytes_rev": np.log10(f["bytes_rev"] + 1),
        "log_packets_fwd": np.log10(f["packets_fwd"] + 1),
        "log_packets_rev": np.log10(f["packets_rev"] + 1),
        "log_down_up": np.log10((f["bytes_rev"] + 1) / (f["bytes_fwd"] + 1)),
        "mean_pkt_fwd": f["mean_pkt_bytes_fwd"],
        "mean_pkt_rev": f["mean_pkt_bytes_rev"],
    }
    for d, name in ((1, "rev"), (0, "fwd")):
        sel = p.dir == d
        cols[f"data_size_med_{name}"] = _seg(p.size[sel], p.rec[sel], n, 0.5)
        if d == 1:
            cols["data_size_p95_rev"] = _seg(p.size[sel], p.rec[sel], n, 0.95)
            small = np.bincount(p.rec[sel], weights=p.size[sel] <= SMALL_DATA_BYTES, minlength=n)
            cnt = np.bincount(p.rec[sel], minlength=n).astype(np.float64)
            cols["small_data_share_rev"] = np.divide(
                small, cnt, out=np.full(n, np.nan), where=cnt > 0
            )
        gaps, grec = _dir_gaps(p, d)
        cols[f"data_gap_med_{name}"] = _seg(gaps, grec, n, 0.5)
        periodic = (gaps >= PERIODIC_S[0]) & (gaps <= PERIODIC_S[1])
        g_n = np.bincount(grec, minlength=n).astype(np.float64)
        cols[f"periodic_share_{name}"] = np.divide(
            np.bincount(grec, weights=periodic, minlength=n), g_n,
            out=np.full(n, np.nan), where=g_n > 0,
        )  # fmt: skip
        if d == 1:
            cols["data_gap_p95_rev"] = _seg(gaps, grec, n, 0.95)
            mean = np.divide(
                np.bincount(grec, weights=gaps, minlength=n), g_n,
                out=np.full(n, np.nan), where=g_n > 0,
            )  # fmt: skip
            sq = np.divide(
                np.bincount(grec, weights=gaps * gaps, minlength=n), g_n,
                out=np.full(n, np.nan), where=g_n > 0,
            )  # fmt: skip
            std = np.sqrt(np.clip(sq - mean * mean, 0, None))
            cols["data_gap_cv_rev"] = np.divide(std, mean, out=np.full(n, np.nan), where=mean > 0)
    count, gaps, grec = a.count, a.gaps, a.grec
    span = np.bincount(grec, weights=gaps, minlength=n)
    cols["think_pause"] = a.pause
    cols["turns"] = np.bincount(p.rec[1:][p.turn], minlength=n).astype(np.float64)
    cols["answer_packets"] = count
    cols["answer_rate"] = np.divide(
        np.maximum(count - 1, 0), span, out=np.full(n, np.nan), where=span > 0
    )
    cols["data_share"] = np.divide(p.count, p.summary, out=np.full(n, np.nan), where=p.summary > 0)
    cols["summary_packets"] = p.summary
    # how much faster the downlink ran while the summary was taken than over the whole flow:
    # about 1 for a transfer the link limits, far above for segments between idle periods
    avg = f["bytes_rev"] / np.maximum(f["duration"], 1e-3)
    cols["log_rate_rev"] = np.log10(avg + 1)
    rev = np.flatnonzero(p.dir == 1)
    r_rec, r_t = p.rec[rev], p.t[rev]
    r_bytes = np.bincount(r_rec, weights=p.size[rev], minlength=n)
    first_t = np.full(n, np.inf)
    last_t = np.full(n, -np.inf)
    np.minimum.at(first_t, r_rec, r_t)
    np.maximum.at(last_t, r_rec, r_t)
    span = last_t - first_t
    burst = np.divide(r_bytes, span, out=np.full(n, np.nan), where=span > 1e-3)
    cols["burst_ratio_rev"] = np.log10(np.divide(burst, avg, out=np.full(n, np.nan), where=avg > 0))
    out = np.column_stack([cols[name] for name in FEATURES]) if n else np.zeros((0, len(FEATURES)))
    return np.where(np.isfinite(out), out, -1.0)


def handshake_rtt(batch: FlowBatch) -> Array:
    """Seconds from a TCP flow's first packet to the responder's first one, where the summary
    starts with a handshake (three packets without payload: initiator, responder, initiator,
    as SYN, SYN-ACK, ACK); NaN elsewhere. Seen from the meter, it is the round trip between
    the meter and the responder: it grows with the queue a congested link builds on the way.

    >>> from detectors.flows import FlowBatch
    >>> hs = ([60, 60, 52, 600, 1400], [0, 1, 0, 0, 1], [0, 31_000, 200, 900, 40_000])
    >>> data = ([600, 1400, 52], [0, 1, 0], [0, 30_000, 100])  # a piece without its handshake
    >>> b = FlowBatch.from_columns(packets=[hs, data], proto=[6, 6], ts_start=[0.0, 0.0],
    ...                            ts_end=[1.0, 1.0])
    >>> handshake_rtt(b).tolist()
    [0.031, nan]
    """
    out = np.full(len(batch), np.nan)
    ok = (batch.pkt_count >= 3) & (batch.proto == 6)
    if not ok.any():
        return out
    i = batch.packet_starts()[ok]
    size, direction = batch.pkt_size, batch.pkt_dir
    bare = (size[i] <= DATA_MIN_BYTES) & (size[i + 1] <= DATA_MIN_BYTES)
    bare &= size[i + 2] <= DATA_MIN_BYTES
    turns = (direction[i] == 0) & (direction[i + 1] == 1) & (direction[i + 2] == 0)
    hit = bare & turns
    rows = np.flatnonzero(ok)[hit]
    out[rows] = batch.pkt_iat_us[i[hit] + 1] / 1e6
    return out
