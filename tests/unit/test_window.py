from datetime import UTC, date, datetime

import pytest

from vaxreport.window import day_for_run, day_window

pytestmark = pytest.mark.unit


def test_scheduled_run_reports_the_previous_stockholm_day():
    # 02:00 Stockholm on 2026-11-22 is 01:00 UTC
    assert day_for_run(datetime(2026, 11, 22, 1, 0, tzinfo=UTC), None) == date(2026, 11, 21)


def test_run_just_after_midnight_utc_but_before_in_stockholm():
    # 23:30 UTC on the 21st is already 00:30 on the 22nd in Stockholm
    assert day_for_run(datetime(2026, 11, 21, 23, 30, tzinfo=UTC), None) == date(2026, 11, 21)


def test_day_param_wins_over_the_logical_date():
    assert day_for_run(datetime(2026, 11, 22, 1, tzinfo=UTC), "2026-03-01") == date(2026, 3, 1)


def test_run_without_date_or_param_is_an_error():
    with pytest.raises(ValueError, match="must name its day"):
        day_for_run(None, None)


def test_window_is_a_stockholm_day_in_utc_winter_and_summer():
    winter = day_window(date(2026, 1, 15))
    assert (winter.start_utc_text, winter.end_utc_text) == ("2026-01-14 23:00:00", "2026-01-15 23:00:00")
    summer = day_window(date(2026, 7, 15))
    assert (summer.start_utc_text, summer.end_utc_text) == ("2026-07-14 22:00:00", "2026-07-15 22:00:00")


def test_daylight_saving_days_are_23_and_25_hours():
    spring = day_window(date(2026, 3, 29))
    autumn = day_window(date(2026, 10, 25))
    assert (spring.end_utc - spring.start_utc).total_seconds() == 23 * 3600
    assert (autumn.end_utc - autumn.start_utc).total_seconds() == 25 * 3600
