"""``python -m nvr_emulator``: start the emulator (see README.md for the options)."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from pathlib import Path

from nvr_emulator.config import EmulatorConfig
from nvr_emulator.faults import FaultConfig, FaultConfigError
from nvr_emulator.server import RemoteBindRefused, serve

DEFAULTS = EmulatorConfig()


def parse_args(argv: list[str] | None = None) -> EmulatorConfig:
    """Command-line options as an :class:`EmulatorConfig`."""
    parser = argparse.ArgumentParser(prog="python -m nvr_emulator", description="Local NVR API emulator.")
    parser.add_argument("--host", default=DEFAULTS.host, help="address to bind (loopback unless --allow-remote)")
    parser.add_argument("--port", type=int, default=DEFAULTS.port, help="TCP port (0: any free port)")
    parser.add_argument("--db", type=Path, default=None, help="SQLite file for the store (default: in memory)")
    parser.add_argument("--client-id", default=DEFAULTS.client_id)
    parser.add_argument("--client-secret", default=DEFAULTS.client_secret)
    parser.add_argument("--token-ttl", type=int, default=DEFAULTS.token_ttl, help="access-token lifetime, seconds")
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=DEFAULTS.rate_limit,
        help="requests per second per client on /fhir, 0 = off (REGISTRY.md names no figure; see README.md)",
    )
    parser.add_argument(
        "--dose-interval-days",
        type=int,
        default=DEFAULTS.dose_interval_days,
        help="minimum days between two COVID-19 doses",
    )
    parser.add_argument(
        "--today",
        type=dt.date.fromisoformat,
        default=None,
        help="YYYY-MM-DD: fixed 'today' for the date checks (default: today in Europe/Stockholm)",
    )
    parser.add_argument("--allow-remote", action="store_true", help="permit binding a non-loopback address")
    parser.add_argument(
        "--faults",
        type=_faults,
        default=DEFAULTS.faults,
        metavar="JSON|@FILE",
        help='fault injection, e.g. \'{"seed": 7, "rate_503": 0.1}\' (see README.md); default: none',
    )
    parser.add_argument(
        "--findings-delay-days",
        type=_days,
        default=DEFAULTS.findings_delay_days,
        metavar="N",
        help="days after storing that a person missing from the population register is found (default: 0)",
    )
    args = parser.parse_args(argv)
    return EmulatorConfig(
        host=args.host,
        port=args.port,
        db=args.db,
        client_id=args.client_id,
        client_secret=args.client_secret,
        token_ttl=args.token_ttl,
        rate_limit=args.rate_limit,
        dose_interval_days=args.dose_interval_days,
        today=args.today,
        allow_remote=args.allow_remote,
        faults=args.faults,
        findings_delay_days=args.findings_delay_days,
    )


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        days = -1
    if days < 0:
        raise argparse.ArgumentTypeError(f"not a number of days (0 or more): {text!r}")
    return days


def _faults(text: str) -> FaultConfig:
    try:
        return FaultConfig.parse(text)
    except (FaultConfigError, OSError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def main(argv: list[str] | None = None) -> int:
    """Run until interrupted; exit status 2 when the host may not be bound."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = parse_args(argv)
    try:
        serve(config)
    except RemoteBindRefused as exc:
        print(f"nvr_emulator: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
