"""A full local Airflow (api-server, scheduler, dag-processor, triggerer) with the register emulator,
started as plain processes: `make airflow` for a newcomer, and the same launcher for the tests.

Everything is configured through `AIRFLOW__*` variables, so no airflow.cfg is edited and two
deployments on one machine (a developer's and a test's) never share settings. Each component
gets a process group of its own, so stopping it also stops the task processes it started.
The metadata database is SQLite under AIRFLOW_HOME (the embedded default: Airflow runs the
LocalExecutor on it, as `airflow standalone` does) or any URL given, e.g. the machine's PostgreSQL.

This module imports no Airflow: it only starts the `airflow` command next to the running Python.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(os.environ.get("VAXREPORT_ROOT") or Path(__file__).resolve().parents[2])
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
STOP_ORDER = ("scheduler", "triggerer", "dag-processor", "api-server")  # nothing new starts once the scheduler is gone
ADMIN = "admin"
NOTES_USER = "vaxreport_notes"  # the service user (role `user`) the DAGs write their run notes with
EMULATOR_CLIENT = ("vaxreport-dev", "dev-secret")  # the emulator's published development credentials


class LaunchError(RuntimeError):
    """A component did not come up (its log says why)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def airflow_environment(
    home: Path,
    db_url: str,
    api_url: str,
    passwords: dict[str, str],
    roles: dict[str, str],
    extra: dict[str, str] | None = None,
    base: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment every component, and so every task process, gets.

    One secret key and one JWT secret are shared by all components: the scheduler signs the task
    tokens that the api-server's execution API checks. The simple auth manager's users and their
    passwords come from `roles` and `passwords`; the notes user also becomes the connection the
    DAGs write run notes through. `base` is the environment to start from (default: this
    process's); its AIRFLOW__ settings win over the defaults, `extra` over everything.
    """
    from cryptography.fernet import Fernet

    home.mkdir(parents=True, exist_ok=True)
    passwords_file = home / "simple_auth_manager_passwords.json"
    passwords_file.write_text(json.dumps(passwords))
    passwords_file.chmod(0o600)
    port = api_url.rsplit(":", 1)[1]
    defaults = {
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DEFAULT_TIMEZONE": "Europe/Stockholm",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(os.cpu_count() or 2),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "2",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
    # what makes this deployment one: its home, database, address, secrets and users
    own = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": port,
        "AIRFLOW__API__BASE_URL": api_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in roles.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
        "GX_ANALYTICS_ENABLED": "false",
        "NO_PROXY": "127.0.0.1,localhost",
        "PYTHONPATH": os.pathsep.join(str(p) for p in (ROOT / "include", ROOT / "plugins", ROOT)),
        "PYTHONUNBUFFERED": "1",
    }
    # other AIRFLOW__ settings already set (an operator's, a test's) win over the defaults
    env = {**defaults, **(os.environ if base is None else base), **own}
    if NOTES_USER in passwords:
        env["AIRFLOW_CONN_VAXREPORT_AIRFLOW_API"] = f"http://{NOTES_USER}:{passwords[NOTES_USER]}@127.0.0.1:{port}"
    return {**env, **(extra or {})}


def component_commands(port: int) -> dict[str, list[str]]:
    """Each component's command line; --skip-serve-logs because a log server would listen on every
    interface, and the api-server reads the task logs from the shared AIRFLOW_HOME anyway."""
    return {
        "api-server": [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        "scheduler": [AIRFLOW, "scheduler", "--skip-serve-logs"],
        "dag-processor": [AIRFLOW, "dag-processor"],
        "triggerer": [AIRFLOW, "triggerer", "--skip-serve-logs"],
    }


@dataclass
class Deployment:
    """Running processes, each in its own process group, with their output in `log_dir`."""

    env: dict[str, str]
    log_dir: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, name: str, command: list[str]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{name}.log").open("w") as log:
            self.processes[name] = subprocess.Popen(  # noqa: S603 - our own commands
                command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def dead(self) -> tuple[str, str] | None:
        """The first component that exited, with the tail of its log."""
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-3000:]
                return name, f"{name} exited with {proc.returncode}:\n{tail}"
        return None

    def stop(self, order: tuple[str, ...] = STOP_ORDER) -> None:
        names = [n for n in order if n in self.processes] + [n for n in self.processes if n not in order]
        for name in names:
            proc = self.processes[name]
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
            with contextlib.suppress(ProcessLookupError):  # what is left of the group goes too
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        self.processes.clear()


def wait_for(what: str, condition, deployment: Deployment, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        died = deployment.dead()
        if died:
            raise LaunchError(f"waiting for {what}: {died[1]}")
        if time.monotonic() > deadline:
            raise LaunchError(f"timed out after {timeout:.0f} s waiting for {what} (logs in {deployment.log_dir})")
        time.sleep(0.5)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2, trust_env=False).status_code == 200
    except httpx.TransportError:
        return False


def _admin_password(home: Path) -> str:
    """Kept across restarts in AIRFLOW_HOME (owner-only), so a bookmark's login keeps working."""
    path = home / "admin-password"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(12))
        path.chmod(0o600)
    return path.read_text().strip()


def _register_connection(port: int) -> str:
    """The register connection for the local emulator on `port` (its development credentials)."""
    base = f"http://127.0.0.1:{port}"
    return json.dumps(
        {
            "conn_type": "http",
            "host": base,
            "login": EMULATOR_CLIENT[0],
            "password": EMULATOR_CLIENT[1],
            "extra": {"token_url": f"{base}/oauth2/token"},
        }
    )


def launch(
    home: Path,
    port: int,
    emulator_port: int,
    db_url: str | None = None,
    var: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> tuple[Deployment, dict]:
    """Migrate the metadata database, start the emulator and the four components, and wait until
    the UI answers and the scheduler and triggerer heartbeat. Returns the deployment and what a
    person needs to log in."""
    for taken in (p for p in (port, emulator_port) if _port_taken(p)):
        raise LaunchError(f"port {taken} on 127.0.0.1 is taken: stop what runs there or choose another port")
    var = var or home.parent
    db_url = db_url or f"sqlite:///{home / 'airflow.db'}"
    api_url = f"http://127.0.0.1:{port}"
    login = {"user": ADMIN, "password": _admin_password(home)}
    env = airflow_environment(
        home,
        db_url,
        api_url,
        passwords={ADMIN: login["password"], NOTES_USER: secrets.token_urlsafe(16)},
        roles={ADMIN: "admin", NOTES_USER: "user"},
        extra={"AIRFLOW_CONN_NVR_API": _register_connection(emulator_port), **(extra_env or {})},
    )
    deployment = Deployment(env=env, log_dir=home / "logs" / "components")
    migrate = subprocess.run(  # noqa: S603 - the airflow next to this Python
        [AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, check=False
    )
    (deployment.log_dir).mkdir(parents=True, exist_ok=True)
    (deployment.log_dir / "db-migrate.log").write_text(migrate.stdout + migrate.stderr)
    if migrate.returncode != 0:
        raise LaunchError(f"airflow db migrate failed:\n{migrate.stderr[-3000:]}")
    try:
        emulator = [sys.executable, "-m", "nvr_emulator", "--host", "127.0.0.1", "--port", str(emulator_port)]
        deployment.start("emulator", [*emulator, "--db", str(var / "register.sqlite")])
        wait_for("the register emulator", lambda: _answers(f"http://127.0.0.1:{emulator_port}/health"), deployment, 60)
        for name, command in component_commands(port).items():
            deployment.start(name, command)
        wait_for("the Airflow UI", lambda: _answers(f"{api_url}/api/v2/monitor/health"), deployment, 240)
        wait_for("the scheduler and triggerer", lambda: _healthy(api_url), deployment, 120)
    except BaseException:
        deployment.stop()
        raise
    return deployment, {"url": api_url, **login}


def _healthy(api_url: str) -> bool:
    """The health endpoint lists the scheduler's and triggerer's latest heartbeat."""
    try:
        health = httpx.get(f"{api_url}/api/v2/monitor/health", timeout=2, trust_env=False).json()
    except (httpx.TransportError, ValueError):
        return False
    parts = ("metadatabase", "scheduler", "triggerer")
    return all((health.get(part) or {}).get("status") == "healthy" for part in parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vaxreport airflow", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("AIRFLOW_PORT", "8080")))
    parser.add_argument("--emulator-port", type=int, default=int(os.environ.get("NVR_EMULATOR_PORT", "8089")))
    home = Path(os.environ.get("AIRFLOW_HOME") or ROOT / "var" / "airflow")
    parser.add_argument("--home", type=Path, default=home, help="AIRFLOW_HOME")
    parser.add_argument(
        "--db-url",
        default=os.environ.get("VAXREPORT_AIRFLOW_DB_URL"),
        help="metadata database URL (default: SQLite in AIRFLOW_HOME), e.g. postgresql+psycopg2://postgres@127.0.0.1/airflow",
    )
    args = parser.parse_args(argv)
    home = args.home.resolve()
    print(f"starting Airflow in {home} (component logs in {home / 'logs' / 'components'}) ...", flush=True)
    try:
        deployment, login = launch(home, args.port, args.emulator_port, args.db_url)
    except LaunchError as exc:
        print(f"could not start: {exc}", file=sys.stderr)
        return 1
    print(f"Airflow UI: {login['url']}  login: {login['user']} / {login['password']}", flush=True)
    print(f"register emulator: http://127.0.0.1:{args.emulator_port}; Ctrl-C stops everything", flush=True)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    try:
        while not stopping:
            died = deployment.dead()
            if died:
                print(f"stopping: {died[1]}", file=sys.stderr)
                return 1
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping Airflow and the emulator ...", flush=True)
        deployment.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
