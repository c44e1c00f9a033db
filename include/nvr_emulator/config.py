"""Start-up settings of the emulator, shared by the CLI, the app factory and tests."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from nvr_emulator.faults import FaultConfig

if TYPE_CHECKING:
    from pathlib import Path

#: The register decides "in the future" by Swedish time, not the server's clock zone.
STOCKHOLM = ZoneInfo("Europe/Stockholm")


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything an emulator instance needs; defaults are the dev defaults of REGISTRY.md.

    Attributes:
        host: address to bind; loopback unless ``allow_remote``.
        port: TCP port; 0 lets the OS choose (tests).
        db: SQLite file for the store, or None for an in-memory store.
        client_id: the one OAuth2 client the emulator knows.
        client_secret: its secret.
        token_ttl: access-token lifetime in seconds (short, so long runs meet expiry).
        rate_limit: requests per second per client on /fhir; 0 switches the limit off.
        dose_interval_days: minimum days between two COVID-19 doses of one person.
        today: fixed "today" for tests; None means the current date in Europe/Stockholm.
        allow_remote: permit binding a non-loopback address.
        faults: fault injection at start-up (none by default); ``/admin/faults`` changes it.
        findings_delay_days: a stored vaccination's person is looked up in the population
            register this many days after it was stored: the ``found`` date of a
            ``PERSON-NOT-FOUND`` finding (0: the same day).
    """

    host: str = "127.0.0.1"
    port: int = 8089
    db: Path | None = None
    client_id: str = "vaxreport-dev"
    client_secret: str = "dev-secret"  # noqa: S105 - documented dev default, not a secret
    token_ttl: int = 300
    rate_limit: int = 50
    dose_interval_days: int = 21
    today: dt.date | None = None
    allow_remote: bool = False
    faults: FaultConfig = field(default_factory=FaultConfig)
    findings_delay_days: int = 0

    def __post_init__(self) -> None:
        if self.findings_delay_days < 0:
            raise ValueError("findings_delay_days must not be negative")

    def current_date(self) -> dt.date:
        """Today as the register sees it: the override, or the date in Stockholm now."""
        if self.today is not None:
            return self.today
        return dt.datetime.now(STOCKHOLM).date()


def is_loopback(host: str) -> bool:
    """Whether ``host`` names the loopback interface (the emulator's only default audience)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
