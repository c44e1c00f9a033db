"""`python -m vaxreport bench` (`make bench`): the pipeline's throughput and memory, printed.

A script that prints numbers, not a test: the numbers belong to the machine they were taken on.
For each size N it generates N records registered on one day into a PostgreSQL
vaccination-journal source, starts the register emulator on 127.0.0.1 with added latency, and
runs the pipeline's steps through the package, ledger on PostgreSQL, in a child process of its
own, so the peak RSS printed is the pipeline's and not the generator's. Then, in the same run, it
measures the emulator's own ceiling (pre-built bundles posted as fast as it takes them) and a
naive baseline (fhir.resources models, one POST per record, one at a time), and prints both
ratios. Databases `vaxreport_bench_*` (`--db-prefix`) on the server are dropped and created again.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from vaxreport.settings import ConnectionInfo
from vaxreport.window import STOCKHOLM

if TYPE_CHECKING:
    from collections.abc import Iterator

SOURCE_ID = "vaxreport_source_bench"
CLIENT = ("vaxreport-dev", "dev-secret")  # the emulator's published development credentials


@dataclass(frozen=True)
class BenchSettings:
    sizes: tuple[int, ...]
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_user: str = "postgres"
    latency_ms: int = 20
    rate_limit: int = 50
    concurrency: int = 8
    baseline_records: int = 10_000
    ceiling_records: int = 100_000
    workdir: Path = Path(tempfile.gettempdir()) / "vaxreport-bench"
    db_prefix: str = "vaxreport_bench"  # databases <prefix>_source, _ledger, _scratch: dropped and made anew

    @property
    def source_db(self) -> str:
        return f"{self.db_prefix}_source"

    @property
    def ledger_db(self) -> str:
        return f"{self.db_prefix}_ledger"

    @property
    def scratch_db(self) -> str:
        return f"{self.db_prefix}_scratch"


def _pg(settings: BenchSettings, database: str) -> ConnectionInfo:
    return ConnectionInfo(
        conn_id=database,
        conn_type="postgres",
        host=settings.pg_host,
        port=settings.pg_port,
        login=settings.pg_user,
        schema=database,
        extra={"kind": "vaccination_journal"},
    )


def _recreate_database(settings: BenchSettings, name: str) -> None:
    admin = sa.create_engine(
        sa.URL.create("postgresql+psycopg2", username=settings.pg_user, host=settings.pg_host, port=settings.pg_port),
        isolation_level="AUTOCOMMIT",
    )
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        admin.dispose()


def generate_source(engine: sa.Engine, records: int, day: date) -> int:
    """`records` journal rows registered on `day`, COPYed a chunk at a time so memory stays flat
    (`synthetic.bulk`: valid new records, a few corrections, voids and defects, none out of scope)."""
    from vaxreport.synthetic.bulk import write_bulk_day

    return write_bulk_day(engine, day, records, seed=1).rows


# -- the register emulator ---------------------------------------------------------------------


@dataclass
class Emulator:
    base_url: str
    process: subprocess.Popen

    def stats(self) -> dict:
        import httpx

        return httpx.get(f"{self.base_url}/admin/stats", timeout=30).json()

    def cpu_seconds(self) -> float:
        """User + system CPU the emulator process has used (Linux /proc), to show where time goes."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_emulator(db: Path, latency_ms: int, rate_limit: int, today: date) -> Emulator:
    import httpx

    port = _free_port()
    root = Path(__file__).resolve().parents[1]
    faults = json.dumps({"latency_ms": latency_ms})
    args = ["--host", "127.0.0.1", "--port", str(port), "--db", str(db), "--faults", faults]
    args += ["--rate-limit", str(rate_limit), "--today", today.isoformat()]
    log = (db.parent / f"{db.stem}.log").open("w")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "nvr_emulator", *args]
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)  # noqa: S603 - our own module
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the emulator exited at start; see {log.name}")
        try:
            httpx.get(f"{base}/admin/stats", timeout=1)
            return Emulator(base, proc)
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the emulator did not start within 30 s")


# -- the pipeline, in a process of its own -----------------------------------------------------


def _runtime(spec: dict):
    from vaxreport.pipeline import Runtime

    connections = {
        SOURCE_ID: ConnectionInfo(**spec["source"]),
        "vaxreport_db": ConnectionInfo(**spec["ledger"]),
        "nvr_api": ConnectionInfo(
            conn_id="nvr_api",
            conn_type="http",
            host=spec["register"],
            login=CLIENT[0],
            password=CLIENT[1],
            extra=spec.get("register_extra", {}),
        ),
    }
    return Runtime(resolve=connections.__getitem__, sources=[SOURCE_ID], context_id=str(uuid.uuid4()))


def _pipeline_child(spec: dict, pipe) -> None:
    """Every step of one day, timed; sends back timings, counts and this process's peak RSS."""
    import resource

    from vaxreport import pipeline
    from vaxreport.ledger import store

    rt = _runtime(spec)
    day = date.fromisoformat(spec["day"])
    timings: dict[str, float] = {}
    from vaxreport.meters import BUNDLE_BUILDING, LEDGER_WRITES, VALIDATION

    for meter in (LEDGER_WRITES, BUNDLE_BUILDING, VALIDATION):
        meter.reset()
    started = time.perf_counter()
    t0 = time.perf_counter()
    extracted = pipeline.extract_source(rt, SOURCE_ID, day)
    timings["extract"] = time.perf_counter() - t0
    pipeline.ensure_catalog(rt)
    # validation, bundling and sending overlap, as `run-day` runs them on PostgreSQL: each stage's
    # figure is the time it was busy, the end-to-end figure the wall time of the whole
    streamed = pipeline.stream_day(rt, day)
    timings.update(streamed["seconds"])
    t0 = time.perf_counter()
    submitted = pipeline.submit_day(rt, day)  # what is left: transient failures, voids
    timings["submit"] += time.perf_counter() - t0
    timings["total"] = time.perf_counter() - started
    counts = store.state_counts(rt.ledger(), day.isoformat())
    rt.close()
    pipe.send(
        {
            "timings": timings,
            "extracted": extracted["extracted"],
            "validated": streamed["validated"],
            "entries": streamed["entries"],
            "sent": streamed["sent"] + submitted["sent"],
            "counts": counts,
            "ledger_rows": LEDGER_WRITES.rows,
            "ledger_seconds": LEDGER_WRITES.seconds,
            "bundle_records": BUNDLE_BUILDING.rows,
            "bundle_seconds": BUNDLE_BUILDING.seconds,
            "rules_rows": VALIDATION.rows,
            "rules_seconds": VALIDATION.seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "cpu_s": (lambda u: u.ru_utime + u.ru_stime)(resource.getrusage(resource.RUSAGE_SELF)),
        }
    )


def run_pipeline(spec: dict, target=_pipeline_child) -> dict:
    """`target(spec, pipe)` in a fresh process (so its peak RSS is its own); what it sends back."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(spec, child))
    proc.start()
    child.close()
    try:
        result = parent.recv()
    except EOFError:
        proc.join()
        raise RuntimeError(f"the benchmark's {target.__name__} process died (exit code {proc.exitcode})") from None
    proc.join()
    return result


# -- each bulk stage alone ---------------------------------------------------------------------


def _validate_alone(rt, day: date) -> dict:
    """The run's records validated again, chunk by chunk as `stream_day` reads them, outcomes not
    written: scope checks, history lookups, the rules and the outcomes, everything but the write.
    What a process pays once (importing GX, its context and suite, pandas' first calls) is paid
    first, untimed, on the first chunk, which is then validated again with the others.

    Not quite the run's input: the records are past validation now, so a resolved NPL-id stands
    where a journal gave only a name, and a person's COVID-19 doses of the day come back from the
    history lookup as sent (in the run they were still extracted, fetched and dropped alike) and
    are then set aside as the records' own versions: the same rules on the same rows, with a
    little more history to sort."""
    from vaxreport import pipeline
    from vaxreport.ledger import schema as s
    from vaxreport.meters import VALIDATION
    from vaxreport.registry import catalog as cat

    ledger = rt.ledger()
    catalog = cat.load(ledger)
    states = tuple(st for st in s.STATES if st != s.SUPERSEDED)
    t0 = time.perf_counter()
    first = next(pipeline.person_chunks(ledger, day, states), [])
    if first:
        pipeline.chunk_outcomes(ledger, first, catalog, day, None)  # validated again below, warm
    setup = time.perf_counter() - t0
    del first
    VALIDATION.reset()
    rows = seconds = 0.0
    for chunk in pipeline.person_chunks(ledger, day, states):
        t0 = time.perf_counter()
        pipeline.chunk_outcomes(ledger, chunk, catalog, day, None)
        seconds += time.perf_counter() - t0
        rows += len(chunk)
    return {
        "rows": int(rows),
        "seconds": seconds,
        "setup_s": setup,
        "rules_rows": VALIDATION.rows,
        "rules_seconds": VALIDATION.seconds,
    }


def _build_alone(rt) -> dict:
    """The run's bundles planned and serialised again from their rows (read first, untimed): the
    grouping by person, the send order, the entries and the JSON, as the sender makes them."""
    from vaxreport import pipeline
    from vaxreport.fhir import bundles as fb
    from vaxreport.ledger import schema as s
    from vaxreport.submission import bundle_body

    rv = s.record_versions
    query = sa.select(rv).where(rv.c.bundle_id.is_not(None)).order_by(*(rv.c[c] for c in pipeline.BUNDLE_ORDER))
    reading = 0.0

    def rows() -> Iterator[dict]:
        """Every row through one iterator, as `build_day` streams them; the reading timed apart."""
        nonlocal reading
        pages = iter(pipeline.stream_rows(rt.ledger(), query, pipeline.BUILD_PAGE))
        while True:
            t0 = time.perf_counter()
            page = next(pages, None)
            reading += time.perf_counter() - t0
            if page is None:
                return
            for row in page:
                row["register_id"] = None  # as first sent: creates
                yield row

    records = size = 0
    t0 = time.perf_counter()
    for bundle in pipeline.person_bundles(rows()):
        size += len(bundle_body(fb.send_order(bundle)))
        records += len(bundle)
    return {"records": records, "seconds": time.perf_counter() - t0 - reading, "bytes": size}


def _ledger_writes_alone(rt, spec: dict, day: date) -> dict:
    """The two bulk writes each record costs, into an empty ledger of the same schema: the
    extraction's insert of its version (`store.write_versions`, as `record_extracted` writes, with
    its lookup of known versions) and the validation-and-bundling update of its outcome
    (`store.update_rows`, a chunk per transaction)."""
    from vaxreport import pipeline
    from vaxreport.ledger import schema as s
    from vaxreport.ledger import store
    from vaxreport.meters import LEDGER_WRITES
    from vaxreport.settings import sqlalchemy_url

    settings = BenchSettings(sizes=(), **spec["pg"])
    _recreate_database(settings, settings.scratch_db)
    scratch = sa.create_engine(sqlalchemy_url(_pg(settings, settings.scratch_db)))
    try:
        s.ensure_schema(scratch)
        rv = s.record_versions
        wanted = ("source", "source_record_id", "registered_at", *store.CONTENT_FIELDS)
        query = sa.select(*(rv.c[c] for c in wanted)).where(rv.c.window_day == day.isoformat()).order_by(rv.c.id)
        LEDGER_WRITES.reset()
        inserted = 0
        stamp = store.now_text()
        # the rows are read and made (hashes, person keys) first, so only the writing is measured
        for page in pipeline.stream_rows(rt.ledger(), query, store.EXTRACT_CHUNK):
            inserted += store.write_versions(scratch, store.version_rows(page, day.isoformat(), stamp), day.isoformat())
        insert = (LEDGER_WRITES.rows, LEDGER_WRITES.seconds)
        with scratch.begin() as conn:  # as `record_extracted` does after a big day
            conn.exec_driver_sql("ANALYZE record_versions")
        LEDGER_WRITES.reset()
        ids = sa.select(rv.c.id).order_by(rv.c.id)
        for page in pipeline.stream_rows(scratch, ids, pipeline.VALIDATE_CHUNK):
            outcomes = [
                {"id": r["id"], "state": s.READY, "npl_id": "bench", "register_id": None, "bundle_id": r["id"] // 100}
                for r in page
            ]
            t0 = time.perf_counter()
            with scratch.begin() as conn:
                changed = store.update_rows(conn, outcomes, [s.EXTRACTED], store.now_text())
            LEDGER_WRITES.add(changed, time.perf_counter() - t0)  # rows the update changed
        update = (LEDGER_WRITES.rows, LEDGER_WRITES.seconds)
    finally:
        scratch.dispose()
    return {"inserted": inserted, "insert": insert, "update": update}


def _stages_child(spec: dict, pipe) -> None:
    """Validation, building and the ledger's bulk writes, each alone on the run's own records:
    what each stage can do when it has the machine, next to what it did while sharing it."""
    rt = _runtime(spec)
    day = date.fromisoformat(spec["day"])
    try:
        result = {
            "validate": _validate_alone(rt, day),
            "build": _build_alone(rt),
            "ledger": _ledger_writes_alone(rt, spec, day),
        }
    finally:
        rt.close()
    pipe.send(result)


# -- the emulator's ceiling and the naive baseline ---------------------------------------------


def _accepted_rows(ledger: sa.Engine, limit: int) -> list[dict]:
    from vaxreport.ledger import schema as s

    rv = s.record_versions
    with ledger.connect() as conn:
        query = sa.select(rv).where(rv.c.state == s.ACCEPTED, rv.c.record_status != "entered-in-error")
        # sent again as creates into a fresh register: the id a row got from the register goes
        return [{**r, "register_id": None} for r in conn.execute(query.order_by(rv.c.id).limit(limit)).mappings()]


def _token(client, base_url: str) -> str:
    answer = client.post(f"{base_url}/oauth2/token", data={"grant_type": "client_credentials"}, auth=CLIENT, timeout=30)
    answer.raise_for_status()
    return answer.json()["access_token"]


def naive_baseline(base_url: str, rows: list[dict]) -> dict:
    """How a first attempt would do it: a fhir.resources model per record, one POST each, in turn."""
    import httpx
    from fhir.resources.R4B.bundle import Bundle  # R4B: the register speaks R4 (the default is R5)

    from vaxreport.fhir import bundles as fb

    started = time.perf_counter()
    context_id = str(uuid.uuid4())
    with httpx.Client(timeout=60) as client:
        token = _token(client, base_url)
        for row in rows:
            entry = fb.immunization_entry(row)
            bundle = Bundle.model_validate({"resourceType": "Bundle", "type": "batch", "entry": [entry]})
            body = bundle.model_dump_json()
            headers = {
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/fhir+json",
                "X-Request-ID": str(uuid.uuid4()),
                "X-Context-ID": context_id,
                "X-User-Agent": "vaxreport-naive-baseline",
            }
            while True:
                answer = client.post(f"{base_url}/fhir", content=body, headers=headers)
                if answer.status_code == 401:
                    token = _token(client, base_url)
                    headers["Authorization"] = f"Bearer {token}"
                    continue
                if answer.status_code == 429:
                    time.sleep(float(answer.headers.get("Retry-After", "1")))
                    continue
                answer.raise_for_status()
                break
    seconds = time.perf_counter() - started
    return {"records": len(rows), "seconds": seconds, "per_s": len(rows) / seconds}


def emulator_ceiling(base_url: str, rows: list[dict], concurrency: int) -> dict:
    """Pre-built bundles, serialised before the clock starts, posted as fast as they are taken."""
    import orjson

    from nvr_emulator.ceiling import measure_ceiling
    from vaxreport.fhir import bundles as fb

    bodies = [orjson.dumps(fb.batch_bundle([fb.immunization_entry(r) for r in chunk])) for chunk in fb.chunked(rows)]
    return measure_ceiling(base_url, bodies, concurrency=concurrency, client_id=CLIENT[0], client_secret=CLIENT[1])


# -- the run -----------------------------------------------------------------------------------


def _fresh_emulator(settings: BenchSettings, name: str, rate_limit: int, day: date) -> Emulator:
    settings.workdir.mkdir(parents=True, exist_ok=True)
    db = settings.workdir / f"register-{name}.sqlite"
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        path.unlink(missing_ok=True)
    return start_emulator(db, settings.latency_ms, rate_limit, day + timedelta(days=1))


def bench_size(settings: BenchSettings, n: int, day: date) -> dict:
    from vaxreport.ledger import schema as s

    _recreate_database(settings, settings.source_db)
    _recreate_database(settings, settings.ledger_db)
    source_info, ledger_info = _pg(settings, settings.source_db), _pg(settings, settings.ledger_db)
    from vaxreport.settings import sqlalchemy_url

    source = sa.create_engine(sqlalchemy_url(source_info))
    t0 = time.perf_counter()
    generate_source(source, n, day)
    generated_s = time.perf_counter() - t0
    source.dispose()
    emulator = _fresh_emulator(settings, str(n), settings.rate_limit, day)
    try:
        spec = {
            "day": day.isoformat(),
            "source": source_info.__dict__,
            "ledger": {**ledger_info.__dict__, "extra": {}},
            "register": emulator.base_url,
            # the client keeps 10 % under the register's limit
            "register_extra": {"concurrency": settings.concurrency, "max_requests_per_s": settings.rate_limit * 0.9},
        }
        result = run_pipeline(spec)
        stats = emulator.stats()
        result["emulator_cpu_s"] = emulator.cpu_seconds()
    finally:
        emulator.stop()
    pg = {"pg_host": settings.pg_host, "pg_port": settings.pg_port, "pg_user": settings.pg_user}
    pg["db_prefix"] = settings.db_prefix
    result["alone"] = run_pipeline({**spec, "pg": pg}, _stages_child)
    counts = result["counts"]
    open_states = counts[s.EXTRACTED] + counts[s.READY] + counts[s.SUBMITTED]
    result.update(
        n=n,
        generated_s=generated_s,
        register_held=stats["immunizations"],
        accounted=sum(counts.values()) - counts[s.SUPERSEDED] == n and open_states == 0,
    )
    return result


def _rate(records: int, seconds: float) -> str:
    return f"{records / seconds:>12,.0f}" if seconds > 0 else f"{'-':>12}"


def print_report(results: list[dict], ceiling: dict | None, baseline: dict | None, settings: BenchSettings) -> None:
    print()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, PostgreSQL at {settings.pg_host}")
    print(
        f"register emulator: 127.0.0.1, {settings.latency_ms} ms added latency, "
        f"rate limit {settings.rate_limit} requests/s, {settings.concurrency} bundles in flight"
    )
    header = f"{'records':>10} {'stage':<14} {'seconds':>9} {'records/s':>12}"
    print(header)
    print("-" * len(header))
    for r in results:
        n, t = r["n"], r["timings"]
        # building = planning the bundles (build_day) + serialising them (done as submit sends them)
        t["build"] += r["bundle_seconds"]
        for stage, count in (
            ("extract", r["extracted"]),
            ("validate", r["validated"]),
            ("build", r["entries"]),
            ("submit", r["sent"]),
        ):
            print(f"{n:>10,} {stage:<14} {t[stage]:>9.1f} {_rate(count, t[stage])}")
        for stage, count, seconds in (
            ("  rules", r["rules_rows"], r["rules_seconds"]),
            ("ledger writes", r["ledger_rows"], r["ledger_seconds"]),
        ):
            print(f"{n:>10,} {stage:<14} {seconds:>9.1f} {_rate(count, seconds)}")
        print(f"{n:>10,} {'end to end':<14} {t['total']:>9.1f} {_rate(n, t['total'])}")
        print(
            f"{'':>10} CPU seconds: pipeline {r['cpu_s']:,.0f}, emulator {r['emulator_cpu_s']:,.0f} "
            f"(of {os.cpu_count() * t['total']:,.0f} core-seconds of wall time; the rest is PostgreSQL and idle)"
        )
        print(
            f"{'':>10} peak RSS {r['peak_rss_mb']:,.0f} MB; every record accounted for: {r['accounted']}; "
            f"register holds {r['register_held']:,}; states "
            + ", ".join(f"{k}={v:,}" for k, v in r["counts"].items() if v)
        )
    print()
    print("each stage alone, on the same run's records, nothing else running:")
    print(header)
    print("-" * len(header))
    for r in results:
        n, alone = r["n"], r["alone"]
        v, b, led = alone["validate"], alone["build"], alone["ledger"]
        (ins_rows, ins_s), (upd_rows, upd_s) = led["insert"], led["update"]
        for stage, count, seconds in (
            ("validate", v["rows"], v["seconds"]),
            ("  rules", v["rules_rows"], v["rules_seconds"]),
            ("build", b["records"], b["seconds"]),
            ("ledger writes", ins_rows + upd_rows, ins_s + upd_s),
            ("  insert", ins_rows, ins_s),
            ("  update", upd_rows, upd_s),
        ):
            print(f"{n:>10,} {stage:<14} {seconds:>9.1f} {_rate(count, seconds)}")
        print(f"{'':>10} validation's setup (imports, GX context, suite): {v['setup_s']:.1f} s, not counted")
    if len(results) >= 2:
        small, large = results[0], results[-1]
        growth = (large["peak_rss_mb"] - small["peak_rss_mb"]) / small["peak_rss_mb"] * 100
        print(f"peak RSS from {small['n']:,} to {large['n']:,} records: {growth:+.0f} %")
    best = results[-1]
    e2e = best["n"] / best["timings"]["total"]
    if ceiling:
        limited, unlimited = ceiling["entries_per_second"], ceiling["unlimited"]["entries_per_second"]
        print(
            f"emulator ceiling: {limited:,.0f} entries/s at the rate limit ({ceiling['entries']:,} entries), "
            f"{unlimited:,.0f} entries/s without it; end to end / ceiling = {e2e / limited:.0%}"
        )
    if baseline:
        print(
            f"naive baseline: {baseline['per_s']:,.1f} records/s ({baseline['records']:,} records, "
            f"{baseline['seconds']:.0f} s); end to end / baseline = {e2e / baseline['per_s']:,.0f}x"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vaxreport bench", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, action="append", help="N (repeatable); default 100000 and 1000000")
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--rate-limit", type=int, default=BenchSettings.rate_limit)
    parser.add_argument("--concurrency", type=int, default=BenchSettings.concurrency)
    parser.add_argument("--baseline-records", type=int, default=BenchSettings.baseline_records)
    parser.add_argument("--ceiling-records", type=int, default=BenchSettings.ceiling_records)
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--pg-user", default="postgres")
    parser.add_argument("--db-prefix", default=BenchSettings.db_prefix, help="databases <prefix>_source, _ledger, …")
    args = parser.parse_args(argv)
    settings = BenchSettings(
        sizes=tuple(args.records or (100_000, 1_000_000)),
        pg_host=args.pg_host,
        pg_port=args.pg_port,
        pg_user=args.pg_user,
        db_prefix=args.db_prefix,
        latency_ms=args.latency_ms,
        rate_limit=args.rate_limit,
        concurrency=args.concurrency,
        baseline_records=args.baseline_records,
        ceiling_records=args.ceiling_records,
    )
    day = datetime.now(STOCKHOLM).date() - timedelta(days=1)
    results = []
    for n in settings.sizes:
        print(f"{n:,} records: generating, then running the pipeline ...", flush=True)
        results.append(bench_size(settings, n, day))
    from vaxreport.settings import sqlalchemy_url

    ledger = sa.create_engine(sqlalchemy_url(_pg(settings, settings.ledger_db)))
    wanted = max(settings.ceiling_records, settings.baseline_records)
    rows = _accepted_rows(ledger, wanted)
    ledger.dispose()
    ceiling = baseline = None
    if settings.ceiling_records:
        print(f"emulator ceiling on {min(len(rows), settings.ceiling_records):,} entries ...", flush=True)
        emulator = _fresh_emulator(settings, "ceiling", settings.rate_limit, day)
        try:
            ceiling = emulator_ceiling(emulator.base_url, rows[: settings.ceiling_records], settings.concurrency)
        finally:
            emulator.stop()
        # the same without the rate limit: what the emulator's own processing could take
        emulator = _fresh_emulator(settings, "ceiling-unlimited", 0, day)
        try:
            ceiling["unlimited"] = emulator_ceiling(
                emulator.base_url, rows[: settings.ceiling_records], settings.concurrency
            )
        finally:
            emulator.stop()
    if settings.baseline_records:
        print(f"naive baseline on {min(len(rows), settings.baseline_records):,} records ...", flush=True)
        emulator = _fresh_emulator(settings, "baseline", settings.rate_limit, day)
        try:
            baseline = naive_baseline(emulator.base_url, rows[: settings.baseline_records])
        finally:
            emulator.stop()
    print_report(results, ceiling, baseline, settings)
    return 0 if all(r["accounted"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
