"""Loading and validating the endpoint catalog file (the packaged streams/data/endpoints.yaml).

>>> cat = catalog_from_dict({"version": 1, "providers": {
...     "openai": {"label": "ai", "names": ["api.openai.com"], "prefixes": ["192.0.2.0/24"]}}})
>>> len(cat), cat.endpoints[0].label
(1, 'ai')
>>> catalog_from_dict({"version": 1, "providers": {"x": {"label": "chat", "names": ["a.b"]}}})
... # doctest: +ELLIPSIS
Traceback (most recent call last):
...
streams.errors.ConfigError: endpoint catalog: providers.x.label: Value error, unknown label...
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from detectors.catalog import Endpoint, EndpointCatalog, check_name_pattern, label_code
from streams.config import DATA_DIR, format_error, read_yaml
from streams.errors import ConfigError

DEFAULT_ENDPOINTS_PATH = DATA_DIR / "endpoints.yaml"


class _Provider(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str
    names: list[str] = Field(default_factory=list, max_length=10_000)
    dns: list[str] = Field(default_factory=list, max_length=10_000)
    prefixes: list[str] = Field(default_factory=list, max_length=10_000)

    @field_validator("label")
    @classmethod
    def _label(cls, v: str) -> str:
        label_code(v)
        return v

    @field_validator("names", "dns")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        return [check_name_pattern(p) for p in v]

    @field_validator("prefixes")
    @classmethod
    def _prefixes(cls, v: list[str]) -> list[str]:
        for p in v:
            try:
                ipaddress.ip_network(p, strict=True)
            except ValueError as exc:
                raise ValueError(f"bad prefix {p!r}: {exc}") from exc
        return v


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    providers: dict[str, _Provider] = Field(default_factory=dict)

    @field_validator("providers")
    @classmethod
    def _ids(cls, v: dict[str, _Provider]) -> dict[str, _Provider]:
        bad = [k for k in v if not k.replace("-", "").replace("_", "").isalnum() or len(k) > 64]
        if bad:
            raise ValueError(f"provider ids are letters, digits, '-' and '_': {bad}")
        owner: dict[str, str] = {}
        for name, p in v.items():
            for pattern in (*p.names, *p.dns):
                if pattern in owner and owner[pattern] != name:
                    raise ValueError(f"{pattern!r} is listed by {owner[pattern]} and {name}")
                owner[pattern] = name
        return v


def catalog_from_dict(raw: Any) -> EndpointCatalog:
    try:
        parsed = _File.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"endpoint catalog: {format_error(exc)}") from exc
    return EndpointCatalog(
        [
            Endpoint(name, p.label, tuple(dict.fromkeys([*p.names, *p.dns])), tuple(p.prefixes))
            for name, p in parsed.providers.items()
        ]
    )


def load_endpoints(path: Path | None = DEFAULT_ENDPOINTS_PATH) -> EndpointCatalog:
    """The catalog in ``path`` (None: an empty catalog); ConfigError naming what is wrong."""
    if path is None:
        return EndpointCatalog([])
    return catalog_from_dict(read_yaml(path))
