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

from exporter.memory import MallocTrimmer

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


# --- malloc_trim -------------------------------------------------------------------------------

FRAGMENT = textwrap.dedent("""
    import ctypes, gc, os
    {setup}
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    # 60 MiB of 4 KiB malloc'd blocks, then 7 of every 8 freed: 28 KiB holes in the middle of
    # the heap, which glibc keeps resident; a last live block pins the top so nothing is trimmed
    blocks = [bytearray(4096) for _ in range(15000)]
    pin = bytearray(4096)
    blocks = blocks[::8]
    gc.collect()
    before = rss()
    {after}
    print(before, rss())
""")


def fragmented(setup: str, after: str) -> tuple[int, int]:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run([sys.executable, "-c", FRAGMENT.format(setup=setup, after=after)],
                          capture_output=True, text=True, timeout=60, cwd=REPO, env=environ)
    assert done.returncode == 0, done.stderr
    before, after_rss = map(int, done.stdout.split()[-2:])
    return before, after_rss


def test_freed_holes_stay_resident_without_a_trim() -> None:
    before, after = fragmented("", "pass")
    assert after > before - 2 * 2**20  # the baseline: nothing comes back by itself


def test_the_trimmer_gives_freed_holes_back() -> None:
    before, after = fragmented("from exporter.memory import MallocTrimmer\nt = MallocTrimmer()",
                               "assert t.maybe_trim()")
    assert before - after > 30 * 2**20, (before, after)  # most of the ~52 MiB of holes


def test_the_trimmer_runs_at_most_once_per_interval() -> None:
    now = [100.0]
    trimmer = MallocTrimmer(interval=60.0, clock=lambda: now[0])
    assert trimmer.maybe_trim()
    now[0] += 59.9
    assert not trimmer.maybe_trim()
    now[0] += 0.2
    assert trimmer.maybe_trim()
    assert trimmer.trims == 2
