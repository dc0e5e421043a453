"""Anonymisation of addresses in what inferwatch exports (top talkers).

``prefix`` keeps the network part (IPv4 /24, IPv6 /48 by default) so traffic still groups by
site; ``hash`` replaces each address with a keyed HMAC-SHA256 (first 16 hex digits), stable
for a key, meaningless without it.

>>> Anonymiser("prefix").address("192.0.2.77"), Anonymiser("prefix").address("2001:db8:1:2::9")
('192.0.2.0/24', '2001:db8:1::/48')
>>> a, b = Anonymiser("hash", key=b"k"), Anonymiser("hash", key=b"j")
>>> a.address("192.0.2.77") == a.address("192.0.2.77") != b.address("192.0.2.77")
True
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import Literal

Mode = Literal["none", "prefix", "hash"]


class Anonymiser:
    def __init__(self, mode: Mode, *, v4: int = 24, v6: int = 48, key: bytes | None = None) -> None:
        if mode == "hash" and not key:
            raise ValueError("hash anonymisation needs a key")
        self.mode = mode
        self.v4, self.v6 = v4, v6
        self._key = key or b""
        self._cache: dict[str, str] = {}

    def __repr__(self) -> str:  # the key never appears
        return f"Anonymiser({self.mode!r}, v4={self.v4}, v6={self.v6})"

    def address(self, addr: str) -> str:
        if self.mode == "none":
            return addr
        out = self._cache.get(addr)
        if out is None:
            if len(self._cache) > 100_000:
                self._cache.clear()
            out = self._cache[addr] = self._compute(addr)
        return out

    def _compute(self, addr: str) -> str:
        if self.mode == "hash":
            return "h:" + hmac.new(self._key, addr.encode(), hashlib.sha256).hexdigest()[:16]
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return "invalid"
        bits = self.v4 if ip.version == 4 else self.v6
        return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))
