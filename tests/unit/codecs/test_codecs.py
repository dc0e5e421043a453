"""Decoders on real exporter output and on every kind of bad record."""

from __future__ import annotations

import time

import numpy as np
import orjson
import pytest

from detectors.flows import FORMATS
from streams.codecs.decode import BatchDecoder
from streams.codecs.reasons import REASONS
from streams.links.catalog import LinkCatalog
from tests.records import malformed_records, sample_lines, valid_records

NOW = time.time()


def decode(values, ts=NOW, **kw):
    return BatchDecoder(**kw).decode(values, [ts] * len(values))


@pytest.mark.parametrize(
    ("sample", "fmt"), [("pmacct.jsonl", "pmacct"), ("goflow2.jsonl", "goflow2")]
)
def test_real_samples_decode_completely(sample, fmt):
    lines = sample_lines(sample)
    res = decode(lines)
    assert res.rejects == []
    assert res.ok_by_format() == {fmt: len(lines)}
    # every field agrees with the JSON the exporter wrote
    for i, line in enumerate(lines):
        obj = orjson.loads(line)
        j = int(np.flatnonzero(res.index == i)[0])
        b = res.batch
        if fmt == "pmacct":
            assert b.bytes_fwd[j] == obj["bytes"] * max(obj["sampling_rate"], 1)
            assert b.src_ip[j] == obj["ip_src"] and b.dst_port[j] == obj["port_dst"]
            assert b.proto[j] == {"tcp": 6, "udp": 17, "icmp": 1}[obj["ip_proto"]]
            assert b.tcp_flags[j] == int(obj["tcp_flags"])
            assert b.exporter[j] == obj["peer_ip_src"]
            # pmacct prints UTC "YYYY-MM-DD HH:MM:SS.ffffff"
            want = np.datetime64(obj["timestamp_start"], "us").astype(np.int64) / 1e6
            assert b.ts_start[j] == pytest.approx(want)
        else:
            assert b.bytes_fwd[j] == obj["bytes"] * max(obj["sampling_rate"], 1)
            assert b.src_ip[j] == obj["src_addr"] and b.src_port[j] == obj["src_port"]
            assert b.proto[j] == {"TCP": 6, "UDP": 17, "ICMP": 1}[obj["proto"]]
            assert b.ts_start[j] == pytest.approx(obj["time_flow_start_ns"] / 1e9)
            assert b.ts_end[j] == pytest.approx(obj["time_flow_end_ns"] / 1e9)
        assert b.ts_end[j] >= b.ts_start[j]


def test_pmacct_unset_end_time_takes_the_start():
    # nfacctd 1.7.7 fed IPFIX from softflowd in its default (seconds) time format prints this
    rec = {"ip_src": "10.0.0.1", "ip_dst": "10.0.0.2", "packets": 3, "bytes": 300,
           "timestamp_start": "2026-11-26 16:01:02.000000",
           "timestamp_end": "0000-00-00 00:00:00.000000"}  # fmt: skip
    res = decode([orjson.dumps(rec)])
    assert not res.rejects
    want = np.datetime64("2026-11-26T16:01:02", "us").astype(np.int64) / 1e6
    assert res.batch.ts_end[0] == res.batch.ts_start[0] == pytest.approx(want)


def test_sampling_rate_multiplies_counters():
    rec = {
        "ip_src": "10.0.0.1",
        "ip_dst": "10.0.0.2",
        "packets": 3,
        "bytes": 300,
        "sampling_rate": 100,
    }
    b = decode([orjson.dumps(rec)]).batch
    assert (int(b.bytes_fwd[0]), int(b.packets_fwd[0]), int(b.sampling_rate[0])) == (
        30_000,
        300,
        100,
    )
    gf = {"src_addr": "::1", "dst_addr": "::2", "bytes": 10, "packets": 1, "sampling_rate": 0}
    assert int(decode([orjson.dumps(gf)]).batch.bytes_fwd[0]) == 10  # 0 = unknown, taken as 1


def test_native_record_keeps_packet_summary_and_both_directions():
    rec = {
        "schema": "inferwatch.flow/1", "ts_start": NOW - 5, "ts_end": NOW - 1,
        "src_ip": "10.0.0.1", "dst_ip": "10.0.0.2", "proto": 6, "src_port": 5000, "dst_port": 443,
        "bytes_fwd": 900, "packets_fwd": 5, "bytes_rev": 40_000, "packets_rev": 60,
        "sampling_rate": 2,
        "server_name": "api.openai.com", "link": "paris-1",
        "pkts": {"size": [517, 1400, 90], "dir": [0, 1, 1], "iat_us": [0, 35_000, 20_000]},
    }  # fmt: skip
    b = decode([orjson.dumps(rec)]).batch
    assert int(b.bytes_rev[0]) == 80_000 and int(b.bytes_fwd[0]) == 1_800
    assert b.server_name[0] == "api.openai.com" and b.link[0] == "paris-1"
    assert b.pkt_size.tolist() == [517, 1400, 90] and b.pkt_iat_us[1] == 35_000
    assert b.pkt_dir.tolist() == [0, 1, 1] and b.pkt_count.tolist() == [3]
    rec["pkts"]["dir"] = [0, 1]
    assert decode([orjson.dumps(rec)]).rejects[0].reason.value == "invalid_value"


def test_link_defaults_to_exporter_and_input_interface():
    rec = {
        "ip_src": "10.0.0.1",
        "ip_dst": "10.0.0.2",
        "packets": 1,
        "bytes": 1,
        "peer_ip_src": "192.0.2.7",
        "iface_in": 12,
    }
    batch = decode([orjson.dumps(rec)]).batch
    LinkCatalog([]).attribute(batch)
    assert batch.link.tolist() == ["192.0.2.7#12"]


@pytest.mark.parametrize(("value", "reason"), malformed_records(NOW))
def test_each_malformed_record_gets_its_reason(value, reason):
    res = decode([value])
    assert len(res.batch) == 0
    assert [r.reason.value for r in res.rejects] == [reason]
    assert res.rejects[0].detail


def test_mixed_batch_keeps_order_and_accounts_for_everything():
    good = [v for _, v in valid_records(300, seed=2, now=NOW)]
    bad = [v for v, _ in malformed_records(NOW)]
    values = good[:100] + bad + good[100:]
    res = decode(values)
    assert len(res.batch) == 300 and len(res.rejects) == len(bad)
    assert sorted(res.index.tolist() + [r.index for r in res.rejects]) == list(range(len(values)))
    assert {r.index for r in res.rejects} == set(range(100, 100 + len(bad)))
    assert res.ok_by_format() == dict.fromkeys(FORMATS, 100)


def test_forced_format_refuses_other_formats():
    pm = sample_lines("pmacct.jsonl")[0]
    refused = decode([pm], fmt="goflow2")
    assert len(refused.batch) == 0
    assert refused.rejects[0].reason.value in {"missing_field", "wrong_type"}
    assert len(decode([pm], fmt="pmacct").batch) == 1


def test_time_window_is_relative_to_kafka_append_time():
    rec = orjson.loads(sample_lines("goflow2.jsonl")[0])
    start = rec["time_flow_start_ns"] / 1e9
    assert len(decode([orjson.dumps(rec)], ts=start + 10).batch) == 1
    far = decode([orjson.dumps(rec)], ts=start + 10, max_age_seconds=5)
    assert far.rejects[0].reason.value == "time_range"


def test_reasons_are_a_small_fixed_set():
    assert len(REASONS) == len(set(REASONS)) <= 16
