"""glibc's malloc tuned for a long-running daemon with a few busy threads and a small heap.

glibc gives threads that allocate at the same time their own malloc arenas, up to eight per core,
and each arena keeps the memory freed into it. The exporter's heap is tens of MiB spread over a
dozen threads (collectors, HTTP requests), so free space scattered over many arenas made RSS creep
by 5-6 % over the first half hour of the soak with no Python object or C allocation leaking
(docs/soak.md). Two arenas bound that scattering; the lock contention they add is nothing at a
scrape every few seconds (small objects never reach malloc: pymalloc serves them).

Done from inside the process at start-up, before any thread exists, so every way of starting the
daemon (console script, ``python -m exporter``, the container image) gets it; ``MALLOC_ARENA_MAX``
in the environment still wins, for an operator who wants another value.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time
from collections.abc import Callable
from typing import cast

import structlog

log = structlog.get_logger(__name__)

M_ARENA_MAX = -8  # <malloc.h>
MALLOC_ARENAS = 2


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """``mallopt(M_ARENA_MAX, arenas)`` unless ``MALLOC_ARENA_MAX`` is set; True if applied.

    Not glibc (musl, macOS): nothing to tune, returns False."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(M_ARENA_MAX, arenas))
    if not applied:
        log.debug("mallopt(M_ARENA_MAX) refused", arenas=arenas)
    return applied


TRIM_INTERVAL_SECONDS = 60.0


class MallocTrimmer:
    """``malloc_trim(0)`` at most once per interval: give the pages of free chunks back.

    glibc returns freed memory to the system only from the top of a heap; free chunks between
    live ones stay resident however long they are unused. A scrape allocates and frees a few MiB
    of buffers (query results, rows, the encoded answer) among data that lives for a window, so
    such holes accumulate and RSS creeps although in-use memory is flat. ``malloc_trim`` (glibc
    2.8+) releases the whole free pages of every arena with ``madvise``; done once a minute after a
    scrape, it costs about a millisecond. Not glibc: nothing to do."""

    def __init__(self, interval: float = TRIM_INTERVAL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._next = 0.0
        self._lock = threading.Lock()
        self._trim: Callable[[int], int] | None = _malloc_trim()
        self.trims = 0

    def maybe_trim(self) -> bool:
        if self._trim is None:
            return False
        now = self.clock()
        with self._lock:
            if now < self._next:
                return False
            self._next = now + self.interval
        self._trim(0)
        self.trims += 1
        return True


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return cast(Callable[[int], int], trim)
