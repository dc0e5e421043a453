"""A tiny run of `inferwatch bench pipeline` (the real benchmark is run by hand, see bench/)."""

from __future__ import annotations

import subprocess

import orjson
import pytest

from tests.conftest import INFERWATCH

pytestmark = pytest.mark.integration


def test_bench_pipeline_prints_one_json_line_with_every_figure(broker, tmp_path):
    out = tmp_path / "bench.jsonl"
    res = subprocess.run(
        [str(INFERWATCH), "bench", "pipeline", "--broker", broker, "--records", "4000",
         "--latency-seconds", "2", "--latency-rate", "1000", "--out", str(out)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    line = orjson.loads(res.stdout.strip().splitlines()[-1])
    assert orjson.loads(out.read_text().strip()) == line
    for key in ("raw_consume_records_per_s", "worker_records_per_s", "ratio_worker_to_raw",
                "latency_p50_seconds", "latency_p99_seconds", "peak_rss_bytes"):  # fmt: skip
        assert line[key] is not None and line[key] > 0, key
    assert line["records_counted"] == 4000 + 2000
    assert line["latency_p50_seconds"] <= line["latency_p99_seconds"]
    # queued micro-batches of a partition are analysed together, never one split in two
    assert 0 < line["analysis_batches"] <= line["flows_v1_batches_published"]
