"""A worker with basic auth, TLS and hashed top talkers: the endpoints refuse strangers, the
secrets never reach the log, and no address leaves in the top talkers."""

from __future__ import annotations

import asyncio
import base64
import http.client
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import orjson
import pytest

from tests.kafka_util import create_topic, produce
from tests.records import valid_records

pytestmark = pytest.mark.integration
PASSWORD = "pw-7f3a9c1e-not-in-logs"
HASH_KEY = "hk-91d2e5b0-not-in-logs"


def get(url: str, auth: str | None = None) -> tuple[int, bytes]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # our own self-signed certificate
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_auth_tls_and_anonymised_top_talkers(broker, names, start_worker, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    (tmp_path / "pw").write_text(PASSWORD)
    env = {
        "INFERWATCH_HTTP__BASIC_AUTH_USER": "ops",
        "INFERWATCH_HTTP__BASIC_AUTH_PASSWORD_FILE": str(tmp_path / "pw"),
        "INFERWATCH_HTTP__TLS_CERT_FILE": str(cert),
        "INFERWATCH_HTTP__TLS_KEY_FILE": str(key),
        "INFERWATCH_ANALYSIS__ANONYMISE": "hash",
        "INFERWATCH_ANALYSIS__ANONYMISE_KEY": HASH_KEY,
        "INFERWATCH_LOG_LEVEL": "debug",
    }
    values = [v for _, v in valid_records(3000, seed=12)]
    asyncio.run(create_topic(broker, names.raw, 2))
    asyncio.run(produce(broker, names.raw, values))

    from tests.conftest import WorkerProcess

    worker = WorkerProcess(broker, names, tmp_path, env)
    try:
        base = f"https://127.0.0.1:{worker.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if get(base + "/healthz")[0] == 200:  # open to orchestrators
                    break
            except OSError:
                pass
            time.sleep(0.3)
        assert get(base + "/metrics")[0] == 401
        assert get(base + "/metrics", "ops:wrong")[0] == 401
        with pytest.raises((urllib.error.URLError, OSError, http.client.HTTPException)):  # no HTTP
            urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/metrics", timeout=5)
        status, body = 0, b""
        while time.monotonic() < deadline:
            status, body = get(base + "/toptalkers", f"ops:{PASSWORD}")
            if status == 200 and orjson.loads(body):
                break
            time.sleep(0.5)
        assert status == 200
        top = orjson.loads(body)
        text = body.decode()
        for v in values[:300]:
            rec = orjson.loads(v)
            for k in ("ip_src", "ip_dst", "src_addr", "dst_addr", "src_ip", "dst_ip"):
                if k in rec:
                    assert f'"{rec[k]}' not in text and f"{rec[k]}:" not in text
        hosts = [h["host"] for snaps in top.values() for s in snaps for h in s["hosts"]]
        assert hosts and all(h.startswith("h:") for h in hosts)
        assert get(base + "/metrics", f"ops:{PASSWORD}")[0] == 200
    finally:
        worker.terminate()
    log = worker.log()
    assert PASSWORD not in log and HASH_KEY not in log
