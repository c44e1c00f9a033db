"""The Docker Compose stack, checked without a Docker engine.

No development or CI machine runs Docker, so a broken compose file would only show when a region
starts it. These tests take the file as Compose itself resolves it (`docker-compose config`, Debian's
1.29.2, with `.env.example` as the only source of variables, as in a fresh clone) and check it
against what it drives: every Airflow command against the real Airflow CLI of the pinned version,
the connections against the services they name, the image against the Dockerfile.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

pytestmark = pytest.mark.integration

COMPOSE_FILE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
KINDS = ROOT / "include" / "vaxreport" / "sources" / "kinds"

AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}
REQUIRED_SERVICES = AIRFLOW_SERVICES | {
    "postgres",
    "redis",
    "nvr-emulator",
    "demo-journal-db",
    "demo-ehr-db",
    "demo-data",
}
# Host ports a region needs: the Airflow UI and API. Everything else talks inside the compose network.
PUBLISHED = {"airflow-apiserver": {8080}}
# A `${VAR` not preceded by `$` (`$${VAR}` is Compose's escape for the container's shell).
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")
# Names of variables that hold secrets: these must be required (`${VAR:?…}`), never defaulted.
SECRET = re.compile(r"PASSWORD|SECRET|KEY|PEPPER|USERS")
# The image's engine for each journal-system dialect (mapping.toml `dialect`).
DIALECT_IMAGES = {"postgresql": "postgres", "mysql": "mariadb"}


def compose_text() -> str:
    """The compose file without its comment lines: Compose substitutes no variable in those."""
    lines = COMPOSE_FILE.read_text(encoding="utf-8").splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


def compose_variables() -> set[str]:
    return set(VARIABLE.findall(compose_text()))


def _docker_compose() -> str:
    """Where the tool is missing, skip with the reason, or fail when CI requires it (tests/servers.py)."""
    found = shutil.which("docker-compose")
    if found is None:
        reason = "docker-compose is not installed (Debian: apt-get install docker-compose); .ci/run installs it"
        if os.environ.get("VAXREPORT_REQUIRE_SERVERS") == "1":
            pytest.fail(reason + " (VAXREPORT_REQUIRE_SERVERS=1 makes this a failure)")
        pytest.skip(reason)
    return found


def _run_compose(env_file: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` with `env_file` as the only source of variables: the caller's
    environment (which `make test` fills from .env) and a developer's own .env must not help."""
    return subprocess.run(
        [
            _docker_compose(),
            "--project-directory",
            str(ROOT),
            "-f",
            str(COMPOSE_FILE),
            "--env-file",
            str(env_file),
            "config",
        ],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def env_example() -> dict[str, str]:
    """The variables .env.example defines, read as the project reads it (`settings.read_env_file`)."""
    from vaxreport.settings import read_env_file

    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> dict:
    result = _run_compose(ENV_EXAMPLE, tmp_path_factory.mktemp("compose-home"))
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def services(config) -> dict[str, dict]:
    return config["services"]


def _unescape(text: str) -> str:
    """`docker-compose config` prints `$$` as it was written; the container sees `$`."""
    return text.replace("$$", "$")


def _argv(value: list[str] | str | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(_unescape(value))
    return [_unescape(str(v)) for v in value]


def _script_commands(script: str) -> list[list[str]]:
    """The simple commands of a `bash -c` script, one per line (the compose file keeps them so)."""
    commands = []
    for line in script.splitlines():
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:  # a line of an embedded heredoc, not a command
            continue
        if tokens and tokens[0] == "exec":
            tokens = tokens[1:]
        if tokens:
            commands.append(tokens)
    return commands


def service_commands(service: dict) -> list[list[str]]:
    """Every command line a service runs: its entrypoint + command (a `bash -c` script split into
    its commands) and its health check."""
    argv = _argv(service.get("entrypoint")) + _argv(service.get("command"))
    if len(argv) >= 3 and Path(argv[0]).name in {"bash", "sh"} and argv[1] == "-c":
        found = _script_commands(argv[2])
    else:
        found = [argv] if argv else []
    test = service.get("healthcheck", {}).get("test")
    if isinstance(test, list) and test and test[0] == "CMD":
        found.append(_argv(test[1:]))
    elif isinstance(test, list) and test and test[0] == "CMD-SHELL":
        found.extend(_script_commands(_unescape(test[1])))
    return found


def _split(argv: list[str], program_length: int) -> tuple[list[str], list[str]]:
    """(program + subcommand words, the rest): the subcommand ends at the first option."""
    rest = argv[program_length:]
    words = []
    for token in rest:
        if token.startswith("-"):
            break
        words.append(token)
    return argv[: program_length + len(words)], rest[len(words) :]


def cli_calls(services: dict[str, dict]) -> list[tuple[str, list[str], list[str]]]:
    """(service, program and subcommand, arguments) of every `airflow …` and `python -m …` call."""
    calls = []
    for name, service in services.items():
        for argv in service_commands(service):
            if argv[0] == "airflow":
                calls.append((name, *_split(argv, 1)))
            elif Path(argv[0]).name.startswith("python") and argv[1:2] == ["-m"]:
                calls.append((name, *_split(argv, 3)))
    return calls


def _help(program: tuple[str, ...], home: Path, executor: str) -> subprocess.CompletedProcess[str]:
    local = [AIRFLOW, *program[1:]] if program[0] == "airflow" else [sys.executable, *program[1:]]
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": executor,
        "PYTHONPATH": f"{ROOT / 'include'}:{ROOT / 'plugins'}",
    }
    return subprocess.run([*local, "--help"], env=env, capture_output=True, text=True, timeout=120, cwd=home)


@pytest.fixture(scope="module")
def helps(services, tmp_path_factory) -> dict[tuple[str, ...], subprocess.CompletedProcess[str]]:
    """`--help` of every distinct program + subcommand the stack runs, at once (each is a few
    seconds of Airflow start-up), under the stack's own executor."""
    executor = services["airflow-scheduler"]["environment"]["AIRFLOW__CORE__EXECUTOR"]
    programs = sorted({tuple(program) for _, program, _ in cli_calls(services)})
    home = tmp_path_factory.mktemp("airflow-home")
    # more at once than there are cores only makes each slower (they are CPU-bound imports)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = pool.map(lambda p: _help(p, home, executor), programs)
        return dict(zip(programs, results, strict=True))


def _option_errors(program: list[str], arguments: list[str], help_text: str) -> list[str]:
    """Options the help does not list, and values outside the choices it lists."""
    errors = []
    for i, token in enumerate(arguments):
        if not token.startswith("-") or token == "-":
            continue
        option = token.split("=", 1)[0]
        if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", help_text):
            errors.append(f"{' '.join(program)}: {option} is not an option")
            continue
        choices = re.search(rf"{re.escape(option)}[ =]\{{([^}}]*)\}}", help_text)
        value = token.split("=", 1)[1] if "=" in token else (arguments[i + 1] if i + 1 < len(arguments) else None)
        if choices and value is not None and value not in choices.group(1).split(","):
            errors.append(f"{' '.join(program)}: {option} {value} is not one of {{{choices.group(1)}}}")
    return errors


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _connection(service: dict, conn_id: str) -> dict:
    return json.loads(_environment(service)[f"AIRFLOW_CONN_{conn_id.upper()}"])


def _ports(service: dict) -> list[tuple[int | None, int]]:
    """(published, target) of each port, in either syntax `config` may print."""
    found = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            published = port.get("published")
            found.append((int(published) if published is not None else None, int(port["target"])))
        else:
            parts = str(port).split("/")[0].split(":")
            found.append((int(parts[-2]) if len(parts) > 1 else None, int(parts[-1])))
    return found


def _mounts(service: dict) -> dict[str, str]:
    """Container path -> host source of each bind mount (`config` prints absolute host paths)."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            found[volume["target"]] = str(volume.get("source", ""))
        else:
            source, target = str(volume).split(":")[:2]
            found[target] = source
    return found


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined, current = [], ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        joined.append(current + line)
        current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text.strip() else "") for text in joined]


def _dockerfile_env() -> dict[str, str]:
    env = {}
    for instruction, arguments in _dockerfile_instructions():
        if instruction == "ENV":
            for token in shlex.split(arguments):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def test_compose_file_is_valid_for_compose_1_29_in_a_fresh_clone(services):
    """The file resolves with Debian's docker-compose and .env.example alone, names every service
    of the stack, and reads no env_file a fresh clone lacks."""
    assert services.keys() >= REQUIRED_SERVICES, f"missing services: {sorted(REQUIRED_SERVICES - services.keys())}"
    for name, service in services.items():
        for entry in service.get("env_file", []):
            path = Path(entry if isinstance(entry, str) else entry["path"])
            assert path.name != ".env", f"{name} reads .env as env_file: a fresh clone has none"


def test_secrets_have_no_silent_defaults(tmp_path):
    """Without a .env the stack must refuse to start and name what is missing, never run with
    empty or built-in secrets."""
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = _run_compose(empty, tmp_path)
    assert result.returncode != 0, "docker-compose config succeeded without any variables"
    assert any(var in result.stderr for var in compose_variables()), result.stderr
    lenient = {
        match.group(0)
        for match in re.finditer(r"(?<!\$)\$\{(\w+)(:\?|\?|:-|-|:\+|\+|\})", compose_text())
        if SECRET.search(match.group(1)) and match.group(2) != ":?"
    }
    assert not lenient, f"secrets with a default or allowed empty: {sorted(lenient)}"


def test_every_variable_is_defined_in_env_example():
    used = compose_variables()
    assert used, "the compose file uses no variables: where do its secrets come from?"
    defined = {key for key, value in env_example().items() if value}
    assert used <= defined, f"used in docker-compose.yaml, not set in .env.example: {sorted(used - defined)}"


def test_env_example_documents_each_compose_variable():
    """Each variable the stack reads has a comment in the block above it, saying what it is."""
    used = compose_variables()
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        key = line.split("=", 1)[0].strip()
        if key in used:
            block = i - 1
            while block >= 0 and not lines[block].startswith("#") and "=" in lines[block]:
                block -= 1  # several related variables under one comment
            if block < 0 or not lines[block].startswith("#"):
                undocumented.append(key)
    assert not undocumented, f"no comment above {undocumented} in .env.example"


@pytest.mark.slow
def test_every_command_exists_in_the_real_cli(services, helps):
    """Each `airflow …` (and `python -m …`) a service runs, its health check included, is a real
    subcommand of the pinned version, and every option it passes is one that subcommand takes."""
    calls = cli_calls(services)
    airflow_services = {name for name, program, _ in calls if program[0] == "airflow"}
    assert airflow_services >= AIRFLOW_SERVICES, f"no airflow command in {sorted(AIRFLOW_SERVICES - airflow_services)}"
    errors = []
    for name, program, arguments in calls:
        result = helps[tuple(program)]
        if result.returncode != 0:
            errors.append(f"{name}: `{' '.join(program)} --help` exited {result.returncode}: {result.stderr[-500:]}")
            continue
        errors += [f"{name}: {e}" for e in _option_errors(program, arguments, result.stdout)]
    assert not errors, "\n".join(errors)


def test_option_check_catches_a_wrong_option_and_choice():
    """The check above must be able to fail: a made-up option and a value outside the choices."""
    help_text = "  --job-type {SchedulerJob,TriggererJob}\n  --hostname HOSTNAME\n"
    program = ["airflow", "jobs", "check"]
    assert _option_errors(program, ["--hostname", "x", "--job-type", "TriggererJob"], help_text) == []
    assert _option_errors(program, ["--host", "x"], help_text)
    assert _option_errors(program, ["--job-type=WorkerJob"], help_text)


def test_celery_executor_and_scalable_workers(services):
    for name in AIRFLOW_SERVICES:
        env = _environment(services[name])
        assert env.get("AIRFLOW__CORE__EXECUTOR") == "CeleryExecutor", name
        assert env.get("AIRFLOW__CELERY__BROKER_URL", "").startswith("redis://redis:"), name
        assert env.get("AIRFLOW__CELERY__RESULT_BACKEND", "").startswith("db+postgresql://"), name
        assert "@postgres/" in env["AIRFLOW__CELERY__RESULT_BACKEND"], name
    worker_calls = [program for name, program, _ in cli_calls(services) if name == "airflow-worker"]
    assert worker_calls[0] == ["airflow", "celery", "worker"], worker_calls
    worker = services["airflow-worker"]
    assert "container_name" not in worker, "a fixed container name stops --scale airflow-worker=N"
    assert not worker.get("ports"), "a host port on the worker stops --scale airflow-worker=N"


def test_postgres_and_redis_users_wait_for_them_healthy(services):
    """A service whose settings name the postgres or redis host starts only once it is healthy."""
    patterns = {
        "postgres": re.compile(r'(@|//|"host": ")postgres[:/"]'),
        "redis": re.compile(r"(@|//)redis[:/]"),
    }
    for backend, pattern in patterns.items():
        users = {
            name
            for name, service in services.items()
            if any(pattern.search(value) for value in _environment(service).values())
        }
        assert users >= AIRFLOW_SERVICES, f"expected every Airflow service to use {backend}"
        for name in users:
            condition = (services[name].get("depends_on") or {}).get(backend, {}).get("condition")
            assert condition == "service_healthy", f"{name} uses {backend} but does not wait for it healthy"
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        condition = services[name]["depends_on"].get("airflow-init", {}).get("condition")
        assert condition == "service_completed_successfully", f"{name} may start before the migration"
    for name in ("demo-journal-db", "demo-ehr-db"):
        assert services["demo-data"]["depends_on"][name]["condition"] == "service_healthy"
    for name, service in services.items():
        for target, dependency in (service.get("depends_on") or {}).items():
            if dependency.get("condition") == "service_healthy":
                assert services[target].get("healthcheck"), f"{name} waits for {target}, which has no health check"


def test_only_the_ui_binds_a_host_port(services):
    published = {name: {target for _, target in _ports(s)} for name, s in services.items() if _ports(s)}
    assert published == PUBLISHED, f"host ports: {published}"
    assert (8080, 8080) in _ports(services["airflow-apiserver"])
    [port] = services["airflow-apiserver"]["ports"]  # published on this host only
    assert (port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]) == "127.0.0.1"
    for name in ("nvr-emulator", "demo-journal-db", "demo-ehr-db", "demo-data", "postgres", "redis"):
        assert not services[name].get("network_mode"), f"{name} leaves the compose network"


def test_one_image_built_from_the_repository(services):
    built = {name: s for name, s in services.items() if "build" in s}
    assert AIRFLOW_SERVICES | {"nvr-emulator", "demo-data"} <= built.keys()
    for name, service in built.items():
        build = service["build"]
        context = Path(build["context"] if isinstance(build, dict) else build)
        dockerfile = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
        assert context.resolve() == ROOT.resolve(), f"{name} builds from {context}"
        assert (context / dockerfile).resolve() == DOCKERFILE.resolve(), f"{name} builds {dockerfile}"
    assert len({s["image"] for s in built.values()}) == 1, "one image for every service built from the repo"


def test_dockerfile_installs_the_pins_and_puts_include_on_the_path():
    instructions = _dockerfile_instructions()
    copies = {}
    workdir = "/"
    for instruction, arguments in instructions:
        if instruction == "WORKDIR":
            workdir = arguments.strip()
        if instruction == "COPY":
            *sources, destination = [t for t in shlex.split(arguments) if not t.startswith("--")]
            for source in sources:
                copies[source.rstrip("/")] = destination if destination.startswith("/") else f"{workdir}/{destination}"
    assert "requirements.txt" in copies, "the Dockerfile does not copy requirements.txt"
    installs = [a for i, a in instructions if i == "RUN" and re.search(r"pip install\b", a)]
    assert installs, "the Dockerfile installs no packages"
    assert any(
        re.search(rf"(-r|--requirement)[ =]{re.escape(copies['requirements.txt'])}(\s|$)", a) for a in installs
    ), f"pip does not install from {copies['requirements.txt']}: {installs}"
    pythonpath = _dockerfile_env().get("PYTHONPATH", "").split(":")
    assert copies.get("include", "").rstrip("/") in pythonpath, f"include/ is copied to {copies.get('include')}"


def test_include_is_mounted_where_the_image_imports_it(services):
    """Edits to include/ reach every service that runs project code without a rebuild."""
    pythonpath = _dockerfile_env()["PYTHONPATH"].split(":")
    for name in AIRFLOW_SERVICES | {"nvr-emulator", "demo-data"}:
        mounts = _mounts(services[name])
        targets = [t for t, source in mounts.items() if Path(source).resolve() == (ROOT / "include").resolve()]
        assert targets, f"{name} does not mount include/"
        path = _environment(services[name]).get("PYTHONPATH", "").split(":") + pythonpath
        assert targets[0] in path, f"{name} mounts include/ at {targets[0]}, not on PYTHONPATH {path}"


def test_pipeline_reads_the_demo_journals_the_generator_fills(services):
    """The enabled sources are the two demo databases, of the kind each database engine holds, with
    the credentials those databases are created with; demo-data writes the same sources."""
    worker = services["airflow-worker"]
    sources = _environment(worker)["VAXREPORT_SOURCES"].split(",")
    assert len(sources) == 2, sources
    engines = set()
    for conn_id in sources:
        conn = _connection(worker, conn_id)
        assert conn["host"] in services, f"{conn_id} points at {conn['host']}, not a service of the stack"
        target = services[conn["host"]]
        kind = tomllib.loads((KINDS / conn["extra"]["kind"] / "mapping.toml").read_text(encoding="utf-8"))
        engine = DIALECT_IMAGES[kind["dialect"]]
        assert target["image"].split(":")[0] == engine, f"{conn_id} is {kind['kind']} but {conn['host']} is {target}"
        engines.add(engine)
        env = _environment(target)
        prefix = "POSTGRES" if engine == "postgres" else "MARIADB"
        user_key = "POSTGRES_USER" if engine == "postgres" else "MARIADB_USER"
        database_key = "POSTGRES_DB" if engine == "postgres" else "MARIADB_DATABASE"
        assert (conn["login"], conn["password"], conn["schema"]) == (
            env[user_key],
            env[f"{prefix}_PASSWORD"],
            env[database_key],
        ), f"{conn_id} does not log in as the account {conn['host']} creates"
        assert _connection(services["demo-data"], conn_id) == conn, f"demo-data writes elsewhere than {conn_id}"
    assert engines == {"postgres", "mariadb"}
    assert _environment(services["demo-data"])["VAXREPORT_SOURCES"].split(",") == sources
    generator = ["python", "-m", "vaxreport", "generate"]
    generated = [args for _, program, args in cli_calls(services) if program == generator]
    assert generated, "demo-data does not run the generator"
    assert all("--source" in args for args in generated), generated
    for name in AIRFLOW_SERVICES:
        assert _environment(services[name])["VAXREPORT_SOURCES"].split(",") == sources, name


def test_register_and_ledger_connections_match_their_servers(services):
    worker = services["airflow-worker"]
    register = _connection(worker, "nvr_api")
    emulator = _argv(services["nvr-emulator"]["command"])
    assert register["host"] == "http://nvr-emulator:8089"
    assert emulator[emulator.index("--port") + 1] == "8089"
    assert (register["login"], register["password"]) == (
        emulator[emulator.index("--client-id") + 1],
        emulator[emulator.index("--client-secret") + 1],
    ), "the emulator would refuse the pipeline's client"
    assert "nvr-emulator" in register["extra"]["plain_http_hosts"]
    ledger = _connection(worker, "vaxreport_db")
    assert ledger["host"] == "postgres"
    created = re.findall(r"CREATE DATABASE (\w+)", (ROOT / "deploy" / "postgres-init.sql").read_text(encoding="utf-8"))
    assert ledger["schema"] in created, f"the ledger database {ledger['schema']} is not created by postgres-init.sql"
    assert ledger["password"] == _environment(services["postgres"])["LEDGER_DB_PASSWORD"]
    role_script = (ROOT / "deploy" / "postgres-init-ledger.sh").read_text(encoding="utf-8")
    assert f"CREATE ROLE {ledger['login']} LOGIN" in role_script
    mounted = {Path(source).name for source in _mounts(services["postgres"]).values()}
    assert {"postgres-init.sql", "postgres-init-ledger.sh"} <= mounted
