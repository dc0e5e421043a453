"""`inferwatch demo`: endless, realistic flow records for `make run` and the compose stack.

The records are the package's bootstrap recordings (streams/data/bootstrap: lab sessions of
every class, AI chats, API calls and agents among them, metered by the probe with their packet
summaries), each stamped as if it ended now, on one link. The load follows a day compressed
into ``day_seconds``, and every ``incident_every`` seconds a surge takes the link over its
capacity for ``incident_seconds``: a congestion alert, and an anomaly once the link's detector
has learned its usual levels. Everything is on time for its window, so windows, utilisation,
forecasts and scores move as they would on a live network.

>>> plan = DemoPlan(capacity_bps=100e6, first_incident=60.0)
>>> round(plan.utilisation(0.0), 2), plan.utilisation(61.0) > 1
(0.35, True)
>>> gen = DemoTraffic(plan, seed=1)
>>> sent = [gen.tick(1.8e9 + s, float(s)) for s in range(10)]
>>> 0.3 < sum(r.bytes for batch in sent for r in batch) / (100e6 / 8 * 10) < 0.5
True
>>> batch = sent[0]
>>> rec = orjson.loads(batch[0].value)
>>> rec["exporter"], rec["iface_in"], rec["ts_end"] <= 1.8e9
('probe-1', 1, True)
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from streams.config import DATA_DIR, Config

TEMPLATES = tuple(DATA_DIR / "bootstrap" / f"eval-{x}-3m" / "flows.jsonl" for x in "abcd")


@dataclass(frozen=True)
class DemoPlan:
    """The demo's link and its load over time (utilisation of the link's capacity)."""

    exporter: str = "probe-1"  # with iface 1: lab-uplink in config/links.yaml
    iface: int = 1
    capacity_bps: float = 100e6
    base_utilisation: float = 0.35
    swing: float = 0.2  # the day's amplitude around the base
    day_seconds: float = 600.0
    first_incident: float = 150.0
    incident_every: float = 300.0
    incident_seconds: float = 60.0
    incident_utilisation: float = 1.1

    def in_incident(self, elapsed: float) -> bool:
        since = elapsed - self.first_incident
        return since >= 0 and since % self.incident_every < self.incident_seconds

    def utilisation(self, elapsed: float) -> float:
        """The share of the capacity to send ``elapsed`` seconds after the start."""
        if self.in_incident(elapsed):
            return self.incident_utilisation
        return self.base_utilisation + self.swing * math.sin(
            2 * math.pi * elapsed / self.day_seconds
        )


@dataclass(frozen=True)
class DemoRecord:
    value: bytes
    bytes: int


def load_templates(paths: tuple[Path, ...] = TEMPLATES) -> list[dict[str, Any]]:
    """The native (probe) records of the recordings: the ones with packet summaries."""
    out = []
    for path in paths:
        for line in path.read_bytes().splitlines():
            rec = orjson.loads(line)
            if rec.get("schema") and rec.get("proto") in (6, 17):
                out.append(rec)
    return out


class DemoTraffic:
    """Records to send, second by second; deterministic given ``seed`` and the clock passed."""

    def __init__(
        self, plan: DemoPlan, templates: list[dict[str, Any]] | None = None, seed: int = 0
    ) -> None:
        self.plan = plan
        self.templates = templates if templates is not None else load_templates()
        self._rng = random.Random(seed)
        self._budget = 0.0

    def tick(self, now: float, elapsed: float, seconds: float = 1.0) -> list[DemoRecord]:
        """The records that end within the ``seconds`` before ``now``."""
        plan, rng = self.plan, self._rng
        self._budget += plan.capacity_bps / 8 * plan.utilisation(elapsed) * seconds
        out = []
        while self._budget > 0:
            rec = dict(rng.choice(self.templates))
            size = int(rec["bytes_fwd"]) + int(rec["bytes_rev"])
            end = now - rng.uniform(0, seconds)
            duration = float(rec["ts_end"]) - float(rec["ts_start"])
            rec.update(
                ts_start=round(end - duration, 6),
                ts_end=round(end, 6),
                exporter=plan.exporter,
                iface_in=plan.iface,
                src_ip=f"10.{rng.randint(0, 3)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                src_port=rng.randint(32768, 60999),
            )
            out.append(DemoRecord(orjson.dumps(rec), size))
            self._budget -= size
        return out


async def run_demo(cfg: Config, plan: DemoPlan, seconds: float = 0.0, seed: int = 0) -> int:
    """Publish the demo's records to flows.raw each second, for ``seconds`` (0: until
    cancelled); the number of records sent."""
    from streams.kafka import start_producer

    gen = DemoTraffic(plan, seed=seed)
    producer = await start_producer(cfg, "demo", linger_ms=50)
    sent, t0 = 0, time.monotonic()
    try:
        while seconds <= 0 or time.monotonic() - t0 < seconds:
            elapsed = time.monotonic() - t0
            for rec in gen.tick(time.time(), elapsed):
                await producer.send(cfg.kafka.topics.raw, rec.value)
                sent += 1
            await producer.flush()
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - t0 - elapsed)))
    finally:
        await producer.stop()
    return sent
