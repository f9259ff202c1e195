"""The configuration: one YAML file validated once, at load, into frozen typed models.

Every error names the file, the line and the dotted key (``config.yaml:12:
collectors.redis.queues[2]: ...``). Secrets come literally, from ``${ENV_VAR}`` references or
from ``*_file`` keys, and are held as :class:`pydantic.SecretStr`, which never prints.
"""

from __future__ import annotations

import difflib
import os
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    AnyUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

# --- value types ------------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: Any) -> float:
    """Prometheus-style duration (``500ms``, ``15s``, ``1h30m``) or plain seconds, to seconds."""
    if isinstance(value, bool):
        raise ValueError(
            f"a duration must be a string like '15s' or a number of seconds (got bool {value!r})"
        )
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("-"):
            raise ValueError(f"a duration cannot be negative (got {value!r})")
        if not text or _DURATION_PART.sub("", text):
            raise ValueError(f"invalid duration {value!r}: use e.g. '500ms', '15s', '5m', '1h30m'")
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    else:
        raise ValueError(
            "a duration must be a string like '15s' or a number of seconds "
            f"(got {type(value).__name__})"
        )
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative (got {value!r})")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]


MAX_SECRET_BYTES = 64 * 1024


def _read_secret_file(value: Any) -> Any:
    if isinstance(value, SecretStr):  # already read: a re-validation (Config.with_collectors)
        return value
    if not isinstance(value, str | os.PathLike):
        raise ValueError("must be a file path")
    path = Path(value)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read secret file {str(path)!r}: {exc.strerror}") from None
    if len(data) > MAX_SECRET_BYTES:
        raise ValueError(f"secret file {str(path)!r} is larger than {MAX_SECRET_BYTES // 1024} "
                         "KiB; it should hold one password or token")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"secret file {str(path)!r} is not UTF-8 text") from None


SecretFromFile = Annotated[SecretStr, BeforeValidator(_read_secret_file)]
"""A ``*_file`` key: the path is read at load and only its content (stripped) is kept."""

_IDENT = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*$")


def _table_name(value: str) -> str:
    if not _IDENT.match(value):
        raise ValueError(f"invalid table name {value!r}: use 'table' or 'schema.table'")
    return value


TableName = Annotated[str, AfterValidator(_table_name)]


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


Regex = Annotated[str, AfterValidator(_regex)]


@dataclass(frozen=True)
class Window:
    """A sliding window: its label as written (``5m``) and its length in seconds."""

    label: str
    seconds: float


def _window(value: Any) -> Window:
    if isinstance(value, Window):
        return value
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("a window must be longer than 0s")
    label = value.strip() if isinstance(value, str) else f"{value:g}s"
    return Window(label, seconds)


WindowSpec = Annotated[
    Window, BeforeValidator(_window), PlainSerializer(lambda w: w.label, return_type=str)
]


class KeyedValueError(ValueError):
    """A validation error about something below the value being validated: ``loc`` is appended
    to the error's location, so the message names (and points at the line of) the real culprit."""

    def __init__(self, message: str, loc: tuple[str | int, ...]) -> None:
        super().__init__(message)
        self.loc = loc


def _unique(values: list[Any], what: str) -> list[Any]:
    seen: set[Any] = set()
    for i, v in enumerate(values):
        key = v.label if isinstance(v, Window) else v
        if key in seen:
            raise KeyedValueError(f"duplicate {what} {key!r}", (i,))
        seen.add(key)
    return values


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- sections ---------------------------------------------------------------------------------


class DatabaseConfig(_Model):
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


class SyncLogConfig(_Model):
    enabled: bool = True
    table: TableName = "common_customersynclog"
    time_source: Literal["database", "local"] = "database"
    windows: Annotated[list[WindowSpec], AfterValidator(lambda v: _unique(v, "window"))] = Field(
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


class BusinessConfig(_Model):
    enabled: bool = True
    users_table: TableName = "users"
    conflicts_table: TableName = "common_syncconflict"
    import_sessions_table: TableName = "import_sessions"


class PostgresConfig(_Model):
    enabled: bool = True
    application_names: Annotated[
        list[str], AfterValidator(lambda v: _unique(v, "application name"))
    ] = Field(default_factory=list)


class RedisConfig(_Model):
    enabled: bool = True
    url: SecretStr = SecretStr("redis://localhost:6379/0")
    password_file: SecretFromFile | None = None
    required: bool = False
    queues: Annotated[list[str], AfterValidator(lambda v: _unique(v, "queue"))] = Field(
        default_factory=lambda: ["celery"]
    )

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


class CeleryConfig(_Model):
    """Celery workers and tasks, read from the broker as Celery's own monitors read them."""

    enabled: bool = False
    broker_url: SecretStr = SecretStr("redis://localhost:6379/0")
    password_file: SecretFromFile | None = None
    required: bool = False
    tasks: Annotated[list[str], AfterValidator(lambda v: _unique(v, "task"))] = Field(
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


class LogDirConfig(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    path: Path


class DiskConfig(_Model):
    enabled: bool = True
    dirs: list[LogDirConfig] = Field(default_factory=list)
    walk_timeout: PositiveDuration = 2.0
    max_files: int = Field(100_000, ge=1)

    @field_validator("dirs")
    @classmethod
    def _unique_names(cls, value: list[LogDirConfig]) -> list[LogDirConfig]:
        _unique([d.name for d in value], "dir name")
        return value


class OneCConfig(_Model):
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


class ProcessGroupConfig(_Model):
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


class ProcessConfig(_Model):
    enabled: bool = True
    groups: list[ProcessGroupConfig] = Field(default_factory=_default_process_groups)

    @field_validator("groups")
    @classmethod
    def _unique_names(cls, value: list[ProcessGroupConfig]) -> list[ProcessGroupConfig]:
        _unique([g.name for g in value], "group name")
        return value


class CollectorsConfig(_Model):
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


class Config(_Model):
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
            raise ConfigError(
                [f"(flags): {format_loc(_loc(e))}: {_message(e)}" for e in exc.errors()]
            ) from None


# --- loading with locations -------------------------------------------------------------------


class ConfigError(Exception):
    """Every problem in a config file, each as ``file:line: key: message``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


Loc = tuple[str | int, ...]
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


# --- reading YAML within bounds ---------------------------------------------------------------
# Shared by the config and the web config loaders. A config is a few KiB and a few hundred nodes;
# the bounds sit far above that and far below what would cost the daemon time or memory.

MAX_FILE_BYTES = 256 * 1024
MAX_NODES = 5_000  # YAML nodes, each alias counting as every node it stands for
MAX_DEPTH = 64


class _Refused(Exception):
    def __init__(self, mark: Any, message: str, what: str = "size") -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message
        self.what = what


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader whose composer refuses, while composing, a document past the node or depth
    bounds. An alias counts as the whole subtree it names, so an alias bomb stops at the alias
    that crosses the bound, and any walk of the composed tree is bounded too."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._nodes = 0
        self._depth = 0
        self._deepest = 0
        self._expanded: dict[str, tuple[int, int]] = {}  # anchor: (nodes, height) it stands for

    def _count(self, nodes: int, depth: int, mark: Any) -> None:
        self._nodes += nodes
        self._deepest = max(self._deepest, depth)
        if self._nodes > MAX_NODES:
            raise _Refused(mark, f"the document grows past {MAX_NODES} YAML nodes here (aliases "
                                 "count as every node they repeat); a config has a few hundred")
        if depth > MAX_DEPTH:
            raise _Refused(mark, f"nested deeper than {MAX_DEPTH} levels")

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        depth = self._depth + 1
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self.anchors and event.anchor not in self._expanded:
                raise _Refused(event.start_mark, f"alias *{event.anchor} refers to a node that "
                                                 "contains it; a config must be a tree", "syntax")
            nodes, height = self._expanded.get(str(event.anchor), (0, 1))
            self._count(nodes, depth + height - 1, event.start_mark)
            return super().compose_node(parent, index)
        self._count(1, depth, event.start_mark)
        before, outer_deepest = self._nodes, self._deepest
        self._depth = self._deepest = depth
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth = depth - 1
        if event.anchor is not None:
            self._expanded[event.anchor] = (self._nodes - before + 1, self._deepest - depth + 1)
        self._deepest = max(outer_deepest, self._deepest)
        return node


def read_yaml_text(path: str | Path, filename: str) -> str:
    """The file's text: at most :data:`MAX_FILE_BYTES` are read, and it must be UTF-8."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError([f"{filename}:0: (file): cannot read: {reason}"]) from None
    if len(data) > MAX_FILE_BYTES:
        line = data.count(b"\n", 0, MAX_FILE_BYTES) + 1
        raise ConfigError([f"{filename}:{line}: (file): the file goes past "
                           f"{MAX_FILE_BYTES // 1024} KiB on this line; a config is a few KiB, so "
                           "it is not parsed"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise ConfigError([f"{filename}:{line}: (file): byte 0x{data[exc.start]:02x} in column "
                           f"{column} is not UTF-8; save the file as UTF-8"]) from None


def compose_yaml(text: str, filename: str) -> yaml.Node | None:
    """The YAML node tree of ``text`` within the node and depth bounds, or a located error."""
    try:
        node: yaml.Node | None = yaml.compose(text, Loader=_BoundedLoader)
    except _Refused as exc:
        line = exc.mark.line + 1
        raise ConfigError([f"{filename}:{line}: ({exc.what}): {exc.message}"]) from None
    except yaml.reader.ReaderError as exc:  # a control character such as NUL
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError([f"{filename}:{line}: (syntax): invalid YAML: character "
                           f"#x{exc.character:04x} is not allowed"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and context_mark is not None and context_mark.line + 1 != line:
            problem += f" ({context} on line {context_mark.line + 1})"
        raise ConfigError([f"{filename}:{line}: (syntax): invalid YAML: {problem}"]) from None
    return node


def load_yaml(path: str | Path) -> yaml.Node | None:
    """:func:`read_yaml_text` then :func:`compose_yaml`: every bound, one call."""
    return compose_yaml(read_yaml_text(path, str(path)), str(path))


class _Located:
    """Turns a YAML node tree into Python data while noting each key's line."""

    def __init__(self, filename: str, environ: dict[str, str]) -> None:
        self.filename = filename
        self.environ = environ
        self.lines: dict[Loc, int] = {}
        self.errors: list[str] = []
        self._scalars = yaml.SafeLoader("")

    def error(self, loc: Loc, line: int, message: str) -> None:
        self.errors.append(f"{self.filename}:{line}: {format_loc(loc)}: {message}")

    def convert(self, node: yaml.Node, loc: Loc) -> Any:
        self.lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = key_node.value
                child = (*loc, key)
                line = key_node.start_mark.line + 1
                if not isinstance(key_node, yaml.ScalarNode):
                    self.error(loc, line, "keys must be plain strings")
                    continue
                if key in out:
                    first = self.lines[child]
                    self.error(child, line, f"duplicate key (first set on line {first})")
                    continue
                self.lines[child] = line
                out[key] = self.convert(value_node, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*loc, i)) for i, item in enumerate(node.value)]
        value = self._scalars.construct_object(node)  # type: ignore[no-untyped-call]
        if isinstance(value, str):
            value = self._expand_env(value, loc, node.start_mark.line + 1)
        return value

    def _expand_env(self, text: str, loc: Loc, line: int) -> str:
        def repl(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self.environ:
                self.error(loc, line, f"environment variable {name} is not set")
                return ""
            return self.environ[name]

        return _ENV_REF.sub(repl, text)

    def line_of(self, loc: Loc) -> int:
        while loc and loc not in self.lines:
            loc = loc[:-1]
        return self.lines.get(loc, 1)


# Errors whose message does not say what was given; the input is appended (never for URLs: a
# URL may carry credentials).
_TYPE_ERRORS = {"int_type", "int_parsing", "bool_type", "bool_parsing", "string_type", "float_type",
                "float_parsing", "int_from_float", "list_type", "literal_error",
                "string_pattern_mismatch", "greater_than", "greater_than_equal", "less_than",
                "less_than_equal", "too_short"}
_MAPPING_ERRORS = {"model_type", "dict_type", "model_attributes_type"}


def _types(annotation: Any) -> Iterator[Any]:
    yield annotation
    for arg in get_args(annotation):
        yield from _types(arg)


def _walk_fields(loc: Loc) -> Iterator[tuple[str, Any, list[type]]]:
    """For each key of ``loc``: the model holding it and the classes in the key's type."""
    model: Any = Config
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        annotation = None if field is None else field.annotation
        types = [t for t in _types(annotation) if isinstance(t, type)] if field else []
        yield part, model, types
        model = next((t for t in types if issubclass(t, BaseModel)), None)


def _is_secret(loc: Loc) -> bool:
    """Whether ``loc`` is (inside) a secret field, whose input must never be echoed."""
    return any(issubclass(t, SecretStr) for _, _, types in _walk_fields(loc) for t in types)


def _unknown_key(loc: Loc) -> str:
    *_, (key, model, _) = _walk_fields(loc)
    close = difflib.get_close_matches(key, getattr(model, "model_fields", {}), n=1, cutoff=0.7)
    return f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key"


def _message(err: Any) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return _unknown_key(tuple(err["loc"]))
    if kind == "missing":
        return "required key is missing"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    value = err.get("input")
    if kind in _MAPPING_ERRORS:
        msg = "must be a mapping of keys"
    if kind in _TYPE_ERRORS | _MAPPING_ERRORS:
        # Only scalars of non-secret keys are quoted: a list or mapping may hold a secret, and so
        # may a scalar where a section belongs (``database: postgresql://u:PASSWORD@h/db``).
        hidden = _is_secret(tuple(err["loc"])) or kind in _MAPPING_ERRORS
        shown = "" if hidden or isinstance(value, list | dict) else f" {value!r}"
        msg += f" (got {type(value).__name__}{shown})"
    return str(msg)


def _loc(err: Any) -> Loc:
    error = (err.get("ctx") or {}).get("error")
    extra = error.loc if isinstance(error, KeyedValueError) else ()
    return (*err["loc"], *extra)


def load_config(path: str | Path, environ: dict[str, str] | None = None) -> Config:
    """Read, locate and validate ``path``; raise :class:`ConfigError` listing every problem."""
    filename = str(path)
    text = read_yaml_text(path, filename)
    return parse_config(text, filename, dict(os.environ) if environ is None else environ)


def parse_config(text: str, filename: str, environ: dict[str, str]) -> Config:
    node = compose_yaml(text, filename)
    located = _Located(filename, environ)
    data = located.convert(node, ()) if node is not None else {}
    if not isinstance(data, dict):
        located.error((), 1, "the file must be a mapping of keys")
    if located.errors:
        raise ConfigError(located.errors)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            [
                f"{filename}:{located.line_of(_loc(e))}: {format_loc(_loc(e))}: {_message(e)}"
                for e in exc.errors()
            ]
        ) from None


def iter_secrets(config: Config) -> Iterator[str]:
    """Every secret value in ``config``, so the log filter can mask them anywhere."""

    def walk(obj: Any) -> Iterator[str]:
        if isinstance(obj, SecretStr):
            value = obj.get_secret_value()
            if value:
                yield value
                yield from _dsn_passwords(value)
        elif isinstance(obj, AnyUrl) and obj.password:  # kept percent-encoded by pydantic
            yield obj.password
            yield urllib.parse.unquote(obj.password)
        elif isinstance(obj, BaseModel):
            for name in type(obj).model_fields:
                yield from walk(getattr(obj, name))
        elif isinstance(obj, list | tuple):
            for item in obj:
                yield from walk(item)

    yield from walk(config)


def _dsn_passwords(value: str) -> Iterator[str]:
    """The password inside a URL (as written and percent-decoded) or a key=value DSN."""
    match = re.match(r"^[a-z]+://[^:/@]*:([^@]+)@", value)
    if match:
        yield match.group(1)
        yield urllib.parse.unquote(match.group(1))
    elif "password" in value:
        from psycopg.conninfo import conninfo_to_dict

        try:
            password = conninfo_to_dict(value).get("password")
        except Exception:
            return
        if isinstance(password, str) and password:
            yield password
