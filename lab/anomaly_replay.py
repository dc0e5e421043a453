"""Replay a kept lab run's closed windows through the worker's anomaly stage, offline.

The long lab anomaly test keeps its run when ``LAB_KEEP=DIR`` is set (the linkseries windows,
the alerts, the profile's start time). A detector change can then be judged on those real
windows in seconds instead of a 34-minute run; the events match the live worker's for the
series the windows carry (``bytes``, ``packets``, ``flows``, ``ai_share``; the time to first
token needs the flows themselves)::

    python -m lab.anomaly_replay DIR [--set detector.margin=1.5]

It prints each firing event as (seconds after the profile's start, series), and the highest
level each series reached in the quiet minutes (640 to 1,315 s).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml
from prometheus_client import CollectorRegistry

from detectors.windows import FIELDS, ClosedWindow
from streams.config import AnomalyConfig, set_path
from streams.links.analysis import CLASSES
from streams.links.anomalies import LinkAnomalies
from streams.links.metrics import AnomalyMetrics

SERIES = ["bytes", "packets", "flows", "ai_share"]
QUIET = (640.0, 1315.0)


def replay(keep: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The firing events and the quiet minutes' highest levels of a kept run."""
    t0 = float((keep / "t0").read_text())
    lines = (keep / "series.jsonl").read_bytes().splitlines()
    windows = sorted((orjson.loads(x) for x in lines), key=lambda w: w["window_start"])
    cfg = AnomalyConfig.model_validate({"series": SERIES, **(overrides or {})})
    events: list[dict[str, Any]] = []
    stage = LinkAnomalies(
        cfg, AnomalyMetrics(CollectorRegistry()), windows[0]["window_seconds"], events.append
    )
    highest: dict[str, tuple[float, float]] = {}
    for w in windows:
        values = np.array([[w["classes"][c][f] for f in FIELDS] for c in CLASSES], dtype=float)
        stage.observe(ClosedWindow(w["link"], w["window_start"], values))
        t = w["window_start"] - t0
        if QUIET[0] <= t < QUIET[1]:
            for name, track in stage.tracks[w["link"]].items():
                highest[name] = max(highest.get(name, (0.0, 0.0)), (track.det.level, t))
    fired = [
        (round(e["context"]["window_start"] - t0), e["labels"]["series"])
        for e in events
        if e["status"] == "firing"
    ]
    return {"fired": fired, "quiet_highest": highest}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("keep", type=Path, help="the directory LAB_KEEP named")
    ap.add_argument("--set", action="append", default=[], help="anomaly config: KEY=VALUE")
    args = ap.parse_args()
    overrides: dict[str, Any] = {}
    for text in args.set:  # detector.margin=1.5 -> {"detector": {"margin": 1.5}}
        path, _, value = text.partition("=")
        set_path(overrides, path.split("."), yaml.safe_load(value))
    out = replay(args.keep, overrides)
    print("fired:", out["fired"])
    print("highest level in the quiet minutes:", {
        name: (round(level, 3), round(t)) for name, (level, t) in out["quiet_highest"].items()
    })  # fmt: skip


if __name__ == "__main__":
    main()
