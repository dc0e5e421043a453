"""Configuration: defaults, YAML, env overrides, unknown keys refused, check-config."""

from __future__ import annotations

import gc

import pytest
from click.testing import CliRunner

from streams.cli import main
from streams.config import DEFAULT_CONFIG_PATH, AnalysisConfig, Config, load_config
from streams.errors import ConfigError


def test_shipped_yaml_equals_the_defaults_in_code():
    """but for the one key it sets on purpose: the repository's example link catalog (the lab's
    link, which `make run` and the lab use); an installed worker has no link catalog."""
    shipped = load_config(DEFAULT_CONFIG_PATH, env={})
    assert Config().analysis.links_file is None
    assert shipped == Config(analysis=AnalysisConfig(links_file="config/links.yaml"))


def test_env_overrides_yaml_and_flags_override_env(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("kafka:\n  broker: a:1\ningest:\n  max_batch_records: 5\n")
    cfg = load_config(f, env={"INFERWATCH_INGEST__MAX_BATCH_RECORDS": "7", "OTHER": "x"})
    assert (cfg.kafka.broker, cfg.ingest.max_batch_records) == ("a:1", 7)
    cfg = load_config(f, env={"INFERWATCH_KAFKA__BROKER": "b:2"}, overrides={"kafka.broker": "c:3"})
    assert cfg.kafka.broker == "c:3"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kafka:\n  brokr: x\n", "kafka.brokr: Extra inputs are not permitted"),
        ("ingest:\n  max_batch_records: 0\n", "ingest.max_batch_records"),
        ("ingest:\n  format: xml\n", "ingest.format"),
        ("- a\n- b\n", "mapping"),
        ("kafka: [\n", "not valid YAML"),
    ],
)
def test_bad_files_name_the_key(tmp_path, text, message):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(f, env={})


def test_check_config_command(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("http:\n  port: 9200\n")
    res = CliRunner().invoke(main, ["check-config", str(good)])
    assert res.exit_code == 0 and "port: 9200" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("http:\n  prot: 9200\n")
    res = CliRunner().invoke(main, ["check-config", str(bad)])
    assert res.exit_code == 1 and "http.prot" in res.output


def test_gc_threshold_is_applied_and_zero_keeps_pythons():
    from streams.worker.run import tune_gc

    before = gc.get_threshold()
    try:
        assert load_config(DEFAULT_CONFIG_PATH, env={}).worker.gc_threshold == 50_000
        tune_gc(0)
        assert gc.get_threshold() == before
        tune_gc(50_000)
        assert gc.get_threshold() == (50_000, before[1], before[2])
    finally:
        gc.set_threshold(*before)
