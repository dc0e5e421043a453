"""HTTP endpoints of a worker: Prometheus text on /metrics, a health check on /healthz."""

from __future__ import annotations

import base64
import hmac
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

import mode
import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from streams.errors import ServiceError

log = logging.getLogger(__name__)

HealthCheck = Callable[[], tuple[bool, str]]


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6, as the host is)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family)


def check_port(host: str, port: int) -> None:
    """ServiceError in one line when /metrics cannot be served on ``host:port``.

    >>> with socket.create_server(("127.0.0.1", 0)) as taken:
    ...     check_port("127.0.0.1", taken.getsockname()[1])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streams.errors.ServiceError: cannot serve /metrics on 127.0.0.1:...: Address already in use...
    """
    try:
        listen(host, port).close()
    except OSError as exc:
        raise ServiceError(
            f"cannot serve /metrics on {host}:{port}: {exc.strerror} (another worker? choose "
            f"another with --metrics-port or INFERWATCH_HTTP__PORT)"
        ) from exc


class HttpService(mode.Service):
    """Inert until started; serves on ``host:port`` (port 0 picks a free one, see ``port``)."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        health: HealthCheck,
        json_routes: dict[str, Callable[[], Any]] | None = None,
        *,
        basic_auth: tuple[str, str] | None = None,
        tls: tuple[str, str] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self._auth_header = (
            None
            if basic_auth is None
            else "Basic " + base64.b64encode(f"{basic_auth[0]}:{basic_auth[1]}".encode()).decode()
        )
        self.tls = tls
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
        # ?name[]=...: only those metric families, as prometheus_client's own handlers allow
        names = request.query.getall("name[]", [])
        registry = self.registry.restricted_registry(names) if names else self.registry
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        ok, detail = self.health()
        body = orjson.dumps({"status": "ok" if ok else "unhealthy", "detail": detail})
        return web.Response(body=body, status=200 if ok else 503, content_type="application/json")

    @web.middleware
    async def _require_auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Basic auth on every endpoint but /healthz (orchestrators probe it without secrets)."""
        if self._auth_header is not None and request.path != "/healthz":
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), self._auth_header.encode()):
                return web.Response(
                    status=401, headers={"WWW-Authenticate": 'Basic realm="inferwatch"'}
                )
        response: web.StreamResponse = await handler(request)
        return response

    async def on_start(self) -> None:
        app = web.Application(middlewares=[self._require_auth])
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        for path, source in self.json_routes.items():
            app.router.add_get(path, self._json(source))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        ssl_context = None
        if self.tls is not None:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(*self.tls)
        sock = listen(self.host, self.port)
        self.port = sock.getsockname()[1]  # the one chosen, when asked for port 0
        await web.SockSite(self._runner, sock, ssl_context=ssl_context).start()
        scheme = "https" if self.tls else "http"
        auth = " (basic auth)" if self._auth_header else ""
        log.info(
            "serving /metrics and /healthz on %s://%s:%d%s", scheme, self.host, self.port, auth
        )

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
