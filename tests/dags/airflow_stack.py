"""A real local Airflow 3 deployment for DAG tests, started as subprocesses.

`airflow_stack(tmp, extra_env)` is a context manager that

1. creates a throw-away database with a random name on the machine's PostgreSQL (127.0.0.1:5432,
   user postgres, trust auth) and runs `airflow db migrate` against it;
2. starts `airflow api-server` (127.0.0.1, a free port; it also serves the execution API the task
   processes talk to), `airflow scheduler` (LocalExecutor, no log-serving port) and
   `airflow dag-processor`, each in its own process group with a fresh AIRFLOW_HOME under `tmp`;
   everything is configured through `AIRFLOW__*` variables, so no airflow.cfg is edited;
3. waits until the api-server answers its health endpoint, the scheduler heartbeats and every
   DAG asked for is serialized (an import error fails at once, with its traceback);
4. on exit terminates the process groups (scheduler first, api-server last) and drops the
   database. If the block raised (a failed assertion included), the components' output and the
   task logs are copied to `test-artifacts/<name>-<time>/` first.

The api-server knows one account, the service user the DAGs write their run notes with (the
connection `vaxreport_airflow_api`, `user` role); `stack.api(...)` calls the REST API as it.

No triggerer: nothing in this project defers. Without PostgreSQL the helper skips with the reason,
or fails when `VAXREPORT_REQUIRE_SERVERS=1` (as `.ci/run` sets it).

Scheduled runs are off by default (`[scheduler] use_job_schedule = False`): unpausing a DAG would
otherwise make the scheduler create the latest scheduled run at once, and that run (which also
picks up earlier days' open work) would race whatever the test runs. Backfills, which the CLI
creates and the scheduler executes, are not affected.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import ARTIFACTS, free_port
from vaxreport.local_airflow import NOTES_USER, airflow_environment, component_commands, spawn, stop_process

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REQUIRE_SERVERS = "VAXREPORT_REQUIRE_SERVERS"
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
FAILING_TI_STATES = ("failed", "up_for_retry", "upstream_failed")
# stopped in this order: nothing new is started once the scheduler is gone
COMPONENTS = ("api-server", "scheduler", "dag-processor")
STOP_ORDER = ("scheduler", "dag-processor", "api-server")


class StackError(AssertionError):
    """The deployment misbehaved (a component died, a run failed, something timed out)."""


def _admin_connection():
    import psycopg2

    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=5)
    conn.autocommit = True
    return conn


def require_postgres() -> None:
    """Skip (or fail under VAXREPORT_REQUIRE_SERVERS=1) when PostgreSQL cannot be reached."""
    import psycopg2

    try:
        _admin_connection().close()
    except psycopg2.OperationalError as exc:
        reason = (
            f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT} as user {PG_USER!r} "
            f"({' '.join(str(exc).split())}); the Airflow stack keeps its metadata there"
        )
        if os.environ.get(REQUIRE_SERVERS) == "1":
            pytest.fail(f"{reason} and {REQUIRE_SERVERS}=1", pytrace=False)
        pytest.skip(reason)


def require_redis() -> None:
    """Skip (or fail under VAXREPORT_REQUIRE_SERVERS=1) when Redis, the Celery broker, is not there."""
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=3) as conn:
            conn.sendall(b"PING\r\n")
            answer = conn.recv(16)
    except OSError as exc:
        answer = str(exc).encode()
    if not answer.startswith(b"+PONG"):
        reason = f"Redis is not answering at {REDIS_HOST}:{REDIS_PORT} ({answer[:60]!r}); Celery needs it as its broker"
        if os.environ.get(REQUIRE_SERVERS) == "1":
            pytest.fail(f"{reason} and {REQUIRE_SERVERS}=1", pytrace=False)
        pytest.skip(reason)


def stack_environment(
    home: Path, db_url: str, api_url: str, extra_env: dict[str, str], celery: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment every component (and so every task process) gets: `make airflow`'s, minus
    whatever AIRFLOW/VAXREPORT settings the test process itself carries, plus `extra_env`."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VAXREPORT_"))}
    notes_password = secrets.token_hex(16)
    test_settings = {
        "AIRFLOW__CORE__PARALLELISM": "2",  # a 2-core machine
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        **(celery or {}),
    }
    return airflow_environment(
        home,
        db_url,
        api_url,
        passwords={NOTES_USER: notes_password},
        roles={NOTES_USER: "user"},
        extra={**test_settings, **extra_env},
        base=inherited,
    )


@dataclass
class AirflowStack:
    name: str
    home: Path
    log_dir: Path
    db_name: str
    env: dict[str, str]
    api_url: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    workers: int = 0
    extra_logs: list[Path] = field(default_factory=list)
    _db: Any = None
    _token: str | None = None

    # -- talking to it --------------------------------------------------------------------

    def airflow(self, *args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess:
        """Run one `airflow` CLI command against this deployment; its output goes to cli.log too."""
        result = subprocess.run(
            [AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        with (self.log_dir / "cli.log").open("a") as fh:
            fh.write(f"$ airflow {' '.join(args)}  -> {result.returncode}\n{result.stdout}{result.stderr}\n")
        if check and result.returncode != 0:
            raise StackError(f"airflow {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}")
        return result

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The public REST API (`/api/v2/...`), as the service user the run notes are written with."""
        if self._token is None:
            password = json.loads(Path(self.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).read_text())
            login = httpx.post(
                f"{self.api_url}/auth/token",
                json={"username": NOTES_USER, "password": password[NOTES_USER]},
                timeout=10,
            )
            login.raise_for_status()
            self._token = login.json()["access_token"]
        headers = {"Authorization": f"Bearer {self._token}"}
        return httpx.request(method, f"{self.api_url}{path}", headers=headers, timeout=30, **kwargs)

    def run_note(self, dag_id: str, run_id: str) -> str | None:
        """A run's note as the UI shows it (read through the REST API)."""
        answer = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")
        answer.raise_for_status()
        return answer.json()["note"]

    def query(self, sql: str, params: tuple | dict = ()) -> list[tuple]:
        """Read the metadata database directly (faster than a CLI call per poll)."""
        import psycopg2

        if self._db is None:
            self._db = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=self.db_name)
            self._db.autocommit = True
        with self._db.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise StackError(f"airflow {name} exited with {proc.returncode}:\n{tail}")

    def wait_until(self, what: str, condition: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
        """Poll `condition` until it returns something truthy; fail if a component dies meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise StackError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(interval)

    # -- DAGs and backfills ---------------------------------------------------------------

    def wait_for_dags(self, dag_ids: tuple[str, ...], timeout: float = 180) -> None:
        def parsed() -> bool:
            errors = self.query("SELECT filename, stacktrace FROM import_error")
            if errors:
                raise StackError("DAG import errors:\n" + "\n".join(f"{f}:\n{s}" for f, s in errors))
            rows = self.query(
                "SELECT d.dag_id FROM dag d JOIN serialized_dag s ON s.dag_id = d.dag_id"
                " WHERE d.dag_id = ANY(%s) AND NOT d.is_stale",
                (list(dag_ids),),
            )
            return {r[0] for r in rows} == set(dag_ids)

        self.wait_until(f"the DAGs {dag_ids} to be serialized", parsed, timeout)

    def unpause(self, dag_id: str) -> None:
        self.airflow("dags", "unpause", dag_id)
        paused = self.query("SELECT is_paused FROM dag WHERE dag_id = %s", (dag_id,))
        assert paused == [(False,)], paused

    def create_backfill(
        self,
        dag_id: str,
        from_date: datetime,
        to_date: datetime,
        *,
        max_active_runs: int = 1,
        reprocess_behavior: str | None = None,
    ) -> int:
        """`airflow backfill create`; the scheduler runs the backfill's runs. Returns its id."""
        args = [
            "backfill",
            "create",
            "--dag-id",
            dag_id,
            "--from-date",
            from_date.isoformat(),
            "--to-date",
            to_date.isoformat(),
            "--max-active-runs",
            str(max_active_runs),
        ]
        if reprocess_behavior:
            args += ["--reprocess-behavior", reprocess_behavior]
        before = self.query("SELECT coalesce(max(id), 0) FROM backfill WHERE dag_id = %s", (dag_id,))[0][0]
        self.airflow(*args)
        after = self.query("SELECT coalesce(max(id), 0) FROM backfill WHERE dag_id = %s", (dag_id,))[0][0]
        assert after > before, "airflow backfill create made no backfill"
        return after

    def backfill_runs(self, backfill_id: int) -> list[dict]:
        rows = self.query(
            "SELECT run_id, logical_date, state FROM dag_run WHERE backfill_id = %s ORDER BY logical_date",
            (backfill_id,),
        )
        return [{"run_id": r[0], "logical_date": r[1], "state": r[2]} for r in rows]

    def wait_for_backfill_runs(self, backfill_id: int, timeout: float) -> list[dict]:
        """Wait until every run of the backfill is success or failed; a failing task stops the wait
        at once (the DAG retries after 5 minutes, longer than any test should sit) with its log."""
        expected = self.query(
            "SELECT count(*) FROM backfill_dag_run WHERE backfill_id = %s AND dag_run_id IS NOT NULL",
            (backfill_id,),
        )[0][0]

        def finished() -> list[dict] | None:
            failing = self.query(
                "SELECT ti.dag_id, ti.run_id, ti.task_id, ti.state FROM task_instance ti"
                " JOIN dag_run dr ON dr.dag_id = ti.dag_id AND dr.run_id = ti.run_id"
                " WHERE dr.backfill_id = %s AND ti.state = ANY(%s)",
                (backfill_id, list(FAILING_TI_STATES)),
            )
            if failing:
                dag_id, run_id, task_id, state = failing[0]
                raise StackError(
                    f"task {task_id} of {run_id} is {state}:\n{self.task_log(dag_id, run_id, task_id)[-6000:]}"
                )
            runs = self.backfill_runs(backfill_id)
            if len(runs) == expected and all(r["state"] in TERMINAL_RUN_STATES for r in runs):
                return runs
            return None

        return self.wait_until(f"the {expected} runs of backfill {backfill_id}", finished, timeout, interval=2)

    def wait_for_backfill_completed(self, backfill_id: int, timeout: float = 90) -> None:
        """The scheduler marks a finished backfill completed (every 30 s); only then may the next
        backfill of the DAG be created."""
        self.wait_until(
            f"backfill {backfill_id} to be marked completed",
            lambda: self.query("SELECT completed_at FROM backfill WHERE id = %s", (backfill_id,))[0][0],
            timeout,
        )

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        """`airflow dags trigger` with `conf`; returns the new run's id."""
        run_id = f"manual__test_{secrets.token_hex(4)}"
        self.airflow("dags", "trigger", dag_id, "--run-id", run_id, "--conf", json.dumps(conf))
        return run_id

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        """Wait until the run is success or failed and return which; a task waiting for a retry
        stops the wait at once with its log (the DAGs retry after minutes)."""

        def finished() -> str | None:
            retrying = self.query(
                "SELECT task_id FROM task_instance WHERE dag_id = %s AND run_id = %s AND state = 'up_for_retry'",
                (dag_id, run_id),
            )
            if retrying:
                task_id = retrying[0][0]
                raise StackError(
                    f"task {task_id} of {run_id} is up for retry:\n{self.task_log(dag_id, run_id, task_id)}"
                )
            state = self.query("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (dag_id, run_id))
            return state[0][0] if state and state[0][0] in TERMINAL_RUN_STATES else None

        return self.wait_until(f"run {run_id} of {dag_id}", finished, timeout, interval=2)

    def task_log(self, dag_id: str, run_id: str, task_id: str) -> str:
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        attempts = sorted(folder.glob("attempt=*.log"), key=lambda p: p.stat().st_mtime)
        return attempts[-1].read_text(errors="replace") if attempts else f"(no task log under {folder})"

    # -- life cycle -----------------------------------------------------------------------

    def migrate(self) -> None:
        self.airflow("db", "migrate", timeout=600)

    def start(self) -> None:
        commands = component_commands(int(self.api_url.rsplit(":", 1)[1]))
        for name in COMPONENTS:
            self._spawn(name, commands[name], self.env)
        for n in range(1, self.workers + 1):
            self.start_worker(f"worker-{n}")

    def start_worker(self, name: str) -> None:
        """A Celery worker taking one task at a time from this stack's own queue. Task instances
        record `name` as their hostname (both workers share this machine's), so a test can tell
        which worker ran what."""
        env = {**self.env, "VAXREPORT_WORKER_NAME": name}
        queue = self.env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"]
        command = [AIRFLOW, "celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", "1"]
        self._spawn(name, [*command, "--queues", queue, "--skip-serve-logs", "--without-mingle"], env)

    def stop_worker(self, name: str) -> None:
        stop_process(self.processes.pop(name), timeout=60)

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.processes[name] = spawn(command, env, self.log_dir / f"{name}.log")

    def wait_ready(self, dag_ids: tuple[str, ...], timeout: float = 180) -> None:
        def api_healthy() -> bool:
            try:
                return httpx.get(f"{self.api_url}/api/v2/monitor/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        self.wait_until("the api-server health endpoint", api_healthy, timeout)
        self.wait_until(
            "a scheduler heartbeat",
            lambda: self.query(
                "SELECT 1 FROM job WHERE job_type = 'SchedulerJob' AND state = 'running'"
                " AND latest_heartbeat > now() - interval '60 seconds'"
            ),
            timeout,
        )
        self.wait_for_dags(dag_ids, timeout)

    def stop(self) -> None:
        # the scheduler first (nothing new starts), then the workers while the api-server their
        # running tasks report to is still there
        workers = [n for n in self.processes if n not in STOP_ORDER]
        for name in [STOP_ORDER[0], *workers, *STOP_ORDER[1:]]:
            proc = self.processes.pop(name, None)
            if proc is not None:
                stop_process(proc)  # its whole session: task runners sit in process groups of their own
        if self._db is not None:
            self._db.close()
            self._db = None

    def save_artifacts(self) -> Path:
        target = ARTIFACTS / f"{self.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.log_dir, target / "components", dirs_exist_ok=True)
        if (self.home / "logs").exists():
            shutil.copytree(self.home / "logs", target / "task-logs", dirs_exist_ok=True)
        for path in self.extra_logs:
            if path.exists():
                shutil.copy2(path, target / path.name)
        return target


@contextlib.contextmanager
def airflow_stack(
    tmp: Path,
    extra_env: dict[str, str] | None = None,
    *,
    name: str = "airflow-stack",
    dag_ids: tuple[str, ...] = ("vaccinations_daily",),
    extra_logs: list[Path] | None = None,
    ready_timeout: float = 180,
    workers: int = 0,
) -> Iterator[AirflowStack]:
    """A running deployment; `extra_env` (connections, VAXREPORT_*) reaches every task process.
    With `workers`, CeleryExecutor on the machine's Redis, with that many workers on a queue of
    the stack's own (so stacks sharing the broker never take each other's tasks)."""
    require_postgres()
    db_name = f"vaxreport_airflow_{secrets.token_hex(6)}"
    celery = None
    if workers:
        require_redis()
        celery = {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{db_name}",
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": db_name,
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.dags.worker_name.hostname",
        }
    admin = _admin_connection()
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{db_name}"')
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    home, log_dir = tmp / "airflow-home", tmp / "airflow-components"
    home.mkdir(parents=True)
    log_dir.mkdir(parents=True)
    db_url = f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{db_name}"
    stack = AirflowStack(
        name=name,
        home=home,
        log_dir=log_dir,
        db_name=db_name,
        env=stack_environment(home, db_url, api_url, extra_env or {}, celery),
        api_url=api_url,
        workers=workers,
        extra_logs=list(extra_logs or []),
    )
    failed = True
    try:
        stack.migrate()
        stack.start()
        stack.wait_ready(dag_ids, ready_timeout)
        yield stack
        failed = False
    except BaseException as exc:
        failed = not isinstance(exc, pytest.skip.Exception)
        raise
    finally:
        stack.stop()
        if failed:
            saved = stack.save_artifacts()
            print(f"airflow stack logs saved to {saved}", file=sys.stderr)
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        admin.close()
