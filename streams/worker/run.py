"""Wiring of a worker, in one visible place: config -> metrics -> ingest, Faust app, HTTP."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
from typing import Any

import faust
from prometheus_client import disable_created_metrics

from detectors.anomaly import compile_kernel
from streams.config import Config, resolve_path
from streams.errors import ServiceError
from streams.kafka import ensure_topics
from streams.links.analysis import Analyzer
from streams.links.anomalies import LinkAnomalies
from streams.links.catalog import LinkCatalog
from streams.links.classification import Classification
from streams.links.congestion import LinkCongestion
from streams.links.metrics import (
    AnomalyMetrics,
    ClassifierMetrics,
    CongestionMetrics,
    LinkMetrics,
    LinkStateMetrics,
)
from streams.links.state import LinkStates
from streams.metrics import worker_registry
from streams.retry import retrying
from streams.worker import logs
from streams.worker.app import build_app
from streams.worker.http import HttpService, check_port
from streams.worker.ingest import IngestService
from streams.worker.metrics import IngestMetrics, LagCollector

log = logging.getLogger(__name__)


def prepare_topics(cfg: Config, wait_seconds: float = 60.0) -> int:
    """Create missing topics, waiting up to ``wait_seconds`` for the broker to answer; the
    replication factor of the topics on this cluster."""

    async def prepare() -> int:
        async for attempt in retrying(ServiceError, "topics", log, 1.0, 5.0, wait_seconds):
            with attempt:
                return (await ensure_topics(cfg, wait=10.0))[1]
        raise AssertionError("unreachable: retrying raises its last error")

    return asyncio.run(prepare())


class _Worker(faust.Worker):
    """faust.Worker that cannot hang while stopping.

    A stop (SIGTERM, or a service that crashed, for example while the broker vanished during
    start-up) waits for Kafka clients to close; with the broker gone that can take forever,
    and a hung process is never restarted by its supervisor. Once a stop begins, a watchdog
    thread ends the process after ``timeout`` seconds with status 1.
    """

    def __init__(
        self, *args: Any, shutdown_timeout: float, library_level: str = "WARNING", **kwargs: Any
    ) -> None:
        self._library_level = library_level
        super().__init__(*args, **kwargs)
        self._shutdown_timeout = shutdown_timeout
        self._watchdog: threading.Timer | None = None

    def _arm_watchdog(self) -> None:
        if self._watchdog is None:
            self._watchdog = threading.Timer(self._shutdown_timeout, self._give_up)
            self._watchdog.daemon = True
            self._watchdog.start()

    def _give_up(self) -> None:
        log.error("stopping took more than %.0fs; exiting with status 1", self._shutdown_timeout)
        logging.shutdown()
        os._exit(1)

    async def stop(self) -> None:
        self._arm_watchdog()
        await super().stop()

    def on_worker_shutdown(self) -> None:
        self._arm_watchdog()

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        logs.install(logger)
        logs.quiet_libraries(self._library_level)


def _basic_auth(cfg: Config) -> tuple[str, str] | None:
    password = cfg.http.password()
    if cfg.http.basic_auth_user and password:
        return cfg.http.basic_auth_user, password
    return None


def _tls(cfg: Config) -> tuple[str, str] | None:
    h = cfg.http
    return (h.tls_cert_file, h.tls_key_file) if h.tls_cert_file and h.tls_key_file else None


def tune_gc(threshold: int) -> None:
    """Collect the young generation every ``threshold`` net new container objects instead of
    Python's 700. A batch of 10,000 records allocates tens of thousands of short-lived ones
    (Kafka records, packet lists): at 700 the collector ran about 170 times a second, with a
    full collection (which walks every live object: the models, the link state) every
    second, 3.4 s of the 18.7 s of CPU a million benchmark records took. Cycles are still
    collected, less often; the state is bounded, so memory stays bounded (bench/README.md)."""
    if threshold > 0:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(threshold, gen1, gen2)


def run_worker(cfg: Config) -> None:
    """Run a worker until SIGTERM/SIGINT; returns never (exits the process)."""
    check_port(cfg.http.host, cfg.http.port)
    tune_gc(cfg.worker.gc_threshold)
    replicas = cfg.kafka.replication_factor or 1
    if cfg.kafka.create_topics:
        replicas = prepare_topics(cfg)
    disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: they double the series count for nothing
    registry = worker_registry()
    metrics = IngestMetrics(registry)
    links = LinkCatalog.load(resolve_path(cfg.analysis.links_file))
    classification = None
    if cfg.classify.enabled:
        classification = Classification(cfg.classify, ClassifierMetrics(registry))
    anomalies = None
    if cfg.anomaly.enabled:
        spent = compile_kernel()  # now, not in the event loop at the first closed window
        if spent > 1.0:
            log.info("anomaly detector compiled in %.1f s (cached for later starts)", spent)
        anomalies = LinkAnomalies(
            cfg.anomaly, AnomalyMetrics(registry), cfg.analysis.window_seconds
        )
    congestion = None
    if cfg.congestion.enabled:
        congestion = LinkCongestion(
            cfg.congestion, CongestionMetrics(registry), cfg.analysis.window_seconds
        )
    states = None
    parts = {"anomaly": anomalies, "congestion": congestion}
    if cfg.linkstate.checkpoint == "kafka" and any(parts.values()):
        states = LinkStates(
            cfg.linkstate.checkpoint_seconds,
            LinkStateMetrics(registry),
            {name: part for name, part in parts.items() if part is not None},
        )
    analyzer = Analyzer(
        cfg.analysis, links, LinkMetrics(registry), classification=classification,
        anomalies=anomalies, congestion=congestion, states=states,
    )  # fmt: skip
    app = build_app(cfg, metrics, analyzer, replicas)
    ingest = IngestService(cfg, metrics, links)
    LagCollector(ingest.lag, registry)
    http = HttpService(
        cfg.http.host,
        cfg.http.port,
        registry,
        ingest.healthy,
        json_routes={"/toptalkers": analyzer.top_talkers},
        basic_auth=_basic_auth(cfg),
        tls=_tls(cfg),
    )
    worker = _Worker(
        app,
        ingest,
        http,
        loglevel=cfg.log_level.upper(),
        quiet=True,
        redirect_stdouts=False,
        shutdown_timeout=cfg.worker.shutdown_timeout_seconds,
        library_level=cfg.library_log_level.upper(),
    )
    worker.execute_from_commandline()
