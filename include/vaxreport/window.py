"""The explicit time window each run processes.

Airflow 3's cron timetable gives a run a point in time, not an interval, so the day a run reports
is computed here on purpose: a scheduled run at (say) 02:00 Stockholm time reports the previous
Stockholm calendar day; a manual or backfill run names its day. Registration times are stored in
UTC, so the window is converted once, here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

STOCKHOLM = ZoneInfo("Europe/Stockholm")


@dataclass(frozen=True)
class DayWindow:
    """One Stockholm calendar day as a half-open UTC interval [start, end)."""

    day: date
    start_utc: datetime
    end_utc: datetime

    @property
    def start_utc_text(self) -> str:
        return self.start_utc.strftime("%Y-%m-%d %H:%M:%S")

    @property
    def end_utc_text(self) -> str:
        return self.end_utc.strftime("%Y-%m-%d %H:%M:%S")


def day_window(day: date) -> DayWindow:
    start = datetime.combine(day, time(0), STOCKHOLM).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), STOCKHOLM).astimezone(UTC)
    return DayWindow(day=day, start_utc=start, end_utc=end)


def day_for_run(logical_date: datetime | None, day_param: str | None) -> date:
    """The day a run reports: the `day` param if given, else the Stockholm day before the run."""
    if day_param:
        return date.fromisoformat(str(day_param))
    if logical_date is None:
        raise ValueError("a run without a logical date must name its day")
    return logical_date.astimezone(STOCKHOLM).date() - timedelta(days=1)
