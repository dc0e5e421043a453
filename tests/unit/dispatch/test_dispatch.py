"""The dispatcher's alert state machine and bodies, without a network."""

from __future__ import annotations

import orjson
import pytest

from streams.codecs.alerts import alert_event
from streams.config import Config, DispatchConfig, ReceiverConfig
from streams.dispatch.dispatcher import Dispatcher, body_for, retry_after


def make(tmp_path, clock, fmt="alertmanager") -> Dispatcher:
    cfg = Config(dispatch=DispatchConfig(
        receivers=[ReceiverConfig(name="ops", url="http://127.0.0.1:1/x", format=fmt)],
        state_path=str(tmp_path / "state.json"), group_wait_seconds=5,
        repeat_interval_seconds=3600,
    ))  # fmt: skip
    return Dispatcher(cfg, clock=lambda: clock[0])


def ev(status: str, link: str = "l1") -> dict:
    labels = {"alertname": "A", "severity": "warning", "link": link}
    return alert_event(status, labels, {"summary": f"on {link}"}, 100.0,
                       None if status == "firing" else 200.0)  # fmt: skip


def test_firing_waits_for_its_group_repeats_and_resolves_once(tmp_path):
    clock = [1000.0]
    d = make(tmp_path, clock)
    d.apply(ev("firing", "l1"))
    d.apply(ev("firing", "l2"))
    assert d.flush() == 0  # group_wait not over
    clock[0] += 5
    assert d.flush() == 1  # one notification for both
    body = orjson.loads(d.outbox[0]["body"])
    assert body["version"] == "4" and body["status"] == "firing"
    assert {a["labels"]["link"] for a in body["alerts"]} == {"l1", "l2"}
    d.apply(ev("firing", "l1"))  # still firing: nothing new
    clock[0] += 10
    d.repeat()
    assert d.flush() == 0
    clock[0] += 3600  # the repeat interval
    d.repeat()
    clock[0] += 5
    assert d.flush() == 1
    d.apply(ev("resolved", "l1"))
    d.apply(ev("resolved", "l1"))  # twice: said once
    clock[0] += 5
    assert d.flush() == 1
    last = orjson.loads(d.outbox[-1]["body"])
    assert [a["status"] for a in last["alerts"]] == ["resolved"]
    d.apply(ev("resolved", "l9"))  # never fired: nothing to say
    clock[0] += 5
    assert d.flush() == 0
    d.save()
    again = make(tmp_path, clock)  # the state survives a restart
    assert len(again.outbox) == 3 and set(again.alerts) == set(d.alerts)


def test_slack_body_and_a_foreign_event_is_skipped(tmp_path):
    clock = [0.0]
    d = make(tmp_path, clock, fmt="slack")
    d.apply({"type": "something else"})
    assert not d.alerts
    body = body_for(d.receivers["ops"], "A", [ev("firing")])
    assert orjson.loads(body) == {"text": "[FIRING] on l1"}


@pytest.mark.parametrize(
    ("header", "want"),
    [("2", 2.0), ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0), ("soon", None), (None, None)],
)
def test_retry_after(header, want):
    assert retry_after(header, 1445412480.0) == want  # "now" is 10 s before that date


@pytest.mark.parametrize("secret", ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "plain text key"])
async def test_a_delivery_passes_the_standard_webhooks_reference_verifier(tmp_path, secret):
    """Posted to a real HTTP receiver on loopback; the `standardwebhooks` package (the
    specification's own library) verifies what arrived, and refuses it once tampered with."""
    import base64
    import socket
    import time

    import aiohttp
    from aiohttp import web
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    got: list[tuple[bytes, dict[str, str]]] = []

    async def receive(request: web.Request) -> web.Response:
        got.append((await request.read(), dict(request.headers)))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    try:
        cfg = Config(dispatch=DispatchConfig(
            receivers=[ReceiverConfig(name="ops", url=f"http://127.0.0.1:{port}/hook",
                                      secret=secret)],
            state_path=str(tmp_path / "state.json"), group_wait_seconds=0,
        ))  # fmt: skip
        d = Dispatcher(cfg, clock=time.time)
        d.apply(ev("firing"))
        assert d.flush() == 1
        async with aiohttp.ClientSession() as session:
            await d.deliver(session)
    finally:
        await runner.cleanup()
    assert d.delivered == 1 and len(got) == 1
    body, headers = got[0]
    # the verifier takes the key as "whsec_" + base64; a plain key is its bytes, base64-encoded
    key = secret if secret.startswith("whsec_") else base64.b64encode(secret.encode()).decode()
    hook = Webhook(key)
    assert hook.verify(body, headers)["alerts"][0]["labels"]["link"] == "l1"
    with pytest.raises(WebhookVerificationError):
        hook.verify(body.replace(b"l1", b"l2"), headers)


def test_runbook_links_go_under_the_configured_base(tmp_path):
    d = make(tmp_path, [0.0])
    event = ev("firing")
    event["annotations"]["runbook_url"] = "docs/runbooks/InferwatchLinkAnomaly.md"
    base = "https://git.example.org/ops/inferwatch/-/blob/main/docs/runbooks"
    body = orjson.loads(body_for(d.receivers["ops"], "A", [event], base))
    assert body["alerts"][0]["annotations"]["runbook_url"] == f"{base}/InferwatchLinkAnomaly.md"
    as_is = orjson.loads(body_for(d.receivers["ops"], "A", [event]))
    assert as_is["alerts"][0]["annotations"]["runbook_url"] == event["annotations"]["runbook_url"]


async def test_the_sink_shows_each_delivery_and_checks_its_signature(tmp_path):
    """`inferwatch sink` (the compose stack's receiver): the dispatcher's signed delivery is
    listed with "signature ok"; one signed with another key is refused (401)."""
    import socket
    import time

    import aiohttp
    from aiohttp import web

    from streams.dispatch.sink import make_app

    runner = web.AppRunner(make_app(secret="right key"))
    await runner.setup()
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    try:
        for key in ("right key", "wrong key"):
            cfg = Config(dispatch=DispatchConfig(
                receivers=[ReceiverConfig(name="ops", url=f"http://127.0.0.1:{port}/alerts",
                                          secret=key)],
                state_path=str(tmp_path / f"{key}.json"), group_wait_seconds=0,
            ))  # fmt: skip
            d = Dispatcher(cfg, clock=time.time)
            d.apply(ev("firing"))
            d.flush()
            async with aiohttp.ClientSession() as session:
                await d.deliver(session)
            assert (d.delivered, d.dropped) == ((1, 0) if key == "right key" else (0, 1))
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/") as resp,
        ):
            seen = await resp.json()
    finally:
        await runner.cleanup()
    assert [s["signature"] for s in seen] == ["ok", "bad"]
    assert seen[0]["summary"] == "firing: A (1 alert; signature ok)"
    assert seen[0]["body"]["alerts"][0]["labels"]["link"] == "l1"
