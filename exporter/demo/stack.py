"""What the demo started, so stopping undoes exactly that, in reverse order."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)


@dataclass
class DemoStack:
    """The data folder and one stop function per component started, newest last."""

    data_dir: Path
    temporary: bool
    stops: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    def started(self, name: str, stop: Callable[[], None]) -> None:
        self.stops.append((name, stop))

    def stop(self) -> None:
        """Stop every component (a failing stop is logged, the rest still run), then remove a
        temporary data folder."""
        for name, stop in reversed(self.stops):
            try:
                stop()
                log.debug("stopped", component=name)
            except Exception:
                log.exception("stop failed", component=name)
        self.stops.clear()
        if self.temporary:
            shutil.rmtree(self.data_dir, ignore_errors=True)
