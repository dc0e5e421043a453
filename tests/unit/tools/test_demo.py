"""`inferwatch demo` (what `make run` plays): on time, on the lab's link, at the planned load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson

from streams.codecs.decode import BatchDecoder
from streams.links.catalog import LinkCatalog
from streams.tools.demo import DemoPlan, DemoTraffic

EXAMPLE_LINKS = Path(__file__).parents[3] / "config" / "links.yaml"
T0 = 1.8e9


def _play(plan: DemoPlan, seconds: int, seed: int) -> list[tuple[float, list[bytes], int]]:
    gen = DemoTraffic(plan, seed=seed)
    out = []
    for s in range(seconds):
        recs = gen.tick(T0 + s, float(s))
        out.append((T0 + s, [r.value for r in recs], sum(r.bytes for r in recs)))
    return out


def test_every_record_decodes_lands_on_the_lab_link_and_ends_by_its_send_time():
    played = _play(DemoPlan(), 60, seed=3)
    values = [v for _, vs, _ in played for v in vs]
    sent_at = np.array([t for t, vs, _ in played for _ in vs])
    decoded = BatchDecoder().decode(values, sent_at)
    assert not decoded.rejects and len(decoded.batch) == len(values) > 100
    LinkCatalog.load(EXAMPLE_LINKS).attribute(decoded.batch)
    assert set(decoded.batch.link) == {"lab-uplink"}
    ends = np.array([orjson.loads(v)["ts_end"] for v in values])
    assert np.all(ends <= sent_at) and np.all(ends > sent_at - 1)  # never late for a window
    assert len(
        {(orjson.loads(v)["src_ip"], orjson.loads(v)["src_port"]) for v in values}
    ) > 0.9 * len(values)  # distinct flows, not one flow repeated


def test_load_follows_the_plan_and_each_surge_goes_over_capacity():
    """Per 10-s window, the bytes sent against the plan's utilisation: seeds 0-9 (400 windows)
    measured 0.53-1.52 of the plan (a big flow comes whole, and the next ones wait for it), the
    whole run 0.98-1.02; bounds 0.45-1.7 and 0.9-1.1."""
    plan = DemoPlan(day_seconds=300, first_incident=120, incident_every=200, incident_seconds=40)
    full = plan.capacity_bps / 8 * 10
    for seed in range(3):
        played = _play(plan, 400, seed)
        sent = np.array([sum(b for _, _, b in played[w : w + 10]) for w in range(0, 400, 10)])
        planned = np.array([np.mean([plan.utilisation(s) for s in range(w, w + 10)]) * full
                            for w in range(0, 400, 10)])  # fmt: skip
        assert np.all((sent / planned > 0.45) & (sent / planned < 1.7)), (seed, sent / planned)
        assert 0.9 < sent.sum() / planned.sum() < 1.1
        surges = [w for w in range(0, 400, 10) if plan.in_incident(w) and plan.in_incident(w + 9)]
        assert surges == [120, 130, 140, 150, 320, 330, 340, 350]
        assert all(sent[w // 10] > full for w in surges), (seed, sent / full)
