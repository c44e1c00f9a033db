"""Running the emulator: in the foreground (CLI) or on a free port in a thread (tests).

The listening socket is bound here, before uvicorn starts, so port 0 works: the OS picks a
free port and we know it before the first request, with no race between picking and binding.
"""

from __future__ import annotations

import gc
import logging
import socket
import threading
from dataclasses import replace
from typing import TYPE_CHECKING

import uvicorn

from nvr_emulator.app import create_app
from nvr_emulator.config import EmulatorConfig, is_loopback

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_SECONDS = 10.0
#: gc.set_threshold for the CLI process, see :func:`tune_gc`.
GC_THRESHOLDS = (100_000, 50, 100)


class RemoteBindRefused(ValueError):
    """Binding a non-loopback address without ``allow_remote``: the emulator has dev credentials."""


def bind(config: EmulatorConfig) -> socket.socket:
    """A listening socket for ``config.host:config.port`` (port 0: any free port)."""
    if not config.allow_remote and not is_loopback(config.host):
        raise RemoteBindRefused(f"refusing to bind {config.host!r}: not loopback (use --allow-remote)")
    host = "127.0.0.1" if config.host == "localhost" else config.host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), config.port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def base_url(sock: socket.socket) -> str:
    """The emulator's ``{base}`` for a bound socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _server(config: EmulatorConfig) -> uvicorn.Server:
    app = create_app(config)
    # Our own start-up line replaces uvicorn's; access logs are off to keep test output readable.
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))


def tune_gc() -> None:
    """Garbage collection for a process that is the emulator and nothing else (the CLI).

    A batch allocates thousands of short-lived containers. With the default threshold (700)
    the collector ran every few entries, promoted each batch in flight to the old generation,
    and then walked the whole heap in frequent full collections: about a tenth of a batch's
    cost. Young objects are collected less often now, and everything alive at start-up
    (modules, the app, the catalog, the population) is frozen out of the collections.
    Not for :func:`run_in_thread`: that process belongs to the tests.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def serve(config: EmulatorConfig) -> None:
    """Run in the foreground until interrupted (the CLI)."""
    sock = bind(config)
    server = _server(config)
    tune_gc()
    log.info("NVR emulator listening on %s (store: %s)", base_url(sock), config.db or "in memory")
    server.run(sockets=[sock])


def run_in_thread(config: EmulatorConfig | None = None) -> tuple[str, Callable[[], None]]:
    """Start an emulator on 127.0.0.1 and a free port in a daemon thread.

    ``config.host`` and ``config.port`` are ignored. Returns the base URL and a ``stop``
    function that shuts the server down, closes its store (so a file store can be reopened)
    and waits for the thread; calling it twice is harmless.
    """
    config = replace(config or EmulatorConfig(), host="127.0.0.1", port=0)
    sock = bind(config)
    url = base_url(sock)
    server = _server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"nvr-emulator {url}", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            sock.close()
            raise RuntimeError("the NVR emulator did not start")
        thread.join(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(STARTUP_TIMEOUT_SECONDS)

    log.info("NVR emulator listening on %s (store: %s)", url, config.db or "in memory")
    return url, stop
