"""One frame's work split over two threads: `run_beside` starts a task on a helper thread while the
caller goes on, `settled` keeps an exception from leaving the frame while that task still reads its arrays.

Used by the DART engine (the student beside the depth stages, patch gathers) and the app's compositor (the
background rendered beside foreground estimation). numpy, OpenCV and onnxruntime release the GIL in their
heavy calls, so the two threads run on two cores.
"""

from __future__ import annotations

from concurrent.futures import Executor, Future, wait
from contextlib import contextmanager


def run_beside(executor: Executor | None, fn, *args) -> Future:
    """`fn(*args)` on `executor`'s thread while the caller goes on, or here and now without an executor; the
    result (or the exception raised) from the returned future's `.result()`."""
    if executor is not None:
        return executor.submit(fn, *args)
    done: Future = Future()
    done.set_result(fn(*args))
    return done


@contextmanager
def settled(future: Future | None):
    """On an exception inside the block, wait for `future`'s task before it propagates: a task still running
    on the executor would read this frame's inputs while the next frame overwrites them."""
    try:
        yield
    except BaseException:
        if future is not None:
            wait([future])
        raise
