"""The ``inferwatch`` command."""

from __future__ import annotations

import asyncio
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path

import click

from streams.config import DEFAULT_CONFIG_PATH, Config, load_config
from streams.errors import ConfigError, InferwatchError
from streams.tools.cli import bench, eval_group


def load_cli_config(config: Path | None, **overrides: object) -> Config:
    path = config or (DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None)
    try:
        return load_config(path, env=os.environ, overrides=overrides)
    except ConfigError as exc:
        raise click.ClickException(f"invalid configuration: {exc}") from exc


class _Commands(click.Group):
    """The commands, and those other packages register under the entry-point group
    ``inferwatch.commands`` (the traffic lab's ``inferwatch lab``), loaded when first listed or
    asked for: streams/ never imports them."""

    _plugins_loaded = False

    def _plugins(self) -> None:
        if not self._plugins_loaded:
            self._plugins_loaded = True
            for ep in entry_points(group="inferwatch.commands"):
                self.add_command(ep.load(), ep.name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._plugins()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._plugins()
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
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
    from streams.worker.run import run_worker

    cfg = load_cli_config(
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

    from streams.dispatch.dispatcher import dispatch_forever

    cfg = load_cli_config(config, **{"kafka.broker": broker})
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
    from streams.dispatch.sink import run_sink

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
    from streams.links.catalog import LinkCatalog
    from streams.links.endpoints import load_endpoints

    cfg = load_cli_config(file)
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
    from streams.tools.replay import replay_file

    cfg = load_cli_config(config, **{"kafka.broker": broker})
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
    from streams.tools.demo import DemoPlan, run_demo

    cfg = load_cli_config(config, **{"kafka.broker": broker})
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

    from streams.probe.meter import ProbeOptions, run_probe

    if (interface is None) == (pcap is None):
        raise click.UsageError("give exactly one of --interface and --pcap")
    cfg = load_cli_config(config, **{"kafka.broker": broker})
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

    from streams.links.endpoints import DEFAULT_ENDPOINTS_PATH, load_endpoints
    from streams.probe.meter import check_capture
    from streams.tools.offline import build_classifier, classify_pcap, summary_table

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


main.add_command(eval_group)
main.add_command(bench)


if __name__ == "__main__":
    sys.exit(main())
