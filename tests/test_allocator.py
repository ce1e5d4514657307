"""app/allocator.py: the malloc arena cap the live app sets, and the trim it calls."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.allocator import limit_malloc_arenas, release_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_arena_cap_limits_how_many_arenas_threads_get():
    # 16 threads allocating at once: glibc's default gives them up to 8 arenas per core; with the cap,
    # malloc_stats lists at most 2 arenas. Run in a fresh interpreter (arenas, once made, stay).
    script = r"""
import ctypes, sys, threading
from app.allocator import limit_malloc_arenas
if sys.argv[1] == "cap":
    assert limit_malloc_arenas(2)
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
barrier = threading.Barrier(16)
def work():
    barrier.wait()
    blocks = [libc.malloc(4096) for _ in range(2000)]
    for b in blocks:
        libc.free(b)
threads = [threading.Thread(target=work) for _ in range(16)]
[t.start() for t in threads]; [t.join() for t in threads]
sys.stdout.flush()
libc.malloc_stats()  # one "Arena N:" block per arena, on stderr
"""
    def heaps(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, timeout=60,
                             cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
        assert out.returncode == 0, out.stderr
        return out.stderr.count("Arena ")

    assert heaps("cap") <= 2
    assert heaps("default") > 2  # the test can tell: without the cap the threads spread over more arenas


def test_trim_is_safe_to_call_any_time():
    release_freed_memory()
    release_freed_memory()
    assert limit_malloc_arenas(2) in (True, False)
