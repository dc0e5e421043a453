"""`inferwatch lab`: the traffic lab's commands, registered with the inferwatch command
through the entry-point group ``inferwatch.commands`` (pyproject.toml), so that streams/ never
imports the lab."""

from __future__ import annotations

from pathlib import Path

import click

from streams.cli import load_cli_config
from streams.errors import InferwatchError


@click.group()
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

    cfg = load_cli_config(config, **{"kafka.broker": broker})
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
