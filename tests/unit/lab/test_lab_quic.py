"""The lab's chat completions over HTTP/3 (lab/quic.py): a real QUIC connection on loopback."""

from __future__ import annotations

import random
import re
import time

import orjson
import pytest
import yaml

from lab.quic import free_udp_port, h3_session, serve_h3, token_times
from lab.traffic import (
    EVENT_STYLES,
    Client,
    Scenario,
    _chat_h3,
    make_certificate,
    ttft_seconds,
)

TOKENS = 6


async def test_a_streamed_answer_over_http3_comes_token_by_token_after_the_first_token_time(
    tmp_path,
):
    cert, key = make_certificate(tmp_path, ["api.openai.com"])
    port = free_udp_port("127.0.0.1")
    server = await serve_h3("127.0.0.1", port, cert, key, _chat_h3)
    try:
        async with h3_session(
            "127.0.0.1", port, free_udp_port("127.0.0.1"), "api.openai.com"
        ) as h3:
            answers = {}
            for stream in (True, False):
                body = {"stream": stream, "max_tokens": TOKENS, "context_tokens": 500, "seed": 7}
                sent = time.time()
                pieces = [
                    (time.time() - sent, piece)
                    async for piece in h3.post("api.openai.com", "/v1/chat/completions",
                                               orjson.dumps(body))
                ]  # fmt: skip
                answers[stream] = pieces
    finally:
        server.close()
    times = token_times(answers[True])
    assert len(times) == TOKENS
    assert answers[True][-1][1].endswith(b"data: [DONE]\n\n")
    # the server's model: the first token after the seeded time to first token, then gaps
    assert times[0] >= ttft_seconds(500, random.Random(7)) * 0.9
    assert times == sorted(times) and times[-1] > times[0]
    whole = b"".join(p for _, p in answers[False])
    reply = orjson.loads(whole)
    assert reply["usage"]["completion_tokens"] == TOKENS
    assert token_times(answers[False]) == []


def test_quic_share_and_styles_pick_sessions_by_seed_and_leave_other_scenarios_as_they_were():
    def picks(spec):
        client = Client.__new__(Client)
        client.s = Scenario("s", 5, 60, True, "10.0.0.2", {"ai-chat-stream": spec}, {})
        return [client._variant("ai-chat-stream", spec, i) for i in range(200)]

    spec = {"sessions": 200, "quic_share": 0.5, "styles": sorted(EVENT_STYLES)}
    mixed = picks(spec)
    assert mixed == picks(spec)
    assert 70 < sum(v["quic"] for v in mixed) < 130
    assert {v["style"] for v in mixed} == set(EVENT_STYLES)
    assert all(v == {"quic": False, "style": "compact"} for v in picks({"sessions": 200}))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"web": {"quic_share": 0.5}}, "are for"),
        ({"ai-api": {"quic_share": 2}}, "is a share"),
        ({"ai-chat-stream": {"styles": ["openai", "fancy"]}}, "not ['openai', 'fancy']"),
        ({"ai-chat-stream": {"styles": []}}, "not []"),
    ],
)
def test_scenario_validation_of_the_chat_variants(tmp_path, spec, message):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "classes": spec}))
    with pytest.raises(ValueError, match=re.escape(message)):
        Scenario.load(path, "10.0.0.2")


@pytest.mark.parametrize("style", sorted(EVENT_STYLES))
def test_every_event_style_is_one_token_event_the_client_counts(style):
    events = [EVENT_STYLES[style](i) for i in range(3)]
    assert token_times([(float(i), e) for i, e in enumerate(events)]) == [0.0, 1.0, 2.0]
    sizes = [len(e) for e in events]
    assert 60 < sizes[0] < 400
