"""`make run`: a worker and an endless replay of the sample, against a broker; Ctrl-C stops both.

python -m streams.devrun --broker 127.0.0.1:9092 --metrics-port 9108
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "lab" / "samples" / "mixed.jsonl"
INFERWATCH = Path(sys.executable).parent / "inferwatch"


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes], name: str) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        print(f"{name} did not stop within 15s; killing it", file=sys.stderr)
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--broker", required=True)
    ap.add_argument("--metrics-port", type=int, default=9108)
    ap.add_argument("--rate", type=float, default=200.0, help="sample records per second")
    ap.add_argument("--sample", type=Path, default=SAMPLE)
    args = ap.parse_args(argv)

    env = dict(os.environ)
    worker = subprocess.Popen(  # noqa: S603
        [
            str(INFERWATCH),
            "worker",
            "--broker",
            args.broker,
            "--metrics-port",
            str(args.metrics_port),
        ],
        env=env,
    )
    replay: subprocess.Popen[bytes] | None = None
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        deadline = time.monotonic() + 90
        while not _healthy(args.metrics_port):
            if stopping or worker.poll() is not None or time.monotonic() > deadline:
                print("the worker did not become healthy; see its log above", file=sys.stderr)
                return 1
            time.sleep(0.5)
        replay = subprocess.Popen(  # noqa: S603
            [str(INFERWATCH), "replay", str(args.sample), "--broker", args.broker, "--retime",
             "--loop", "0", "--rate", str(args.rate), "--no-progress"],
            env=env,
        )  # fmt: skip
        url = f"http://127.0.0.1:{args.metrics_port}"
        print(
            f"\ninferwatch is running: metrics {url}/metrics, health {url}/healthz\n"
            f"replaying {args.sample.name} at {args.rate:g} records/s; Ctrl-C stops everything\n",
            flush=True,
        )
        while not stopping:
            if worker.poll() is not None:
                print(f"the worker exited with {worker.returncode}", file=sys.stderr)
                return 1
            time.sleep(0.5)
        return 0
    finally:
        if replay is not None:
            _stop(replay, "replay")
        _stop(worker, "worker")


if __name__ == "__main__":
    sys.exit(main())
