"""Rebuild lab/samples/mixed.jsonl (what `make run` replays) from the real samples:
pmacct.jsonl + goflow2.jsonl + 40 synthetic native records + 8 malformed lines, shuffled.

    .venv/bin/python lab/make_mixed.py
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import orjson

from streams.tools.synth import native

SAMPLES = Path(__file__).resolve().parent / "samples"
MALFORMED = [
    b'{"ip_src": "10.0.0.1", "ip_dst": ',
    b"not json at all",
    b"[1, 2, 3]",
    b'"a string"',
    b'{"hello": "world"}',
    b'{"ip_src": "10.0.0.1", "ip_dst": "10.0.0.2", "packets": 1}',
    b'{"ip_src": "10.0.0.1", "ip_dst": "10.0.0.2", "packets": 1, "bytes": "12"}',
    b'{"src_addr": "10.0.0.1", "dst_addr": "10.0.0.2", "bytes": 1, "packets": -4}',
]


def main() -> None:
    rng = random.Random(42)
    pm = (SAMPLES / "pmacct.jsonl").read_bytes().splitlines()
    gf = (SAMPLES / "goflow2.jsonl").read_bytes().splitlines()
    start = orjson.loads(pm[0])["timestamp_start"]
    t0 = float(np.datetime64(start, "us").astype(np.int64)) / 1e6
    lines = pm + gf + [orjson.dumps(native(rng, t0)) for _ in range(40)] + MALFORMED
    rng.shuffle(lines)
    (SAMPLES / "mixed.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    kinds = f"{len(pm)} pmacct, {len(gf)} goflow2, 40 native, {len(MALFORMED)} malformed"
    print(f"mixed.jsonl: {kinds}")


if __name__ == "__main__":
    main()
