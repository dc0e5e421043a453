"""The endpoint catalog: server names and address prefixes of known services, as a prior.

An entry names a provider, the label its traffic gets (one class, or ``ai``: one of the AI
classes, which behaviour then tells apart) and its patterns. Name patterns are DNS names with
``*`` standing for any run of characters (``*.openai.com`` matches every subdomain,
``bedrock-runtime.*.amazonaws.com`` every region); they are matched against the server name a
record carries (TLS SNI, QUIC, HTTP host, or the name a DNS answer gave the address). Address
prefixes match either end of the flow. A name match wins over a prefix match; among names, an
exact name wins over a pattern, and a longer pattern over a shorter one.

Matching runs once per distinct name and address of a batch (with a bounded cache), not once
per record.

>>> cat = EndpointCatalog([
...     Endpoint("openai", "ai", ("api.openai.com", "*.openai.com")),
...     Endpoint("youtube", "video", ("*.googlevideo.com",), ("192.0.2.0/24",)),
... ])
>>> from detectors.flows import FlowBatch
>>> b = FlowBatch.from_columns(server_name=["api.openai.com", "rr3.googlevideo.com", None, "x"],
...                            dst_ip=["", "", "192.0.2.7", "10.0.0.1"])
>>> m = cat.match(b)
>>> [cat.label_name(i) for i in m.label], m.provider.tolist()
(['ai', 'video', 'video', None], [0, 1, 1, -1])
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detectors.classes import AI_FAMILY, CLASSES, INDEX
from detectors.flows import Array, FlowBatch

FAMILY = len(CLASSES)  # label code of "ai"
NONE = -1
CACHE_LIMIT = 100_000
NAME_PATTERN = re.compile(r"^[a-z0-9*]([a-z0-9*.-]{0,251}[a-z0-9*])?$")


@dataclass(frozen=True, slots=True)
class Endpoint:
    provider: str
    label: str  # a class name, or "ai"
    names: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CatalogMatch:
    label: Array  # per record: a class index, FAMILY for "ai", or NONE
    provider: Array  # per record: the endpoint's index, or NONE
    by_name: Array  # bool: the match came from the server name


def label_code(label: str) -> int:
    if label == AI_FAMILY:
        return FAMILY
    if label not in INDEX:
        raise ValueError(f"unknown label {label!r}: one of {', '.join(CLASSES)} or {AI_FAMILY}")
    return INDEX[label]


def check_name_pattern(pattern: str) -> str:
    """A valid lower-case name pattern, or ValueError saying what is wrong."""
    if not NAME_PATTERN.match(pattern) or ".." in pattern:
        raise ValueError(f"bad name pattern {pattern!r}: lower-case DNS name, '*' as wildcard")
    return pattern


class EndpointCatalog:
    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self.endpoints = list(endpoints)
        self.labels = np.array([label_code(e.label) for e in self.endpoints], dtype=np.int64)
        self._exact: dict[str, int] = {}
        wild: list[tuple[int, str, int]] = []  # (specificity, pattern, endpoint)
        nets: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int]] = []
        for i, e in enumerate(self.endpoints):
            for p in e.names:
                check_name_pattern(p)
                if "*" in p:
                    wild.append((len(p.replace("*", "")), p, i))
                else:
                    self._exact.setdefault(p, i)
            nets.extend((ipaddress.ip_network(p, strict=False), i) for p in e.prefixes)
        wild.sort(key=lambda w: -w[0])
        self._wild = [
            (re.compile(re.escape(p).replace(r"\*", ".*") + r"\Z"), i) for _, p, i in wild
        ]
        self._nets = sorted(nets, key=lambda n: -n[0].prefixlen)  # longest prefix first
        self._names: dict[str, int] = {}
        self._addrs: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.endpoints)

    def label_name(self, code: int) -> str | None:
        if code == NONE:
            return None
        return AI_FAMILY if code == FAMILY else CLASSES[code]

    def match_name(self, name: str) -> int:
        """The endpoint index for one server name, or NONE."""
        hit = self._names.get(name)
        if hit is None:
            key = name.lower().rstrip(".")
            hit = self._exact.get(key, NONE)
            if hit == NONE:
                hit = next((i for rx, i in self._wild if rx.match(key)), NONE)
            if len(self._names) >= CACHE_LIMIT:
                self._names.clear()
            self._names[name] = hit
        return hit

    def match_addr(self, addr: str) -> int:
        hit = self._addrs.get(addr)
        if hit is None:
            hit = NONE
            try:
                ip = ipaddress.ip_address(addr)
            except ValueError:
                ip = None
            if ip is not None:
                hit = next((i for net, i in self._nets if ip in net), NONE)
            if len(self._addrs) >= CACHE_LIMIT:
                self._addrs.clear()
            self._addrs[addr] = hit
        return hit

    def _per_distinct(self, values: Array, fn: object) -> Array:
        out = np.full(len(values), NONE, dtype=np.int64)
        present = np.flatnonzero([isinstance(v, str) and v != "" for v in values])
        if present.size:
            uniq, inverse = np.unique(values[present].astype(str), return_inverse=True)
            hits = np.array([fn(u) for u in uniq], dtype=np.int64)  # type: ignore[operator]
            out[present] = hits[inverse]
        return out

    def match(self, batch: FlowBatch) -> CatalogMatch:
        provider = self._per_distinct(batch.server_name, self.match_name)
        by_name = provider != NONE
        if self._nets:
            for column in (batch.dst_ip, batch.src_ip):
                todo = provider == NONE
                if todo.any():
                    hits = self._per_distinct(column[todo], self.match_addr)
                    provider[np.flatnonzero(todo)] = hits
        label = np.where(provider != NONE, self.labels[np.maximum(provider, 0)], NONE)
        if not len(self.endpoints):
            label = np.full(len(batch), NONE, dtype=np.int64)
        return CatalogMatch(label=label, provider=provider, by_name=by_name)
