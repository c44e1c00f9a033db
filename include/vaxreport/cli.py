"""`python -m vaxreport`: every step without Airflow, for newcomers, debugging and tests."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from datetime import date, timedelta

from vaxreport.settings import DEFAULT_SOURCE_CONN_ID, load_env_file, reports_dir
from vaxreport.window import STOCKHOLM


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def _yesterday() -> date:
    from datetime import datetime

    return datetime.now(STOCKHOLM).date() - timedelta(days=1)


def cmd_generate(args: argparse.Namespace) -> int:
    from vaxreport.pipeline import Runtime
    from vaxreport.synthetic.seed import generate_into

    rt = Runtime()
    records = generate_into(
        rt, args.source, args.day, records=args.records, seed=args.seed, defect_rate=args.defect_rate
    )
    outcomes = Counter(r.expected_state for r in records)
    print(
        f"generated {len(records)} records for {args.day} into {args.source}: "
        + " ".join(f"{k}={v}" for k, v in sorted(outcomes.items()))
    )
    return 0


def cmd_run_day(args: argparse.Namespace) -> int:
    from vaxreport.pipeline import Runtime, run_day, summary_line

    rt = Runtime()
    try:
        summary = run_day(rt, args.day, dry_run=args.dry_run)
    finally:
        rt.close()
    if summary["pending"]:
        print(f"{summary['pending']} records not yet answered by the register (dry run or interrupted)")
    print(summary_line(summary))
    print(f"reports: {summary['report']}")
    if summary.get("unavailable"):
        print("the register could not be reached: the failed records are sent by the next run")
        return 1
    if summary.get("failed_sources"):
        print(f"sources that could not be read (run the day again): {', '.join(summary['failed_sources'])}")
        return 1
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    """Print the summary line a finished run left (used after `airflow dags test`)."""
    from vaxreport.pipeline import summary_line

    path = reports_dir() / args.day.isoformat() / "summary.json"
    if not path.exists():
        print(f"no summary for {args.day}: {path} is missing (did the run finish?)", file=sys.stderr)
        return 1
    summary = json.loads(path.read_text())
    if summary.get("pending"):
        print(f"{summary['pending']} records not yet answered by the register (dry run or interrupted)")
    print(summary_line(summary))
    print(f"reports: {summary['report']}")
    return 0


def cmd_catalog(args: argparse.Namespace) -> int:
    from vaxreport.pipeline import Runtime, refresh_catalog

    print(f"catalog: {refresh_catalog(Runtime())} products stored")
    return 0


def _month(text: str) -> date:
    try:
        return date.fromisoformat(f"{text}-01") if len(text) == 7 else date.fromisoformat(text).replace(day=1)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a month (YYYY-MM): {text!r}") from exc


def cmd_reconcile(args: argparse.Namespace) -> int:
    from vaxreport.pipeline import Runtime
    from vaxreport.reconcile.run import reconcile_month, reconciliation_line

    summary = reconcile_month(Runtime(), args.month, threshold=args.threshold)
    print(reconciliation_line(summary))
    print(f"report: {summary['report']}")
    for problem in summary["problems"]:
        print(f"PROBLEM: {problem}")
    return 1 if summary["problems"] else 0


def cmd_digest(args: argparse.Namespace) -> int:
    from vaxreport.pipeline import Runtime
    from vaxreport.reports import digest

    result = digest.write_week(Runtime().ledger(), args.day, reports_dir() / "digest")
    print(
        f"rejection digest {result['week']}: {result['records']} records, {result['files']} files in {result['folder']}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vaxreport", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write a synthetic day of vaccinations into a source database")
    gen.add_argument("--day", type=_day, default=_yesterday(), help="registration day (default: yesterday)")
    gen.add_argument("--records", type=int, default=2000)
    gen.add_argument("--seed", type=int, default=1)
    gen.add_argument("--defect-rate", type=float, default=0.08)
    gen.add_argument("--source", default=DEFAULT_SOURCE_CONN_ID, help="source connection id")
    gen.set_defaults(func=cmd_generate)

    run = sub.add_parser("run-day", help="run the daily steps for one day, without Airflow")
    run.add_argument("--day", type=_day, default=_yesterday())
    run.add_argument("--dry-run", action="store_true", help="write bundles to var/bundles/<day>/, send nothing")
    run.set_defaults(func=cmd_run_day)

    summ = sub.add_parser("summary", help="print the summary line of a finished run")
    summ.add_argument("--day", type=_day, default=_yesterday())
    summ.set_defaults(func=cmd_summary)

    rec = sub.add_parser("reconcile", help="reconcile one month of the sources against ledger and register")
    rec.add_argument("--month", type=_month, required=True, help="YYYY-MM")
    rec.add_argument("--threshold", type=int, default=0, help="tolerated unexplained difference (records)")
    rec.set_defaults(func=cmd_reconcile)

    dig = sub.add_parser("digest", help="the weekly rejection digest per caregiver (XLSX and HTML)")
    dig.add_argument("--day", type=_day, default=_yesterday(), help="any day of the week (default: yesterday)")
    dig.set_defaults(func=cmd_digest)

    catalog = sub.add_parser("catalog", help="refresh the vaccine catalog from the register")
    catalog.set_defaults(func=cmd_catalog)

    # listed for --help; main() hands everything after "bench" to the benchmark's own parser
    sub.add_parser("bench", help="throughput and memory on PostgreSQL (see `bench --help`)", add_help=False)
    sub.add_parser("airflow", help="a full local Airflow with the emulator (see `airflow --help`)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if argv[:1] == ["bench"]:
        from vaxreport.benchmark import main as bench_main

        logging.getLogger().setLevel(logging.WARNING)  # the benchmark prints its own table
        return bench_main(argv[1:])
    if argv[:1] == ["airflow"]:
        from vaxreport.local_airflow import main as airflow_main

        load_env_file()  # the embedded default's connections, for the task processes
        return airflow_main(argv[1:])
    args = build_parser().parse_args(argv)
    load_env_file()
    if args.verbose:
        logging.getLogger().setLevel(logging.DEBUG)
    return args.func(args)
