"""The config's sections and the :class:`Config` they make: one frozen model per collector.

Defaults are the FREESPORT deployment's; ``config.example.yaml`` documents every key (a test
fails when one is missing there). Secrets are :class:`pydantic.SecretStr`, which never prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AnyHttpUrl,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from exporter.config.errors import error_lines
from exporter.config.types import (
    KeyedValueError,
    Model,
    PositiveDuration,
    Regex,
    SecretFromFile,
    TableName,
    Window,
    WindowSpec,
    unique,
)
from exporter.yaml_located import ConfigError


class DatabaseConfig(Model):
    """The FREESPORT PostgreSQL database (read-only access is enough)."""

    dsn: SecretStr
    password_file: SecretFromFile | None = None
    required: bool = True
    pool_max_size: int = Field(3, ge=1, le=20)
    connect_timeout: PositiveDuration = 5.0
    application_name: str = "customer-sync-exporter"

    @field_validator("dsn")
    @classmethod
    def _dsn_parses(cls, value: SecretStr) -> SecretStr:
        from psycopg.conninfo import conninfo_to_dict

        try:
            conninfo_to_dict(value.get_secret_value())
        except Exception:
            # The DSN may hold a password, so the parser's message (which quotes it) is not shown.
            raise ValueError(
                "invalid PostgreSQL DSN: use postgresql://user@host:5432/dbname"
            ) from None
        return value


DEFAULT_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip


class SyncLogConfig(Model):
    enabled: bool = True
    table: TableName = "common_customersynclog"
    time_source: Literal["database", "local"] = "database"
    windows: Annotated[list[WindowSpec], unique("window", key=lambda w: w.label)] = Field(
        default_factory=lambda: [Window("5m", 300.0), Window("1h", 3600.0), Window("24h", 86400.0)],
        min_length=1,
    )
    buckets: list[Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: list(DEFAULT_BUCKETS), min_length=1
    )
    max_label_values: int = Field(50, ge=1, le=1000)
    batch_size: int = Field(50_000, ge=100, le=1_000_000)

    @field_validator("buckets")
    @classmethod
    def _sorted(cls, value: list[float]) -> list[float]:
        for i in range(1, len(value)):
            if value[i] <= value[i - 1]:
                raise KeyedValueError(
                    f"buckets must be strictly increasing ({value[i]:g} follows {value[i - 1]:g})",
                    (i,),
                )
        return value


class BusinessConfig(Model):
    enabled: bool = True
    users_table: TableName = "users"
    conflicts_table: TableName = "common_syncconflict"
    import_sessions_table: TableName = "import_sessions"


class PostgresConfig(Model):
    enabled: bool = True
    application_names: Annotated[list[str], unique("application name")] = Field(
        default_factory=list
    )


class RedisConfig(Model):
    enabled: bool = True
    url: SecretStr = SecretStr("redis://localhost:6379/0")
    password_file: SecretFromFile | None = None
    required: bool = False
    queues: Annotated[list[str], unique("queue")] = Field(default_factory=lambda: ["celery"])

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("invalid Redis URL: use redis://host:6379/0 or rediss://...")
        from redis.connection import parse_url

        try:
            parse_url(value.get_secret_value())  # type: ignore[no-untyped-call]
        except ValueError:  # its message may quote part of the URL, so it is not shown
            raise ValueError("invalid Redis URL: its port or an option does not parse (use "
                             "redis://host:6379/0)") from None
        return value


SHOP_CELERY_TASKS = (
    "apps.integrations.tasks.run_selective_import_task",
    "apps.products.tasks.cleanup_stale_import_sessions",
    "apps.cart.tasks.clear_abandoned_carts_task",
    "apps.users.tasks.monitor_pending_verification_queue",
)


class CeleryConfig(Model):
    """Celery workers and tasks, read from the broker as Celery's own monitors read them."""

    enabled: bool = False
    broker_url: SecretStr = SecretStr("redis://localhost:6379/0")
    password_file: SecretFromFile | None = None
    required: bool = False
    tasks: Annotated[list[str], unique("task")] = Field(
        default_factory=lambda: list(SHOP_CELERY_TASKS)
    )
    max_other_tasks: int = Field(20, ge=0, le=500)
    enable_events: bool = True
    connect_timeout: PositiveDuration = 3.0
    inspect_interval: PositiveDuration = 30.0
    inspect_timeout: PositiveDuration = 1.0
    forget_worker_after: PositiveDuration = 900.0
    max_tasks_in_memory: int = Field(10_000, ge=100, le=1_000_000)

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("redis://", "rediss://", "redis+socket://")):
            raise ValueError(
                "invalid Celery broker URL: use redis://host:6379/0, rediss://... or "
                "redis+socket:///path (only the Redis transport is supported)"
            )
        return value

    @model_validator(mode="after")
    def _timeouts_fit(self) -> CeleryConfig:
        if self.inspect_timeout >= self.inspect_interval:
            raise KeyedValueError(
                f"must be shorter than inspect_interval ({self.inspect_interval:g}s)",
                ("inspect_timeout",),
            )
        return self


class LogDirConfig(Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    path: Path


class DiskConfig(Model):
    enabled: bool = True
    dirs: Annotated[list[LogDirConfig], unique("dir name", key=lambda d: d.name)] = Field(
        default_factory=list
    )
    walk_timeout: PositiveDuration = 2.0
    max_files: int = Field(100_000, ge=1)


class OneCConfig(Model):
    enabled: bool = True
    url: AnyHttpUrl | None = None
    required: bool = False
    username: str | None = None
    password: SecretStr | None = None
    password_file: SecretFromFile | None = None
    token: SecretStr | None = None
    token_file: SecretFromFile | None = None
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(
        default_factory=lambda: [200]
    )
    json_field: str | None = None
    json_value: str | None = None
    body_regex: Regex | None = None
    ca_file: Path | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _one_credential(self) -> OneCConfig:
        if self.password is not None and self.password_file is not None:
            raise KeyedValueError("set password or password_file, not both", ("password_file",))
        if self.token is not None and self.token_file is not None:
            raise KeyedValueError("set token or token_file, not both", ("token_file",))
        return self

    def secret_password(self) -> str | None:
        chosen = self.password or self.password_file
        return chosen.get_secret_value() if chosen else None

    def secret_token(self) -> str | None:
        chosen = self.token or self.token_file
        return chosen.get_secret_value() if chosen else None


class ProcessGroupConfig(Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    name_regex: Regex | None = None
    cmdline_regex: Regex | None = None

    @model_validator(mode="after")
    def _has_matcher(self) -> ProcessGroupConfig:
        if not self.name_regex and not self.cmdline_regex:
            raise ValueError("a process group needs name_regex or cmdline_regex")
        return self


def _default_process_groups() -> list[ProcessGroupConfig]:
    return [
        ProcessGroupConfig(name="celery_worker", cmdline_regex=r"celery\b.*\bworker\b"),
        ProcessGroupConfig(
            name="customer_import", cmdline_regex=r"manage\.py\s+import_customers_from_1c"
        ),
    ]


class ProcessConfig(Model):
    enabled: bool = True
    groups: Annotated[
        list[ProcessGroupConfig], unique("group name", key=lambda g: g.name)
    ] = Field(default_factory=_default_process_groups)


class CollectorsConfig(Model):
    synclog: SyncLogConfig = Field(default_factory=lambda: SyncLogConfig())
    business: BusinessConfig = Field(default_factory=lambda: BusinessConfig())
    postgres: PostgresConfig = Field(default_factory=lambda: PostgresConfig())
    redis: RedisConfig = Field(default_factory=lambda: RedisConfig())
    disk: DiskConfig = Field(default_factory=lambda: DiskConfig())
    onec: OneCConfig = Field(default_factory=lambda: OneCConfig())
    process: ProcessConfig = Field(default_factory=lambda: ProcessConfig())
    celery: CeleryConfig = Field(default_factory=lambda: CeleryConfig())

    def enabled_names(self) -> list[str]:
        return [name for name in type(self).model_fields if getattr(self, name).enabled]


DB_COLLECTORS = ("synclog", "business", "postgres")
COLLECTOR_NAMES = tuple(CollectorsConfig.model_fields)


class Config(Model):
    scrape_timeout: PositiveDuration = 10.0
    database: DatabaseConfig | None = None
    collectors: CollectorsConfig = Field(default_factory=lambda: CollectorsConfig())

    @model_validator(mode="after")
    def _database_when_needed(self) -> Config:
        needing = [n for n in DB_COLLECTORS if getattr(self.collectors, n).enabled]
        if needing and self.database is None:
            raise KeyedValueError(
                f"required while these collectors are enabled: {', '.join(needing)} "
                "(add the section or disable them)",
                ("database",),
            )
        if self.collectors.onec.enabled and self.collectors.onec.url is None:
            raise KeyedValueError(
                "required while the onec collector is enabled (or set enabled: false)",
                ("collectors", "onec", "url"),
            )
        return self

    def with_collectors(self, overrides: dict[str, bool]) -> Config:
        """Apply ``--collector.NAME``/``--no-collector.NAME`` flags, re-validating the result."""
        data = self.model_dump(mode="python", round_trip=True)
        for name, enabled in overrides.items():
            data["collectors"][name]["enabled"] = enabled
        try:
            return Config.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(error_lines(Config, exc, lambda _loc: "(flags)")) from None
