"""Classification in the worker: classes and AI QoE on /metrics, learning from operators'
feedback, progressive validation, and the model checkpoint a restarted worker resumes from.

Input: the committed lab recording (probe records of every class, with ground truth).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from lab.run import read_jsonl
from tests.kafka_util import produce, read_all

pytestmark = pytest.mark.integration

REC = Path(__file__).parents[2] / "lab" / "recordings" / "e2e"


def probe_records() -> list[dict]:
    rows = [orjson.loads(v) for v in (REC / "flows.jsonl").read_bytes().splitlines()]
    return [r for r in rows if r.get("schema")]


def labelled() -> list[bytes]:
    truth = {(t["client_port"], t["proto"]): t["class"] for t in read_jsonl(REC / "truth.jsonl")}
    out = []
    for r in probe_records():
        label = truth.get((r["src_port"], r["proto"]), "other")
        out.append(orjson.dumps({"label": label, "record": r}))
    return out


def test_worker_classifies_learns_from_feedback_and_resumes_its_model(broker, names, start_worker):
    env = {"INFERWATCH_CLASSIFY__CHECKPOINT_SECONDS": "1"}
    worker = start_worker(env)
    records = [orjson.dumps(r) for r in probe_records()]
    asyncio.run(produce(broker, names.raw, records))
    worker.wait_total("inferwatch_flows_classified_total", len(records))
    # untrained: the catalog's names alone; the lab's AI names are "ai", web/bulk/video named
    assert worker.total("inferwatch_flows_classified_total", evidence="name") >= 12
    assert worker.total("inferwatch_flows_classified_total", **{"class": "video"}) == 1
    assert worker.total("inferwatch_flows_classified_total", **{"class": "bulk"}) == 1
    # streaming AI flows got QoE estimates, per link and class
    assert worker.total("inferwatch_ai_time_to_first_token_seconds_count") >= 4
    assert worker.total("inferwatch_ai_tokens_per_second_count") >= 4

    # operators' feedback: the same flows with their true classes, three times over
    feedback = [*labelled(), b"not json", b'{"label": "nonsense", "record": {}}']
    for n in (1, 2, 3):  # one round at a time: each is validated before it is learned
        asyncio.run(produce(broker, names.labels, feedback))
        worker.wait_total("inferwatch_classifier_learned_flows_total", n * len(records))
    assert worker.total("inferwatch_classifier_feedback_rejected_total", reason="not_json") == 3
    assert worker.total("inferwatch_classifier_feedback_rejected_total", reason="bad_label") == 3
    # progressive validation ran on the second and third rounds
    assert worker.total("inferwatch_classifier_f1", **{"class": "ai-chat-stream"}) > 0

    # the next batch after a second triggers a checkpoint to the compacted topic
    asyncio.run(produce(broker, names.raw, records[:1]))
    worker.wait_total("inferwatch_classifier_checkpoints_total", 1, outcome="written")
    saved = asyncio.run(read_all(broker, names.model, 1, wait=10))
    assert saved and saved[-1].key == f"t{names.suffix}-app".encode()
    worker.terminate()

    again = start_worker(env)
    again.wait_total("inferwatch_classifier_checkpoints_total", 1, outcome="restored")
    assert "classifier resumed from" in again.log()
    again.terminate()
