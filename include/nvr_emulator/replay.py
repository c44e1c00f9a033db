"""X-Request-ID replay: the same id from the same client within 24 h gets the first answer.

Only answers of processed requests are kept (200, 201, 204, 404), never 401, 429 or 503, so
a client retrying with the same id after being refused is processed. Answers live in the
store, written in the same transaction as what the request stored, and survive a restart.
Two concurrent requests with one id are serialised, so the second waits for the first and
then replays it instead of processing the batch twice.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from nvr_emulator.store import Store, StoredAnswer

REPLAY_WINDOW_SECONDS = 24 * 60 * 60
REPLAYABLE = frozenset({200, 201, 204, 404})


class Replays:
    """Answers a request from the store if it was seen, otherwise runs it and keeps the answer."""

    def __init__(self, store: Store, window: float = REPLAY_WINDOW_SECONDS) -> None:
        self.store = store
        self.window = window
        self._guard = threading.Lock()
        self._in_flight: dict[tuple[str, str], tuple[threading.Lock, int]] = {}

    def _enter(self, key: tuple[str, str]) -> threading.Lock:
        with self._guard:
            lock, users = self._in_flight.get(key, (threading.Lock(), 0))
            self._in_flight[key] = (lock, users + 1)
            return lock

    def _leave(self, key: tuple[str, str]) -> None:
        with self._guard:
            lock, users = self._in_flight[key]
            if users == 1:
                del self._in_flight[key]
            else:
                self._in_flight[key] = (lock, users - 1)

    def answer(self, client_id: str, request_id: str, work: Callable[[], StoredAnswer]) -> tuple[StoredAnswer, bool]:
        """The answer to the request and whether it was replayed."""
        key = (client_id, request_id)
        lock = self._enter(key)
        try:
            # One transaction for the work and its kept answer: a crash keeps both or neither, and
            # a batch costs one commit, not two.
            with lock, self.store.transaction():
                stored = self.store.replay(client_id, request_id, self.window)
                if stored is not None:
                    return stored, True
                answer = work()
                if answer.status in REPLAYABLE:
                    self.store.keep_answer(client_id, request_id, answer, self.window)
                return answer, False
        finally:
            self._leave(key)
