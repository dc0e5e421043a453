"""Test records: valid ones of every format (from streams.tools.synth) and malformed ones with the
reason the worker must give them."""

from __future__ import annotations

import random
import time
from pathlib import Path

import orjson

from streams.tools.synth import goflow2, native, pmacct, pmacct_time, valid_records

__all__ = ["SAMPLES", "malformed_records", "sample_lines", "valid_records"]

SAMPLES = Path(__file__).resolve().parent.parent / "lab" / "samples"


def malformed_records(now: float | None = None) -> list[tuple[bytes, str]]:
    """Malformed messages, each with the reason the worker must give it; cycles through kinds."""
    now = time.time() if now is None else now
    rng = random.Random(7)
    good = pmacct(rng, now)
    gf = goflow2(rng, now)
    nat = native(rng, now)

    def with_(base: dict[str, object], **changes: object) -> bytes:
        rec = dict(base)
        for k, v in changes.items():
            if v is ...:
                rec.pop(k, None)
            else:
                rec[k] = v
        return orjson.dumps(rec)

    return [
        (b"", "empty"),
        (b"x" * 70_000, "oversized"),
        (b"\xff\xfe\x00garbage", "bad_encoding"),
        (b'{"ip_src": "10.0.0.1", "ip_dst": ', "not_json"),
        (b"not json at all", "not_json"),
        (b"[1, 2, 3]", "not_object"),
        (b'"a string"', "not_object"),
        (b'{"hello": "world"}', "unknown_format"),
        (with_(good, bytes=...), "missing_field"),
        (with_(gf, src_addr=...), "missing_field"),
        (with_(good, bytes="12"), "wrong_type"),
        (with_(gf, packets=[1]), "wrong_type"),
        (with_(nat, ts_start="yesterday"), "wrong_type"),
        (with_(good, packets=-5), "negative_counter"),
        (with_(nat, bytes_rev=-1), "negative_counter"),
        (with_(good, port_dst=70000), "invalid_value"),
        (with_(good, ip_proto="bogus"), "invalid_value"),
        (with_(good, ip_src="not-an-ip"), "invalid_value"),
        (with_(gf, bytes=...)[:-1] + b',"bytes":1000000000000000000000000000000}', "invalid_value"),
        (with_(nat, schema="inferwatch.flow/9"), "unknown_format"),
        (
            with_(good, timestamp_start=pmacct_time(now - 10), timestamp_end=pmacct_time(now - 20)),
            "time_order",
        ),
        (with_(gf, time_flow_start_ns=10**9, time_flow_end_ns=2 * 10**9), "time_range"),
        (with_(nat, ts_start=now + 30 * 86400, ts_end=now + 30 * 86400), "time_range"),
        (b'{"ip_src": "10.0.0.1", "bytes": NaN}', "not_json"),
        (b'{"ip_src": ' + b"[" * 3000 + b"]" * 3000 + b"}", "wrong_type"),
        (with_(good)[:-1] + b',"extra":' + b"[" * 5000 + b"]" * 5000 + b"}", "not_json"),
    ]


def sample_lines(name: str) -> list[bytes]:
    return [ln for ln in (SAMPLES / name).read_bytes().splitlines() if ln.strip()]
