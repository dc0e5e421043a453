"""Record a scenario into a dataset: the packets, the exported flow records, the ground truth.

``record`` plays a scenario in a fresh lab (``lab.run.run_scenario``: both metering paths into
a private topic of a real broker), reads that topic back, and writes to ``out``:

* ``scenario.yaml``: the scenario as played (after ``--minutes``, ``--seed``, ``--no-sni``);
* ``lab.pcap``: every frame that crossed the lab's link;
* ``flows.jsonl``: the exported records, one Kafka message value per line, in topic order per
  partition (pmacct JSON from softflowd/nfacctd, native JSON from the probe);
* ``truth.jsonl``: the ground truth written at the source, one connection per line;
* ``manifest.json``: counts, match rates per path, tool versions.

``--minutes`` stretches a scenario: its ``seconds`` becomes ``60 * minutes`` and every class's
``sessions`` grows in proportion (at least the scenario's own count), so a one-minute scenario
recorded for ten minutes has ten times its sessions over ten times the span. The seed draws
everything the client decides (start times, trace rows, sizes, server names, per-request
generation seeds), so two recordings with one seed hold the same sessions and requests; what
the kernel decides (source ports, exact times, TCP segmentation) differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import math
import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from lab.run import match, read_jsonl, run_scenario
from lab.topology import LabError
from streams.kafka import read_to_end

SCENARIOS = Path(__file__).parent / "scenarios"
ARTEFACTS = ("lab.pcap", "truth.jsonl")


def scenario_path(name: str) -> Path:
    """A scenario file, or the name of one in lab/scenarios/."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    path = SCENARIOS / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in SCENARIOS.glob("*.yaml")))
        raise LabError(f"no scenario {name!r} (a YAML file, or one of: {known})")
    return path


def stretch(
    raw: dict[str, Any], minutes: float | None, seed: int | None, sni: bool | None
) -> dict[str, Any]:
    """The scenario ``raw`` as recorded: longer, reseeded or without server names."""
    out = {**raw, "classes": {k: dict(v or {}) for k, v in raw["classes"].items()}}
    if minutes is not None:
        if minutes <= 0:
            raise LabError("--minutes must be positive")
        factor = minutes * 60 / float(raw.get("seconds", 60))
        out["seconds"] = minutes * 60
        for spec in out["classes"].values():
            sessions = int(spec.get("sessions", 1))
            spec["sessions"] = max(sessions, math.ceil(sessions * factor))
    if seed is not None:
        out["seed"] = seed
    if sni is not None:
        out["sni"] = sni
    return out


async def _topic(broker: str, name: str, create: bool) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker, client_id="inferwatch-lab")
    await admin.start()
    try:
        if create:
            await admin.create_topics([NewTopic(name, 1, 1)])
        else:
            await admin.delete_topics([name])
    finally:
        await admin.close()


async def read_topic(broker: str, topic: str) -> list[bytes]:
    """Every message value of ``topic`` (all partitions, to their end offsets now)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker, enable_auto_commit=False, client_id="inferwatch-lab"
    )
    await consumer.start()
    try:
        values: list[bytes] = []
        async for msgs in read_to_end(consumer, topic):
            values.extend(m.value for m in msgs if m.value is not None)
        return values
    finally:
        await consumer.stop()


def _version(argv: list[str], marker: str) -> str:
    """The first line of ``argv``'s output that holds ``marker``."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "missing"
    lines = [ln.strip() for ln in (out.stdout + out.stderr).splitlines() if marker in ln]
    return lines[0] if lines else "unknown"


def record(
    scenario: str,
    out: Path,
    broker: str,
    *,
    minutes: float | None = None,
    seed: int | None = None,
    sni: bool | None = None,
) -> dict[str, Any]:
    """Record ``scenario`` into ``out``; returns the manifest (also written there)."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # unwind: the lab and its daemons are removed

    signal.signal(signal.SIGTERM, stop)
    raw = yaml.safe_load(scenario_path(scenario).read_text())
    played = stretch(raw, minutes, seed, sni)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scenario.yaml").write_text(yaml.safe_dump(played, sort_keys=False))
    topic = f"lab.record.{uuid.uuid4().hex[:12]}"
    asyncio.run(_topic(broker, topic, create=True))
    try:
        work = Path(tempfile.mkdtemp(prefix="inferwatch-lab-"))
        try:
            run_scenario(out / "scenario.yaml", work, broker, topic)
        except LabError as exc:
            raise LabError(f"{exc} (the run's logs are kept in {work})") from exc
        for name in ARTEFACTS:
            shutil.move(str(work / name), out / name)
        shutil.rmtree(work)
        values = asyncio.run(read_topic(broker, topic))
    finally:
        with contextlib.suppress(Exception):
            asyncio.run(_topic(broker, topic, create=False))
    (out / "flows.jsonl").write_bytes(b"".join(v.rstrip(b"\n") + b"\n" for v in values))
    truth = read_jsonl(out / "truth.jsonl")
    report = match(truth, values)
    manifest = {
        "scenario": played["name"],
        "seed": played.get("seed"),
        "seconds": played.get("seconds"),
        "sni": played.get("sni", True),
        "flows": report.flows,
        "flows_by_class": dict(sorted(report.by_class.items())),
        "records": len(values),
        "records_by_path": dict(sorted(report.records.items())),
        "matched": {path: report.matched.get(path, 0) for path in ("probe", "pmacct")},
        "pcap_bytes": (out / "lab.pcap").stat().st_size,
        "tools": {
            "softflowd": _version(["softflowd", "-h"], "softflowd version"),
            "nfacctd": _version(["nfacctd", "-V"], "nfacctd "),
            "nfstream": importlib.metadata.version("nfstream"),
        },
    }
    (out / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return manifest
