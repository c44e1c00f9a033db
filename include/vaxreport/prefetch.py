"""Run an iterator ahead in a thread of its own, so that two waits can overlap."""

from __future__ import annotations

import contextlib
import threading
from queue import Empty, Full, Queue
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Iterator

T = TypeVar("T")


def prefetched(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """`items`, produced by a thread of their own up to `depth` ahead: reading a source and writing
    the ledger wait on two different database servers, and this lets those waits overlap. An
    error in the producer is raised here; stopping early stops the producer (and closes `items`)."""
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        queue.put((item, None), timeout=0.1)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    break
        except BaseException as exc:  # handed over to the consumer
            queue.put((done, exc))
            return
        finally:
            close = getattr(items, "close", None)
            if close:
                close()
        queue.put((done, None))

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = queue.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(Empty):
                queue.get(timeout=0.1)
        thread.join()
