"""The one retry policy of inferwatch: exponential backoff with full jitter, capped.

After ``n`` failed tries, the next waits a random time between 0 and
``min(cap, initial * 2**(n - 1))`` (tenacity's ``wait_random_exponential``): clients that lost
the same broker at the same moment do not come back in step. Loops retry with tenacity
(``retrying``); the webhook dispatcher, whose retries outlive the process in its state file,
schedules with ``delay``.

>>> import random; random.seed(1)
>>> [round(delay(n, 1.0, 10.0), 2) for n in range(1, 6)]
[0.13, 1.69, 3.06, 2.04, 4.95]
>>> all(0 <= delay(20, 1.0, 10.0) <= 10 for _ in range(100))
True
"""

from __future__ import annotations

import logging
import random

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    stop_never,
    wait_random_exponential,
)


class StopRetrying(Exception):  # noqa: N818 - a signal, not an error
    """Raised inside a retried block to give up at once (the service is stopping)."""


def delay(failures: int, initial: float, cap: float) -> float:
    """Seconds to wait before the next try after ``failures`` failed ones."""
    return random.uniform(0, min(cap, initial * 2 ** max(failures - 1, 0)))


def retrying(
    on: type[BaseException] | tuple[type[BaseException], ...],
    what: str,
    log: logging.Logger,
    initial: float = 0.5,
    cap: float = 10.0,
    give_up_after: float | None = None,
) -> AsyncRetrying:
    """Retry on ``on`` (forever, or until ``give_up_after`` seconds have passed: then the last
    error is raised), logging each wait as "WHAT: ERROR; retrying in S s".

    >>> import asyncio
    >>> calls = []
    >>> async def flaky():
    ...     async for attempt in retrying(OSError, "x", logging.getLogger("t"), 0.001, 0.002):
    ...         with attempt:
    ...             calls.append(1)
    ...             if len(calls) < 3:
    ...                 raise OSError("down")
    >>> asyncio.run(flaky()); len(calls)
    3
    """

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning("%s: %r; retrying in %.1f s", what, exc, wait)

    return AsyncRetrying(
        retry=retry_if_exception_type(on),
        wait=wait_random_exponential(multiplier=initial, max=cap),
        before_sleep=before_sleep,
        stop=stop_after_delay(give_up_after) if give_up_after is not None else stop_never,
        reraise=True,
    )
