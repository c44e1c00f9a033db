"""Writes the current DAG run's note through Airflow's public REST API.

Airflow 3.3's Task SDK lets a task read its run but not annotate it, and task code has no
metadata-database access; the REST API (`PATCH /api/v2/dags/{dag}/dagRuns/{run}`) is the supported
way. It needs an account: the connection `vaxreport_airflow_api` (host = the api-server's base URL,
login and password = a service user with at least the `user` role). Without that connection the
note is logged instead, and the run is not failed for it: a missing note must never cost a report.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import httpx
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

NOTE_CONN_ID = "vaxreport_airflow_api"
TIMEOUT_S = 15.0

log = logging.getLogger("vaxreport")


def _base_url(conn: Any) -> str:
    host = (conn.host or "").rstrip("/")
    if host.startswith(("http://", "https://")):
        return host
    scheme = "https" if conn.conn_type == "https" else "http"
    return f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")


def set_run_note(context: dict[str, Any], note: str) -> bool:
    """Set the note of the run `context` belongs to; True when Airflow took it."""
    from airflow.sdk.log import mask_secret

    try:
        conn = BaseHook.get_connection(NOTE_CONN_ID)
    except AirflowNotFoundException:
        log.info("run note not written (no connection %r); it reads:\n%s", NOTE_CONN_ID, note)
        return False
    if conn.password:
        mask_secret(conn.password)
    base = _base_url(conn)
    dag_id, run_id = context["dag"].dag_id, context["run_id"]
    try:
        with httpx.Client(base_url=base, timeout=TIMEOUT_S) as client:
            login = client.post("/auth/token", json={"username": conn.login, "password": conn.password})
            login.raise_for_status()
            token = login.json()["access_token"]
            mask_secret(token)
            answer = client.patch(
                f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}",
                params={"update_mask": "note"},
                json={"note": note},
                headers={"Authorization": f"Bearer {token}"},
            )
            answer.raise_for_status()
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        log.warning(
            "run note not written: %s at %s%s; it reads:\n%s",
            type(exc).__name__,
            base,
            f" (HTTP {status})" if status else "",
            note,
        )
        return False
    log.info("run note written to %s %s", dag_id, run_id)
    return True
