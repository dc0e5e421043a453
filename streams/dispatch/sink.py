"""`inferwatch sink`: a webhook receiver that shows what arrives, for trying alerting out.

It takes Alertmanager's and inferwatch's notifications (POST, any path), logs one line per
delivery (receiver, status, alerts, and whether the Standard Webhooks signature checks out
against ``--secret``), and keeps the last ``keep`` on ``GET /`` as JSON. The compose stack
points Alertmanager and the dispatcher at it until you point them at your paging tool.

>>> line = describe({"status": "firing", "alerts": [{"labels": {"alertname": "A"}}]}, "ok")
>>> line
'firing: A (1 alert; signature ok)'
"""

from __future__ import annotations

import collections
import hmac
import logging
import time
from typing import Any

import orjson
from aiohttp import web

from streams.config import signing_key
from streams.dispatch.dispatcher import sign

log = logging.getLogger(__name__)


def check_signature(key: bytes | None, headers: Any, body: bytes) -> str:
    """ "ok", "bad", "unsigned" (no signature header) or "not checked" (no key given)."""
    given = headers.get("webhook-signature")
    if given is None:
        return "unsigned"
    if key is None:
        return "not checked"
    try:
        ts = int(headers.get("webhook-timestamp", ""))
    except ValueError:
        return "bad"
    want = sign(key, headers.get("webhook-id", ""), ts, body)
    return "ok" if any(hmac.compare_digest(want, s) for s in given.split()) else "bad"


def describe(payload: Any, signature: str) -> str:
    """One line for a delivery: status, alert names, count, signature."""
    if isinstance(payload, dict) and isinstance(payload.get("alerts"), list):
        alerts = payload["alerts"]
        names = sorted({str(a.get("labels", {}).get("alertname", "?")) for a in alerts})
        n = len(alerts)
        return (
            f"{payload.get('status', '?')}: {', '.join(names)} "
            f"({n} alert{'s' * (n != 1)}; signature {signature})"
        )
    if isinstance(payload, dict) and "text" in payload:  # the dispatcher's Slack format
        return f"text {str(payload['text'])[:120]!r} (signature {signature})"
    return f"not an alert notification (signature {signature})"


def make_app(secret: str | None = None, keep: int = 100) -> web.Application:
    key = signing_key(secret) if secret else None
    seen: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep)

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        signature = check_signature(key, request.headers, body)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            payload = None
        line = describe(payload, signature)
        log.info("%s %s", request.path, line)
        seen.append({"received_at": time.time(), "path": request.path, "summary": line,
                     "signature": signature, "body": payload})  # fmt: skip
        return web.Response(status=200 if signature != "bad" else 401)

    async def show(request: web.Request) -> web.Response:
        return web.json_response(list(seen), dumps=lambda o: orjson.dumps(o).decode())

    app = web.Application(client_max_size=4 << 20)
    app.router.add_get("/", show)
    app.router.add_post("/{tail:.*}", receive)
    return app


def run_sink(host: str, port: int, secret: str | None, keep: int = 100) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s sink %(message)s")
    log.info("receiving webhooks on http://%s:%d/ (GET / lists the last %d)", host, port, keep)
    web.run_app(make_app(secret, keep), host=host, port=port, print=None)
