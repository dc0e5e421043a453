"""``inferwatch dispatch``: alerts.v1 -> webhooks, for operators without Alertmanager.

Reads the alert events of alerts.v1 (streams/codecs/alerts.py) in its own consumer group and
notifies every configured receiver, in Alertmanager's webhook shape (version 4) or as a
Slack-compatible ``{"text": ...}`` body, signed with HMAC-SHA256 per Standard Webhooks
(headers ``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64>``).

* An alert is notified when it starts firing, again every ``repeat_interval_seconds`` while it
  fires, and once when it is resolved. Changes that arrive within ``group_wait_seconds`` go out
  together, one notification per receiver and alert name.
* Every notification has one ``webhook-id`` for all its tries (and across restarts): a
  receiver that saw it already can drop it (Standard Webhooks' idempotency).
* A failed delivery (connection error, timeout, 429, 5xx) is retried with exponential backoff
  and full jitter, capped at ``retry_max_seconds``; a 429's ``Retry-After`` is honoured. A
  refusal (any other 4xx) is logged and dropped.
* State (the alerts, the last notification of each, and the notifications not yet delivered)
  is written atomically to ``state_path`` before the consumer commits the events that changed
  it: a restart loses nothing and notifies nothing twice (beyond what a receiver saw and the
  dispatcher could not record, which carries the same ``webhook-id``).
* Secrets come from the configuration's files or the environment and are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import hmac
import logging
import os
import time
import uuid
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from streams.codecs.alerts import SCHEMA
from streams.config import Config, ReceiverConfig, resolve_path
from streams.errors import ServiceError
from streams.retry import delay

log = logging.getLogger(__name__)


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks signature: ``v1,`` + base64(HMAC-SHA256(key, id.timestamp.body)).

    >>> sign(b"k", "msg_1", 1700000000, b"{}")
    'v1,LTBsW2zNVsMNlXYZbgw/T+jGxr1msQBcXoa3h1dR9wQ='
    """
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def _iso(t: float | None) -> str:
    if t is None:
        return "0001-01-01T00:00:00Z"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


RUNBOOKS = "docs/runbooks/"  # where the worker's events point: the repository's runbooks


def with_runbooks(annotations: dict[str, Any], base: str | None) -> dict[str, Any]:
    """``annotations`` with a repository runbook path moved under ``base`` (a URL).

    >>> with_runbooks({"runbook_url": "docs/runbooks/X.md"}, "https://ops.example/rb/")
    {'runbook_url': 'https://ops.example/rb/X.md'}
    """
    url = annotations.get("runbook_url")
    if not base or not isinstance(url, str) or not url.startswith(RUNBOOKS):
        return annotations
    return {**annotations, "runbook_url": f"{base.rstrip('/')}/{url.removeprefix(RUNBOOKS)}"}


def body_for(
    receiver: ReceiverConfig, name: str, alerts: list[dict[str, Any]], runbooks: str | None = None
) -> bytes:
    """The notification body for ``alerts`` (all of one alert name) in the receiver's format;
    runbook links under ``runbooks`` when it is given."""
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    if receiver.format == "slack":
        lines = []
        for a in alerts:
            rb = with_runbooks(a["annotations"], runbooks).get("runbook_url")
            more = f" (runbook: {rb})" if rb else ""
            lines.append(f"[{a['status'].upper()}] {a['annotations'].get('summary', name)}{more}")
        return orjson.dumps({"text": "\n".join(lines)})
    common = dict(set.intersection(*(set(a["labels"].items()) for a in alerts)))
    return orjson.dumps({
        "version": "4", "groupKey": f"{{}}:{{alertname=\"{name}\"}}", "truncatedAlerts": 0,
        "status": status, "receiver": receiver.name, "groupLabels": {"alertname": name},
        "commonLabels": common, "commonAnnotations": {}, "externalURL": "",
        "alerts": [{
            "status": a["status"], "labels": a["labels"],
            "annotations": with_runbooks(a["annotations"], runbooks),
            "startsAt": _iso(a["starts_at"]), "endsAt": _iso(a.get("ends_at")),
            "generatorURL": "", "fingerprint": a["fingerprint"],
        } for a in alerts],
    })  # fmt: skip


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), or None.

    >>> retry_after("3", 0.0), retry_after(None, 0.0)
    (3.0, None)
    """
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


class Dispatcher:
    def __init__(self, cfg: Config, clock: Any = time.time) -> None:
        self.cfg = cfg
        self.d = cfg.dispatch
        self.clock = clock
        self.receivers = {r.name: r for r in self.d.receivers}
        self.keys = {r.name: r.key() for r in self.d.receivers}
        path = resolve_path(self.d.state_path)
        assert path is not None
        self.path = path
        self.alerts: dict[str, dict[str, Any]] = {}  # fingerprint -> last event + notified
        self.outbox: list[dict[str, Any]] = []  # notifications not yet delivered
        self.pending: dict[str, list[str]] = {}  # alert name -> fingerprints changed, unsent
        self.pending_since: float | None = None
        self.delivered = self.dropped = 0
        self._load()

    # -- state ------------------------------------------------------------------------------
    def _load(self) -> None:
        if self.path.exists():
            state = orjson.loads(self.path.read_bytes())
            self.alerts, self.outbox = state["alerts"], state["outbox"]
            self.pending = state.get("pending", {})
            self.pending_since = state.get("pending_since")
            log.info("dispatch: resumed %d alerts, %d notifications to deliver",
                     len(self.alerts), len(self.outbox))  # fmt: skip

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps({
            "alerts": self.alerts, "outbox": self.outbox, "pending": self.pending,
            "pending_since": self.pending_since,
        }))  # fmt: skip
        os.replace(tmp, self.path)

    # -- alert state ------------------------------------------------------------------------
    def apply(self, event: dict[str, Any]) -> None:
        """Take one alerts.v1 event into the alert state; what must be notified is pending."""
        if event.get("schema") != SCHEMA or event.get("status") not in ("firing", "resolved"):
            log.warning("dispatch: skipping an event that is not an inferwatch alert")
            return
        fp = event["fingerprint"]
        old = self.alerts.get(fp)
        if event["status"] == "firing" and old is not None and old["status"] == "firing":
            old.update(annotations=event["annotations"])  # still firing: the repeat timer decides
            return
        if event["status"] == "resolved" and (old is None or old["status"] == "resolved"):
            return  # nothing fired (or already resolved): nothing to say
        self.alerts[fp] = {**event, "notified_at": None}
        self._mark(event["labels"].get("alertname", "alert"), fp)

    def _mark(self, name: str, fp: str) -> None:
        fps = self.pending.setdefault(name, [])
        if fp not in fps:
            fps.append(fp)
        if self.pending_since is None:
            self.pending_since = self.clock()

    def repeat(self) -> None:
        """Firing alerts notified longer ago than the repeat interval are notified again."""
        now = self.clock()
        for fp, a in self.alerts.items():
            last = a.get("notified_at")
            due = last is not None and now - last >= self.d.repeat_interval_seconds
            if a["status"] == "firing" and due:
                self._mark(a["labels"].get("alertname", "alert"), fp)

    def flush(self, force: bool = False) -> int:
        """Turn pending changes into notifications once they waited ``group_wait``."""
        now = self.clock()
        if not self.pending or self.pending_since is None:
            return 0
        if not force and now - self.pending_since < self.d.group_wait_seconds:
            return 0
        made = 0
        for name, fps in self.pending.items():
            alerts = [self.alerts[fp] for fp in fps if fp in self.alerts]
            for fp in fps:
                if fp in self.alerts:
                    self.alerts[fp]["notified_at"] = now
            for r in self.receivers.values():
                body = body_for(r, name, alerts, self.d.runbook_base_url)
                self.outbox.append({
                    "id": f"msg_{uuid.uuid4().hex}", "receiver": r.name, "body": body.decode(),
                    "attempts": 0, "next_at": now,
                })  # fmt: skip
                made += 1
        # resolved alerts have said their last word
        for fps in self.pending.values():
            for fp in fps:
                if self.alerts.get(fp, {}).get("status") == "resolved":
                    del self.alerts[fp]
        self.pending, self.pending_since = {}, None
        return made

    # -- delivery ---------------------------------------------------------------------------
    async def deliver(self, session: aiohttp.ClientSession) -> None:
        """Try every due notification once; reschedule or drop what fails."""
        now = self.clock()
        due = [n for n in self.outbox if n["next_at"] <= now]
        if not due:
            return
        results = await asyncio.gather(*(self._post(session, n) for n in due))
        for n, (done, wait) in zip(due, results, strict=True):
            if done:
                self.outbox.remove(n)
                continue
            n["attempts"] += 1
            if wait is None:
                wait = delay(n["attempts"], self.d.retry_initial_seconds, self.d.retry_max_seconds)
            n["next_at"] = self.clock() + wait

    async def _post(self, session: aiohttp.ClientSession, n: dict[str, Any]) -> tuple[bool, Any]:
        """(finished, seconds to wait or None for backoff). Refusals finish (dropped)."""
        r = self.receivers.get(n["receiver"])
        if r is None:  # the receiver left the configuration
            return True, None
        body = n["body"].encode()
        ts = int(self.clock())
        headers = {"content-type": "application/json", "webhook-id": n["id"],
                   "webhook-timestamp": str(ts)}  # fmt: skip
        key = self.keys.get(r.name)
        if key is not None:
            headers["webhook-signature"] = sign(key, n["id"], ts, body)
        try:
            timeout = aiohttp.ClientTimeout(total=r.timeout_seconds)
            async with session.post(r.url, data=body, headers=headers, timeout=timeout) as resp:
                status = resp.status
                wait = retry_after(resp.headers.get("Retry-After"), time.time())
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("dispatch: %s unreachable (%s); will retry", r.name, type(exc).__name__)
            return False, None
        if 200 <= status < 300:
            self.delivered += 1
            return True, None
        if status == 429 or status >= 500:
            log.warning("dispatch: %s answered %d; will retry", r.name, status)
            return False, wait if status == 429 else None
        self.dropped += 1
        log.error("dispatch: %s refused a notification (%d); dropped", r.name, status)
        return True, None


async def run_dispatcher(cfg: Config, stop: asyncio.Event | None = None) -> None:
    """Consume alerts.v1 and notify until ``stop`` is set (or forever)."""
    if not cfg.dispatch.receivers:
        raise ServiceError("no receivers: set dispatch.receivers in the configuration")
    stop = stop or asyncio.Event()
    d = Dispatcher(cfg)
    consumer = AIOKafkaConsumer(
        cfg.kafka.topics.alerts, bootstrap_servers=cfg.kafka.broker, group_id=cfg.dispatch.group,
        client_id=f"{cfg.kafka.client_id}-dispatch", enable_auto_commit=False,
        auto_offset_reset="earliest",
    )  # fmt: skip
    try:
        await asyncio.wait_for(consumer.start(), 30)
    except (KafkaError, OSError, TimeoutError) as exc:
        await consumer.stop()
        raise ServiceError(f"cannot reach the Kafka broker at {cfg.kafka.broker}: {exc!r}") from exc
    log.info("dispatch: %d receivers, %d notifications waiting",
             len(d.receivers), len(d.outbox))  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                got = await consumer.getmany(timeout_ms=200, max_records=500)
                for msgs in got.values():
                    for m in msgs:
                        try:
                            d.apply(orjson.loads(m.value or b""))
                        except (orjson.JSONDecodeError, KeyError, TypeError):
                            log.warning("dispatch: skipping an unreadable alerts.v1 message")
                d.repeat()
                d.flush()
                d.save()  # the state holds what these events changed: now they may be committed
                if got:
                    await consumer.commit()
                await d.deliver(session)
                d.save()
    finally:
        d.save()
        await consumer.stop()


def dispatch_forever(cfg: Config) -> None:
    import signal

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_dispatcher(cfg, stop)

    asyncio.run(main())


__all__ = ["Dispatcher", "body_for", "dispatch_forever", "retry_after", "run_dispatcher", "sign"]
