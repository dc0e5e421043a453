"""`inferwatch eval` and `inferwatch bench`: the evaluations and benchmarks' commands (the
main command, streams/cli.py, adds these groups)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from streams.config import load_config
from streams.errors import ConfigError, InferwatchError


def _emit_report(data: dict[str, Any], text: str, json_out: Path | None) -> None:
    """An evaluation's report: its text, and its JSON to ``json_out`` too ('-': only the
    JSON, to stdout)."""
    import orjson

    raw = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    if str(json_out) == "-":
        click.echo(raw.decode())
        return
    click.echo(text)
    if json_out is not None:
        json_out.write_bytes(raw + b"\n")


@click.group("eval")
def eval_group() -> None:
    """Evaluations on recorded lab datasets (docs/classification.md)."""


@eval_group.command("classify")
@click.option(
    "--dataset", required=True, type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="A dataset of `inferwatch lab record` (flows.jsonl and truth.jsonl).",
)  # fmt: skip
@click.option(
    "--train", "train_dirs", multiple=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Learn these datasets first (repeatable); then DATASET is new conditions.",
)  # fmt: skip
@click.option("--names", type=click.Choice(["on", "off"]), default="on", show_default=True,
              help="off: behaviour only, the endpoint catalog is ignored.")  # fmt: skip
@click.option("--catalog", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Endpoint catalog (default: the packaged one).")  # fmt: skip
@click.option("--batch", "batch_size", type=int, default=20, show_default=True,
              help="Flows per test-then-train step.")  # fmt: skip
@click.option("--records", type=click.Choice(["probe", "pmacct", "all"]), default="probe",
              show_default=True,
              help="Which metering path's records: the probe's (packet summaries) or "
                   "softflowd -> nfacctd's (one per direction, counters only).")  # fmt: skip
@click.option(
    "--train-records",
    type=click.Choice(["probe", "pmacct", "all"]),
    help="Which records of the --train datasets to learn (default: as --records).",
)
@click.option("--train-epochs", type=click.IntRange(min=1), default=3, show_default=True,
              help="Passes over the --train datasets (each in a new interleaving).")  # fmt: skip
@click.option("--seed", type=int, default=42, show_default=True, help="The forest's seed.")
@click.option("--json", "json_out", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write the report as JSON here ('-': only JSON, to stdout).")  # fmt: skip
@click.option("--plot", type=click.Path(path_type=Path, file_okay=False),
              help="Write the confusion matrix as confusion.png here.")  # fmt: skip
def eval_classify(
    dataset: Path,
    train_dirs: tuple[Path, ...],
    names: str,
    catalog: Path | None,
    batch_size: int,
    records: str,
    train_records: str | None,
    train_epochs: int,
    seed: int,
    json_out: Path | None,
    plot: Path | None,
) -> None:
    """Replay a recorded dataset through the classifier, test-then-train; print the confusion
    matrix, per-class F1, macro-F1 and the QoE errors against the ground truth."""

    from streams.links.endpoints import DEFAULT_ENDPOINTS_PATH, load_endpoints
    from streams.tools.evaluate import run_eval

    try:
        cat = load_endpoints(catalog or DEFAULT_ENDPOINTS_PATH)
        report = run_eval(
            dataset, train_dirs, names == "on", cat, batch_size, seed, records, train_records,
            train_epochs,
        )  # fmt: skip
        if plot is not None:
            from detectors.classes import CLASSES
            from streams.tools.plots import confusion_png

            title = f"{dataset.name}, names {names}: macro-F1 {report.macro_f1():.3f}"
            confusion_png(plot / "confusion.png", report.confusion, CLASSES, title)
    except (InferwatchError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from exc
    _emit_report(report.as_dict(), report.text(), json_out)


@eval_group.command("anomaly")
@click.option(
    "--corpus", required=True, type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="A NAB-format corpus: data/<category>/*.csv (timestamp,value) and optional labels/.",
)  # fmt: skip
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              help="Write timestamp,value,anomaly_score per series here, same layout.")  # fmt: skip
@click.option(
    "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Take the detector's parameters from this config (anomaly.detector).",
)  # fmt: skip
@click.option("--json", "json_out", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write the report as JSON here ('-': only JSON, to stdout).")  # fmt: skip
@click.option("--plot", type=click.Path(path_type=Path, file_okay=False),
              help="Write a PNG per series here: values, scores, labels, threshold.")  # fmt: skip
def eval_anomaly(
    corpus: Path,
    out: Path | None,
    config_path: Path | None,
    json_out: Path | None,
    plot: Path | None,
) -> None:
    """Run the worker's anomaly detector over every series of a NAB-format corpus, strictly
    online; write the scores and, when the corpus has labels, print the NAB scores of the
    standard, reward-low-FP and reward-low-FN profiles (docs/anomaly.md)."""

    from streams.tools.anomaly_eval import run_anomaly_eval

    try:
        cfg = load_config(config_path)
        report = run_anomaly_eval(corpus, out, cfg.anomaly.detector.build, plot)
    except (InferwatchError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from exc
    _emit_report(report.as_dict(), report.text(), json_out)


@click.group()
def bench() -> None:
    """Benchmarks against a real broker (see bench/README.md)."""


@bench.command("pipeline")
@click.option("--broker", required=True, help="Kafka bootstrap server HOST:PORT.")
@click.option("--records", type=int, default=1_000_000, show_default=True)
@click.option(
    "--mix",
    default="pmacct:4,goflow2:4,native:2",
    show_default=True,
    help="Formats and weights of the records; native ones carry packet summaries.",
)
@click.option("--distinct", is_flag=True, help="Every record a distinct 5-tuple (flood test).")
@click.option(
    "--latency-seconds",
    type=float,
    default=20.0,
    show_default=True,
    help="How long records arrive at half the measured rate for the latency figures.",
)
@click.option(
    "--latency-rate",
    type=float,
    default=0.0,
    show_default=True,
    help="Records/s during the latency phase; 0 = half the measured worker rate.",
)
@click.option(
    "--out", type=click.Path(path_type=Path, dir_okay=False), help="Also append the JSON line here."
)
@click.option(
    "--classify-cost", is_flag=True,
    help="Instead: the worker's rate with classification off, then on, on the same records.",
)  # fmt: skip
@click.option(
    "--scale", is_flag=True,
    help="Instead: the rate of one worker, then of two in one group, on the same records.",
)  # fmt: skip
@click.option(
    "--crash", is_flag=True,
    help="Instead: kill -9 a worker part way through N records, start another, account for all.",
)  # fmt: skip
@click.option(
    "--startup", type=click.IntRange(0, 20), default=0, metavar="N",
    help="Instead: start N workers one after another; per worker the seconds until ready, "
    "then until a burst of 1,000 records is analysed, and a second burst 3 s later.",
)  # fmt: skip
@click.option(
    "--kill-at", type=click.FloatRange(0.01, 0.99), default=0.4, show_default=True,
    help="With --crash: the share of the records committed when the worker is killed.",
)  # fmt: skip
@click.option("--seed", type=int, default=1, show_default=True, help="Of the generated records.")
def bench_pipeline(
    broker: str,
    records: int,
    mix: str,
    distinct: bool,
    latency_seconds: float,
    latency_rate: float,
    out: Path | None,
    classify_cost: bool,
    scale: bool,
    crash: bool,
    startup: int,
    kill_at: float,
    seed: int,
) -> None:
    """Produce N records, time a bare aiokafka consumer and a worker on them; print JSON."""
    import orjson

    from streams.tools import bench as b

    try:
        plan = b.Plan(
            broker, records, b.parse_mix(mix), distinct, latency_seconds, latency_rate, seed
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    if classify_cost:
        result = b.run_classify_cost(plan)
    elif scale:
        result = b.run_scale(plan)
    elif crash:
        result = b.run_crash(plan, kill_at)
    elif startup:
        result = b.run_startup(plan, startup)
    else:
        result = b.run(plan)
    line = orjson.dumps(result).decode()
    click.echo(line)
    if out is not None:
        with out.open("a") as f:
            f.write(line + "\n")


@bench.command("model")
@click.option("--flows", type=int, default=4000, show_default=True,
              help="Labelled flows each copy of the model learns.")  # fmt: skip
@click.option("--step", type=int, default=500, show_default=True,
              help="Flows learned between two measurements.")  # fmt: skip
@click.option("--max-leaves", type=int, default=None,
              help="The bounded copy's leaves per tree [default: the config's].")  # fmt: skip
def bench_model(flows: int, step: int, max_leaves: int | None) -> None:
    """Model size and learning cost as the classifier learns, with and without its bound.

    No broker: the bootstrapped model learns the pipeline benchmark's catalog-labelled flows
    in two copies side by side; prints one JSON line.
    """
    import orjson

    from streams.tools.bench_model import run_model

    click.echo(orjson.dumps(run_model(flows, step, max_leaves)).decode())


@bench.command("anomaly")
@click.option(
    "--corpus", default=Path("bench/nab-dev"), show_default=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="A NAB-format corpus (as for eval anomaly).",
)  # fmt: skip
@click.option("--rounds", type=int, default=3, show_default=True,
              help="Alternating rounds of the two detectors.")  # fmt: skip
@click.option(
    "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Take the detector's parameters from this config (anomaly.detector).",
)  # fmt: skip
def bench_anomaly(corpus: Path, rounds: int, config_path: Path | None) -> None:
    """The anomaly detector's points/s beside the same without its time of day and horizon.

    No broker: both run over every series of the corpus in alternating rounds, strictly
    online as in the worker; prints one JSON line with each round's rate, the median ratio
    and, with labels, both's NAB scores.
    """
    import orjson

    from streams.tools.anomaly_eval import bench_anomaly as run

    try:
        cfg = load_config(config_path).anomaly.detector
        plain = cfg.model_copy(update={"days": 0, "age": 0.0})
        result = run(corpus, cfg.build, plain.build, rounds)
    except (InferwatchError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(orjson.dumps(result).decode())


@bench.command("soak")
@click.option("--broker", required=True, help="Kafka bootstrap server HOST:PORT.")
@click.option("--minutes", type=float, default=30.0, show_default=True)
@click.option(
    "--rate",
    type=float,
    default=30_000.0,
    show_default=True,
    help="Records per second (distinct 5-tuples); about half the maximum rate.",
)
@click.option("--sample-seconds", type=float, default=10.0, show_default=True)
@click.option(
    "--stall",
    nargs=2,
    type=float,
    default=None,
    metavar="AT SECONDS",
    help="Busy every core for SECONDS, AT seconds in (a noisy neighbour).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also append the JSON lines here.",
)
def bench_soak(
    broker: str,
    minutes: float,
    rate: float,
    sample_seconds: float,
    stall: tuple[float, float] | None,
    out: Path | None,
) -> None:
    """Feed a worker at a steady rate; print RSS, lag and latency over time, then a summary."""
    import orjson

    from streams.tools.bench import soak

    samples = soak(broker, minutes, rate, sample_seconds, stall)
    lines = [orjson.dumps(s).decode() for s in samples]
    for line in lines:
        click.echo(line)
    if out is not None:
        with out.open("a") as f:
            f.write("\n".join(lines) + "\n")
