"""The register hook and the run-time bridge between Airflow and the `vaxreport` package.

The package never imports Airflow; here Airflow connections become the package's plain
`ConnectionInfo`, and every secret the package meets (client secret, access tokens) is handed to
Airflow's secret masker before anything could log it.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

if TYPE_CHECKING:
    from datetime import date

    from vaxreport.pipeline import Runtime
    from vaxreport.registry.client import RegistryClient
    from vaxreport.settings import ConnectionInfo

CONTEXT_NAMESPACE = uuid.UUID("0b6a8d4e-55a1-4c1e-9f7e-3f2b8c6d1a90")


def connection_info(conn_id: str) -> ConnectionInfo:
    from vaxreport.settings import ConnectionInfo

    conn = BaseHook.get_connection(conn_id)
    return ConnectionInfo(
        conn_id=conn_id,
        conn_type=conn.conn_type or "",
        host=conn.host or "",
        login=conn.login or "",
        password=conn.password or "",
        schema=conn.schema or "",
        port=conn.port,
        extra=conn.extra_dejson or {},
    )


def _mask(secret: str) -> None:
    from airflow.sdk.log import mask_secret

    if secret:
        mask_secret(secret)


def runtime(run_id: str) -> Runtime:
    """A package runtime for one DAG run; X-Context-ID is derived from the run id, so every task of
    the run (and every retry) shows up under one context at the register."""
    from vaxreport.pipeline import Runtime

    return Runtime(resolve=connection_info, on_secret=_mask, context_id=str(uuid.uuid5(CONTEXT_NAMESPACE, run_id)))


def run_day(context: dict[str, Any]) -> date:
    """The day a run reports: the `day` param, else the Stockholm day before the logical date."""
    from vaxreport.window import day_for_run

    return day_for_run(context.get("logical_date"), context["params"].get("day"))


class RegistryHook(BaseHook):
    """Builds `vaxreport.registry.RegistryClient` from the `nvr_api` connection.

    Host is the base URL, login the client id, password the client secret; extra may hold
    `token_url`, `scope`, `timeout_s`, `max_attempts`.
    """

    conn_name_attr = "nvr_conn_id"
    default_conn_name = "nvr_api"
    conn_type = "http"
    hook_name = "NVR register (OAuth2 client credentials)"

    def __init__(self, nvr_conn_id: str = default_conn_name, context_id: str | None = None) -> None:
        super().__init__()
        self.nvr_conn_id = nvr_conn_id
        self.context_id = context_id

    def get_conn(self) -> RegistryClient:
        from vaxreport.pipeline import Runtime

        def resolve(conn_id: str) -> ConnectionInfo:
            return connection_info(self.nvr_conn_id if conn_id == self.default_conn_name else conn_id)

        return Runtime(resolve=resolve, on_secret=_mask, context_id=self.context_id or str(uuid.uuid4())).registry()
