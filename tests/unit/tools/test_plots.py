"""`inferwatch eval ... --plot DIR`: real PNGs of what the evaluations measured."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from streams.cli import main
from streams.config import DATA_DIR

PNG = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == PNG
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_eval_anomaly_draws_each_series_of_the_corpus(tmp_path):
    corpus = tmp_path / "corpus"
    rng = np.random.default_rng(3)
    for name in ("a", "b"):
        values = rng.normal(10, 1, 600)
        values[400:410] += 30
        stamps = np.datetime64("2026-01-01T00:00") + np.arange(600) * np.timedelta64(5, "m")
        pairs = zip(stamps, values, strict=True)
        rows = "\n".join(f"{str(t).replace('T', ' ')},{v:.3f}" for t, v in pairs)
        (corpus / "data" / "cat").mkdir(parents=True, exist_ok=True)
        (corpus / "data" / "cat" / f"{name}.csv").write_text(f"timestamp,value\n{rows}\n")
    window = [str(np.datetime64("2026-01-01T00:00") + np.timedelta64(5 * i, "m")).replace(
        "T", " ") + ".000000" for i in (395, 420)]  # fmt: skip
    (corpus / "labels").mkdir()
    (corpus / "labels" / "combined_windows.json").write_text(
        json.dumps({"cat/a.csv": [window], "cat/b.csv": [window]})
    )
    res = CliRunner().invoke(main, ["eval", "anomaly", "--corpus", str(corpus), "--plot",
                                    str(tmp_path / "png")])  # fmt: skip
    assert res.exit_code == 0, res.output
    drawn = sorted(p.name for p in (tmp_path / "png").iterdir())
    assert drawn == ["cat__a.png", "cat__b.png"]
    assert _png_size(tmp_path / "png" / "cat__a.png") == (1200, 500)


def test_eval_classify_draws_its_confusion_matrix(tmp_path):
    boot = DATA_DIR / "bootstrap"
    res = CliRunner().invoke(main, ["eval", "classify", "--dataset", str(boot / "eval-a-3m"),
                                    "--names", "off", "--plot", str(tmp_path)])  # fmt: skip
    assert res.exit_code == 0, res.output
    width, height = _png_size(tmp_path / "confusion.png")
    assert width > 400 and height > 400
