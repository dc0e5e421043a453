"""goflow2's protobuf output decodes to exactly what goflow2 wrote as JSON in the same run."""

from __future__ import annotations

import time

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.codecs import goflow2pb
from streams.codecs.decode import BatchDecoder
from tests.records import SAMPLES, sample_lines

NOW = time.time()


def test_real_protobuf_sample_equals_the_json_of_the_same_run():
    msgs = list(goflow2pb.split_file((SAMPLES / "goflow2.pb").read_bytes()))
    res = BatchDecoder(fmt="goflow2-protobuf").decode(msgs, [NOW] * len(msgs))
    assert res.rejects == []
    b = res.batch
    got = sorted(
        zip(b.src_ip.tolist(), b.dst_ip.tolist(), b.src_port.tolist(), b.dst_port.tolist(),
            b.proto.tolist(), b.bytes_fwd.tolist(), b.packets_fwd.tolist(), b.ts_start.tolist(),
            strict=True)
    )  # fmt: skip
    numbers = {"TCP": 6, "UDP": 17, "ICMP": 1}
    want = sorted(
        (r["src_addr"], r["dst_addr"], r["src_port"], r["dst_port"], numbers[r["proto"]],
         r["bytes"] * max(r["sampling_rate"], 1), r["packets"] * max(r["sampling_rate"], 1),
         r["time_flow_start_ns"] / 1e9)
        for r in map(orjson.loads, sample_lines("goflow2.jsonl"))
    )  # fmt: skip
    assert len(got) == len(want) > 10
    for g, w in zip(got, want, strict=True):
        assert g[:7] == w[:7]
        # Two goflow2 instances turn NetFlow v9's uptime-relative times into absolute ones,
        # each with its own receive clock: they differ by a millisecond or so.
        assert abs(g[7] - w[7]) < 0.01


def test_framing_is_optional_and_bad_messages_are_refused():
    msg = goflow2pb.build_message(src_addr=bytes(4), dst_addr=bytes(16), bytes=10, packets=1)
    raw = msg.SerializeToString()
    dec = BatchDecoder(fmt="goflow2-protobuf")
    res = dec.decode([goflow2pb.frame(raw), raw, b"\xff\xff\xff", b"", b'{"json": 1}'], [NOW] * 5)
    assert len(res.batch) == 2
    assert res.batch.dst_ip.tolist()[0] == "::"
    assert [r.reason.value for r in res.rejects] == ["not_protobuf", "empty", "not_protobuf"]
    bad_addr = goflow2pb.build_message(src_addr=b"\x01\x02\x03", dst_addr=bytes(4), bytes=1)
    assert (
        dec.decode([bad_addr.SerializeToString()], [NOW]).rejects[0].reason.value == "not_protobuf"
    )


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=200), min_size=1, max_size=8))
def test_arbitrary_bytes_never_raise_in_protobuf_mode(values):
    res = BatchDecoder(fmt="goflow2-protobuf").decode(values, [NOW] * len(values))
    assert sorted(res.index.tolist() + [r.index for r in res.rejects]) == list(range(len(values)))
