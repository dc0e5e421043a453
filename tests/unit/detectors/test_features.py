"""Per-flow statistics agree with a plain per-record computation."""

from __future__ import annotations

import itertools
import time

import numpy as np
import orjson
import pytest

from detectors.features import FEATURES, flow_features
from streams.codecs.decode import BatchDecoder
from tests.records import valid_records


def reference(rec, direction):
    """Per-record reference from the JSON: sizes and same-direction gaps of one flow."""
    pkts = rec["pkts"]
    t = np.cumsum(np.asarray(pkts["iat_us"], dtype=float) / 1e6)
    d = np.asarray(pkts["dir"])
    sizes = np.asarray(pkts["size"], dtype=float)[d == direction]
    gaps = np.diff(t[d == direction])
    return sizes, gaps


def test_packet_statistics_match_numpy_per_record():
    now = time.time()
    values = [v for _, v in valid_records(300, seed=21, now=now)]
    res = BatchDecoder().decode(values, [now] * len(values))
    batch = res.batch
    f = flow_features(batch)
    assert set(f) == set(FEATURES)
    assert all(col.shape == (len(batch),) for col in f.values())
    checked = 0
    for i in range(len(batch)):
        p = orjson.loads(values[int(res.index[i])]).get("pkts")
        if p is None:
            assert np.isnan(f["size_mean_fwd"][i])
            continue
        for d, name in ((0, "fwd"), (1, "rev")):
            sizes, gaps = reference({"pkts": p}, d)
            for kind, vals in (("size", sizes), ("gap", gaps)):
                if vals.size == 0:
                    assert np.isnan(f[f"{kind}_mean_{name}"][i])
                    continue
                assert f[f"{kind}_mean_{name}"][i] == pytest.approx(vals.mean())
                assert f[f"{kind}_std_{name}"][i] == pytest.approx(vals.std(), abs=1e-6)
                assert f[f"{kind}_median_{name}"][i] == pytest.approx(np.median(vals))
                assert f[f"{kind}_p95_{name}"][i] == pytest.approx(np.quantile(vals, 0.95))
                checked += 1
        rev = np.asarray(p["size"])[np.asarray(p["dir"]) == 1]
        if rev.size:
            assert f["small_rev_share"][i] == pytest.approx((rev <= 200).mean())
    assert checked > 200


def test_rates_use_sampled_counters_and_duration():
    now = time.time()
    values = [v for _, v in valid_records(60, seed=3, now=now)]
    batch = BatchDecoder().decode(values, [now] * len(values)).batch
    f = flow_features(batch)
    dur = np.maximum(batch.ts_end - batch.ts_start, 1e-3)
    np.testing.assert_allclose(f["bytes_per_s_fwd"], batch.bytes_fwd / dur)
    np.testing.assert_allclose(f["packets_per_s_rev"], batch.packets_rev / dur)
    with np.errstate(divide="ignore", invalid="ignore"):
        want = np.where(batch.bytes_fwd > 0, batch.bytes_rev / batch.bytes_fwd, np.nan)
    np.testing.assert_allclose(f["down_up_ratio"], want)


def test_empty_batch():
    from detectors.flows import FlowBatch

    f = flow_features(FlowBatch.empty())
    assert all(v.shape == (0,) for v in f.values())


def _summary(packets: list[tuple[float, int, int]]) -> tuple[list[int], list[int], list[int]]:
    """(ms since the first packet, direction, TCP payload) -> a probe's packet summary (IP
    sizes with a 52-byte header, 60 for the handshake's first two; gaps in microseconds)."""
    sizes = [60 if k < 2 else 52 + pay for k, (_, _, pay) in enumerate(packets)]
    t = [round(ms * 1000) for ms, _, _ in packets]
    return sizes, [d for _, d, _ in packets], [0] + [b - a for a, b in itertools.pairwise(t)]


HANDSHAKE = [(0.0, 0, 0), (100.02, 1, 0), (100.03, 0, 0), (100.64, 0, 517), (196.87, 1, 0),
             (197.67, 1, 813), (197.71, 0, 0)]  # fmt: skip
TOKENS = [(373.47 + 25 * k, 1, 112) for k in range(1, 12)]


def test_a_session_ticket_late_behind_a_queue_is_neither_answer_nor_end_of_request():
    """Two chats recorded on the congested lab link (a 100-ms queue; the ticket answers the
    client's Finished, sent just before the request): true time to first token 175 ms and
    322 ms, estimated 99 ms and 252 ms before the ticket was recognised."""
    from detectors.behaviour import qoe
    from detectors.flows import FlowBatch

    late = [*HANDSHAKE, (198.60, 0, 80), (198.96, 0, 1448), (198.97, 0, 432), (297.43, 1, 0),
            (297.77, 1, 510), (337.65, 0, 0), (373.47, 1, 175), *TOKENS]  # fmt: skip
    mid_upload = [*HANDSHAKE, (198.60, 0, 80), *[(198.9 + k / 100, 0, 1448) for k in range(10)],
                  (267.0, 1, 0), (267.3, 1, 510), (268.1, 0, 791), (269.0, 1, 0),
                  (520.2, 1, 175), *[(520.2 + 25 * k, 1, 112) for k in range(1, 12)]]  # fmt: skip
    calm = [(0.0, 0, 0), (0.3, 1, 0), (0.31, 0, 0), (0.9, 0, 517), (3.1, 1, 0), (4.0, 1, 813),
            (4.1, 0, 0), (5.0, 0, 80), (5.3, 0, 1448), (5.4, 0, 432), (14.0, 1, 510),
            (180.0, 1, 175), *[(180.0 + 25 * k, 1, 112) for k in range(1, 12)]]  # fmt: skip
    flows = [late, mid_upload, calm]
    b = FlowBatch.from_columns(packets=[_summary(f) for f in flows], proto=[6] * 3,
                               ts_start=[0.0] * 3, ts_end=[1.0] * 3)  # fmt: skip
    ttft = qoe(b)["ttft_s"]
    assert np.allclose(ttft, [0.37347 - 0.19860, 0.5202 - 0.19860, 0.180 - 0.005], atol=1e-4), ttft


def test_a_stall_inside_an_answer_is_not_taken_for_the_think_pause():
    """A chat on the saturated lab link (15 % of its packets retransmitted): a token lost
    after the answer's sixth, resent 1.3 s later by the server's retransmission timeout. The
    client's clock said 227 ms to the first token; taking the longest silence for the think
    pause said 1.51 s, one chat in sixteen, and the mean of sixteen was 28 % off."""
    from detectors.behaviour import qoe
    from detectors.flows import FlowBatch

    request = [(198.60, 0, 80), (198.96, 0, 1448), (198.97, 0, 432)]
    first = 198.60 + 227.0
    answer = [(first, 1, 175), *[(first + 25 * k, 1, 112) for k in range(1, 6)],
              *[(first + 1300 + 25 * k, 1, 112) for k in range(6, 14)]]  # fmt: skip
    # and a second turn on the same connection whose answer is slower than the stall:
    # then it is that pause, a real one, that counts
    again = [(first + 2000, 0, 300), (first + 3600, 1, 175),
             *[(first + 3600 + 25 * k, 1, 112) for k in range(1, 4)]]  # fmt: skip
    flows = [[*HANDSHAKE, *request, *answer], [*HANDSHAKE, *request, *answer, *again]]
    b = FlowBatch.from_columns(packets=[_summary(f) for f in flows], proto=[6] * 2,
                               ts_start=[0.0] * 2, ts_end=[1.0] * 2)  # fmt: skip
    q = qoe(b)
    assert np.allclose(q["ttft_s"], [0.227, 1.6], atol=1e-4), q["ttft_s"]
    assert q["stalls"][0] == 1  # the stall is counted as one, where it belongs
