"""How the long-running app uses the C allocator (glibc malloc; both functions are no-ops elsewhere).

The live app runs for hours with many threads (Qt, the engine, onnxruntime's pool, PyAV, the
virtual webcam). glibc gives each thread that contends for the heap its own arena, up to 8 per core,
and memory freed in one arena is not reused by the others: numpy frame buffers allocated by one
thread and freed by another leave each arena holding its own high-water mark, so resident memory
creeps up by ~30 MB per soak cycle. With two arenas it stays flat (README "Soak test": in the same
state of each 3-minute cycle, resident memory went 514 -> 598 -> 622 -> 654 -> 616 MB with glibc's default
and 511 -> 515 -> 513 -> 518 -> 531 MB with two arenas; `main.py soak --minutes 15 --every 8
--sample-every 4 --malloc-arenas 0` against the same without the last option).

`heap_figures` reads glibc's own account (`mallinfo2`), so a soak can tell memory the program holds
from memory the allocator keeps after frees.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_ARENA_MAX = -8  # mallopt parameter number in glibc's <malloc.h>
ARENAS = 2


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas at `arenas` (>= 1); call before the app starts its threads. True when
    set (glibc), False where there is no such setting."""
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    return bool(mallopt is not None and mallopt(M_ARENA_MAX, int(arenas)) == 1)


def release_freed_memory() -> None:
    """Hand memory the allocator keeps after large frees back to the system (glibc `malloc_trim`).
    Called after a mode switch or a new source, where models and frame buffers of the old state were
    dropped."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


class _Mallinfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (<malloc.h>, glibc >= 2.33): ten size_t fields, in bytes or counts."""

    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def heap_figures() -> tuple[float, float, float]:
    """(in use, mapped, free) in MB as glibc's malloc counts them over all arenas: in use = bytes handed out
    from the arenas and not freed (`uordblks`), mapped = chunks mapped on their own (`hblkhd`, large
    blocks; their virtual size, resident only where touched), free = bytes freed but kept in the arenas
    (`fordblks`; resident where touched, until `release_freed_memory`). NaNs without glibc >= 2.33.
    Python's small-object arenas, thread stacks and mapped files are outside all three."""
    mallinfo2 = getattr(_libc(), "mallinfo2", None)
    if mallinfo2 is None:
        return float("nan"), float("nan"), float("nan")
    mallinfo2.restype = _Mallinfo2
    info = mallinfo2()
    return info.uordblks / 2**20, info.hblkhd / 2**20, info.fordblks / 2**20
