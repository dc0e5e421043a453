"""The ``inferwatch`` command."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import click

from streams.config import DEFAULT_CONFIG_PATH, Config, load_config
from streams.errors import ConfigError, InferwatchError


def _load(config: Path | None, **overrides: object) -> Config:
    path = config or (DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None)
    try:
        return load_config(path, env=os.environ, overrides=overrides)
    except ConfigError as exc:
        raise click.ClickException(f"invalid configuration: {exc}") from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="inferwatch")
def main() -> None:
    """inferwatch: real-time analyzer of AI traffic on operator networks.

    Configuration: --config FILE (default config/inferwatch.yaml), then environment variables
    INFERWATCH_<SECTION>__<KEY> (for example INFERWATCH_KAFKA__BROKER), then flags.
    """


@main.command()
@click.option("--broker", help="Kafka bootstrap server HOST:PORT (kafka.broker).")
@click.option("--metrics-port", type=int, help="Port of /metrics and /healthz (http.port).")
@click.option("--metrics-host", help="Address to bind /metrics and /healthz to (http.host).")
@click.option("--config", "config", type=click.Path(path_type=Path, dir_okay=False))
def worker(
    broker: str | None, metrics_port: int | None, metrics_host: str | None, config: Path | None
) -> None:
    """Consume flows.raw, dead-letter bad records, publish flows.v1, serve /metrics and /healthz.

    Runs until SIGTERM or Ctrl-C, then commits what it has processed and exits.
    """
    from streams.worker import run_worker

    cfg = _load(
        config, **{"kafka.broker": broker, "http.port": metrics_port, "http.host": metrics_host}
    )
    try:
        run_worker(cfg)
    except InferwatchError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.option("--broker", help="Kafka bootstrap server HOST:PORT (kafka.broker).")
@click.option("--config", "config", type=click.Path(path_type=Path, dir_okay=False))
def dispatch(broker: str | None, config: Path | None) -> None:
    """Send the alerts of alerts.v1 to the webhooks of dispatch.receivers (signed, retried,
    grouped, resolved once; docs/alerts.md). Runs until SIGTERM or Ctrl-C."""
    import logging

    from streams.dispatch import dispatch_forever

    cfg = _load(config, **{"kafka.broker": broker})
    logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    try:
        dispatch_forever(cfg)
    except InferwatchError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=9099, show_default=True)
@click.option("--secret", envvar="INFERWATCH_SINK_SECRET",
              help="Standard Webhooks key to check signatures (whsec_... or text).")  # fmt: skip
def sink(host: str, port: int, secret: str | None) -> None:
    """Receive webhooks and show them: one log line per delivery (alerts, signature check),
    the last 100 on GET /. For trying alerting out before pointing it at a paging tool."""
    from streams.sink import run_sink

    try:
        run_sink(host, port, secret)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


@main.command("check-config")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
def check_config(file: Path) -> None:
    """Validate a configuration FILE, its link catalog and its endpoint catalog (INFERWATCH_*
    applied); print the configuration."""
    import yaml

    from streams.config import resolve_path
    from streams.endpoints import load_endpoints
    from streams.links import LinkCatalog

    cfg = _load(file)
    links_file = resolve_path(cfg.analysis.links_file)
    try:
        catalog = LinkCatalog.load(links_file)
    except ConfigError as exc:
        raise click.ClickException(f"invalid link catalog: {exc}") from exc
    endpoints_file = resolve_path(cfg.classify.endpoints_file)
    try:
        endpoints = load_endpoints(endpoints_file)
    except ConfigError as exc:
        raise click.ClickException(f"invalid endpoint catalog {endpoints_file}: {exc}") from exc
    click.echo(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False).rstrip())
    click.echo(
        f"# {file}: valid; link catalog {links_file}: {len(catalog.links)} links; "
        f"endpoint catalog {endpoints_file}: {len(endpoints)} providers",
        err=True,
    )


@main.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--broker", help="Kafka bootstrap server HOST:PORT.")
@click.option("--topic", help="Topic to publish to (default: kafka.topics.raw, flows.raw).")
@click.option(
    "--rate",
    type=float,
    default=0.0,
    show_default=True,
    help="Records per second; 0 = as fast as possible.",
)
@click.option(
    "--loop",
    "loops",
    type=int,
    default=1,
    show_default=True,
    help="Times to replay the file; 0 = forever.",
)
@click.option(
    "--retime/--no-retime",
    default=False,
    show_default=True,
    help="Shift each record's timestamps so the file starts now (pmacct, goflow2, native).",
)
@click.option(
    "--framing",
    type=click.Choice(["lines", "varint"]),
    default="lines",
    show_default=True,
    help="lines: one JSON record per line; varint: goflow2's binary (-format bin) capture.",
)
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option("--config", "config", type=click.Path(path_type=Path, dir_okay=False))
def replay(
    file: Path,
    broker: str | None,
    topic: str | None,
    rate: float,
    loops: int,
    retime: bool,
    framing: str,
    progress: bool,
    config: Path | None,
) -> None:
    """Publish the flow records of FILE (one per line, any supported format) to flows.raw."""
    from streams.replay import replay_file

    cfg = _load(config, **{"kafka.broker": broker})
    try:
        summary = replay_file(
            cfg,
            file,
            topic=topic,
            rate=rate,
            loops=loops,
            retime=retime,
            progress=progress,
            framing=framing,
        )
    except InferwatchError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(summary.describe())


@main.command()
@click.option("--broker", help="Kafka bootstrap server HOST:PORT.")
@click.option("--seconds", type=float, default=0.0, show_default=True, help="0 = until Ctrl-C.")
@click.option("--day-seconds", type=float, default=600.0, show_default=True,
              help="The load's daily cycle, compressed into this long.")  # fmt: skip
@click.option("--incident-every", type=float, default=300.0, show_default=True,
              help="A surge over the link's capacity this often (first after 150 s).")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--config", "config", type=click.Path(path_type=Path, dir_okay=False))
def demo(
    broker: str | None,
    seconds: float,
    day_seconds: float,
    incident_every: float,
    seed: int,
    config: Path | None,
) -> None:
    """Publish endless, realistic flow records to flows.raw: every class on the lab's link
    (probe-1, interface 1), a daily load cycle and a surge now and then."""
    from streams.demo import DemoPlan, run_demo

    cfg = _load(config, **{"kafka.broker": broker})
    plan = DemoPlan(day_seconds=day_seconds, incident_every=incident_every)
    try:
        sent = asyncio.run(run_demo(cfg, plan, seconds=seconds, seed=seed))
    except InferwatchError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        return
    click.echo(f"demo: sent {sent} records")


@main.command()
@click.option("--interface", "-i", help="Capture live on this network interface (root).")
@click.option(
    "--pcap", type=click.Path(path_type=Path, dir_okay=False, exists=True), help="Read a capture."
)
@click.option("--broker", help="Kafka bootstrap server HOST:PORT.")
@click.option("--topic", help="Topic to publish to (default: kafka.topics.raw, flows.raw).")
@click.option("--exporter", default="probe-1", show_default=True, help="Exporter name in records.")
@click.option("--iface-index", type=int, default=1, show_default=True, help="iface_in in records.")
@click.option("--link", help="Explicit link id for every record (else exporter#iface_in).")
@click.option(
    "--first-packets",
    type=int,
    default=64,
    show_default=True,
    help="Packet summaries (size, direction, gap) kept per flow; 0-255.",
)
@click.option("--idle-timeout", type=int, default=15, show_default=True, help="Seconds.")
@click.option("--active-timeout", type=int, default=120, show_default=True, help="Seconds.")
@click.option("--bpf", help="BPF filter, e.g. 'tcp or udp'.")
@click.option(
    "--retransmissions/--no-retransmissions",
    default=True,
    show_default=True,
    help="Count TCP retransmissions per direction (a few microseconds per packet).",
)
@click.option("--config", "config", type=click.Path(path_type=Path, dir_okay=False))
def probe(
    interface: str | None,
    pcap: Path | None,
    broker: str | None,
    topic: str | None,
    exporter: str,
    iface_index: int,
    link: str | None,
    first_packets: int,
    idle_timeout: int,
    active_timeout: int,
    bpf: str | None,
    retransmissions: bool,
    config: Path | None,
) -> None:
    """Meter packets (--interface or --pcap) into native flow records on flows.raw.

    Flows carry per-direction counters and TCP retransmissions, the TLS/QUIC server name when
    visible and the sizes, directions and gaps of their first packets. A capture file is read
    to its end; a live interface until Ctrl-C or SIGTERM. Metering is nfstream's (docs/probe.md).
    """
    import asyncio

    from streams.probe import ProbeOptions, run_probe

    if (interface is None) == (pcap is None):
        raise click.UsageError("give exactly one of --interface and --pcap")
    cfg = _load(config, **{"kafka.broker": broker})
    topic = topic or cfg.kafka.topics.raw
    opts = ProbeOptions(
        source=interface or str(pcap),
        exporter=exporter,
        iface_in=iface_index,
        link=link,
        first_packets=first_packets,
        idle_timeout=idle_timeout,
        active_timeout=active_timeout,
        bpf_filter=bpf,
        retransmissions=retransmissions,
    )
    import multiprocessing
    import signal

    def stop(signum: int, frame: object) -> None:
        # nfstream meters in child processes: a SIGTERM to this one alone left them running
        # as orphans. Stop them, then leave as Ctrl-C does.
        for child in multiprocessing.active_children():
            child.terminate()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        sent = asyncio.run(run_probe(opts, cfg, topic))
    except InferwatchError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        return
    click.echo(f"{sent} flow records published to {topic}")


@main.group()
def lab() -> None:
    """The traffic lab: real packets in network namespaces, metered into Kafka (docs/lab.md)."""


@lab.command("record")
@click.option(
    "--scenario", required=True, help="A scenario file, or a name in lab/scenarios/ (e2e, ...)."
)
@click.option("--out", required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option("--minutes", type=float, help="Play this long; sessions grow in proportion.")
@click.option("--seed", type=int, help="Override the scenario's seed.")
@click.option("--no-sni", is_flag=True, help="Send no TLS server names.")
@click.option("--broker", help="Kafka bootstrap server HOST:PORT (kafka.broker).")
@click.option("--config", "config", type=click.Path(path_type=Path, dir_okay=False))
def lab_record(
    scenario: str,
    out: Path,
    minutes: float | None,
    seed: int | None,
    no_sni: bool,
    broker: str | None,
    config: Path | None,
) -> None:
    """Play a scenario (root) and write OUT/{lab.pcap,flows.jsonl,truth.jsonl,manifest.json}.

    Both metering paths (the probe, softflowd -> nfacctd) publish to a private topic of the
    broker, which is read back into flows.jsonl and then deleted.
    """
    from lab.record import record
    from lab.topology import LabError

    cfg = _load(config, **{"kafka.broker": broker})
    try:
        manifest = record(
            scenario, out, cfg.kafka.broker, minutes=minutes, seed=seed,
            sni=False if no_sni else None,
        )  # fmt: skip
    except (LabError, InferwatchError) as exc:
        raise click.ClickException(str(exc)) from exc
    rates = ", ".join(f"{p} {n}/{manifest['flows']}" for p, n in manifest["matched"].items())
    click.echo(f"{out}: {manifest['flows']} flows, {manifest['records']} records; matched {rates}")


@lab.command("sweep")
def lab_sweep() -> None:
    """Remove every lab (namespaces, bridge) a killed run left on this machine."""
    from lab.topology import sweep

    for prefix in sweep():
        click.echo(f"removed {prefix}")


@main.command("classify")
@click.option("--pcap", required=True, type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--names", type=click.Choice(["on", "off"]), default="on", show_default=True,
              help="off: behaviour only, the endpoint catalog is ignored.")  # fmt: skip
@click.option("--model", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="A classifier checkpoint (--save-model, or the worker's on disk). "
                   "Without it or --train: the worker's bootstrap datasets.")  # fmt: skip
@click.option("--train", "train_dirs", multiple=True,
              type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="Learn these recorded datasets first (repeatable).")  # fmt: skip
@click.option("--save-model", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the model (after --train) as a checkpoint here.")  # fmt: skip
@click.option("--catalog", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Endpoint catalog (default: the packaged one).")  # fmt: skip
@click.option("--summary/--no-summary", default=True, show_default=True,
              help="End with flows and bytes per class (on stderr).")  # fmt: skip
def classify_cmd(
    pcap: Path,
    names: str,
    model: Path | None,
    train_dirs: tuple[Path, ...],
    save_model: Path | None,
    catalog: Path | None,
    summary: bool,
) -> None:
    """Classify every flow of a capture offline: one JSON line per flow (5-tuple, bytes,
    class, probability, QoE estimates) through the probe's and the worker's own code, then a
    table of flows and bytes per class on stderr."""
    import orjson

    from streams.endpoints import DEFAULT_ENDPOINTS_PATH, load_endpoints
    from streams.offline import build_classifier, classify_pcap, summary_table
    from streams.probe import check_capture

    seen: list[tuple[str, int]] = []
    try:
        check_capture(pcap)  # before minutes of learning, not after
        cat = load_endpoints(catalog or DEFAULT_ENDPOINTS_PATH)
        clf = build_classifier(cat, names == "on", model, train_dirs)
        if save_model is not None:
            save_model.write_bytes(clf.model.dumps())
        for row in classify_pcap(pcap, clf):
            click.echo(orjson.dumps(row).decode())
            seen.append((row["class"], row["bytes"]))
    except (InferwatchError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from exc
    if summary:
        click.echo(f"# {pcap.name}, names {names}\n" + summary_table(seen), err=True)


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


@main.group("eval")
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

    from streams.endpoints import DEFAULT_ENDPOINTS_PATH, load_endpoints
    from streams.evaluate import run_eval

    try:
        cat = load_endpoints(catalog or DEFAULT_ENDPOINTS_PATH)
        report = run_eval(
            dataset, train_dirs, names == "on", cat, batch_size, seed, records, train_records,
            train_epochs,
        )  # fmt: skip
        if plot is not None:
            from detectors.classes import CLASSES
            from streams.plots import confusion_png

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

    from streams.anomaly_eval import run_anomaly_eval

    try:
        cfg = load_config(config_path)
        report = run_anomaly_eval(corpus, out, cfg.anomaly.detector.build, plot)
    except (InferwatchError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from exc
    _emit_report(report.as_dict(), report.text(), json_out)


@main.group()
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

    from streams import bench as b

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

    from streams.bench_model import run_model

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

    from streams.anomaly_eval import bench_anomaly as run

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

    from streams.bench import soak

    samples = soak(broker, minutes, rate, sample_seconds, stall)
    lines = [orjson.dumps(s).decode() for s in samples]
    for line in lines:
        click.echo(line)
    if out is not None:
        with out.open("a") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
