"""Pictures of the evaluations (`inferwatch eval ... --plot DIR`): PNGs drawn with matplotlib.

* ``series_png``: an anomaly-scored series, its values above, its scores below with the
  threshold, the labelled anomaly windows shaded on both.
* ``confusion_png``: a classifier's confusion matrix, rows true, columns predicted, each row
  coloured by its share so that small classes read as well as big ones.

matplotlib is the optional extra ``plot`` (``pip install 'inferwatch[plot]'``; ``make setup``
installs it); without it, asking for a plot is a one-line error.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streams.errors import InferwatchError


def _pyplot() -> Any:
    try:
        import matplotlib as mpl
    except ImportError as exc:
        raise InferwatchError("--plot needs matplotlib: pip install 'inferwatch[plot]'") from exc
    mpl.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def series_png(
    path: Path,
    title: str,
    times: np.ndarray,
    values: np.ndarray,
    scores: np.ndarray,
    windows: Sequence[tuple[float, float]],
    threshold: float | None,
) -> Path:
    """Write ``path`` (a PNG) of one series and its anomaly scores; return it."""
    plt = _pyplot()
    dates = times.astype("datetime64[s]")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 5), sharex=True, height_ratios=[3, 2])
    top.plot(dates, values, lw=0.6, color="#31688e")
    top.set_title(title, fontsize=10)
    top.set_ylabel("value")
    bottom.plot(dates, scores, lw=0.6, color="#35b779")
    bottom.set_ylabel("anomaly score")
    bottom.set_ylim(0, 1.02)
    if threshold is not None:
        bottom.axhline(
            threshold, color="#fde725", lw=1, ls="--", label=f"threshold {threshold:.3f}"
        )
        bottom.legend(loc="upper left", fontsize=8)
    for start, end in windows:
        for ax in (top, bottom):
            ax.axvspan(np.datetime64(int(start), "s"), np.datetime64(int(end), "s"),
                       color="#d62728", alpha=0.15, lw=0)  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def confusion_png(path: Path, confusion: np.ndarray, classes: Sequence[str], title: str) -> Path:
    """Write ``path`` (a PNG) of a confusion matrix with its counts; return it."""
    plt = _pyplot()
    seen = [i for i in range(len(classes)) if confusion[i].sum() or confusion[:, i].sum()]
    cm = confusion[np.ix_(seen, seen)]
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    names = [classes[i] for i in seen]
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(seen), 0.8 + 0.65 * len(seen)))
    ax.imshow(share, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    for i in range(len(names)):
        for j in range(len(names)):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="black" if share[i, j] > 0.5 else "white")  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
