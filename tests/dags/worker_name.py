"""`[core] hostname_callable` for the Celery test: two workers on one machine share its hostname, so
each worker process names itself (VAXREPORT_WORKER_NAME) and task instances record that name."""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("VAXREPORT_WORKER_NAME") or socket.getfqdn()
