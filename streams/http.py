"""HTTP endpoints of a worker: Prometheus text on /metrics, a health check on /healthz."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import mode
import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

HealthCheck = Callable[[], tuple[bool, str]]


class HttpService(mode.Service):
    """Inert until started; serves on ``host:port`` (port 0 picks a free one, see ``port``)."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        health: HealthCheck,
        json_routes: dict[str, Callable[[], Any]] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.host = host
        self.port = port
        self.registry = registry
        self.health = health
        self.json_routes = json_routes or {}
        self._runner: web.AppRunner | None = None

    def _json(self, source: Callable[[], Any]) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=orjson.dumps(source()), content_type="application/json")

        return handler

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        ok, detail = self.health()
        body = orjson.dumps({"status": "ok" if ok else "unhealthy", "detail": detail})
        return web.Response(body=body, status=200 if ok else 503, content_type="application/json")

    async def on_start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        for path, source in self.json_routes.items():
            app.router.add_get(path, self._json(source))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("serving /metrics and /healthz on http://%s:%d", self.host, self.port)

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
