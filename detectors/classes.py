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

from typing import Any

import numpy as np

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
AI_INDEX = np.array([INDEX[c] for c in AI_CLASSES])  # the AI classes' indices
OTHER = INDEX["other"]


def is_ai(name: str) -> bool:
    """
    >>> is_ai("ai-api"), is_ai("video")
    (True, False)
    """
    return name in AI_CLASSES


def class_scores(confusion: Any) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per class from a (true x predicted) confusion
    matrix; classes neither present nor predicted are left out.

    >>> import numpy as np
    >>> cm = np.zeros((len(CLASSES), len(CLASSES)), dtype=int)
    >>> cm[0, 0], cm[0, 1], cm[1, 1] = 3, 1, 2
    >>> s = class_scores(cm)
    >>> round(s["ai-chat-stream"]["recall"], 2), round(s["ai-api"]["precision"], 2), len(s)
    (0.75, 0.67, 2)
    """
    out = {}
    for i, name in enumerate(CLASSES):
        tp = float(confusion[i, i])
        support, predicted = float(confusion[i].sum()), float(confusion[:, i].sum())
        if support == 0 and predicted == 0:
            continue
        p = tp / predicted if predicted else 0.0
        r = tp / support if support else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        out[name] = {"precision": p, "recall": r, "f1": f1, "support": int(support)}
    return out
