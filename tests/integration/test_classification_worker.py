"""Classification in the worker: classes and AI QoE on /metrics, learning from operators'
feedback, progressive validation, and the model checkpoint a restarted worker resumes from.

Input: the committed lab recording (probe records of every class, with ground truth).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import orjson
import pytest

from lab.run import read_jsonl
from streams.config import ClassifyConfig, resolve_path
from streams.links.datasets import TRAIN_EPOCHS, load_dataset
from tests.kafka_util import produce, read_all

pytestmark = pytest.mark.integration

LIMIT = 4 << 20  # the other topics' message limit in the bootstrap test: under the model's size
RECORDINGS = Path(__file__).parents[2] / "lab" / "recordings"
REC = RECORDINGS / "e2e"


def probe_records(rec: Path = REC) -> list[dict]:
    rows = [orjson.loads(v) for v in (rec / "flows.jsonl").read_bytes().splitlines()]
    return [r for r in rows if r.get("schema")]


def truth_of(rec: Path) -> dict[tuple[int, int], str]:
    return {(t["client_port"], t["proto"]): t["class"] for t in read_jsonl(rec / "truth.jsonl")}


def labelled() -> list[bytes]:
    truth = truth_of(REC)
    out = []
    for r in probe_records():
        label = truth.get((r["src_port"], r["proto"]), "other")
        out.append(orjson.dumps({"label": label, "record": r}))
    return out


def test_worker_classifies_learns_from_feedback_and_resumes_its_model(broker, names, start_worker):
    env = {"INFERWATCH_CLASSIFY__CHECKPOINT_SECONDS": "1", "INFERWATCH_CLASSIFY__BOOTSTRAP": "[]",
           # every round of feedback learned, however soon after the last (not the budget's
           # test: tests/unit/links/test_classification.py)
           "INFERWATCH_CLASSIFY__LEARN_TIME_SHARE": "1"}  # fmt: skip
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


def test_a_new_worker_bootstraps_and_classifies_unnamed_flows_by_behaviour(
    broker, names, start_worker
):
    """The default bootstrap (the four eval recordings and nDPI's real captures) and names
    off: the e2e recording's flows, which the model never saw, recorded without server names."""
    worker = start_worker({"INFERWATCH_CLASSIFY__NAMES": "off",
                           "INFERWATCH_CLASSIFY__CHECKPOINT_SECONDS": "1",
                           "INFERWATCH_KAFKA__MAX_MESSAGE_BYTES": str(LIMIT)})  # fmt: skip
    # the records of both metering paths of the eval recordings with ground truth and the
    # probe's records of nDPI's captures (listed twice), each learned in every pass: 7,344
    boot = [resolve_path(p) for p in ClassifyConfig().bootstrap]
    rows = sum(int((load_dataset(p, "all").labels >= 0).sum()) for p in boot if p is not None)
    worker.wait_total("inferwatch_classifier_learned_flows_total", rows * TRAIN_EPOCHS,
                      source="bootstrap")  # fmt: skip
    rec = RECORDINGS / "e2e-nosni"
    truth = truth_of(rec)
    records = [r for r in probe_records(rec) if (r["src_port"], r["proto"]) in truth]
    asyncio.run(produce(broker, names.raw, [orjson.dumps(r) for r in records]))
    worker.wait_total("inferwatch_flows_classified_total", len(records))
    assert worker.total("inferwatch_flows_classified_total", evidence="name") == 0
    want = Counter(truth[(r["src_port"], r["proto"])] for r in records)
    got = {c: worker.total("inferwatch_flows_classified_total", **{"class": c}) for c in want}
    right = sum(min(n, got[c]) for c, n in want.items())
    # measured: 15 of 15 with the lab's recordings alone, 13 of 15 since the real captures
    # joined them (docs/classification.md: which then take 13 of 352 real flows for AI, not
    # 291). Fifteen flows and one forest seed: offline, over eight seeds, the bootstrap gets
    # 12 to 15 of them right (mean 14.1) learning its datasets in three passes, 13 to 15
    # (13.9) in one; the default seed, 42, gets 12 with three passes, 13 with one; 14 since the
    # bootstrap learns eval-d and the real captures twice (2026-11-28).
    print(f"bootstrapped worker, names off: {right} of {len(records)} e2e flows right")
    assert right >= len(records) - 3, (right, want, got)
    # the bootstrapped model (6 to 10 MB pickled) fits its compacted topic, whatever the
    # limit of the other topics: a batch after a second writes it (it failed on their 8-MB
    # limit, the default; here it is 4 MB, under the model's size)
    asyncio.run(produce(broker, names.raw, [orjson.dumps(records[0])]))
    worker.wait_total("inferwatch_classifier_checkpoints_total", 1, outcome="written")
    assert worker.total("inferwatch_classifier_checkpoints_total", outcome="failed") == 0
    saved = asyncio.run(read_all(broker, names.model, 1, wait=10))
    assert saved and len(saved[-1].value) > LIMIT, [len(m.value) for m in saved]
    worker.terminate()
