"""Configuration read from the environment, in the same shape Airflow connections take.

The pipeline has three connections (`nvr_api`, the source, `vaxreport_db`). Airflow reads them from
`AIRFLOW_CONN_<ID>` variables; the CLI reads the very same variables here, so `make run` and
`python -m vaxreport run-day` can never disagree about where the data lives. Nothing secret has a
default in code except the emulator's published development credentials.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa

REGISTRY_CONN_ID = "nvr_api"
LEDGER_CONN_ID = "vaxreport_db"
DEFAULT_SOURCE_CONN_ID = "vaxreport_source_embedded"


@dataclass(frozen=True)
class ConnectionInfo:
    """The subset of an Airflow Connection the package needs, without importing Airflow."""

    conn_id: str
    conn_type: str = ""
    host: str = ""
    login: str = ""
    password: str = field(default="", repr=False)
    schema: str = ""
    port: int | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RegistrySettings:
    """Where the register is and how to authenticate; every value comes from `nvr_api`."""

    base_url: str
    client_id: str
    client_secret: str = field(repr=False)
    token_url: str
    scope: str = ""
    user_agent: str = "vaxreport/0.1.0"
    timeout_s: float = 30.0
    max_attempts: int = 6
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 600.0
    time_budget_s: float = 3600.0
    breaker_threshold: int = 8
    plain_http_hosts: tuple[str, ...] = ()
    # bundles in flight at once, and the request rate the client keeps under (the register
    # answers 429 above its own limit; a client that paces itself never spends time on them)
    concurrency: int = 4
    max_requests_per_s: float = 40.0

    @classmethod
    def from_connection(cls, conn: ConnectionInfo) -> RegistrySettings:
        base = conn.host.rstrip("/")
        if not base.startswith(("http://", "https://")):
            scheme = conn.extra.get("scheme", "https")
            base = f"{scheme}://{base}" + (f":{conn.port}" if conn.port else "")
        extra = conn.extra
        return cls(
            base_url=base,
            client_id=conn.login,
            client_secret=conn.password,
            token_url=extra.get("token_url") or f"{base}/oauth2/token",
            scope=extra.get("scope", ""),
            timeout_s=float(extra.get("timeout_s", 30.0)),
            max_attempts=int(extra.get("max_attempts", 6)),
            backoff_base_s=float(extra.get("backoff_base_s", 0.5)),
            backoff_max_s=float(extra.get("backoff_max_s", 30.0)),
            retry_after_max_s=float(extra.get("retry_after_max_s", 600.0)),
            time_budget_s=float(extra.get("time_budget_s", 3600.0)),
            breaker_threshold=int(extra.get("breaker_threshold", 8)),
            plain_http_hosts=tuple(extra.get("plain_http_hosts", ())),
            concurrency=max(1, int(extra.get("concurrency", 4))),
            max_requests_per_s=float(extra.get("max_requests_per_s", 40.0)),
        )

    def divided(self, parts: int) -> RegistrySettings:
        """The settings of one of `parts` workers that send at the same time: each keeps under its
        part of the rate and has its part of the bundles in flight (at least one), so together
        they stay under the register's limit."""
        if parts <= 1:
            return self
        return replace(
            self,
            max_requests_per_s=self.max_requests_per_s / parts,
            concurrency=max(1, math.ceil(self.concurrency / parts)),
        )


def connection_from_env(conn_id: str, environ: dict[str, str] | None = None) -> ConnectionInfo:
    """Parse `AIRFLOW_CONN_<ID>` (JSON or URI form, as Airflow accepts both)."""
    env = os.environ if environ is None else environ
    key = f"AIRFLOW_CONN_{conn_id.upper()}"
    raw = env.get(key)
    if not raw:
        raise LookupError(f"connection {conn_id!r} is not configured: set {key} (see .env.example)")
    raw = raw.strip()
    if raw.startswith("{"):
        data = json.loads(raw)
        extra = data.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra) if extra else {}
        return ConnectionInfo(
            conn_id=conn_id,
            conn_type=data.get("conn_type", ""),
            host=data.get("host", "") or "",
            login=data.get("login", "") or "",
            password=data.get("password", "") or "",
            schema=data.get("schema", "") or "",
            port=data.get("port"),
            extra=extra,
        )
    parts = urlsplit(raw)
    return ConnectionInfo(
        conn_id=conn_id,
        conn_type=parts.scheme,
        host=unquote(parts.hostname or ""),
        login=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        schema=parts.path.lstrip("/"),
        port=parts.port,
    )


def sqlalchemy_url(conn: ConnectionInfo) -> sa.URL:
    """Turn a database connection into a SQLAlchemy URL (credentials escaped by SQLAlchemy).

    SQLite connections name the file in `host` (Airflow's own convention for sqlite); a relative
    path is taken from VAXREPORT_ROOT (the repository), so every process finds the same file.
    """
    kind = conn.conn_type.lower()
    if kind == "sqlite":
        return sa.URL.create("sqlite", database=str(resolve_path(conn.host)))
    drivers = {
        "postgres": "postgresql+psycopg2",
        "postgresql": "postgresql+psycopg2",
        "mysql": "mysql+pymysql",
        "mariadb": "mysql+pymysql",
    }
    if kind not in drivers:
        raise ValueError(f"connection {conn.conn_id!r} has unsupported type {conn.conn_type!r}")
    return sa.URL.create(
        drivers[kind],
        username=conn.login or None,
        password=conn.password or None,
        host=conn.host or None,
        port=conn.port,
        database=conn.schema or None,
    )


def resolve_path(path: str | Path) -> Path:
    """A configured path, relative ones taken from VAXREPORT_ROOT (default: the working directory)."""
    p = Path(path)
    return p if p.is_absolute() else Path(os.environ.get("VAXREPORT_ROOT", ".")).resolve() / p


def read_env_file(path: Path) -> dict[str, str]:
    """The variables a `.env` file sets: `KEY=value` lines, the first `=` splits, one pair of
    surrounding quotes stripped (as Compose and `set -a; source` read them)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def load_env_file(path: Path | None = None) -> Path | None:
    """Fill unset variables from `.env` (else `.env.example`) in the working directory.

    This is what makes `python -m vaxreport run-day` work from the repository root with the
    embedded default and nothing exported; variables already set always win.
    """
    candidates = [path] if path else [Path(".env"), Path(".env.example")]
    chosen = next((p for p in candidates if p and p.is_file()), None)
    if chosen is None:
        return None
    for key, value in read_env_file(chosen).items():
        os.environ.setdefault(key, value)
    return chosen


def home() -> Path:
    """All local state of the embedded default lives here (git-ignored)."""
    return resolve_path(os.environ.get("VAXREPORT_HOME", "var"))


def reports_dir() -> Path:
    return resolve_path(os.environ.get("VAXREPORT_REPORTS_DIR", str(home() / "reports")))


def bundles_dir() -> Path:
    return home() / "bundles"


def source_conn_ids() -> list[str]:
    """The enabled sources, comma-separated in VAXREPORT_SOURCES."""
    raw = os.environ.get("VAXREPORT_SOURCES", DEFAULT_SOURCE_CONN_ID)
    return [s.strip() for s in raw.split(",") if s.strip()]
