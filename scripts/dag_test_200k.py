"""A 200,000-record day through the daily DAG with `dag.test()`, timed per task instance.

    .venv/bin/python scripts/dag_test_200k.py [--records 200000] [--day YYYY-MM-DD]

A script that prints numbers, not a test: they belong to the machine they were taken on. It
generates one day into a PostgreSQL `vaccination_journal` source (`synthetic.bulk`), puts the
ledger on PostgreSQL too (databases `vaxreport_dagtest_*`, dropped and created again), starts the
register emulator on 127.0.0.1 with the benchmark's 20 ms latency and rate limit, migrates a
fresh Airflow home (SQLite metadata) and runs `vaccinations_daily` for that day with `dag.test()`
in a child process, connections from `AIRFLOW_CONN_*` variables as in `tests/dags`. Then it reads
every task instance's start and end from Airflow's metadata database and prints them, with the
number of mapped `submit_bundles` instances and the day's summary.

`dag.test()` runs task instances one after another in one process, mapped ones included: the
shares do not overlap here as they do under a scheduler with free executor slots, and each still
keeps to its part of the register's rate (`PARALLEL_SHARES` in the DAG), so submission takes
about `PARALLEL_SHARES` times as long as with the shares side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_ID = "vaxreport_source_dagtest"
SOURCE_DB = "vaxreport_dagtest_source"
LEDGER_DB = "vaxreport_dagtest_ledger"
DAG_ID = "vaccinations_daily"


def _environment(home: Path, emulator_url: str, settings) -> dict[str, str]:
    def pg(database: str, extra: dict | None = None) -> str:
        conn = {"conn_type": "postgres", "host": settings.pg_host, "port": settings.pg_port, "login": settings.pg_user}
        return json.dumps({**conn, "schema": database, **({"extra": extra} if extra else {})})

    register_extra = {"concurrency": settings.concurrency, "max_requests_per_s": settings.rate_limit * 0.9}
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DEFAULT_TIMEZONE": "Europe/Stockholm",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT / "plugins"), str(ROOT)]),
        "GX_ANALYTICS_ENABLED": "false",
        "NO_PROXY": "127.0.0.1,localhost",
        "VAXREPORT_HOME": str(home / "var"),
        "VAXREPORT_SOURCES": SOURCE_ID,
        f"AIRFLOW_CONN_{SOURCE_ID.upper()}": pg(SOURCE_DB, {"kind": "vaccination_journal"}),
        "AIRFLOW_CONN_VAXREPORT_DB": pg(LEDGER_DB),
        "AIRFLOW_CONN_NVR_API": json.dumps(
            {
                "conn_type": "http",
                "host": emulator_url,
                "login": "vaxreport-dev",  # the emulator's published development credentials
                "password": "dev-secret",
                "extra": register_extra,
            }
        ),
    }


def run_dag(day: date) -> None:
    """The child: Airflow reads its configuration at import, so it runs in a process of its own."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    if bag.import_errors:
        raise SystemExit(f"import errors: {bag.import_errors}")
    run = bag.get_dag(DAG_ID).test(logical_date=datetime.now().astimezone(), run_conf={"day": day.isoformat()})
    print("DAGRUN", run.run_id, run.state, flush=True)


def _task_instances(airflow_home: Path, run_id: str) -> list[dict]:
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        db.row_factory = sqlite3.Row
        rows = db.execute(
            "SELECT task_id, map_index, rendered_map_index, state, try_number, start_date, end_date"
            " FROM task_instance WHERE dag_id = ? AND run_id = ? ORDER BY start_date",
            (DAG_ID, run_id),
        ).fetchall()
    return [dict(r) for r in rows]


def _seconds(ti: dict) -> float:
    start, end = (datetime.fromisoformat(str(ti[k])) for k in ("start_date", "end_date"))
    return (end - start).total_seconds()


def main(argv: list[str] | None = None) -> int:
    from vaxreport.benchmark import BenchSettings, _recreate_database, start_emulator
    from vaxreport.window import STOCKHOLM

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--day", type=date.fromisoformat, default=None, help="default: yesterday in Stockholm")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "vaxreport-dagtest")
    parser.add_argument("--run-dag", type=date.fromisoformat, help=argparse.SUPPRESS)  # the child
    args = parser.parse_args(argv)
    if args.run_dag:
        run_dag(args.run_dag)
        return 0

    import shutil

    import sqlalchemy as sa

    from vaxreport.synthetic.bulk import write_bulk_day

    settings = BenchSettings(sizes=(args.records,))
    day = args.day or datetime.now(STOCKHOLM).date() - timedelta(days=1)
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    for name in (SOURCE_DB, LEDGER_DB):
        _recreate_database(settings, name)
    url = sa.URL.create("postgresql+psycopg2", username=settings.pg_user, host=settings.pg_host, port=settings.pg_port)
    source = sa.create_engine(url.set(database=SOURCE_DB))
    written = write_bulk_day(source, day, args.records, seed=1)
    source.dispose()
    timings["generate"] = time.perf_counter() - t0
    print(f"{written.rows:,} records registered on {day} written to {SOURCE_DB} in {timings['generate']:.0f} s")

    emulator = start_emulator(
        args.workdir / "register.sqlite", settings.latency_ms, settings.rate_limit, day + timedelta(days=1)
    )
    try:
        env = _environment(args.workdir, emulator.base_url, settings)
        airflow = str(Path(sys.executable).with_name("airflow"))
        t0 = time.perf_counter()
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=900)  # noqa: S603
        timings["airflow db migrate"] = time.perf_counter() - t0
        log_path = args.workdir / f"dag-test-{day}.log"
        print(f"running {DAG_ID} for {day} with dag.test() (log: {log_path}) ...", flush=True)
        t0 = time.perf_counter()
        with log_path.open("w") as log:
            child = subprocess.run(  # noqa: S603 - this script
                [sys.executable, __file__, "--run-dag", day.isoformat()], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        timings["dag.test"] = time.perf_counter() - t0
        stats = emulator.stats()
    finally:
        emulator.stop()

    run_line = next((ln for ln in log_path.read_text().splitlines() if ln.startswith("DAGRUN ")), None)
    if child.returncode != 0 or run_line is None:
        print(f"the DAG run did not finish (exit {child.returncode}); see {log_path}")
        return 1
    _, run_id, state = run_line.split()
    tis = _task_instances(args.workdir / "airflow", run_id)
    print(
        f"\nDAG run {run_id}: {state}; {len(tis)} task instances; wall time of dag.test {timings['dag.test']:.0f} s\n"
    )
    print(f"{'task':<24} {'map index':<26} {'state':<8} {'try':>3} {'seconds':>9}")
    for ti in tis:
        label = ti["rendered_map_index"] or ("" if ti["map_index"] < 0 else str(ti["map_index"]))
        print(f"{ti['task_id']:<24} {label:<26} {ti['state']:<8} {ti['try_number']:>3} {_seconds(ti):>9.1f}")
    shares = [ti for ti in tis if ti["task_id"] == "submit_bundles"]
    print(
        f"\nsubmit_bundles: {len(shares)} mapped instances, {sum(_seconds(t) for t in shares):.1f} s in all "
        f"(longest {max((_seconds(t) for t in shares), default=0):.1f} s)"
    )
    summary = json.loads((args.workdir / "var" / "reports" / day.isoformat() / "summary.json").read_text())
    print("summary:", {k: v for k, v in summary.items() if k != "report"})
    print(f"register: {stats['immunizations']:,} records held, {stats['posts']:,} bundles posted")
    print("other steps (s):", {k: round(v, 1) for k, v in timings.items() if k != "dag.test"})
    return 0 if state == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
