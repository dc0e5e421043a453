"""Typed configuration: defaults in code, commented YAML in config/, env overrides, no unknown keys.

Over 400 lines: one typed tree of every section, so that defaults, the commented YAML
(config/inferwatch.yaml, tested equal to them) and check-config see one whole.

Precedence, lowest first: the defaults below, the YAML file, then environment variables named
``INFERWATCH_<SECTION>__<KEY>`` (read by pydantic-settings: a string key takes the value as it
is, ``#`` and all; a list or mapping is JSON or YAML's flow style), then command-line flags.

>>> cfg = load_config(None, env={"INFERWATCH_KAFKA__BROKER": "127.0.0.1:19092"})
>>> cfg.kafka.broker
'127.0.0.1:19092'
>>> load_config(None, env={"INFERWATCH_KAFKA__BROKR": "x"})
Traceback (most recent call last):
...
streams.errors.ConfigError: INFERWATCH_KAFKA__BROKR: kafka.brokr: Extra inputs are not permitted
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, EnvSettingsSource
from pydantic_settings.exceptions import SettingsError

from detectors.anomaly import NoveltyDetector
from detectors.congestion import CongestionRule
from streams.errors import ConfigError

ENV_PREFIX = "INFERWATCH_"
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config" / "inferwatch.yaml"
# What an installed worker needs wherever it runs (the endpoint catalog, the classifier's
# bootstrap datasets) ships inside the package, as package data.
DATA_DIR = Path(str(resources.files("streams").joinpath("data")))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TopicsConfig(_Section):
    raw: str = "flows.raw"
    flows: str = "flows.v1"
    dlq: str = "flows.dlq.v1"
    alerts: str = "alerts.v1"


class KafkaConfig(_Section):
    broker: str = Field("127.0.0.1:9092", description="bootstrap servers: HOST:PORT[,HOST:PORT]")
    client_id: str = "inferwatch"
    topics: TopicsConfig = TopicsConfig()
    create_topics: bool = True
    raw_partitions: int = Field(
        4, ge=1, description="partitions of flows.raw when the worker creates it"
    )
    flows_partitions: int = Field(
        8, ge=1, description="partitions of flows.v1 (the unit of link sharding)"
    )
    replication_factor: int | None = Field(
        None, ge=1, description="replicas of each topic the worker creates; null: min(3, brokers)"
    )
    min_insync_replicas: int | None = Field(
        None, ge=1, description="replicas a write waits for (acks=all); null: min(2, replicas)"
    )
    ingest_group: str = "inferwatch-ingest"
    app_id: str = "inferwatch"
    session_timeout_seconds: float = Field(30.0, gt=0)
    max_message_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="producer and DLQ topic cap"
    )
    analysis_poll_messages: int = Field(
        32, ge=1, description="flows.v1 messages the analysis stage takes per poll"
    )
    analysis_fetch_wait_ms: int = Field(
        100, ge=1, le=60_000, description="longest a fetch of the analysis stage waits for data"
    )

    @field_validator("broker")
    @classmethod
    def _servers(cls, v: str) -> str:
        for server in v.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected HOST:PORT[,HOST:PORT...], got {v!r}")
        return v


class IngestConfig(_Section):
    format: Literal["auto", "pmacct", "goflow2", "native", "goflow2-protobuf"] = "auto"
    max_record_bytes: int = Field(64 * 1024, ge=256)
    max_batch_records: int = Field(10_000, ge=1)
    poll_timeout_seconds: float = Field(0.2, gt=0)
    commit_interval_seconds: float = Field(1.0, ge=0)
    max_age_seconds: float = Field(366 * 86400, gt=0, description="older timestamps are invalid")
    max_future_seconds: float = Field(86400, ge=0, description="later timestamps are invalid")
    micro_batch_records: int = Field(2000, ge=1, description="records per flows.v1 message at most")
    tick_interval_seconds: float = Field(1.0, gt=0, description="watermark ticks to flows.v1")
    idle_seconds: float = Field(
        30.0, gt=0, description="with no input this long, ticks follow the wall clock"
    )


class HttpConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(9108, ge=0, le=65535)
    basic_auth_user: str | None = None
    basic_auth_password: SecretStr | None = Field(None, description="better: the _file key")
    basic_auth_password_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None

    @model_validator(mode="after")
    def _pairs(self) -> HttpConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        has_password = self.basic_auth_password is not None or self.basic_auth_password_file
        if bool(self.basic_auth_user) != bool(has_password):
            raise ValueError("basic_auth_user needs basic_auth_password(_file), and the reverse")
        return self

    def password(self) -> str | None:
        """The basic-auth password, from the file when one is named."""
        return secret(self.basic_auth_password_file, self.basic_auth_password)


class AnalysisConfig(_Section):
    links_file: str | None = Field(
        None, description="link catalog (config/links.yaml is an example); null for none"
    )
    window_seconds: float = Field(10.0, gt=0)
    grace_seconds: float = Field(5.0, ge=0)
    max_links: int = Field(500, ge=1, description="links with their own series; more go to 'other'")
    max_idle_windows: int = Field(360, ge=1, description="a link silent this long is forgotten")
    top_k: int = Field(20, ge=1, description="top talkers kept per link and window")
    top_windows: int = Field(6, ge=1, description="closed windows of top talkers on /toptalkers")
    merge_records: int = Field(
        10_000, ge=1, description="records analysed together when flows.v1 messages queue up"
    )
    toptalkers_topic: str = "toptalkers.v1"
    series_topic: str = "linkseries.v1"
    anonymise: Literal["none", "prefix", "hash"] = Field(
        "none",
        description="addresses in top-talker output: as they are, truncated, or keyed hashes",
    )
    anonymise_prefix_v4: int = Field(24, ge=0, le=32)
    anonymise_prefix_v6: int = Field(48, ge=0, le=128)
    anonymise_key: SecretStr | None = Field(None, description="better: the _file key")
    anonymise_key_file: str | None = None

    @model_validator(mode="after")
    def _key_for_hash(self) -> AnalysisConfig:
        if self.anonymise == "hash" and not (self.anonymise_key or self.anonymise_key_file):
            raise ValueError("anonymise: hash needs anonymise_key or anonymise_key_file")
        return self

    def hash_key(self) -> bytes | None:
        key = secret(self.anonymise_key_file, self.anonymise_key)
        return key.encode() if key is not None else None


class ClassifyConfig(_Section):
    enabled: bool = Field(True, description="classify flows and estimate AI QoE")
    endpoints_file: str | None = Field(
        "endpoints.yaml", description="endpoint catalog (the packaged one); null for none"
    )
    names: bool = Field(
        True, description="off/false: behaviour only, the catalog is ignored when predicting"
    )
    learn_per_batch: int = Field(64, ge=0, description="labelled flows learned per batch at most")
    learn_per_second: float = Field(
        50.0, gt=0, description="labelled flows learned per second at most (1 to 7 ms each)"
    )
    learn_time_share: float = Field(
        0.05, gt=0, le=1,
        description="share of the time learning may take (the flows and the forest's copy)",
    )  # fmt: skip
    max_tree_leaves: int = Field(
        128, ge=2, description="a tree of the forest stops growing at this many leaves"
    )
    feedback_topic: str = "labels.v1"
    checkpoint: Literal["kafka", "disk", "off"] = "kafka"
    checkpoint_topic: str = "classifier.v1"
    checkpoint_path: str = ".cache/state/classifier.ckpt"
    checkpoint_seconds: float = Field(60.0, gt=0)
    bootstrap: list[str] = Field(
        default_factory=lambda: [
            *(f"bootstrap/eval-{x}-3m" for x in "abcd"),
            *["bootstrap/ndpi-real"] * 2,  # twice: twice the weight (docs/classification.md)
        ],
        description="labelled datasets learned at start when there is no checkpoint",
    )
    validation_window: int = Field(1000, ge=10, description="labelled predictions per P/R/F1")
    drift_delta: float = Field(0.002, gt=0, lt=1, description="ADWIN confidence on the errors")
    drift_resolve_seconds: float = Field(
        900.0, gt=0, description="a drift alert resolves after this long without a new drift"
    )

    @field_validator("checkpoint", mode="before")
    @classmethod
    def _off(cls, v: Any) -> Any:
        return "off" if v is False else v  # YAML (and so INFERWATCH_*) reads a bare off as false


SeriesName = Literal["bytes", "packets", "flows", "ai_share", "ai_ttft_p95"]
SERIES_NAMES: tuple[SeriesName, ...] = ("bytes", "packets", "flows", "ai_share", "ai_ttft_p95")


class DetectorConfig(_Section):
    """Parameters of detectors.anomaly.NoveltyDetector: one configuration for every series."""

    window: int = Field(20, ge=2, description="points per pattern")
    memory: int = Field(2000, ge=10, description="past patterns compared with the current one")
    warmup: int = Field(150, ge=1, description="points that fix the value range; no score before")
    short: int = Field(10, ge=1, description="novelties averaged for the likelihood")
    long: int = Field(8000, ge=50, description="novelties behind the likelihood's distribution")
    fire: float = Field(1.0, gt=0, description="-log10 tail probability where the level is 0.5")
    hold: int = Field(100, ge=0, description="points without a new onset after one")
    margin: float = Field(
        1.0, gt=0, description="std devs of the calm past's means a level goes beyond to fire"
    )
    days: int = Field(7, ge=0, description="past days the time of day is compared with; 0: none")
    day_slots: int = Field(288, ge=2, description="slots a day at most (288: five minutes)")
    daily_fire: float = Field(
        6.0, gt=0, description="how much less the time-of-day likelihood counts than fire's"
    )
    age: float = Field(
        0.4, ge=0, description="likelihood lost per tenfold points past age_from (to long)"
    )
    age_from: int = Field(500, ge=1, description="points before the horizon penalty starts")
    usual_margin: float = Field(
        0.5, ge=0, description="std devs over this hour's usual daily novelty before its gate opens"
    )
    log_offset: float = Field(
        0.4, ge=0, description="the likelihood weighs log(novelty + this); 0: the novelty itself"
    )

    def build(self) -> NoveltyDetector:
        return NoveltyDetector(**self.model_dump())


class AnomalyConfig(_Section):
    enabled: bool = Field(True, description="score each link series and raise anomaly events")
    series: list[SeriesName] = Field(default_factory=lambda: list(SERIES_NAMES))
    detector: DetectorConfig = DetectorConfig()
    threshold: float = Field(0.5, gt=0, lt=1, description="onset score that starts an anomaly")
    min_windows: int = Field(1, ge=1, description="windows at or above threshold before it fires")
    resolve_level: float = Field(0.3, ge=0, lt=1, description="level under which it may resolve")
    resolve_windows: int = Field(6, ge=1, description="windows under resolve_level to resolve")
    share_floor: float = Field(
        0.02, ge=0, le=1, description="a share series' least change from expected to fire"
    )

    @model_validator(mode="after")
    def _hysteresis(self) -> AnomalyConfig:
        if self.resolve_level > self.threshold:
            raise ValueError("resolve_level must not exceed threshold")
        return self


class LinkStateConfig(_Section):
    """Where the per-link detector state (anomaly, congestion) is saved (streams/links/state.py)."""

    checkpoint: Literal["kafka", "off"] = "kafka"
    topic: str = "linkstate.v1"
    checkpoint_seconds: float = Field(60.0, gt=0, description="changed links are saved this often")


class CongestionConfig(_Section):
    """Congestion state and saturation forecast per link and direction (docs/congestion.md).
    Durations are rounded to whole windows (analysis.window_seconds)."""

    enabled: bool = True
    warning_utilisation: float = Field(0.75, gt=0, le=2)
    critical_utilisation: float = Field(0.90, gt=0, le=2)
    hysteresis: float = Field(0.05, ge=0, lt=1, description="under the level by this to clear")
    smoothing: float = Field(0.8, gt=0, le=1, description="weight of the newest window")
    warning_seconds: float = Field(30.0, gt=0, description="at or above warning this long")
    critical_seconds: float = Field(10.0, gt=0, description="at or above critical this long")
    clear_seconds: float = Field(30.0, gt=0, description="under the level this long to clear")
    trend_seconds: float = Field(300.0, gt=0, description="history the trend is fitted to")
    season_slots: int = Field(96, ge=1, description="slots of the daily profile")
    season_weight: float = Field(0.3, gt=0, le=1, description="weight of the newest day")
    horizon_seconds: float = Field(3600.0, gt=0, description="how far the forecast looks")
    lead_seconds: float = Field(300.0, gt=0, description="predicted when the ETA is under this")
    predict_seconds: float = Field(90.0, gt=0, description="... for this long")
    qoe_warning_ratio: float = Field(
        2.0,
        gt=1,
        description="AI time to first token over the link's baseline that counts as warning",
    )
    rtt_warning_ratio: float = Field(
        3.0,
        gt=1,
        description="TCP handshake round trip over the link's baseline that counts as warning",
    )
    retrans_warning_share: float = Field(
        0.02,
        gt=0,
        le=1,
        description="TCP packets retransmitted, per direction, that count as warning",
    )
    retrans_min_packets: int = Field(
        200, ge=1, description="TCP packets with counts a direction needs for the share"
    )
    qoe_min_utilisation: float = Field(
        0.6, ge=0, le=2, description="... (any of them) when the link is at least this busy"
    )

    @model_validator(mode="after")
    def _levels(self) -> CongestionConfig:
        if self.warning_utilisation >= self.critical_utilisation:
            raise ValueError("warning_utilisation must be under critical_utilisation")
        return self

    def rule(self, window: float) -> CongestionRule:
        def n(seconds: float) -> int:
            return max(1, round(seconds / window))

        return CongestionRule(
            warning=self.warning_utilisation, critical=self.critical_utilisation,
            hysteresis=self.hysteresis, smoothing=self.smoothing,
            warning_windows=n(self.warning_seconds), critical_windows=n(self.critical_seconds),
            clear_windows=n(self.clear_seconds), trend_windows=max(3, n(self.trend_seconds)),
            gamma=self.season_weight, season_slots=self.season_slots,
            horizon=n(self.horizon_seconds), lead=n(self.lead_seconds),
            predict_windows=n(self.predict_seconds), qoe_utilisation=self.qoe_min_utilisation,
        )  # fmt: skip


class ReceiverConfig(_Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    url: str = Field(pattern=r"^https?://")
    format: Literal["alertmanager", "slack"] = "alertmanager"
    secret: SecretStr | None = Field(None, description="HMAC key; better: secret_file")
    secret_file: str | None = None
    timeout_seconds: float = Field(10.0, gt=0)

    def key(self) -> bytes | None:
        """The Standard Webhooks signing key (``signing_key``), or None without a secret."""
        raw = secret(self.secret_file, self.secret)
        return signing_key(raw) if raw is not None else None


def signing_key(raw: str) -> bytes:
    """A Standard Webhooks signing key from its text: "whsec_" + base64, or the text itself.

    >>> signing_key("whsec_a2V5"), signing_key("key")
    (b'key', b'key')
    """
    if raw.startswith("whsec_"):
        return base64.b64decode(raw.removeprefix("whsec_"))
    return raw.encode()


class DispatchConfig(_Section):
    receivers: list[ReceiverConfig] = Field(default_factory=list)
    group: str = Field("inferwatch-dispatch", description="consumer group on alerts.v1")
    group_wait_seconds: float = Field(5.0, ge=0, description="gather changes into one notification")
    repeat_interval_seconds: float = Field(14400.0, gt=0, description="re-notify a firing alert")
    retry_initial_seconds: float = Field(1.0, gt=0)
    retry_max_seconds: float = Field(300.0, gt=0, description="cap of the backoff between tries")
    state_path: str = ".cache/state/dispatch.json"
    runbook_base_url: str | None = Field(
        None, pattern=r"^https?://", description="where docs/runbooks is served; links go there"
    )


class WorkerConfig(_Section):
    state_dir: str = ".cache/state"
    shutdown_timeout_seconds: float = Field(
        15.0, gt=0, description="a stop that takes longer ends the process with status 1"
    )
    gc_threshold: int = Field(
        50_000,
        ge=0,
        description="net new container objects between two young-generation garbage "
        "collections (Python's default is 700); 0 keeps Python's default",
    )


class Config(_Section):
    kafka: KafkaConfig = KafkaConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    classify: ClassifyConfig = ClassifyConfig()
    anomaly: AnomalyConfig = AnomalyConfig()
    congestion: CongestionConfig = CongestionConfig()
    linkstate: LinkStateConfig = LinkStateConfig()
    dispatch: DispatchConfig = DispatchConfig()
    worker: WorkerConfig = WorkerConfig()
    ingest: IngestConfig = IngestConfig()
    http: HttpConfig = HttpConfig()
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    library_log_level: Literal["debug", "info", "warning", "error"] = Field(
        "warning", description="Faust's, mode's and aiokafka's own logs (start-up chatter at info)"
    )


# the same fields as Config, for pydantic-settings to read the environment against
_EnvSettings = create_model(
    "_EnvSettings",
    __base__=BaseSettings,
    **{name: (f.annotation, f) for name, f in Config.model_fields.items()},  # type: ignore[call-overload]
)


def secret(path: str | None, inline: SecretStr | None) -> str | None:
    """A secret from its file when one is named, else the inline value (env or YAML)."""
    if path:
        return read_secret(path)
    return inline.get_secret_value() if inline is not None else None


def read_secret(path: str) -> str:
    """A secret from a file (one line; surrounding whitespace dropped). Never logged."""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the secret: {exc.strerror}") from exc


def resolve_path(path: str | None) -> Path | None:
    """A configured file: absolute, or relative to the working directory where it exists there,
    else one of the package's own files (``DATA_DIR``), else of a source checkout's.

    >>> resolve_path("endpoints.yaml") == DATA_DIR / "endpoints.yaml"
    True
    >>> str(resolve_path("nowhere/links.yaml"))  # found nowhere: named as given, for the error
    'nowhere/links.yaml'
    """
    if path is None:
        return None
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    for base in (DATA_DIR, DEFAULT_CONFIG_PATH.parent.parent):
        if (base / p).exists():
            return base / p
    return p


def set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(path)}: {part} is not a section")
        node = child
    node[path[-1]] = value


class _EnvSource(EnvSettingsSource):
    """pydantic-settings' reading of INFERWATCH_<SECTION>__<KEY> variables from a given
    mapping: a string key takes the value as it is, a list or mapping takes JSON."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._given = {k.lower(): v for k, v in env.items()}
        super().__init__(
            _EnvSettings, env_prefix=ENV_PREFIX, env_nested_delimiter="__", case_sensitive=False
        )

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._given

    def decode_complex_value(self, field_name: str, field: Any, value: Any) -> Any:
        """JSON, or YAML's flow style as these variables took before (``[bytes, flows]``)."""
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:
            try:
                return yaml.safe_load(value)
            except yaml.YAMLError:
                raise ValueError(f"{field_name}: neither JSON nor YAML") from None


def _env_overrides(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The overrides in ``env`` as a tree, and each variable's key path (for messages)."""
    paths: dict[str, list[str]] = {}
    for name in env:
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if path and path[0] not in Config.model_fields:
            raise ConfigError(f"{name}: {'.'.join(path)}: Extra inputs are not permitted")
        if path:
            paths[name] = path
    if not paths:
        return {}, paths
    try:
        tree = _EnvSource({n: env[n] for n in paths})()
    except SettingsError as exc:
        for name, path in paths.items():  # which one: each alone
            try:
                _EnvSource({name: env[name]})()
            except SettingsError:
                where = ".".join(path)
                raise ConfigError(f"{name}: {where}: a list or mapping, as JSON or YAML") from exc
        raise ConfigError(f"environment: {exc}") from exc
    return tree, paths


def _merge(into: dict[str, Any], tree: Mapping[str, Any]) -> None:
    for key, value in tree.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


def format_error(err: ValidationError) -> str:
    """The first problem of a pydantic validation error as "dotted.key: message"."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}"


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a missing file or bad YAML raises ConfigError naming the file."""
    p = Path(path)
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc


def load_config(
    path: str | Path | None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Load and validate the configuration; raise ConfigError with the offending key."""
    tree: dict[str, Any] = {}
    if path is not None:
        loaded = read_yaml(path)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        tree = loaded
    try:
        Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {format_error(exc)}") from exc
    from_env, paths = _env_overrides(env or {})
    _merge(tree, from_env)
    try:
        Config.model_validate(tree)
    except ValidationError as exc:
        loc = [str(p) for p in exc.errors()[0]["loc"]]
        # the variable whose key the error is about, or that sets something inside that section
        culprits = [n for n, kp in paths.items() if kp[: len(loc)] == loc[: len(kp)]]
        where = culprits[0] if culprits else "environment"
        raise ConfigError(f"{where}: {format_error(exc)}") from exc
    for dotted, value in (overrides or {}).items():
        if value is not None:
            set_path(tree, dotted.split("."), value)
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(format_error(exc)) from exc
