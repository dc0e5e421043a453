"""docker-compose.yml cannot run here (no Docker engine): check what can be checked."""

from __future__ import annotations

from pathlib import Path

import yaml

from streams.config import load_config

REPO = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_every_mounted_file_exists_in_the_repo():
    for name, svc in compose()["services"].items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("./"):
                assert (REPO / src).exists(), f"{name} mounts missing {src}"
    assert (REPO / "Dockerfile").exists()


def test_worker_environment_is_valid_config_and_matches_ports_and_scrape_target():
    services = compose()["services"]
    worker = services["worker"]
    env = {k: str(v) for k, v in worker["environment"].items()}
    cfg = load_config(REPO / "config" / "inferwatch.yaml", env=env)
    assert cfg.kafka.broker == "kafka:9092"
    assert f"{cfg.http.port}:{cfg.http.port}" in worker["ports"]
    assert cfg.http.host == "0.0.0.0"
    prom = yaml.safe_load((REPO / "config" / "prometheus" / "prometheus.yml").read_text())
    targets = [
        t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    ]
    assert f"worker:{cfg.http.port}" in targets
    kafka_env = services["kafka"]["environment"]
    assert "PLAINTEXT://kafka:9092" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    replay = services["replay"]
    assert (REPO / replay["command"][1].removeprefix("/app/")).exists()
