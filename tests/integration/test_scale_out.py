"""Two workers in one consumer group share the links; together they count what one would."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.integration.test_link_series import expected_bytes
from tests.kafka_util import create_topic, produce
from tests.records import valid_records

pytestmark = pytest.mark.integration


def test_two_workers_share_partitions_and_add_up(broker, names, start_worker):
    asyncio.run(create_topic(broker, names.raw, 4))
    a = start_worker()
    b = start_worker()
    time.sleep(5)  # both groups (ingest and Faust) rebalanced before the records come
    values = [v for _, v in valid_records(20_000, seed=23)]
    asyncio.run(produce(broker, names.raw, values))

    def both(name: str, **labels: str) -> float:
        return a.total(name, **labels) + b.total(name, **labels)

    deadline = time.monotonic() + 90
    while both("inferwatch_analysed_records_total") < len(values) and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)
    assert both("inferwatch_flow_records_total") == len(values)
    assert both("inferwatch_analysed_records_total") == len(values)
    # the work was shared
    assert (
        a.total("inferwatch_flow_records_total") > 0
        and b.total("inferwatch_flow_records_total") > 0
    )
    assert (
        a.total("inferwatch_analysed_records_total") > 0
        and b.total("inferwatch_analysed_records_total") > 0
    )
    # each link is owned by one worker, and the sums equal the produced records
    for link, total in expected_bytes(values).items():
        in_a, in_b = (
            a.total("inferwatch_link_bytes_total", link=link),
            b.total("inferwatch_link_bytes_total", link=link),
        )
        assert in_a == 0 or in_b == 0, link
        assert in_a + in_b == pytest.approx(total, rel=1e-9), link
    a.terminate()
    b.terminate()
