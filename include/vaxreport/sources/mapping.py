"""Journal-system kinds: each maps its own schema to the canonical record through a declarative
`mapping.toml` (which column, which parser) and an `extract.sql` with bound window parameters.

A journal row that cannot be read never stops a run: the parser that fails names the field, and
the record goes on to validation marked with `source_problem`, where it becomes `rejected_local`
with code SOURCE-FORMAT. Only the canonical fields travel on; the raw row does not.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from functools import cache, cached_property
from importlib import resources
from typing import Any

from vaxreport.window import STOCKHOLM, DayWindow

CANONICAL_FIELDS = (
    "source_record_id",
    "person_id",
    "vaccine_name",
    "npl_id",
    "batch",
    "dose_number",
    "vaccination_date",
    "caregiver_hsa_id",
    "caregiver_name",
    "care_unit_hsa_id",
    "care_unit_name",
    "record_status",
    "registered_at",
)


class FieldError(ValueError):
    """A journal value that cannot be read; the message names the problem, never the value."""


@dataclass(frozen=True)
class Kind:
    name: str
    dialect: str
    system_uri: str
    window: str
    record_prefix: str
    fields: dict[str, dict]
    unsupported_defects: tuple[str, ...] = field(default=())

    @cached_property
    def plan(self) -> tuple[tuple[str, str | None, Callable[[Any, dict], Any] | None], ...]:
        """Each canonical field with its column and parser, looked up once per kind, not per row."""
        return tuple(
            (name, self.fields[name]["column"], PARSERS[self.fields[name].get("parse", "text")])
            if name in self.fields
            else (name, None, None)
            for name in CANONICAL_FIELDS
        )

    def sql(self, name: str) -> str:
        return resources.files(f"vaxreport.sources.kinds.{self.name}").joinpath(name).read_text()

    def window_params(self, window: DayWindow) -> dict[str, Any]:
        """The window bound the way this journal stores its change times."""
        if self.window == "text_local":
            fmt = "%Y-%m-%d %H:%M:%S"
            return {
                "start": window.start_utc.astimezone(STOCKHOLM).strftime(fmt),
                "end": window.end_utc.astimezone(STOCKHOLM).strftime(fmt),
            }
        if self.window == "text_utc":
            return {"start": window.start_utc_text, "end": window.end_utc_text}
        if self.window == "timestamptz":
            return {"start": window.start_utc, "end": window.end_utc}
        if self.window == "naive_utc":
            return {"start": window.start_utc.replace(tzinfo=None), "end": window.end_utc.replace(tzinfo=None)}
        raise ValueError(f"kind {self.name}: unknown window binding {self.window!r}")

    def month_params(self, first: date, following: date) -> dict[str, Any]:
        """A vaccination-date range [first, following) bound the way this journal stores the date:
        text, a DATE, or (for UTC times of vaccination) the Stockholm midnights in naive UTC."""
        if self.window in {"text_local", "text_utc"}:
            return {"first": first.isoformat(), "next": following.isoformat()}
        if self.window == "timestamptz":
            return {"first": first, "next": following}
        midnight = {
            d: datetime.combine(d, time(0), STOCKHOLM).astimezone(UTC).replace(tzinfo=None) for d in (first, following)
        }
        return {"first": midnight[first], "next": midnight[following]}


KINDS = ("legacy_export", "vaccination_journal", "general_ehr")


@cache
def load_kind(name: str) -> Kind:
    if name not in KINDS:
        raise ValueError(f"unknown journal-system kind {name!r}; known: {', '.join(KINDS)}")
    data = tomllib.loads(resources.files(f"vaxreport.sources.kinds.{name}").joinpath("mapping.toml").read_text())
    unknown = set(data["fields"]) - set(CANONICAL_FIELDS)
    if unknown:
        raise ValueError(f"kind {name}: mapping names unknown fields {sorted(unknown)}")
    for spec in data["fields"].values():
        if spec.get("parse", "text") not in PARSERS:
            raise ValueError(f"kind {name}: unknown parser {spec['parse']!r}")
    return Kind(
        name=data["kind"],
        dialect=data["dialect"],
        system_uri=data["system_uri"],
        window=data["window"],
        record_prefix=data["record_prefix"],
        fields=data["fields"],
        unsupported_defects=tuple(data.get("unsupported_defects", ())),
    )


# --- parsers: journal value -> canonical value -----------------------------------------------------


def _text(value: Any, row: dict) -> str | None:
    if value is None:
        return None
    if type(value) is str:  # the common case, first
        return value.strip() or None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).strip()
    return text or None


def _dose(value: Any, row: dict) -> int | None:
    text = _text(value, row)
    if text is None:
        return None
    if not re.fullmatch(r"\d{1,3}", text) or not 1 <= int(text) <= 99:
        raise FieldError("dose number is not a whole number from 1 to 99")
    return int(text)


def _date(value: Any, row: dict) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return _text(value, row)


def _utc_datetime_to_local_date(value: Any, row: dict) -> str | None:
    """A UTC time of vaccination is a Stockholm calendar date (23:30 UTC is already tomorrow)."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise FieldError("vaccination time is not a timestamp")
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(STOCKHOLM).date().isoformat()


def _timestamp_utc(value: Any, row: dict) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return _text(value, row)


def _local_text_to_utc(value: Any, row: dict) -> str | None:
    text = _text(value, row)
    if text is None:
        return None
    try:
        local = datetime.strptime(text[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=STOCKHOLM)
    except ValueError as exc:
        raise FieldError("registration time is not YYYY-MM-DD HH:MM:SS") from exc
    return local.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _status_flag_jn(value: Any, row: dict) -> str:
    flag = (_text(value, row) or "N").upper()
    if flag not in {"J", "N"}:
        raise FieldError("voided flag is neither J nor N")
    return "entered-in-error" if flag == "J" else "completed"


def _status_bool(value: Any, row: dict) -> str:
    if value in (True, 1, "t", "true"):
        return "entered-in-error"
    if value in (False, 0, None, "f", "false"):
        return "completed"
    raise FieldError("voided flag is not a boolean")


def _status_code(value: Any, row: dict) -> str:
    code = (_text(value, row) or "").lower()
    if code == "given":
        return "completed"
    if code == "entered-in-error":
        return "entered-in-error"
    raise FieldError("status is neither 'given' nor 'entered-in-error'")


def _personnummer_10(value: Any, row: dict) -> str | None:
    """YYMMDD-NNNC (or + from the year a person turns 100) to 12 digits.

    The century is the one that makes the person younger than 100 ('-') or at least 100 ('+') on
    the day the record was registered, as Skatteverket defines the separator; not the day we run.
    Anything not of that shape is passed on as digits, for validation to reject.
    """
    text = _text(value, row)
    if text is None:
        return None
    compact = text.replace(" ", "")
    if re.fullmatch(r"\d{12}", compact) or re.fullmatch(r"\d{8}[-+]\d{4}", compact):
        return compact.replace("-", "").replace("+", "")
    match = re.fullmatch(r"(\d{2})(\d{2})(\d{2})([-+]?)(\d{4})", compact)
    if not match:
        return re.sub(r"\D", "", compact) or compact
    yy, mm, dd, sep, tail = match.groups()
    registered = _registered_date(row)
    year = registered.year // 100 * 100 + int(yy)
    # (month, day) compared as numbers: a samordningsnummer's day + 60 still orders correctly
    if (year, int(mm), int(dd) % 60 or int(dd)) > (registered.year, registered.month, registered.day):
        year -= 100  # born in the future is impossible: the century before
    if sep == "+":
        year -= 100
    return f"{year:04d}{mm}{dd}{tail}"


def _registered_date(row: dict) -> date:
    raw = row.get("registrerad") or row.get("registered_at") or row.get("recorded_at")
    if isinstance(raw, datetime):
        return raw.date()
    try:
        return date.fromisoformat(str(raw)[:10])
    except (TypeError, ValueError):
        return datetime.now(STOCKHOLM).date()


PARSERS: dict[str, Callable[[Any, dict], Any]] = {
    "text": _text,
    "dose": _dose,
    "date": _date,
    "utc_datetime_to_local_date": _utc_datetime_to_local_date,
    "timestamp_utc": _timestamp_utc,
    "local_text_to_utc": _local_text_to_utc,
    "status_flag_jn": _status_flag_jn,
    "status_bool": _status_bool,
    "status_code": _status_code,
    "personnummer_10": _personnummer_10,
}


# Longest value a field may have. An NPL-id is 14 digits (the catalog allows 40); a longer journal
# value is not one, and the ledger indexes the field, where PostgreSQL refuses entries over ~2.7 kB.
MAX_LENGTH = {"npl_id": 40}


def to_canonical(kind: Kind, row: dict, system_uri: str) -> dict:
    """One journal row as a canonical record; a value that cannot be read is named, not raised."""
    record: dict[str, Any] = {"source": system_uri, "source_problem": None}
    problems = []
    for name, column, parser in kind.plan:
        if parser is None:
            record[name] = None
            continue
        try:
            value = parser(row.get(column), row)
            limit = MAX_LENGTH.get(name)
            if limit is not None and isinstance(value, str) and len(value) > limit:
                raise FieldError(f"longer than {limit} characters")
            record[name] = value
        except (FieldError, TypeError, ValueError, OverflowError) as exc:
            record[name] = None
            problems.append(f"{name}: {exc}" if isinstance(exc, FieldError) else f"{name}: unreadable")
    record["record_status"] = record["record_status"] or "completed"
    record["person_id"] = record["person_id"] or ""
    record["vaccination_date"] = record["vaccination_date"] or ""
    if not record["source_record_id"]:
        problems.append("source_record_id: missing")
    if problems:
        record["source_problem"] = "; ".join(problems)[:500]
    return record


def registered_at_default(day: date) -> str:
    return datetime.combine(day, time(12), STOCKHOLM).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
