"""glibc's arena limit, observed through glibc itself: ``malloc_info`` lists one ``<heap>`` per arena.

Each case runs in a fresh interpreter (an arena limit only bites before threads allocate), starts
eight threads that each allocate while the others are alive, and counts the arenas. Without the
limit glibc gives each thread its own (up to eight per core); with it there are at most two.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

COUNT_ARENAS = textwrap.dedent("""
    import ctypes, re, sys, tempfile, threading
    {setup}
    barrier = threading.Barrier(9)
    keep = []
    def work():
        keep.append(bytearray(256 * 1024))  # past pymalloc: a real malloc in this thread
        barrier.wait()
        barrier.wait()
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    barrier.wait()
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    with tempfile.NamedTemporaryFile(suffix=".xml") as out:
        fp = libc.fopen(out.name.encode(), b"w")
        libc.malloc_info(0, fp)
        libc.fclose(fp)
        xml = open(out.name).read()
    barrier.wait()
    print(len(re.findall(r'<heap nr="', xml)))
""")


def arenas(setup: str, env: dict[str, str] | None = None) -> int:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    environ.update(env or {})
    done = subprocess.run([sys.executable, "-c", COUNT_ARENAS.format(setup=setup)],
                          capture_output=True, text=True, timeout=60, cwd=REPO, env=environ)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


def test_glibc_gives_each_allocating_thread_an_arena_by_default() -> None:
    assert arenas("") > 2  # the baseline: without it the tests below could not fail


def test_limit_malloc_arenas_caps_them_at_two() -> None:
    assert arenas("from exporter.memory import limit_malloc_arenas\n"
                  "assert limit_malloc_arenas()") <= 2


def test_the_command_line_entry_point_applies_it() -> None:
    setup = ("from exporter import cli\n"
             "try:\n    cli.main(['--version'])\nexcept SystemExit:\n    pass")
    assert arenas(setup) <= 2


def test_malloc_arena_max_from_the_environment_wins() -> None:
    setup = "from exporter.memory import limit_malloc_arenas\nassert not limit_malloc_arenas()"
    assert arenas(setup, {"MALLOC_ARENA_MAX": "8"}) > 2
