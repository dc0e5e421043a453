"""The link catalog: validation with clear errors, and attribution of records to links."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from detectors.flows import FORMATS, FlowBatch
from streams.cli import main
from streams.errors import ConfigError
from streams.links.catalog import LinkCatalog

EXAMPLE_LINKS = Path(__file__).parents[3] / "config" / "links.yaml"  # the example make run uses


def test_shipped_catalog_is_valid():
    cat = LinkCatalog.load(EXAMPLE_LINKS)
    assert cat.capacity("lab-uplink") == 100e6


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"links": [{"id": "a b"}]}, "links.0.id"),
        ({"links": [{"id": "a"}, {"id": "a"}]}, "duplicate link ids: a"),
        (
            {
                "links": [
                    {"id": "a", "exporter": "e", "iface": 1},
                    {"id": "b", "exporter": "e", "iface": 1},
                ]
            },
            "listed twice",
        ),
        ({"links": [{"id": "a", "capacity_bps": 0}]}, "capacity_bps"),
        ({"links": [{"id": "a", "speed": 1}]}, "Extra inputs"),
        ({"link": []}, "Extra inputs"),
    ],
)
def test_invalid_catalogs_are_refused_with_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        LinkCatalog.from_dict(data, "links.yaml")


def test_attribution_in_out_and_native():
    cat = LinkCatalog.from_dict({"links": [{"id": "up", "exporter": "r1", "iface": 2}]})
    b = FlowBatch.from_columns(
        exporter=["r1", "r1", "r1", "probe"],
        iface_in=[2, 5, 5, 1],
        iface_out=[5, 2, 6, -1],
        link=[None, None, None, "site-7"],
        fmt=[0, 1, 0, FORMATS.index("native")],
    )
    cat.attribute(b)
    assert b.link.tolist() == ["up", "up", "r1#5", "site-7"]
    assert b.fwd_out.tolist() == [0, 1, 0, 1]  # ingress, egress-only match, ingress, native


def test_check_config_reports_a_bad_link_catalog(tmp_path):
    bad = tmp_path / "links.yaml"
    bad.write_text("links:\n  - id: x\n  - id: x\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"analysis:\n  links_file: {bad}\n")
    res = CliRunner().invoke(main, ["check-config", str(cfg)])
    assert res.exit_code == 1
    assert "duplicate link ids" in res.output
