"""Run a scenario in a fresh lab, metered by both paths into Kafka, and join the ground truth.

``run_scenario`` builds the lab from the scenario's link spec, starts the traffic server,
nfacctd (Kafka plugin) fed by softflowd on the bridge, and ``inferwatch probe`` on the bridge;
plays the client; waits for the flows to expire; flushes softflowd; stops everything; and
returns where the ground truth is. ``match`` joins ground-truth flows to exported records by
5-tuple (either direction: softflowd exports one record per direction), read with the
worker's own decoder.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml

from detectors.flows import FORMATS
from lab.capture import Recorder
from lab.exporters import Nfacctd, Softflowd
from lab.topology import Lab, LabError, LinkSpec, Shape
from streams.codecs.decode import BatchDecoder


def link_spec(scenario: Path) -> LinkSpec:
    raw = yaml.safe_load(scenario.read_text()).get("link", {})
    return LinkSpec(Shape(**raw.get("uplink", {})), Shape(**raw.get("downlink", {})))


def _wait_file(path: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise LabError(f"{path.name} did not appear (exit status {proc.poll()})")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def run_scenario(
    scenario: Path,
    workdir: Path,
    broker: str,
    topic: str,
    *,
    probe: bool = True,
    pmacct: bool = True,
    collector_port: int = 21955,
) -> Path:
    """Play ``scenario``; return the ground-truth file (``workdir/truth.jsonl``).

    softflowd meters the bridge live for nfacctd (the operator path), flushed after the run.
    The bridge is also recorded to ``workdir/lab.pcap``, and the probe meters the recording
    after the run: live, nfstream expires flows only as packets move its clock and has no
    flush, so on a lab link that falls quiet the last flows stayed in its cache (docs/lab.md).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    truth, pcap = workdir / "truth.jsonl", workdir / "lab.pcap"
    truth.unlink(missing_ok=True)
    (workdir / "server.ready").unlink(missing_ok=True)
    py = sys.executable
    inferwatch = shutil.which("inferwatch", path=str(Path(py).parent)) or "inferwatch"
    with contextlib.ExitStack() as stack:
        lab = stack.enter_context(Lab(link_spec(scenario)))
        procs: list[subprocess.Popen[bytes]] = []

        @stack.callback
        def stop_all() -> None:
            for p in reversed(procs):
                _stop(p)

        def log(name: str) -> Any:
            return stack.enter_context((workdir / name).open("ab"))

        if pmacct:
            stack.enter_context(Nfacctd(workdir, broker, topic, collector_port).start())
            softflowd = stack.enter_context(Softflowd(workdir, lab.bridge, collector_port).start())
        recorder = stack.enter_context(Recorder(lab.bridge, pcap))
        server = lab.popen(
            lab.server_ns,
            [py, "-m", "lab.traffic", "server", "--dir", str(workdir), "--scenario", str(scenario)],
            stdout=log("server.log"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        procs.append(server)
        _wait_file(workdir / "server.ready", server, 30)
        time.sleep(1.0)  # the meters are capturing
        client = lab.popen(
            lab.client_ns,
            [py, "-m", "lab.traffic", "client", "--scenario", str(scenario), "--out", str(truth)],
            stdout=log("client.log"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        status = client.wait(600)
        if status != 0:
            raise LabError(f"traffic client failed ({status}); see {workdir / 'client.log'}")
        time.sleep(1.0)  # the last FIN/ACKs and RTP echoes are on the wire
        recorder.stop()
        if pmacct:
            softflowd.flush()
            time.sleep(3)  # nfacctd's Kafka plugin publishes every second
    if probe:  # the probe meters the recording: read to its end, every flow is exported
        subprocess.run(
            [inferwatch, "probe", "--pcap", str(pcap), "--broker", broker, "--topic", topic,
             "--exporter", "lab-probe"],
            stdout=(workdir / "probe.log").open("ab"), stderr=subprocess.STDOUT, check=True,
        )  # fmt: skip
    return truth


@dataclass
class MatchReport:
    flows: int = 0
    matched: dict[str, int] = field(default_factory=dict)  # path -> ground-truth flows matched
    missing: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    by_class: Counter[str] = field(default_factory=Counter)
    records: Counter[str] = field(default_factory=Counter)  # path -> records it exported

    def rate(self, path: str) -> float:
        return self.matched.get(path, 0) / self.flows if self.flows else 0.0


_PATHS = {"native": "probe", "pmacct": "pmacct"}  # the record format each path publishes


def match(truth: Iterable[dict[str, Any]], values: Sequence[bytes]) -> MatchReport:
    """Join ground-truth flows to exported records (Kafka message values) by 5-tuple.

    The records are read by the worker's own decoder, so the join sees them as the worker
    does; a record it would refuse matches nothing.
    """
    batch = BatchDecoder().decode(values, np.full(len(values), time.time())).batch
    seen: dict[str, set[tuple[Any, ...]]] = {path: set() for path in _PATHS.values()}
    report = MatchReport()
    columns = (batch.fmt, batch.src_ip, batch.src_port, batch.dst_ip, batch.dst_port, batch.proto)
    for fmt, a, pa, b, pb, proto in zip(*columns, strict=True):
        path = _PATHS.get(FORMATS[fmt])
        if path is not None:
            report.records[path] += 1
            seen[path].add((a, int(pa), b, int(pb), int(proto)))
            seen[path].add((b, int(pb), a, int(pa), int(proto)))
    for flow in truth:
        report.flows += 1
        report.by_class[flow["class"]] += 1
        key = (flow["client_ip"], flow["client_port"], flow["server_ip"], flow["server_port"],
               flow["proto"])  # fmt: skip
        for path, keys in seen.items():
            if key in keys:
                report.matched[path] = report.matched.get(path, 0) + 1
            else:
                report.missing.setdefault(path, []).append(flow)
    return report


def signature(truth: Iterable[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a scenario's seed decides, per flow, sorted: class, protocol, server name,
    objects or datagrams, and per AI request its context and output tokens. Two plays of one
    scenario have one signature; ports and times are the kernel's and are left out.
    """
    out = []
    for f in truth:
        reqs = tuple((r["context_tokens"], r["tokens"]) for r in f.get("requests", ()))
        out.append((f["class"], f["proto"], f.get("sni"), f.get("objects"), f.get("sent"), reqs))
    return sorted(out, key=repr)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
