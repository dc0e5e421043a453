"""Secrets stay secret; anonymisation leaves no address behind."""

from __future__ import annotations

import ipaddress

import pytest
from click.testing import CliRunner

from streams.cli import main
from streams.config import load_config
from streams.errors import ConfigError
from streams.links.anonymise import Anonymiser


def test_secrets_from_a_file_and_never_printed(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cr3t-value\n")
    f = tmp_path / "c.yaml"
    f.write_text(f"http:\n  basic_auth_user: ops\n  basic_auth_password_file: {secret}\n")
    cfg = load_config(f, env={})
    assert cfg.http.password() == "s3cr3t-value"
    env = {"INFERWATCH_HTTP__BASIC_AUTH_USER": "ops"}
    env["INFERWATCH_HTTP__BASIC_AUTH_PASSWORD"] = "from-env-123"
    env_cfg = load_config(None, env=env)
    assert env_cfg.http.password() == "from-env-123"
    assert "from-env-123" not in repr(env_cfg) and "from-env-123" not in str(env_cfg.model_dump())
    g = tmp_path / "d.yaml"
    g.write_text("http:\n  basic_auth_user: ops\n  basic_auth_password: inline-pw-42\n")
    res = CliRunner().invoke(main, ["check-config", str(g)])
    assert res.exit_code == 0 and "inline-pw-42" not in res.output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("http:\n  basic_auth_user: ops\n", "basic_auth_user needs"),
        ("http:\n  tls_cert_file: a.pem\n", "go together"),
        ("analysis:\n  anonymise: hash\n", "needs anonymise_key"),
    ],
)
def test_incomplete_security_settings_are_refused(tmp_path, text, message):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(f, env={})


def test_prefix_and_hash_anonymisation_leave_no_address():
    addrs = ["192.0.2.77", "198.51.100.3", "2001:db8:1:2::9", "::1"]
    pre = Anonymiser("prefix", v4=24, v6=48)
    for a in addrs:
        net = ipaddress.ip_network(pre.address(a))
        assert ipaddress.ip_address(a) in net
        assert net.prefixlen in (24, 48)
    h = Anonymiser("hash", key=b"key-1")
    hashed = {h.address(a) for a in addrs}
    assert len(hashed) == len(addrs)
    assert not any(a in x for a in addrs for x in hashed)
    assert "key-1" not in repr(h)
    assert pre.address("not-an-ip") == "invalid"
