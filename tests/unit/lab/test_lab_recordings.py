"""The recorded lab datasets (lab/recordings/, and the bootstrap sets the package ships in
streams/data/bootstrap/): consistent, readable by the worker, labelled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
import yaml

from lab.record import stretch
from lab.run import match, read_jsonl, signature
from lab.traffic import CLASSES, HTTPS_PORT, TELEMETRY_PORT, Scenario
from streams.codecs.decode import BatchDecoder
from streams.config import DATA_DIR

ROOT = Path(__file__).parents[3] / "lab" / "recordings"
BOOTSTRAP = DATA_DIR / "bootstrap"
DIRS = {p.name: p for r in (ROOT, BOOTSTRAP) for p in r.iterdir() if (p / "manifest.json").exists()}
RECORDINGS = sorted(DIRS)
WITH_PCAP = [n for n in RECORDINGS if (DIRS[n] / "lab.pcap").exists()]  # eval-*: records only


def test_recordings_are_small_enough_to_commit():
    assert {"e2e", "e2e-nosni", *(f"eval-{x}-3m" for x in "abcd")} <= set(RECORDINGS)
    total = sum(f.stat().st_size for r in (ROOT, BOOTSTRAP) for f in r.rglob("*") if f.is_file())
    assert total < 20 << 20
    # the package carries the bootstrap sets: a few MB, not the lab's captures
    assert sum(f.stat().st_size for f in BOOTSTRAP.rglob("*") if f.is_file()) < 4 << 20


@pytest.mark.parametrize("name", RECORDINGS)
def test_recording_is_consistent_and_every_flow_is_labelled(name):
    d = DIRS[name]
    manifest = orjson.loads((d / "manifest.json").read_bytes())
    truth = read_jsonl(d / "truth.jsonl")
    values = (d / "flows.jsonl").read_bytes().splitlines()
    assert (manifest["flows"], manifest["records"]) == (len(truth), len(values))
    scenario = yaml.safe_load((d / "scenario.yaml").read_text())
    assert {f["class"] for f in truth} == set(scenario["classes"])
    if name.startswith("eval-"):  # the evaluation sets hold every class
        assert set(scenario["classes"]) == set(CLASSES)
    if name in WITH_PCAP:
        assert manifest["pcap_bytes"] == (d / "lab.pcap").stat().st_size
    decoded = BatchDecoder().decode(values, np.full(len(values), truth[0]["start"]))
    assert not decoded.rejects
    report = match(truth, values)
    assert report.matched == manifest["matched"] == {"probe": len(truth), "pmacct": len(truth)}
    tls = [f for f in truth if f["server_port"] in (HTTPS_PORT, TELEMETRY_PORT)]
    assert tls and all((f["sni"] is None) != scenario["sni"] for f in tls)


def test_one_seed_gives_one_set_of_sessions_with_or_without_server_names():
    def without_names(name: str) -> list[tuple[object, ...]]:
        truth = read_jsonl(ROOT / name / "truth.jsonl")
        return sorted((s[:2] + s[3:] for s in signature(truth)), key=repr)

    assert without_names("e2e") == without_names("e2e-nosni")


def test_stretch_lengthens_a_scenario_and_grows_its_sessions():
    raw = {"name": "x", "seconds": 30, "classes": {"web": {"sessions": 3}, "voip": None}}
    out = stretch(raw, minutes=2, seed=5, sni=False)
    assert out["seconds"] == 120 and out["seed"] == 5 and out["sni"] is False
    assert out["classes"] == {"web": {"sessions": 12}, "voip": {"sessions": 4}}
    assert raw["classes"]["web"] == {"sessions": 3}  # the original is left alone
    assert stretch(raw, minutes=0.1, seed=None, sni=None)["classes"]["web"]["sessions"] == 3


@pytest.mark.parametrize(
    ("spec", "message"),
    [({"video": {"arrivals": "trace"}}, "trace arrivals are for"),
     ({"ai-api": {"arrivals": "poisson"}}, "arrivals is"),
     ({"telnet": {}}, "unknown classes")],
)  # fmt: skip
def test_scenario_validation(tmp_path, spec, message):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "classes": spec}))
    with pytest.raises(ValueError, match=message):
        Scenario.load(path, "10.77.0.2")


@pytest.mark.parametrize("name", WITH_PCAP)
def test_the_probe_meters_a_recorded_pcap_into_the_recorded_records(name):
    from streams.probe.meter import ProbeOptions, meter, to_record

    fields = ("src_ip", "src_port", "dst_ip", "dst_port", "proto", "bytes_fwd", "bytes_rev",
              "packets_fwd", "packets_rev", "server_name", "pkts")  # fmt: skip
    d = ROOT / name
    recorded = [orjson.loads(v) for v in (d / "flows.jsonl").read_bytes().splitlines()]
    want = sorted(repr([r.get(f) for f in fields]) for r in recorded if "schema" in r)
    opts = ProbeOptions(str(d / "lab.pcap"), exporter="lab-probe")
    records = [to_record(flow, opts) for flow in meter(opts)]
    got = sorted(repr([r.get(f) for f in fields]) for r in records)
    assert got == want and len(want) >= 15
