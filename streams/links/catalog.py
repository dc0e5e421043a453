"""The link catalog (config/links.yaml) and the attribution of records to links.

>>> cat = LinkCatalog.from_dict({"links": [{"id": "core-1", "name": "Core 1",
...     "capacity_bps": 1e9, "exporter": "192.0.2.1", "iface": 3}]})
>>> from detectors.flows import FORMATS, FlowBatch
>>> b = FlowBatch.from_columns(exporter=["192.0.2.1", "192.0.2.1", "192.0.2.9"],
...                            iface_in=[3, 7, 1], iface_out=[7, 3, 2])
>>> cat.attribute(b)
>>> b.link.tolist(), b.fwd_out.tolist()
(['core-1', 'core-1', '192.0.2.9#1'], [0, 1, 0])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from detectors.flows import FORMATS, FlowBatch, factorize
from streams.config import format_error, read_yaml
from streams.errors import ConfigError

NATIVE = FORMATS.index("native")
LINK_ID_PATTERN = r"^[A-Za-z0-9_.:#-]{1,64}$"


class Link(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=LINK_ID_PATTERN)
    name: str = Field(default="", max_length=200)
    capacity_bps: float | None = Field(default=None, gt=0)
    exporter: str = Field(default="", max_length=64)
    iface: int | None = Field(default=None, ge=0)


class _LinksFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    links: list[Link] = Field(default_factory=list)

    @field_validator("links")
    @classmethod
    def _unique(cls, links: list[Link]) -> list[Link]:
        ids = [lk.id for lk in links]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate link ids: {', '.join(sorted(dup))}")
        ports = [(lk.exporter, lk.iface) for lk in links if lk.iface is not None]
        twice = {p for p in ports if ports.count(p) > 1}
        if twice:
            raise ValueError(f"interfaces listed twice: {sorted(twice)}")
        return links


class LinkCatalog:
    """Configured links; maps a record's exporter and interfaces to a link id and a direction."""

    def __init__(self, links: list[Link]) -> None:
        self.links = {lk.id: lk for lk in links}
        self._by_port = {f"{lk.exporter}#{lk.iface}": lk.id for lk in links if lk.iface is not None}

    @classmethod
    def from_dict(cls, data: Any, source: str = "links") -> LinkCatalog:
        try:
            parsed = _LinksFile.model_validate(data if data is not None else {})
        except ValidationError as exc:
            raise ConfigError(f"{source}: {format_error(exc)}") from exc
        return cls(parsed.links)

    @classmethod
    def load(cls, path: str | Path | None) -> LinkCatalog:
        if path is None:
            return cls([])
        return cls.from_dict(read_yaml(path), str(path))

    def capacity(self, link: str) -> float | None:
        lk = self.links.get(link)
        return lk.capacity_bps if lk else None

    def attribute(self, batch: FlowBatch) -> None:
        """Fill ``batch.link`` and ``batch.fwd_out`` for every record (in place): decided once
        per distinct (exporter, input interface, output interface) of the batch."""
        n = len(batch)
        if n == 0:
            return
        by_port = self._by_port
        ports = list(
            zip(
                batch.exporter.tolist(),
                batch.iface_in.tolist(),
                batch.iface_out.tolist(),
                strict=True,
            )
        )
        codes, index = factorize(ports)
        link_of = np.empty(len(index), dtype=object)
        out_of = np.zeros(len(index), dtype=np.uint8)
        for k, (exporter, iface_in, iface_out) in enumerate(index):
            ins, outs = f"{exporter}#{iface_in}", f"{exporter}#{iface_out}"
            if ins in by_port or outs not in by_port:
                link_of[k] = by_port.get(ins, ins)
            else:
                link_of[k], out_of[k] = by_port[outs], 1
        links = link_of[codes]
        fwd_out = out_of[codes]
        explicit = np.fromiter((v is not None for v in batch.link.tolist()), dtype=bool, count=n)
        if explicit.any():
            links[explicit] = batch.link[explicit]
            fwd_out[explicit] = 1
        # bidirectional (native) records: fwd, from the initiator, leaves as "out"
        fwd_out[batch.fmt == NATIVE] = 1
        batch.link = links
        batch.fwd_out = fwd_out
