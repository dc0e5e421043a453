"""The traffic classes inferwatch tells apart; their names are stable metric label values.

Definitions (docs/classification.md):

* ``ai-chat-stream``: a request to a language model answered as a stream of tokens (chat
  completions with ``stream: true``, server-sent events): a pause (time to first token), then
  small downlink messages at the model's token cadence.
* ``ai-api``: a language-model request answered in one piece after generation: a long server
  pause, then one response.
* ``ai-realtime``: realtime voice or multimodal sessions with a model: audio frames both ways
  every ~20 ms for minutes, the model's answers in bursts.
* ``ai-agentic``: agent tool-call traffic: bursts of short, chained model calls with growing
  requests, several in parallel.
* ``video``: segment downloads every few seconds (adaptive streaming).
* ``bulk``: large transfers limited by the link.
* ``web``: page loads: short connections fetching a few objects.
* ``realtime-media``: VoIP and conferencing media (RTP-like, small packets every 20 ms both ways).
* ``other``: none of these, or not enough evidence.
"""

from __future__ import annotations

CLASSES: tuple[str, ...] = (
    "ai-chat-stream",
    "ai-api",
    "ai-realtime",
    "ai-agentic",
    "video",
    "bulk",
    "web",
    "realtime-media",
    "other",
)
AI_CLASSES: tuple[str, ...] = CLASSES[:4]
AI_FAMILY = "ai"  # a catalog label meaning "one of the AI classes"
INDEX = {name: i for i, name in enumerate(CLASSES)}
OTHER = INDEX["other"]


def is_ai(name: str) -> bool:
    """
    >>> is_ai("ai-api"), is_ai("video")
    (True, False)
    """
    return name in AI_CLASSES
