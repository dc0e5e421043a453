"""docker-compose.yml cannot run here (no Docker engine): check what can be checked.

`docker-compose config` (Debian's docker-compose, which `make test` installs) validates the file
against the Compose specification; the tests below check that its services agree with each
other and with inferwatch's configuration. The programs themselves (Kafka, the worker, the demo,
`inferwatch sink`, Prometheus with these rules, Alertmanager with this configuration) run
natively in the service tests.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from streams.config import load_config

REPO = Path(__file__).resolve().parents[3]
INFERWATCH_SERVICES = ("worker", "demo", "dispatcher", "webhook-sink")


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_docker_compose_accepts_the_file_with_and_without_the_dispatch_profile():
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is missing (Debian package docker-compose; make test installs it)"
    for extra in ([], ["--profile", "dispatch"]):
        res = subprocess.run([tool, "-f", str(REPO / "docker-compose.yml"), *extra, "config",
                              "-q"], capture_output=True, text=True, cwd=REPO)  # fmt: skip
        assert res.returncode == 0, res.stderr


def test_every_mounted_file_exists_and_every_stateful_service_has_a_named_volume():
    data = compose()
    for name, svc in data["services"].items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("./"):
                assert (REPO / src).exists(), f"{name} mounts missing {src}"
            else:
                assert src in data["volumes"], f"{name}: {src} is not a named volume"
    named = {
        n: [v.split(":")[0] for v in s.get("volumes", [])] for n, s in data["services"].items()
    }
    for stateful in ("kafka", "worker", "dispatcher", "prometheus", "alertmanager", "grafana"):
        assert any(v in data["volumes"] for v in named[stateful]), f"{stateful} keeps no data"


def test_every_service_has_a_healthcheck_and_a_pinned_image():
    for name, svc in compose()["services"].items():
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: {image} is not pinned"
        if name in INFERWATCH_SERVICES:
            assert svc["build"] == "." and image == "inferwatch:local"


@pytest.mark.parametrize("name", INFERWATCH_SERVICES)
def test_each_inferwatch_service_environment_is_valid_configuration(name):
    svc = compose()["services"][name]
    env = {k: str(v) for k, v in svc.get("environment", {}).items()}
    cfg = load_config(REPO / "config" / "inferwatch.yaml", env=env)
    if name != "webhook-sink":
        assert cfg.kafka.broker == "kafka:9092"


def test_workers_scale_without_host_ports_and_prometheus_finds_every_replica():
    services = compose()["services"]
    worker = services["worker"]
    env = {k: str(v) for k, v in worker["environment"].items()}
    cfg = load_config(REPO / "config" / "inferwatch.yaml", env=env)
    assert cfg.http.host == "0.0.0.0" and "ports" not in worker  # no clash when scaled
    assert str(cfg.http.port) in worker["expose"]
    prom = yaml.safe_load((REPO / "config" / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "inferwatch")
    assert job["dns_sd_configs"] == [{"names": ["worker"], "type": "A", "port": cfg.http.port,
                                      "refresh_interval": "15s"}]  # fmt: skip


def test_flows_enter_from_routers_and_from_the_host():
    services = compose()["services"]
    cfg = load_config(REPO / "config" / "inferwatch.yaml", env={})
    goflow2 = services["goflow2"]
    flags = dict(a.lstrip("-").split("=", 1) for a in goflow2["command"])
    assert flags["transport"] == "kafka" and flags["transport.kafka.brokers"] == "kafka:9092"
    assert flags["transport.kafka.topic"] == cfg.kafka.topics.raw and flags["format"] == "json"
    assert {"2055:2055/udp", "6343:6343/udp"} <= set(goflow2["ports"])
    # the release the service test runs natively (tests/integration/test_goflow2_netflow.py)
    made = dict(ln.split(" := ") for ln in (REPO / "Makefile").read_text().splitlines()
                if " := " in ln)  # fmt: skip
    assert goflow2["image"] == f"netsampler/goflow2:{made['GOFLOW2_VERSION']}"
    kafka = services["kafka"]
    env = kafka["environment"]
    assert "HOST://localhost:29092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "29092:29092" in kafka["ports"] and kafka["image"].startswith("apache/kafka:4.")


def test_alertmanager_and_the_dispatcher_send_to_the_sink_the_file_has():
    services = compose()["services"]
    sink_port = services["webhook-sink"]["command"][-1]
    am = yaml.safe_load((REPO / "config" / "alertmanager" / "alertmanager.yml").read_text())
    urls = [w["url"] for r in am["receivers"] for w in r.get("webhook_configs", [])]
    env = {k: str(v) for k, v in services["dispatcher"]["environment"].items()}
    cfg = load_config(REPO / "config" / "inferwatch.yaml", env=env)
    urls += [r.url for r in cfg.dispatch.receivers]
    assert urls and all(u.startswith(f"http://webhook-sink:{sink_port}/") for u in urls), urls
