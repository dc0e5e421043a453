"""Traffic generators with ground truth: one server, one client, every class.

Over 400 lines, for now: the lab's server and client live in one module that
``python -m lab.traffic server|client`` runs in each namespace; they are yet to be split.

``python -m lab.traffic server --dir D`` runs in the server namespace: an HTTPS server (aiohttp,
TLS with a self-signed certificate for every lab server name) speaking an OpenAI-compatible
chat completions API (``stream: true`` as server-sent events, or one JSON response), a
realtime WebSocket, video segments, bulk and web objects; a UDP RTP-like echo for VoIP; and,
for the class ``other``, a remote shell (plain TCP, port 22: keystrokes echoed, command output
in bursts), a DNS-like resolver (UDP, port 53) and IoT telemetry (MQTT-like over TLS, port
8883: small readings every few seconds, acknowledged, now and then a command back).

``python -m lab.traffic client --scenario FILE --out FILE`` runs in the client namespace and
plays the scenario: sessions of each class at seeded start times. For every connection it
makes, it writes one ground-truth line (JSON) at the source: the 5-tuple, the class, the
server name it sent (or none), start and end, and for AI requests the request time, time to
first token, token count and the arrival time of every token.

AI timing model (docs/lab.md): request size and output length come from rows of the Azure LLM
inference trace (``lab/data``); the server waits a time to first token of 0.12 s + 40 µs per
context token, times a log-normal factor (sigma 0.3), then streams one token per chunk with
log-normal gaps around 25 ms (sigma 0.4). Both draws are seeded by the request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import functools
import math
import random
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiohttp import ClientSession, ClientTimeout, TCPConnector, TraceConfig, WSMsgType, web

from detectors.classes import AI_CLASSES as AI
from detectors.classes import CLASSES as ALL_CLASSES
from lab.quic import free_udp_port, h3_session, serve_h3, token_times

HTTPS_PORT = 443
RTP_PORT = 5004
SHELL_PORT = 22
DNS_PORT = 53
DNS_TRIES = 3  # queries sent for one lookup at most, a second apart
DNS_TIMEOUT_S = 1.0
TELEMETRY_PORT = 8883
OTHER_KINDS = ("shell", "dns", "telemetry")  # an ``other`` session is one of these, in turn
TRACE = Path(__file__).parent / "data" / "azure2023_conv_head2000.csv"
FRAME_SECONDS = 0.02
CLASSES = ALL_CLASSES  # the lab makes every class
AI_CLASSES = frozenset(AI)
CHAT_CLASSES = ("ai-chat-stream", "ai-api")  # the ones that may go over HTTP/3, in styles


# ----------------------------------------------------------------------------------- timing


def ttft_seconds(context_tokens: int, rng: random.Random) -> float:
    return (0.12 + 40e-6 * context_tokens) * math.exp(rng.gauss(0.0, 0.3))


def token_gap_seconds(rng: random.Random) -> float:
    return 0.025 * math.exp(rng.gauss(0.0, 0.4))


def load_trace(path: Path = TRACE) -> list[tuple[float, int, int]]:
    """(seconds since the first request, context tokens, generated tokens) per trace row."""
    rows: list[tuple[float, int, int]] = []
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            stamp = r["TIMESTAMP"][:26]  # microseconds: strptime takes at most six digits
            t = time.mktime(time.strptime(stamp.split(".")[0], "%Y-%m-%d %H:%M:%S"))
            t += float("0." + stamp.split(".")[1]) if "." in stamp else 0.0
            rows.append((t, int(r["ContextTokens"]), max(1, int(r["GeneratedTokens"]))))
    t0 = rows[0][0]
    return [(t - t0, c, g) for t, c, g in rows]


# ----------------------------------------------------------------------------------- server


def make_certificate(directory: Path, names: list[str]) -> tuple[Path, Path]:
    """A self-signed certificate for ``names`` (openssl), made once per directory."""
    cert, key = directory / "lab-cert.pem", directory / "lab-key.pem"
    if not cert.exists():
        san = ",".join(f"DNS:{n}" for n in names) or "DNS:lab.invalid"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "30", "-subj", "/CN=inferwatch-lab", "-addext",
             f"subjectAltName={san}", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
    return cert, key


async def completion(body: dict[str, Any]) -> AsyncIterator[bytes]:
    """The answer to a chat completions request, piece by piece as the model would send it:
    after the time to first token, one server-sent event per token (``stream``), or one JSON
    object once the whole generation is done."""
    tokens = int(body.get("max_tokens", 16))
    context = int(body.get("context_tokens", len(str(body.get("messages", ""))) // 4))
    rng = random.Random(int(body.get("seed", 0)))
    await asyncio.sleep(ttft_seconds(context, rng))
    if not body.get("stream"):
        for _ in range(tokens - 1):  # the whole generation happens before the one response
            await asyncio.sleep(token_gap_seconds(rng))
        text = " ".join(f"tok{i}" for i in range(tokens))
        yield orjson.dumps(
            {"object": "chat.completion", "choices": [{"message": {"content": text}}],
             "usage": {"prompt_tokens": context, "completion_tokens": tokens}}
        )  # fmt: skip
        return
    style = EVENT_STYLES.get(str(body.get("style", "compact")), _compact_event)
    for i in range(tokens):
        if i:
            await asyncio.sleep(token_gap_seconds(rng))
        yield style(i)
    yield b"data: [DONE]\n\n"


# One server-sent event per token, in the shapes real services send them (sizes per event):
def _compact_event(i: int) -> bytes:  # a bare delta, ~85 bytes
    chunk = {"object": "chat.completion.chunk", "choices": [{"delta": {"content": f" tok{i}"}}]}
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _openai_event(i: int) -> bytes:  # OpenAI's chat completions chunk, ~260 bytes
    chunk = {
        "id": "chatcmpl-lab7Hq2kX9vN4mZ1pR8sT3uW6yB0", "object": "chat.completion.chunk",
        "created": 1764300000, "model": "lab-llm-2026-01-01", "system_fingerprint": "fp_lab0a1b2c",
        "choices": [{"index": 0, "delta": {"content": f" tok{i}"}, "logprobs": None,
                     "finish_reason": None}],
    }  # fmt: skip
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _anthropic_event(i: int) -> bytes:  # Anthropic's messages stream, ~120 bytes
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta",
             "text": f" tok{i}"}}  # fmt: skip
    return b"event: content_block_delta\ndata: " + orjson.dumps(delta) + b"\n\n"


def _webui_event(i: int) -> bytes:  # a web UI resending the message so far: 230 bytes, growing
    text = " ".join(f"tok{k}" for k in range(i + 1))
    message = {
        "message": {"id": "3f1c2a9e-lab", "author": {"role": "assistant"},
                    "content": {"content_type": "text", "parts": [text]},
                    "status": "in_progress", "metadata": {"model_slug": "lab-llm"}},
        "conversation_id": "0b7d5e44-lab", "error": None,
    }  # fmt: skip
    return b"data: " + orjson.dumps(message) + b"\n\n"


EVENT_STYLES = {
    "compact": _compact_event, "openai": _openai_event, "anthropic": _anthropic_event,
    "webui": _webui_event,
}  # fmt: skip


async def _chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if not body.get("stream"):
        answer = [piece async for piece in completion(body)]
        return web.Response(body=answer[0], content_type="application/json")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    async for piece in completion(body):
        await resp.write(piece)
    await resp.write_eof()
    return resp


async def _chat_h3(body: dict[str, Any], send: Callable[[bytes, bool], None]) -> None:
    """The same answer over HTTP/3."""
    async for piece in completion(body):
        send(piece, False)
    send(b"", True)


async def _realtime(request: web.Request) -> web.WebSocketResponse:
    """Audio frames both ways: the client talks, the 'assistant' answers in bursts of frames."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    rng = random.Random(request.query.get("seed", "0"))
    heard = 0
    async for msg in ws:
        if msg.type != WSMsgType.BINARY:
            break
        heard += 1
        if heard % 50 == 0:  # after every second of speech, a spoken answer of 0.5-2 s
            for _ in range(rng.randint(25, 100)):
                await ws.send_bytes(bytes(rng.randint(120, 200)))
                await asyncio.sleep(FRAME_SECONDS)
    return ws


async def _blob(request: web.Request) -> web.StreamResponse:
    size = min(int(request.query.get("bytes", "1000")), 1 << 30)
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    resp.content_length = size
    await resp.prepare(request)
    block = bytes(65536)
    while size > 0:
        await resp.write(block[: min(size, len(block))])
        size -= len(block)
    await resp.write_eof()
    return resp


class _RtpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)  # the far end talks at the same 20 ms cadence


class _Resolver(asyncio.DatagramProtocol):
    """A DNS-like answer per query: its size the query names (two bytes after the first)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        size = int.from_bytes(data[2:4], "big") if len(data) >= 4 else 64
        self.transport.sendto(data[:2] + bytes(max(12, min(size, 1400)) - 2), addr)


async def _shell(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Each keystroke message echoed; a command (first byte 1) answered by output of the size
    its next four bytes name, in a burst."""
    try:
        while head := await reader.read(512):
            if head[0] == 1 and len(head) >= 5:
                writer.write(bytes(min(int.from_bytes(head[1:5], "big"), 1 << 22)))
            else:
                writer.write(head)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def _telemetry(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A 4-byte acknowledgement per reading; a reading with first byte 1 also gets a command
    of the size its second byte names."""
    try:
        while msg := await reader.read(1024):
            writer.write(b"\x40\x02\x00\x01")
            if msg[0] == 1 and len(msg) >= 2:
                writer.write(b"\x30" + bytes(max(msg[1], 8)))
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def serve(directory: Path, host: str, names: list[str]) -> None:
    cert, key = make_certificate(directory, names)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_get("/v1/realtime", _realtime)
    app.router.add_get("/blob", _blob)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, HTTPS_PORT, ssl_context=ctx, backlog=512).start()
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(_RtpEcho, local_addr=(host, RTP_PORT))
    await loop.create_datagram_endpoint(_Resolver, local_addr=(host, DNS_PORT))
    await asyncio.start_server(_shell, host, SHELL_PORT)
    await asyncio.start_server(_telemetry, host, TELEMETRY_PORT, ssl=ctx)
    await serve_h3(host, HTTPS_PORT, cert, key, _chat_h3)  # UDP 443 beside the TCP one
    (directory / "server.ready").write_text("ready\n")
    await asyncio.Event().wait()


# ----------------------------------------------------------------------------------- client


@dataclass
class Scenario:
    name: str
    seed: int
    seconds: float
    sni: bool
    server_ip: str
    classes: dict[str, dict[str, Any]]
    names: dict[str, list[str]]

    @classmethod
    def load(cls, path: Path, server_ip: str) -> Scenario:
        raw = yaml.safe_load(path.read_text())
        unknown = set(raw.get("classes", {})) - set(CLASSES)
        if unknown:
            raise ValueError(f"{path}: unknown classes {sorted(unknown)}; known: {CLASSES}")
        for name, spec in raw["classes"].items():
            arrivals = (spec or {}).get("arrivals", "seeded")
            if arrivals not in ("seeded", "trace"):
                raise ValueError(f"{path}: {name}: arrivals is 'seeded' or 'trace'")
            if arrivals == "trace" and name not in CHAT_CLASSES:
                raise ValueError(f"{path}: {name}: trace arrivals are for ai-chat-stream, ai-api")
            spec = spec or {}
            if ("quic_share" in spec or "styles" in spec) and name not in CHAT_CLASSES:
                raise ValueError(f"{path}: {name}: quic_share and styles are for {CHAT_CLASSES}")
            if not 0 <= float(spec.get("quic_share", 0)) <= 1:
                raise ValueError(f"{path}: {name}: quic_share is a share, 0 to 1")
            styles = spec.get("styles")
            if styles is not None and (not styles or set(styles) - set(EVENT_STYLES)):
                raise ValueError(
                    f"{path}: {name}: styles is a list of some of {sorted(EVENT_STYLES)},"
                    f" not {styles!r}"
                )
        return cls(
            name=raw["name"],
            seed=int(raw.get("seed", 1)),
            seconds=float(raw.get("seconds", 60)),
            sni=bool(raw.get("sni", True)),
            server_ip=server_ip,
            classes={k: dict(v or {}) for k, v in raw["classes"].items()},
            names={k: list(v) for k, v in raw.get("names", {}).items()},
        )


class _Answer(asyncio.DatagramProtocol):
    def __init__(self, done: asyncio.Future[int]) -> None:
        self.done = done

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.done.done():
            self.done.set_result(len(data))


async def _headers_sent(session: Any, ctx: Any, params: Any) -> None:
    if isinstance(ctx.trace_request_ctx, dict):
        ctx.trace_request_ctx["headers_sent"] = time.time()


class Client:
    def __init__(self, scenario: Scenario, out: Path, client_ip: str) -> None:
        self.s = scenario
        self.client_ip = client_ip
        self.out = out.open("ab")
        self.trace = load_trace()
        self.ctx = ssl.create_default_context()
        self.ctx.check_hostname = False
        self.ctx.verify_mode = ssl.CERT_NONE  # the lab's own self-signed server

    def record(self, **fields: Any) -> None:
        self.out.write(orjson.dumps(fields) + b"\n")
        self.out.flush()

    def sni_for(self, cls: str, rng: random.Random) -> str | None:
        names = self.s.names.get(cls) or [f"{cls}.lab.invalid"]
        name = rng.choice(names)  # drawn either way: hiding names changes nothing else
        return name if self.s.sni else None

    def session(self) -> tuple[ClientSession, tuple[str, int]]:
        """One connection per session, from a source port chosen here: one flow per line.

        The port is one the kernel just handed out (bound, then released), so the ground truth
        names the flow's 5-tuple without asking the HTTP client for its socket.
        """
        with socket.socket() as probe:
            probe.bind((self.client_ip, 0))
            sock: tuple[str, int] = probe.getsockname()[:2]
        connector = TCPConnector(limit=1, ssl=self.ctx, local_addr=sock)
        trace = TraceConfig()
        trace.on_request_headers_sent.append(_headers_sent)
        session = ClientSession(
            connector=connector, timeout=ClientTimeout(total=600), trace_configs=[trace]
        )
        return session, sock

    def url(self, path: str) -> str:
        return f"https://{self.s.server_ip}:{HTTPS_PORT}{path}"

    def flow(
        self, cls: str, sock: tuple[str, int], sni: str | None, start: float, proto: int = 6
    ) -> dict[str, Any]:
        return {
            "class": cls, "proto": proto, "client_ip": sock[0], "client_port": sock[1],
            "server_ip": self.s.server_ip, "server_port": HTTPS_PORT, "sni": sni,
            "start": start,
        }  # fmt: skip

    async def chat(
        self,
        cls: str,
        rng: random.Random,
        stream: bool,
        n: int = 1,
        row: tuple[float, int, int] | None = None,
        quic: bool = False,
        style: str = "compact",
    ) -> None:
        """``n`` requests in one connection (n > 1: an agentic chain with growing requests).

        ``row``: the trace row of the first request (trace arrivals); else drawn from ``rng``.
        ``quic``: over HTTP/3 (one QUIC connection, UDP) instead of HTTPS over TCP.
        ``style``: the shape of the streamed events (``EVENT_STYLES``).
        """
        sni = self.sni_for(cls, rng)
        start = time.time()
        requests: list[dict[str, Any]] = []
        bodies = []
        context = 0
        for i in range(n):
            _, ctx_tokens, gen_tokens = row if row and i == 0 else rng.choice(self.trace)
            context = max(context + ctx_tokens // 4, ctx_tokens) if n > 1 else ctx_tokens
            tokens = min(gen_tokens, 60) if n > 1 else gen_tokens
            bodies.append({
                "model": "lab-llm", "stream": stream, "max_tokens": tokens,
                "context_tokens": context, "seed": rng.getrandbits(32),
                "messages": [{"role": "user", "content": "x" * (4 * context)}],
                **({"style": style} if style != "compact" else {}),
            })  # fmt: skip
        shape = {"style": style} if stream and style != "compact" else {}  # in the truth
        if quic:
            sock = (self.client_ip, free_udp_port(self.client_ip))
            async with h3_session(self.s.server_ip, HTTPS_PORT, sock[1], sni) as h3:
                for body in bodies:
                    sent = time.time()  # connected: the request's headers go out now
                    pieces = [
                        (time.time(), piece)
                        async for piece in h3.post(
                            sni or self.s.server_ip, "/v1/chat/completions", orjson.dumps(body)
                        )
                    ]
                    arrivals = token_times(pieces) if stream else [pieces[-1][0]]
                    requests.append(self._request(body, sent, sent, arrivals, stream))
            self.record(**self.flow(cls, sock, sni, start, proto=17), end=time.time(),
                        requests=requests, **shape)  # fmt: skip
            return
        http, sock = self.session()
        async with http:
            for body in bodies:
                called = time.time()
                trace_ctx: dict[str, float] = {}
                async with http.post(
                    self.url("/v1/chat/completions"), json=body, server_hostname=sni or None,
                    trace_request_ctx=trace_ctx,
                ) as resp:  # fmt: skip
                    resp.raise_for_status()
                    arrivals = []
                    if stream:
                        content = resp.content
                        arrivals = [time.time() async for ln in content if ln[:7] == b"data: {"]
                    else:
                        await resp.read()
                        arrivals.append(time.time())
                # the request starts when its headers are written: after connecting (TCP, TLS)
                sent = trace_ctx.get("headers_sent", called)
                requests.append(self._request(body, called, sent, arrivals, stream))
        self.record(**self.flow(cls, sock, sni, start), end=time.time(), requests=requests,
                    **shape)  # fmt: skip

    @staticmethod
    def _request(
        body: dict[str, Any], called: float, sent: float, arrivals: list[float], stream: bool
    ) -> dict[str, Any]:
        """A request's ground truth: when it went out, its size, and when its tokens came."""
        times = [t - sent for t in arrivals]
        return {
            "request_time": sent, "connect_s": round(sent - called, 4),
            "context_tokens": body["context_tokens"], "tokens": body["max_tokens"],
            "ttft_s": times[0] if times else None,
            "token_times_s": [round(t, 4) for t in times] if stream else [],
        }  # fmt: skip

    async def agentic(self, rng: random.Random, fanout: int, steps: int) -> None:
        """A burst of parallel tool-call chains, each a few short calls with growing context."""
        # one generator per chain: the chains run concurrently, their draws must not interleave
        chains = [random.Random(rng.getrandbits(64)) for _ in range(fanout)]
        await asyncio.gather(*(self.chat("ai-agentic", r, False, steps) for r in chains))

    async def realtime(self, rng: random.Random, seconds: float) -> None:
        sni = self.sni_for("ai-realtime", rng)
        start = time.time()
        http, sock = self.session()
        async with (
            http,
            http.ws_connect(self.url("/v1/realtime"), server_hostname=sni or None) as ws,
        ):

            async def drain() -> None:
                async for _ in ws:
                    pass

            reader = asyncio.create_task(drain())
            next_at = time.monotonic()
            while time.time() - start < seconds:
                await ws.send_bytes(bytes(rng.randint(120, 200)))
                next_at += FRAME_SECONDS
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            await ws.close()
            reader.cancel()
        self.record(**self.flow("ai-realtime", sock, sni, start), end=time.time())

    async def download(self, cls: str, rng: random.Random, sizes: list[int], gap: float) -> None:
        """Objects one after another on one connection (video segments, web page, bulk)."""
        sni = self.sni_for(cls, rng)
        start = time.time()
        http, sock = self.session()
        async with http:
            for i, size in enumerate(sizes):
                if i and gap:
                    await asyncio.sleep(gap)
                url = self.url(f"/blob?bytes={size}")
                async with http.get(url, server_hostname=sni or None) as r:
                    r.raise_for_status()
                    await r.read()
        self.record(**self.flow(cls, sock, sni, start), end=time.time(), objects=len(sizes))

    async def voip(self, rng: random.Random, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        received = 0

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                nonlocal received
                received += 1

        transport, _ = await loop.create_datagram_endpoint(
            Proto, local_addr=(self.client_ip, 0), remote_addr=(self.s.server_ip, RTP_PORT)
        )
        sock = transport.get_extra_info("sockname")[:2]
        start = time.time()
        seq, next_at = 0, time.monotonic()
        while time.time() - start < seconds:
            header = bytes([0x80, 0x00]) + seq.to_bytes(2, "big") + bytes(8)
            transport.sendto(header + bytes(160))  # 12-byte RTP header + 20 ms of G.711
            seq = (seq + 1) & 0xFFFF
            next_at += FRAME_SECONDS
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.sleep(0.2)
        transport.close()
        flow = self.flow("realtime-media", sock, None, start)
        self.record(**dict(flow, proto=17, server_port=RTP_PORT), end=time.time(), sent=seq,
                    received=received)  # fmt: skip

    async def _connect(
        self, port: int, sni: str | None = None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, tuple[str, int]]:
        local = (self.client_ip, 0)
        if port == TELEMETRY_PORT:  # over TLS
            reader, writer = await asyncio.open_connection(
                self.s.server_ip, port, local_addr=local, ssl=self.ctx, server_hostname=sni or ""
            )
        else:
            reader, writer = await asyncio.open_connection(self.s.server_ip, port, local_addr=local)
        return reader, writer, writer.get_extra_info("sockname")[:2]

    async def shell(self, rng: random.Random, seconds: float) -> None:
        """A remote shell: keystrokes at typing pace, each echoed; every few keystrokes a
        command whose output comes back in one burst."""
        start = time.time()
        reader, writer, sock = await self._connect(SHELL_PORT)
        keys = commands = 0
        try:
            while time.time() - start < seconds:
                await asyncio.sleep(min(2.0, 0.15 * math.exp(rng.gauss(0.0, 0.6))))
                if keys and rng.random() < 0.1:  # Enter: a command and its output
                    size = int(400 * math.exp(rng.gauss(0.0, 1.2)))
                    writer.write(b"\x01" + size.to_bytes(4, "big") + bytes(rng.randint(31, 47)))
                    await writer.drain()
                    await reader.readexactly(size)
                    commands += 1
                else:
                    writer.write(b"\x00" + bytes(rng.randint(35, 51)))  # an encrypted keystroke
                    await writer.drain()
                    await reader.read(512)
                keys += 1
        finally:
            writer.close()
        flow = self.flow("other", sock, None, start)
        # counts of a session that lasts ``seconds``: the link's timing decides them, so they
        # are not the fields lab.run.signature compares (objects, sent)
        self.record(**dict(flow, server_port=SHELL_PORT, kind="shell"), end=time.time(),
                    keystrokes=keys, commands=commands)  # fmt: skip

    async def resolve(self, rng: random.Random, queries: int) -> None:
        """DNS-like lookups, each from its own socket: one flow per query and answer. A lost
        query or answer is asked again after a second, twice at most, as a resolver does (a
        lossy or saturated lab link drops datagrams); ``attempts`` counts the queries sent."""
        loop = asyncio.get_running_loop()
        for _ in range(queries):
            answered: asyncio.Future[int] = loop.create_future()
            transport, _ = await loop.create_datagram_endpoint(
                functools.partial(_Answer, answered), local_addr=(self.client_ip, 0),
                remote_addr=(self.s.server_ip, DNS_PORT),
            )  # fmt: skip
            sock = transport.get_extra_info("sockname")[:2]
            start = time.time()
            answer = rng.randint(60, 480)
            query = (rng.getrandbits(16).to_bytes(2, "big") + answer.to_bytes(2, "big")
                     + bytes(rng.randint(24, 56)))  # fmt: skip
            attempts = 0
            try:
                while attempts < DNS_TRIES and not answered.done():
                    attempts += 1
                    transport.sendto(query)
                    with contextlib.suppress(TimeoutError):  # shielded: still awaited after
                        await asyncio.wait_for(asyncio.shield(answered), DNS_TIMEOUT_S)
            finally:
                transport.close()
            flow = self.flow("other", sock, None, start)
            self.record(**dict(flow, proto=17, server_port=DNS_PORT, kind="dns"),
                        end=time.time(), sent=1, attempts=attempts,
                        answered=answered.done())  # fmt: skip
            await asyncio.sleep(rng.uniform(0.05, 1.5))

    async def telemetry(self, rng: random.Random, seconds: float) -> None:
        """An IoT device: a small reading every few seconds, each acknowledged; one in five
        asks for a command, which comes back."""
        sni = self.sni_for("other", rng)
        start = time.time()
        reader, writer, sock = await self._connect(TELEMETRY_PORT, sni)
        readings = 0
        try:
            while time.time() - start < seconds:
                command = rng.random() < 0.2
                head = bytes([int(command), rng.randint(16, 120)])
                writer.write(head + bytes(rng.randint(20, 180)))
                await writer.drain()
                await reader.read(1024)
                readings += 1
                await asyncio.sleep(rng.uniform(1.0, 4.0))
        finally:
            writer.close()
        flow = self.flow("other", sock, sni, start)
        self.record(**dict(flow, server_port=TELEMETRY_PORT, kind="telemetry"), end=time.time(),
                    readings=readings)  # fmt: skip

    def plan(self) -> list[tuple[float, Any]]:
        """(start offset, coroutine factory) per session, seeded."""
        rng = random.Random(self.s.seed)
        window = self.s.seconds * 0.6
        out: list[tuple[float, Any]] = []
        for cls in CLASSES:
            spec = self.s.classes.get(cls)
            if spec is None:
                continue
            sessions = int(spec.get("sessions", 1))
            if spec.get("arrivals") == "trace":
                out.extend(self._trace_arrivals(cls, spec, sessions, rng.uniform(0, window)))
                continue
            for i in range(sessions):
                r = random.Random(f"{self.s.seed}/{cls}/{i}")
                at = rng.uniform(0, window)
                out.append((at, self._factory(cls, spec, r, i)))
        return sorted(out, key=lambda x: x[0])

    def _trace_arrivals(
        self, cls: str, spec: dict[str, Any], sessions: int, first: float
    ) -> list[tuple[float, Any]]:
        """Sessions at the trace's own arrival times: consecutive rows from a seeded row on,
        each session's request sized by its row; ``time_scale`` lab seconds per trace second.
        """
        scale = float(spec.get("time_scale", 1.0))
        stream = cls == "ai-chat-stream"
        r0 = random.Random(f"{self.s.seed}/{cls}/arrivals").randrange(len(self.trace) - sessions)
        rows = self.trace[r0 : r0 + sessions]
        out: list[tuple[float, Any]] = []
        for i, row in enumerate(rows):
            r = random.Random(f"{self.s.seed}/{cls}/{i}")
            at = first + (row[0] - rows[0][0]) * scale
            variant = self._variant(cls, spec, i)

            def factory(
                r: random.Random = r, row: tuple[float, int, int] = row, v: Any = variant
            ) -> Any:
                return self.chat(cls, r, stream, row=row, **v)

            out.append((at, factory))
        return out

    def _variant(self, cls: str, spec: dict[str, Any], i: int) -> dict[str, Any]:
        """How chat session ``i`` is carried: over HTTP/3 for ``quic_share`` of the sessions,
        its events in a style drawn from ``styles``; drawn apart from the session's own draws,
        so a scenario without these keys plays exactly as before."""
        r = random.Random(f"{self.s.seed}/{cls}/{i}/variant")
        share = float(spec.get("quic_share", 0.0))
        styles = list(spec.get("styles", ["compact"]))
        return {
            "quic": share > 0 and r.random() < share,
            "style": styles[0] if len(styles) == 1 else r.choice(styles),
        }

    def _factory(self, cls: str, spec: dict[str, Any], r: random.Random, i: int = 0) -> Any:
        longest = self.s.seconds * 0.35
        if cls == "other":
            kind = OTHER_KINDS[i % len(OTHER_KINDS)]
            if kind == "dns":
                return lambda: self.resolve(r, int(spec.get("queries", 4)))
            seconds = float(spec.get("seconds", longest))
            return lambda: (self.shell if kind == "shell" else self.telemetry)(r, seconds)
        if cls in CHAT_CLASSES:
            v = self._variant(cls, spec, i)
            return lambda: self.chat(cls, r, cls == "ai-chat-stream", **v)
        if cls == "ai-agentic":
            return lambda: self.agentic(r, int(spec.get("fanout", 6)), int(spec.get("steps", 3)))
        if cls == "ai-realtime":
            return lambda: self.realtime(r, float(spec.get("seconds", longest)))
        if cls == "realtime-media":
            return lambda: self.voip(r, float(spec.get("seconds", longest)))
        if cls == "video":
            n = int(spec.get("segments", max(2, int(longest / 4))))
            size = int(spec.get("segment_bytes", 750_000))
            return lambda: self.download(cls, r, [size] * n, float(spec.get("every", 4.0)))
        if cls == "bulk":
            return lambda: self.download(cls, r, [int(spec.get("megabytes", 20)) << 20], 0.0)
        objects = int(spec.get("objects", 8))  # web: a page and its objects
        return lambda: self.download(
            cls, r, [r.randint(2_000, 120_000) for _ in range(objects)], 0.05
        )

    async def run(self) -> None:
        t0 = time.monotonic()
        tasks = []
        for at, factory in self.plan():
            await asyncio.sleep(max(0.0, at - (time.monotonic() - t0)))
            tasks.append(asyncio.create_task(factory()))
        results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        for e in errors:
            print(f"session failed: {e!r}", file=sys.stderr)
        if errors:
            raise SystemExit(1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lab.traffic")
    sub = ap.add_subparsers(dest="role", required=True)
    s = sub.add_parser("server")
    s.add_argument("--dir", type=Path, required=True)
    s.add_argument("--host", default="10.77.0.2")
    s.add_argument("--scenario", type=Path, required=True)
    c = sub.add_parser("client")
    c.add_argument("--scenario", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--server", default="10.77.0.2")
    c.add_argument("--client", default="10.77.0.1")
    args = ap.parse_args(argv)
    if args.role == "server":
        sc = Scenario.load(args.scenario, args.host)
        names = sorted({n for ns in sc.names.values() for n in ns})
        asyncio.run(serve(args.dir, args.host, names))
    else:
        asyncio.run(Client(Scenario.load(args.scenario, args.server), args.out, args.client).run())


if __name__ == "__main__":
    main()
