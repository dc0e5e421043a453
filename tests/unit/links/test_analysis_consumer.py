"""The analysis stage's Faust consumer fetches with the configured wait, not Faust's 1,500 ms
(docs/design.md: a fetch held for the whole wait kept new micro-batches 1.5 s behind)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import faust
import pytest
from faust.exceptions import PartitionsMismatch

from streams.config import load_config
from streams.worker.app import WindowsTable, _fetch_wait


async def _fetch_wait_of(tmp_path: Path, wait: int | None) -> int:
    """The fetch wait of a Faust app's worker consumer, with ``_fetch_wait`` or without."""
    app = faust.App(
        f"fetch-wait-{wait}", broker="kafka://127.0.0.1:1", datadir=str(tmp_path),
        store="memory://", web_enabled=False,
    )  # fmt: skip
    if wait is not None:
        _fetch_wait(app, wait)
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    return int(consumer._fetch_max_wait_ms)


def test_the_analysis_consumer_fetches_with_the_configured_wait(tmp_path: Path) -> None:
    ms = load_config(None).kafka.analysis_fetch_wait_ms
    assert ms == 100
    # what Faust fixes; if it changes, docs/design.md is stale
    assert asyncio.run(_fetch_wait_of(tmp_path, None)) == 1500
    assert asyncio.run(_fetch_wait_of(tmp_path, ms)) == ms


class _Partitions:
    """A consumer that knows only the partition counts it is given."""

    def __init__(self, known: dict[str, int]) -> None:
        self.known = known

    def topic_partitions(self, topic: str) -> int | None:
        return self.known.get(topic)


def test_a_changelog_being_created_is_checked_again_not_a_mismatch(tmp_path: Path) -> None:
    app = faust.App("tables", broker="kafka://127.0.0.1:1", datadir=str(tmp_path),
                    store="memory://", web_enabled=False)  # fmt: skip
    table = WindowsTable(app, name="w", default=None, beacon=app.tables.beacon, partitions=8)
    changelog = table.changelog_topic_name
    app.consumer = _Partitions({"src": 8, changelog: 0})  # listed while being created
    table._verify_source_topic_partitions("src")  # Faust's own check raises here
    assert "src" not in table._verified_source_topics_for_partitions  # checked next time
    app.consumer = _Partitions({"src": 8, changelog: 8})
    table._verify_source_topic_partitions("src")
    assert "src" in table._verified_source_topics_for_partitions
    other = WindowsTable(app, name="v", default=None, beacon=app.tables.beacon, partitions=8)
    app.consumer = _Partitions({"src": 8, other.changelog_topic_name: 4})  # a real mismatch
    with pytest.raises(PartitionsMismatch):
        other._verify_source_topic_partitions("src")
