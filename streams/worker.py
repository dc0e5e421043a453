"""Wiring of a worker, in one visible place: config -> metrics -> ingest, Faust app, HTTP."""

from __future__ import annotations

import asyncio
import logging
import time

import faust
from prometheus_client import CollectorRegistry, disable_created_metrics

from streams.analysis import Analyzer
from streams.app import build_app
from streams.config import Config, resolve_path
from streams.errors import ServiceError
from streams.http import HttpService
from streams.ingest.service import IngestService
from streams.links import LinkCatalog
from streams.metrics import IngestMetrics, LagCollector, LinkMetrics
from streams.topics import ensure_topics

log = logging.getLogger(__name__)


def prepare_topics(cfg: Config, wait_seconds: float = 60.0) -> None:
    """Create missing topics, waiting up to ``wait_seconds`` for the broker to answer."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            asyncio.run(ensure_topics(cfg, wait=10.0))
            return
        except ServiceError as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("%s; retrying", exc)
            time.sleep(2.0)


def run_worker(cfg: Config) -> None:
    """Run a worker until SIGTERM/SIGINT; returns never (exits the process)."""
    if cfg.kafka.create_topics:
        prepare_topics(cfg)
    disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: they double the series count for nothing
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)
    links = LinkCatalog.load(resolve_path(cfg.analysis.links_file))
    analyzer = Analyzer(cfg.analysis, links, LinkMetrics(registry))
    app = build_app(cfg, metrics, analyzer)
    ingest = IngestService(cfg, metrics, links)
    LagCollector(ingest.lag, registry)
    http = HttpService(
        cfg.http.host,
        cfg.http.port,
        registry,
        ingest.healthy,
        json_routes={"/toptalkers": analyzer.top_talkers},
    )
    worker = faust.Worker(
        app,
        ingest,
        http,
        loglevel=cfg.log_level.upper(),
        quiet=True,
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()
