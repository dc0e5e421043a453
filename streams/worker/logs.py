"""Logging that stays readable when the broker is gone.

aiokafka logs every failed connection attempt (every ~100 ms per client): a 30-second outage
wrote about 300,000 lines. The filter lets the first of a kind of message through, then one
per ``interval`` seconds with the count of those it held back.

>>> f = RepeatFilter(interval=60.0, clock=iter([0.0, 1.0, 2.0, 61.0]).__next__)
>>> def rec():
...     return logging.LogRecord("aiokafka", logging.ERROR, "", 0, "No route to %s", ("n1",), None)
>>> [f.filter(rec()) for _ in range(4)]
[True, False, False, True]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RepeatFilter(logging.Filter):
    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._seen: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.msg)
        now = self.clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.interval:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if last is not None and last[1]:
            record.msg = f"{record.msg} ({last[1]} similar messages held back)"
        if len(self._seen) > 1000:
            self._seen.clear()
        self._seen[key] = (now, 0)
        return True


def install(logger: logging.Logger, interval: float = 10.0) -> None:
    """Put one RepeatFilter on every handler of ``logger`` (the root logger, usually)."""
    shared = RepeatFilter(interval)
    for handler in logger.handlers:
        handler.addFilter(shared)


LIBRARIES = ("faust", "mode", "aiokafka", "kafka")


class _CoordinatorNotYet(logging.Filter):
    """aiokafka logs "Group Coordinator Request failed" at ERROR while a fresh broker creates
    its offsets topic, which is normal for the first seconds of a new cluster: shown as the
    information it is, only where info is asked for."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if "CoordinatorNotAvailable" in record.getMessage():
            return self.level <= logging.INFO
        return True


def quiet_libraries(level: str | int) -> None:
    """Set the libraries' loggers (Faust, mode, aiokafka) to ``level``, e.g. WARNING.

    >>> quiet_libraries("WARNING"); logging.getLogger("faust.worker").getEffectiveLevel()
    30
    """
    number = logging.getLevelName(level) if isinstance(level, str) else level
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(number)
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    for f in [f for f in coordinator.filters if isinstance(f, _CoordinatorNotYet)]:
        coordinator.removeFilter(f)
    coordinator.addFilter(_CoordinatorNotYet(number))
