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
import threading
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

    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    passwords_file = home / "simple_auth_manager_passwords.json"
    _write_private(passwords_file, json.dumps(passwords))
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
        "AIRFLOW__CORE__FERNET_KEY": _kept_secret(home, "fernet-key", lambda: Fernet.generate_key().decode()),
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


def spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A component in a session of its own (so `stop_process` can stop it with all it started),
    its output in `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        return subprocess.Popen(  # noqa: S603 - our own commands
            command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )


@dataclass
class Deployment:
    """Running processes, each in its own process group, with their output in `log_dir`."""

    env: dict[str, str]
    log_dir: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, name: str, command: list[str]) -> None:
        self.processes[name] = spawn(command, self.env, self.log_dir / f"{name}.log")

    def dead(self) -> tuple[str, str] | None:
        """The first component that exited, with the tail of its log."""
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-3000:]
                return name, f"{name} exited with {proc.returncode}:\n{tail}"
        return None

    def stop(self, order: tuple[str, ...] = STOP_ORDER) -> None:
        names = [n for n in order if n in self.processes] + [n for n in self.processes if n not in order]
        with _uninterrupted():
            for name in names:
                stop_process(self.processes[name])
        self.processes.clear()


def _session(sid: int) -> list[int]:
    """Processes of the session a component leads: its own group, and the task runners Airflow
    3.3 forks into process groups of their own (they stay in the session)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.getsid(int(entry.name)) == sid:
                    members.append(int(entry.name))
    return members


def _signal_session(sid: int, sig: signal.Signals) -> None:
    for pid in _session(sid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def stop_process(proc: subprocess.Popen, timeout: float = 30) -> None:
    """Stop a component started with start_new_session and everything it started: SIGTERM to its
    session, then SIGKILL to what is left of it."""
    _signal_session(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)
    _signal_session(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


@contextlib.contextmanager
def _uninterrupted():
    """A second Ctrl-C (or SIGTERM) must not cut a stop short and leave components running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


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


def _kept_secret(home: Path, name: str, make) -> str:
    """A secret generated once and kept in AIRFLOW_HOME (owner-only) across restarts: the admin
    password (a bookmark's login keeps working) and the Fernet key (connections saved in the UI
    stay readable)."""
    path = home / name
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_private(path, make())
    return path.read_text().strip()


def _write_private(path: Path, text: str) -> None:
    """Created 0600 from the start, never readable by others for a moment."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


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
    login = {"user": ADMIN, "password": _kept_secret(home, "admin-password", lambda: secrets.token_urlsafe(12))}
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
    # SIGTERM and SIGHUP (a closed terminal) stop everything as Ctrl-C does, during start-up too:
    # the components lead sessions of their own and would outlive this process otherwise
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        deployment, login = launch(home, args.port, args.emulator_port, args.db_url)
    except LaunchError as exc:
        print(f"could not start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130  # launch() stopped what it had started
    print(f"Airflow UI: {login['url']}  login: {login['user']} / {login['password']}", flush=True)
    print(f"register emulator: http://127.0.0.1:{args.emulator_port}; Ctrl-C stops everything", flush=True)
    try:
        while not (died := deployment.dead()):
            time.sleep(1)
        print(f"stopping: {died[1]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        print("stopping Airflow and the emulator ...", flush=True)
        deployment.stop()


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    raise SystemExit(main())
