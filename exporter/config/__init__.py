"""The configuration: one YAML file validated once, at load, into frozen typed models.

Every error names the file, the line and the dotted key (``config.yaml:12:
collectors.redis.queues[2]: ...``). Secrets come literally, from ``${ENV_VAR}`` references or
from ``*_file`` keys, and are held as :class:`pydantic.SecretStr`, which never prints.

The package: value types (:mod:`.types`), the sections (:mod:`.schema`), loading
(:mod:`.load`, on the located YAML reader :mod:`exporter.yaml_located` that the web config
shares), error messages (:mod:`.errors`) and the secret walk (:mod:`.secrets`). The names below
are the ones the rest of the code imports.
"""

from exporter.config.load import load_config, parse_config
from exporter.config.schema import (
    COLLECTOR_NAMES,
    DB_COLLECTORS,
    BusinessConfig,
    CeleryConfig,
    CollectorsConfig,
    Config,
    DatabaseConfig,
    DiskConfig,
    LogDirConfig,
    OneCConfig,
    PostgresConfig,
    ProcessConfig,
    ProcessGroupConfig,
    RedisConfig,
    SyncLogConfig,
)
from exporter.config.secrets import iter_secrets
from exporter.config.types import Window, parse_duration
from exporter.yaml_located import ConfigError

__all__ = [
    "COLLECTOR_NAMES",
    "DB_COLLECTORS",
    "BusinessConfig",
    "CeleryConfig",
    "CollectorsConfig",
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "DiskConfig",
    "LogDirConfig",
    "OneCConfig",
    "PostgresConfig",
    "ProcessConfig",
    "ProcessGroupConfig",
    "RedisConfig",
    "SyncLogConfig",
    "Window",
    "iter_secrets",
    "load_config",
    "parse_config",
    "parse_duration",
]
