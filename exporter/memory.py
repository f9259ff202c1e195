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
