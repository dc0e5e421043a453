"""Per-flow statistics agree with a plain per-record computation."""

from __future__ import annotations

import time

import numpy as np
import orjson
import pytest

from detectors.features import FEATURES, flow_features
from streams.ingest.decode import BatchDecoder
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
