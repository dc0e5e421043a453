"""The lab's chat completions over HTTP/3 (QUIC, UDP port 443), as browsers reach AI chat.

Browsers reach most AI chat services over HTTP/3 when the server offers it, so a flow of
streamed tokens on an operator's link is as likely to be QUIC as TCP. The server answers
``POST /v1/chat/completions`` with the same timing model as the lab's HTTPS server (a time to
first token, then one token per server-sent event); the client records the arrival of every
token. Built on aioquic (QUIC and HTTP/3 in Python); the lab's self-signed certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ProtocolNegotiated, QuicEvent

# (body, send) -> the answer: ``send(data, end)`` writes one piece of the response body
Answer = Callable[[dict[str, Any], Callable[[bytes, bool], None]], Awaitable[None]]


class _Server(QuicConnectionProtocol):
    def __init__(self, *args: Any, answer: Answer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answer = answer
        self._h3: H3Connection | None = None
        self._bodies: dict[int, bytearray] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self._h3 = H3Connection(self._quic)
        if self._h3 is None:
            return
        for ev in self._h3.handle_event(event):
            if not isinstance(ev, HeadersReceived | DataReceived):
                continue
            if isinstance(ev, HeadersReceived):
                self._bodies[ev.stream_id] = bytearray()
            elif ev.stream_id in self._bodies:
                self._bodies[ev.stream_id] += ev.data
            if ev.stream_ended and ev.stream_id in self._bodies:
                body = bytes(self._bodies.pop(ev.stream_id))
                task = asyncio.ensure_future(self._respond(ev.stream_id, body))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _respond(self, stream_id: int, body: bytes) -> None:
        assert self._h3 is not None
        h3 = self._h3
        h3.send_headers(stream_id, [(b":status", b"200"), (b"content-type", b"text/event-stream")])
        started = False

        def send(data: bytes, end: bool) -> None:
            nonlocal started
            started = True
            h3.send_data(stream_id, data, end_stream=end)
            self.transmit()

        try:
            await self.answer(orjson.loads(body), send)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            if not started:
                send(b"", True)


async def serve_h3(host: str, port: int, cert: Path, key: Path, answer: Answer) -> Any:
    """Serve chat completions over HTTP/3 on UDP ``host:port``; returns the server, whose
    ``close()`` stops it."""
    config = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
    config.load_cert_chain(str(cert), str(key))
    protocol = functools.partial(_Server, answer=answer)
    return await serve(host, port, configuration=config, create_protocol=protocol)


class _Client(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.queues: dict[int, asyncio.Queue[H3Event]] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        for ev in self.h3.handle_event(event):
            queue = self.queues.get(getattr(ev, "stream_id", -1))
            if queue is not None:
                queue.put_nowait(ev)

    async def post(self, authority: str, path: str, body: bytes) -> AsyncIterator[bytes]:
        """Send one request; yield the response body's pieces as they arrive."""
        sid = self._quic.get_next_available_stream_id()
        queue = self.queues[sid] = asyncio.Queue()
        self.h3.send_headers(sid, [
            (b":method", b"POST"), (b":scheme", b"https"), (b":authority", authority.encode()),
            (b":path", path.encode()), (b"content-type", b"application/json"),
        ])  # fmt: skip
        self.h3.send_data(sid, body, end_stream=True)
        self.transmit()
        try:
            while True:
                ev = await queue.get()
                if isinstance(ev, DataReceived) and ev.data:
                    yield ev.data
                if getattr(ev, "stream_ended", False):
                    return
        finally:
            self.queues.pop(sid, None)


def free_udp_port(ip: str) -> int:
    """A UDP port the kernel just handed out on ``ip`` (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((ip, 0))
        port: int = probe.getsockname()[1]
    return port


@contextlib.asynccontextmanager
async def h3_session(
    server_ip: str, port: int, local_port: int, sni: str | None
) -> AsyncIterator[_Client]:
    """One QUIC connection (one flow) from ``local_port``; ``sni`` None sends no name."""
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, verify_mode=ssl.CERT_NONE)
    config.server_name = sni  # None: no server name in the ClientHello
    async with connect(
        server_ip, port, configuration=config, create_protocol=_Client, local_port=local_port
    ) as client:
        assert isinstance(client, _Client)
        yield client


def token_times(pieces: list[tuple[float, bytes]]) -> list[float]:
    """The arrival time of every token event (``data: {``) in timed pieces of an SSE body.

    >>> token_times([(1.0, b'data: {"a": 1}\\n\\ndata: {"a": 2}\\n\\n'), (2.0, b"data: [DONE]")])
    [1.0, 1.0]
    """
    return [t for t, data in pieces for _ in range(data.count(b"data: {"))]
