"""Shared fixtures: the real Kafka broker that `make test` starts, and worker processes.

Integration tests run against KAFKA_TEST_BROKER (set by `make test`). Without it they
are skipped locally, and fail in CI (CI=true), where the real broker is mandatory.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
INFERWATCH = Path(sys.executable).parent / "inferwatch"


@pytest.fixture(scope="session")
def broker() -> str:
    address = os.environ.get("KAFKA_TEST_BROKER")
    if not address:
        if os.environ.get("CI"):
            pytest.fail("KAFKA_TEST_BROKER is unset: run the tests with `make test`")
        pytest.skip("needs the real Kafka broker: run with `make test`")
    return address


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Names:
    """Topic and group names private to one test, so tests never see each other's records."""

    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def raw(self) -> str:
        return f"t{self.suffix}.flows.raw"

    @property
    def flows(self) -> str:
        return f"t{self.suffix}.flows.v1"

    @property
    def dlq(self) -> str:
        return f"t{self.suffix}.flows.dlq.v1"

    @property
    def alerts(self) -> str:
        return f"t{self.suffix}.alerts.v1"

    @property
    def labels(self) -> str:
        return f"t{self.suffix}.labels.v1"

    @property
    def model(self) -> str:
        return f"t{self.suffix}.classifier.v1"

    @property
    def linkstate(self) -> str:
        return f"t{self.suffix}.linkstate.v1"

    def env(self) -> dict[str, str]:
        return {
            "INFERWATCH_CLASSIFY__FEEDBACK_TOPIC": self.labels,
            "INFERWATCH_CLASSIFY__CHECKPOINT_TOPIC": self.model,
            "INFERWATCH_LINKSTATE__TOPIC": self.linkstate,
            "INFERWATCH_KAFKA__TOPICS__RAW": self.raw,
            "INFERWATCH_KAFKA__TOPICS__FLOWS": self.flows,
            "INFERWATCH_KAFKA__TOPICS__DLQ": self.dlq,
            "INFERWATCH_KAFKA__TOPICS__ALERTS": self.alerts,
            "INFERWATCH_KAFKA__INGEST_GROUP": f"t{self.suffix}-ingest",
            "INFERWATCH_KAFKA__APP_ID": f"t{self.suffix}-app",
            "INFERWATCH_KAFKA__SESSION_TIMEOUT_SECONDS": "10",
        }


@pytest.fixture
def names() -> Names:
    return Names()


class WorkerProcess:
    """An `inferwatch worker` subprocess with its own metrics port."""

    def __init__(
        self, broker: str, names: Names, tmp: Path, extra_env: dict[str, str] | None = None
    ):
        self.port = free_port()
        self.log_path = tmp / f"worker-{self.port}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFERWATCH_")}
        env.update(names.env())
        env["INFERWATCH_WORKER__STATE_DIR"] = str(tmp / f"state-{self.port}")
        env.update(extra_env or {})
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(INFERWATCH), "worker", "--broker", broker, "--metrics-port", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp,
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url(path), timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.get("/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"worker not healthy within {timeout}s:\n{self.log()}")

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample on /metrics, keyed by (name, sorted labels)."""
        _, body = self.get("/metrics")
        out = {}
        for fam in text_string_to_metric_families(body.decode()):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def total(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        want = set(labels.items())
        return sum(v for (n, lab), v in self.samples().items() if n == name and want <= set(lab))

    def wait_total(self, name: str, value: float, timeout: float = 60.0, **labels: str) -> float:
        deadline = time.monotonic() + timeout
        got = -1.0
        while time.monotonic() < deadline:
            got = self.total(name, **labels)
            if got >= value:
                return got
            if self.proc.poll() is not None:
                raise AssertionError(f"worker died:\n{self.log()}")
            time.sleep(0.3)
        counters = {
            n: self.total(n)
            for n in (
                "inferwatch_flow_records_total",
                "inferwatch_analysed_records_total",
                "inferwatch_flow_batches_replayed_total",
                "inferwatch_analysis_errors_total",
                "inferwatch_flow_batch_errors_total",
                "inferwatch_late_records_total",
            )
        }
        raise AssertionError(
            f"{name}{labels} = {got}, expected {value}; worker counters {counters}:\n"
            f"{self.log()[-3000:]}"
        )

    def terminate(self, timeout: float = 15.0) -> float:
        """SIGTERM; return the seconds it took to exit."""
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return time.monotonic() - t0

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def start_worker(broker: str, names: Names, tmp_path: Path) -> Iterator[object]:
    workers: list[WorkerProcess] = []

    def start(extra_env: dict[str, str] | None = None) -> WorkerProcess:
        w = WorkerProcess(broker, names, tmp_path, extra_env)
        workers.append(w)
        w.wait_healthy()
        return w

    yield start
    for w in workers:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


@pytest.fixture
def make_lab() -> Iterator[object]:
    """``make_lab(LinkSpec)``: a traffic lab (root), closed after the test even when it fails."""
    from lab.topology import Lab, LinkSpec

    labs: list[Lab] = []

    def make(spec: LinkSpec | None = None) -> Lab:
        lab = Lab(spec)
        labs.append(lab)
        lab.open()
        return lab

    yield make
    for lab in reversed(labs):
        lab.close()
