"""Property-based tests: no input makes a decoder raise, and every message is accounted for once."""

from __future__ import annotations

import time

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.codecs.decode import BatchDecoder
from streams.codecs.reasons import REASONS
from tests.records import valid_records

NOW = time.time()
DECODER = BatchDecoder()
VALID = [v for _, v in valid_records(30, seed=9, now=NOW)]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
KEYS = [
    "ip_src", "ip_dst", "packets", "bytes", "port_src", "ip_proto", "timestamp_start",
    "timestamp_end",
    "src_addr", "dst_addr", "proto", "time_flow_start_ns", "sampling_rate", "schema", "ts_start",
    "ts_end", "bytes_fwd", "packets_fwd", "pkts", "src_ip", "dst_ip", "peer_ip_src", "tcp_flags",
]  # fmt: skip


def check_accounting(values: list[bytes]) -> None:
    res = DECODER.decode(values, [NOW] * len(values))
    seen = res.index.tolist() + [r.index for r in res.rejects]
    assert sorted(seen) == list(range(len(values)))
    assert all(r.reason.value in REASONS for r in res.rejects)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=8))
def test_arbitrary_bytes_never_raise(values):
    check_accounting(values)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.dictionaries(st.sampled_from(KEYS), json_values, max_size=10), min_size=1, max_size=6
    )
)
def test_objects_with_known_keys_and_any_values_never_raise(objs):
    values = []
    for o in objs:
        try:
            values.append(orjson.dumps(o))
        except TypeError:  # integers beyond 64 bits: send them as text
            values.append(repr(o).encode())
    check_accounting(values)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(VALID),
    st.lists(
        st.tuples(st.integers(min_value=0), st.binary(min_size=0, max_size=4)),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_valid_records_never_raise(record, mutations):
    value = bytearray(record)
    for pos, chunk in mutations:
        p = pos % (len(value) + 1)
        value[p : p + len(chunk)] = chunk
    check_accounting([bytes(value), record])
