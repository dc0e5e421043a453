"""An operator's mistakes get one clear line, never a traceback (issue: a user's first hour)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from streams.cli import main
from streams.config import load_config

README = Path(__file__).parents[2] / "README.md"


def _one_line_error(args: list[str], env: dict[str, str] | None = None) -> str:
    res = CliRunner().invoke(main, args, env=env)
    assert res.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert "Traceback" not in res.output
    return lines[0]


@pytest.mark.parametrize("value", ["", "kafka", "host:port", "a:99999"])
def test_a_broker_that_is_not_host_port_is_refused_by_check_config(tmp_path, value):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("log_level: info\n")
    line = _one_line_error(["check-config", str(cfg)], {"INFERWATCH_KAFKA__BROKER": value})
    assert "INFERWATCH_KAFKA__BROKER: kafka.broker" in line and "HOST:PORT" in line


def test_a_file_that_is_no_capture_is_named_in_one_line():
    line = _one_line_error(["classify", "--pcap", str(README)])
    assert line == f"Error: {README}: not a pcap or pcapng capture (it starts with '# in')"


def test_a_taken_metrics_port_is_one_line_before_anything_starts():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        line = _one_line_error(["worker", "--metrics-port", str(port), "--broker", "127.0.0.1:1"])
    assert f"cannot serve /metrics on 127.0.0.1:{port}" in line


@pytest.mark.parametrize("secret", ["*hunter2", "@x", "[x", "%x", "hunter2 #x", "'q'", "null"])
def test_string_keys_from_the_environment_are_taken_as_they_are(secret):
    """They were parsed as YAML: "*hunter2" was an alias (a traceback printing it), "hunter2 #x"
    lost its end, "null" became nothing."""
    env = {
        "INFERWATCH_HTTP__BASIC_AUTH_USER": "ops",
        "INFERWATCH_HTTP__BASIC_AUTH_PASSWORD": secret,
    }
    cfg = load_config(None, env=env)
    assert cfg.http.password() == secret


@pytest.mark.parametrize(
    ("value", "series"),
    [('["bytes", "flows"]', ["bytes", "flows"]), ("[bytes, flows]", ["bytes", "flows"])],
)
def test_lists_from_the_environment_are_json_or_yaml_flow_style(value, series):
    cfg = load_config(None, env={"INFERWATCH_ANOMALY__SERIES": value})
    assert cfg.anomaly.series == series
