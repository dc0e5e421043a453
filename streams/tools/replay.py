"""Publish recorded flow records (one message per line, any format) to flows.raw.

The replay does not judge records: malformed lines are published as they are, so the worker's
dead-letter path sees exactly what an exporter would have sent. ``retime`` shifts the known
timestamp fields of pmacct, goflow2 and native records so that the file starts now.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

from streams.codecs import goflow2pb
from streams.config import Config
from streams.kafka import start_producer

_PMACCT_FMT = "%Y-%m-%d %H:%M:%S.%f"


@dataclass
class ReplaySummary:
    records: int = 0
    bytes: int = 0
    failed: int = 0
    seconds: float = 0.0
    topic: str = ""

    def describe(self) -> str:
        rate = self.records / self.seconds if self.seconds > 0 else 0.0
        return (
            f"replayed {self.records} records ({self.bytes} bytes) to {self.topic} in "
            f"{self.seconds:.1f}s ({rate:,.0f} records/s); failed: {self.failed}"
        )


def _start_of(obj: Any) -> float | None:
    """The start time (epoch seconds) of a decoded record of a known format, else None."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("ts_start"), int | float):
        return float(obj["ts_start"])
    if isinstance(obj.get("time_flow_start_ns"), int) and obj["time_flow_start_ns"] > 0:
        return float(obj["time_flow_start_ns"]) / 1e9
    ts = obj.get("timestamp_start")
    if isinstance(ts, str):
        try:
            return datetime.strptime(ts, _PMACCT_FMT).replace(tzinfo=UTC).timestamp()
        except ValueError:
            return None
    return None


def _shift(obj: dict[str, Any], offset: float) -> dict[str, Any]:
    for key in ("ts_start", "ts_end"):
        if isinstance(obj.get(key), int | float):
            obj[key] = round(obj[key] + offset, 6)
    for key in ("time_flow_start_ns", "time_flow_end_ns", "time_received_ns"):
        if isinstance(obj.get(key), int) and obj[key] > 0:
            obj[key] = obj[key] + int(offset * 1e9)
    for key in ("timestamp_start", "timestamp_end"):
        if isinstance(obj.get(key), str):
            try:
                t = datetime.strptime(obj[key], _PMACCT_FMT).replace(tzinfo=UTC).timestamp()
            except ValueError:
                continue
            obj[key] = datetime.fromtimestamp(t + offset, UTC).strftime(_PMACCT_FMT)
    return obj


def load_lines(
    path: Path, retime: bool, now: float | None = None, framing: str = "lines"
) -> list[bytes]:
    """The file's records, retimed when asked (unparseable lines stay as they are).

    ``framing``: "lines" (one JSON record per line) or "varint" (goflow2's binary capture:
    length-prefixed protobuf messages, replayed as they are, without retiming).
    """
    if framing == "varint":
        return list(goflow2pb.split_file(path.read_bytes()))
    lines = [ln for ln in path.read_bytes().split(b"\n") if ln.strip()]
    if not retime:
        return lines
    decoded: list[Any] = []
    for ln in lines:
        try:
            decoded.append(orjson.loads(ln))
        except orjson.JSONDecodeError:
            decoded.append(None)
    starts = [s for s in (_start_of(d) for d in decoded) if s is not None]
    if not starts:
        return lines
    offset = (now if now is not None else time.time()) - min(starts)
    return [
        orjson.dumps(_shift(d, offset)) if _start_of(d) is not None else ln
        for ln, d in zip(lines, decoded, strict=True)
    ]


def _cycle(lines: list[bytes], loops: int) -> Iterator[bytes]:
    n = 0
    while loops == 0 or n < loops:
        yield from lines
        n += 1


async def _replay(
    cfg: Config, lines: list[bytes], topic: str, rate: float, loops: int, progress: bool
) -> ReplaySummary:
    summary = ReplaySummary(topic=topic)
    producer = await start_producer(cfg, "replay", linger_ms=10)
    total = len(lines) * loops if loops else None
    bar = tqdm(total=total, unit="rec", disable=not progress, mininterval=0.5)
    t0 = time.monotonic()
    pending: list[asyncio.Future[Any]] = []

    async def settle() -> None:
        results = await asyncio.gather(*pending, return_exceptions=True)
        failed = sum(1 for r in results if isinstance(r, BaseException))
        summary.failed += failed
        bar.update(len(pending))
        pending.clear()

    try:
        for i, value in enumerate(_cycle(lines, loops)):
            pending.append(await producer.send(topic, value))
            summary.records += 1
            summary.bytes += len(value)
            if len(pending) >= 5000:
                await settle()
            if rate > 0 and i % 50 == 49:
                ahead = (i + 1) / rate - (time.monotonic() - t0)
                if ahead > 0:
                    await settle()
                    await asyncio.sleep(ahead)
        await settle()
    finally:
        bar.close()
        await producer.stop()
    summary.seconds = time.monotonic() - t0
    return summary


def replay_file(
    cfg: Config,
    path: Path,
    *,
    topic: str | None = None,
    rate: float = 0.0,
    loops: int = 1,
    retime: bool = False,
    progress: bool = True,
    framing: str = "lines",
) -> ReplaySummary:
    lines = load_lines(path, retime, framing=framing)
    return asyncio.run(_replay(cfg, lines, topic or cfg.kafka.topics.raw, rate, loops, progress))
