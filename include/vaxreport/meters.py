"""Counters of work done and time spent, shared by threads; the benchmark reads and resets them."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator


class Meter:
    """Rows (or records) handled and seconds spent on one kind of work."""

    def __init__(self) -> None:
        self.rows, self.seconds = 0, 0.0
        self._lock = threading.Lock()

    def add(self, rows: int, seconds: float) -> None:
        with self._lock:
            self.rows += rows
            self.seconds += seconds

    def reset(self) -> None:
        with self._lock:
            self.rows, self.seconds = 0, 0.0

    @contextlib.contextmanager
    def measure(self, rows: int) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(rows, time.perf_counter() - started)


LEDGER_WRITES = Meter()  # rows written to the ledger
BUNDLE_BUILDING = Meter()  # records turned into serialised bundles
VALIDATION = Meter()  # rows checked against the register's rules (derived columns and the GX suite)
