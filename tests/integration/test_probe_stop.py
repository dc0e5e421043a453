"""`inferwatch probe` on a live interface stops whole on SIGTERM: nfstream meters in child
processes, which a plain SIGTERM to the probe used to leave running as orphans. Needs root."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import INFERWATCH

pytestmark = pytest.mark.integration


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def test_sigterm_stops_the_probe_and_its_meters(broker, names, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERWATCH_")}
    probe = subprocess.Popen(
        [str(INFERWATCH), "probe", "--interface", "lo", "--broker", broker, "--topic", names.raw],
        stdout=(tmp_path / "probe.log").open("wb"), stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        meters: list[int] = []
        while time.monotonic() < deadline and not meters:
            time.sleep(0.5)
            assert probe.poll() is None, (tmp_path / "probe.log").read_text()
            meters = children(probe.pid)
        assert meters, "nfstream started no meter process"
        probe.send_signal(signal.SIGTERM)
        assert probe.wait(15) == 0, (tmp_path / "probe.log").read_text()
        time.sleep(2)
        left = [p for p in meters if Path(f"/proc/{p}").exists()]
        assert not left, f"meter processes left running: {left}"
    finally:
        if probe.poll() is None:
            probe.kill()
        for p in children(probe.pid) if probe.poll() is None else []:
            os.kill(p, signal.SIGKILL)
