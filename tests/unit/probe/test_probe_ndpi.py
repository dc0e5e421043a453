"""The probe on every capture of nDPI's test suite (lab/thirdparty/ndpi), against nDPI's results.

No broker: the records are built exactly as ``inferwatch probe --pcap`` builds them and read by
the worker's decoder. Some captures are deliberately malformed.
"""

from __future__ import annotations

import pytest

from lab.ndpi import CAPTURES, HERE, check, expected

NAMES = sorted(p.name for p in HERE.iterdir() if p.suffix in CAPTURES)


def test_every_capture_has_expected_results():
    assert len(NAMES) == 22
    assert sum(len(expected(HERE / f"{n}.out")) for n in NAMES) == 332


@pytest.mark.parametrize("name", NAMES)
def test_probe_meters_the_capture_and_finds_every_flow_ndpi_lists(name):
    report = check(HERE / name)  # the probe's defaults: 15 s idle, 120 s active timeout
    assert report.error is None
    assert report.records_ok == report.probe  # every record is one the worker accepts
    assert report.matched == report.ndpi, report.missing
    # nDPI keeps a flow across any pause; the probe splits one after 15 s of silence
    assert report.probe >= report.ndpi


@pytest.mark.parametrize("name", NAMES)
def test_with_ndpis_flow_lifetimes_the_counts_agree(name):
    report = check(HERE / name, idle_timeout=600, active_timeout=3600)
    assert (report.probe, report.matched) == (report.ndpi, report.ndpi), report.extra
