"""The traffic lab end to end: namespaces -> both metering paths -> the broker -> a worker.

The probe (nfstream on the recorded bridge) publishes native records; the operator path
(live softflowd -> IPFIX -> nfacctd's Kafka plugin) publishes pmacct JSON. Every generated
flow must be found in each path's records, and the worker must count every record of both.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from lab.run import match, read_jsonl, run_scenario, signature
from lab.topology import sweep
from tests.kafka_util import create_topic, read_all

pytestmark = pytest.mark.integration

LAB = Path(__file__).parents[2] / "lab"
SCENARIO = LAB / "scenarios" / "e2e.yaml"
RECORDED = LAB / "recordings" / "e2e" / "truth.jsonl"  # `inferwatch lab record --scenario e2e`


def test_mixed_scenario_reaches_the_worker_through_both_paths_with_ground_truth(
    broker, names, start_worker, tmp_path
):
    asyncio.run(create_topic(broker, names.raw, 2))
    worker = start_worker()
    try:
        truth_file = run_scenario(SCENARIO, tmp_path / "lab", broker, names.raw)
    finally:
        assert sweep() == []  # the lab removed its namespaces and bridge itself
    truth = read_jsonl(truth_file)
    assert {f["class"] for f in truth} == set(yaml.safe_load(SCENARIO.read_text())["classes"])
    # the seed reproduces the committed recording's sessions and requests
    assert signature(truth) == signature(read_jsonl(RECORDED))

    values = [m.value for m in asyncio.run(read_all(broker, names.raw, 10**6, wait=4))]
    records = [json.loads(v) for v in values]
    report = match(truth, values)
    assert report.rate("probe") >= 0.99, report.missing.get("probe")
    assert report.rate("pmacct") >= 0.99, report.missing.get("pmacct")

    probe = [r for r in records if r.get("exporter") == "lab-probe"]
    pmacct = [r for r in records if r.get("event_type") == "purge"]
    assert len(probe) + len(pmacct) == len(records)
    named = {r.get("server_name") for r in probe if r.get("dst_port") == 443}
    assert {"api.openai.com", "api.anthropic.com", "www.lab.example"} <= named
    assert all("pkts" in r for r in probe if r["proto"] == 6)

    total = len(records)
    worker.wait_total("inferwatch_flow_records_total", total)
    assert worker.total("inferwatch_flow_records_total", outcome="ok", format="native") == len(
        probe
    )
    assert worker.total("inferwatch_flow_records_total", outcome="ok", format="pmacct") == len(
        pmacct
    )
    assert worker.total("inferwatch_flow_records_total", outcome="invalid") == 0
    # every record classified; the streaming chats' QoE estimated on the lab link
    worker.wait_total("inferwatch_flows_classified_total", total)
    assert worker.total("inferwatch_flows_classified_total", **{"class": "ai-chat-stream"}) >= 4
    assert worker.total("inferwatch_ai_time_to_first_token_seconds_count") >= 4
    worker.terminate()
