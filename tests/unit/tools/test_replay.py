"""Replay's retiming shifts every known timestamp by the same offset and leaves the rest."""

from __future__ import annotations

import orjson

from streams.codecs.decode import BatchDecoder
from tests.records import SAMPLES


def test_retime_moves_samples_to_now_and_keeps_durations(tmp_path):
    from streams.tools.replay import load_lines

    f = tmp_path / "mix.jsonl"
    f.write_bytes(
        (SAMPLES / "pmacct.jsonl").read_bytes()
        + (SAMPLES / "goflow2.jsonl").read_bytes()
        + b"garbage\n"
    )
    original = load_lines(f, retime=False)
    shifted = load_lines(f, retime=True, now=2_000_000_000.0)
    assert len(original) == len(shifted) and shifted[-1] == b"garbage"
    dec = BatchDecoder(max_age_seconds=1e10, max_future_seconds=1e10)
    a = dec.decode(original[:-1], [0.0] * (len(original) - 1)).batch
    b = dec.decode(shifted[:-1], [0.0] * (len(shifted) - 1)).batch
    offset = b.ts_start - a.ts_start
    assert abs(float(b.ts_start.min()) - 2_000_000_000.0) < 1e-3
    assert abs(offset - offset[0]).max() < 1e-3  # one offset for the whole file
    assert abs((b.ts_end - b.ts_start) - (a.ts_end - a.ts_start)).max() < 1e-3
    assert [orjson.loads(x).get("bytes") for x in shifted[:-1]] == [
        orjson.loads(x).get("bytes") for x in original[:-1]
    ]
