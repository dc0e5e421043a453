"""Alert events on alerts.v1: one JSON object per change of an alert's state.

``{"schema": "inferwatch.alert/1", "fingerprint", "status": "firing" | "resolved", "labels",
"annotations", "starts_at", "ends_at", "time"}``. The fingerprint is a hash of the labels, so
the firing and the resolution of one alert share it. The worker publishes them (classifier
drift today; anomalies and congestion as those detectors arrive); ``inferwatch dispatch``
turns them into webhook notifications (streams/dispatch/dispatcher.py).

>>> e = alert_event("firing", {"alertname": "X", "severity": "warning"}, {"summary": "s"}, 10.0)
>>> e["status"], e["fingerprint"] == fingerprint({"severity": "warning", "alertname": "X"})
('firing', True)
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

SCHEMA = "inferwatch.alert/1"


def fingerprint(labels: dict[str, str]) -> str:
    return hashlib.sha256(orjson.dumps(labels, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def alert_event(
    status: str,
    labels: dict[str, str],
    annotations: dict[str, str],
    starts_at: float,
    ends_at: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    if status not in ("firing", "resolved"):
        raise ValueError(f"status is firing or resolved, not {status!r}")
    return {
        "schema": SCHEMA, "fingerprint": fingerprint(labels), "status": status,
        "labels": labels, "annotations": annotations, "starts_at": starts_at,
        "ends_at": ends_at, "time": ends_at if ends_at is not None else starts_at, **extra,
    }  # fmt: skip
