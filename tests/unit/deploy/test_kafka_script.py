"""services/kafka/kafka.sh reports a missing Java or Maven clearly instead of failing obscurely."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "services" / "kafka" / "kafka.sh"
TOOLS = [
    "bash",
    "cat",
    "dirname",
    "mkdir",
    "rm",
    "touch",
    "sed",
    "head",
    "seq",
    "sleep",
    "kill",
    "tail",
]


def bare_path(tmp: Path, extra: list[str]) -> str:
    bindir = tmp / "bin"
    bindir.mkdir()
    for tool in TOOLS + extra:
        found = shutil.which(tool)
        if found:
            (bindir / tool).symlink_to(found)
    return str(bindir)


@pytest.mark.parametrize(
    ("present", "message"),
    [([], "Maven is missing"), (["mvn"], "Java is missing")],
)
def test_missing_tools_are_named(tmp_path, present, message):
    env = dict(os.environ, PATH=bare_path(tmp_path, present), KAFKA_HOME=str(tmp_path / "k"))
    res = subprocess.run(
        ["bash", str(SCRIPT), "fetch"], env=env, capture_output=True, text=True, timeout=60
    )
    assert res.returncode != 0
    assert message in res.stderr


def test_unknown_subcommand_prints_usage():
    res = subprocess.run(
        ["bash", str(SCRIPT), "nonsense"], capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 2
    assert "usage" in res.stderr
