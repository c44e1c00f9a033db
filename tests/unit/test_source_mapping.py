"""The named parsers of the kinds' mappings, on the values journals really write."""

from datetime import UTC, datetime

import pytest

from vaxreport.sources.mapping import KINDS, PARSERS, FieldError, load_kind, to_canonical
from vaxreport.synthetic.generate import samordningsnummer_for
from vaxreport.window import day_window

pytestmark = pytest.mark.unit
pnr10 = PARSERS["personnummer_10"]


@pytest.mark.parametrize(
    ("value", "registered", "expected"),
    [
        ("261103-8387", "2026-11-03 09:00:00", "202611038387"),  # '-': under 100, so born today
        ("261103+8387", "2026-11-03 09:00:00", "192611038387"),  # '+' from the year one turns 100
        ("190101-2391", "2026-11-03 09:00:00", "201901012391"),
        ("261006+9185", "2026-11-03 09:00:00", "192610069185"),  # born October 1926: 100 already, '+'
        ("261006-9185", "2026-11-03 09:00:00", "202610069185"),  # the same digits with '-': a baby
        ("19261006-9185", "2026-11-03 09:00:00", "192610069185"),
        ("192610069185", "2026-11-03 09:00:00", "192610069185"),
        ("okänd", "2026-11-03 09:00:00", "okänd"),
    ],
)
def test_ten_digit_personnummer_gets_the_century_of_the_registration_day(value, registered, expected):
    assert pnr10(value, {"registrerad": registered}) == expected


def test_a_birthday_later_in_the_year_means_the_century_before():
    # 261112: on 2026-11-03 a child born 2026-11-12 does not exist yet, so 1926 (aged 99, "-")
    assert pnr10("261112-8311", {"registrerad": "2026-11-03 09:00:00"}) == "192611128311"


def test_samordningsnummer_in_ten_digits():
    sam = samordningsnummer_for("201901012391")
    assert pnr10(f"{sam[2:8]}-{sam[8:]}", {"registrerad": "2026-11-03 09:00:00"}) == sam


@pytest.mark.parametrize(
    ("parser", "value", "expected"),
    [
        ("dose", " 2 ", 2),
        ("dose", None, None),
        ("status_flag_jn", "j", "entered-in-error"),
        ("status_flag_jn", None, "completed"),
        ("status_bool", True, "entered-in-error"),
        ("status_code", "given", "completed"),
        ("local_text_to_utc", "2026-07-01 10:00:00", "2026-07-01 08:00:00"),
        ("utc_datetime_to_local_date", datetime(2026, 11, 20, 23, 30), "2026-11-21"),
        ("timestamp_utc", datetime(2026, 11, 20, 23, 30, tzinfo=UTC), "2026-11-20 23:30:00"),
        ("text", b"Pri\xf8rix", "Pri\ufffdrix"),
    ],
)
def test_parsers(parser, value, expected):
    assert PARSERS[parser](value, {}) == expected


@pytest.mark.parametrize(
    ("parser", "value"),
    [
        ("dose", "två"),
        ("dose", "0"),
        ("dose", "150"),
        ("status_flag_jn", "X"),
        ("status_code", "gvien"),
        ("status_bool", "maybe"),
        ("local_text_to_utc", "igår"),
    ],
)
def test_unreadable_values_name_the_problem(parser, value):
    with pytest.raises(FieldError):
        PARSERS[parser](value, {})


def test_every_kind_loads_and_binds_its_window():
    for name in KINDS:
        kind = load_kind(name)
        params = kind.window_params(day_window(datetime(2026, 11, 21).date()))
        assert set(params) == {"start", "end"}
        assert ":start" in kind.sql("extract.sql")


def test_a_row_with_problems_keeps_going_with_the_fields_named():
    kind = load_kind("legacy_export")
    record = to_canonical(kind, {"post_id": "X1", "dosnummer": "två", "makulerad": "?", "registrerad": "x"}, "urn:t")
    assert record["source_problem"] == (
        "dose_number: dose number is not a whole number from 1 to 99; record_status: voided flag is neither J nor N; "
        "registered_at: registration time is not YYYY-MM-DD HH:MM:SS"
    )
    assert record["record_status"] == "completed"


def test_an_npl_id_longer_than_any_catalog_id_is_a_source_problem_not_a_vaccine():
    kind = load_kind("vaccination_journal")
    row = {"id": 7, "npl_id": "2" * 41, "vaccine_name": "Comirnaty", "administered_on": "2026-11-20"}
    record = to_canonical(kind, row, "urn:t")
    assert record["npl_id"] is None
    assert record["source_problem"] == "npl_id: longer than 40 characters"
    assert to_canonical(kind, {**row, "npl_id": "2" * 40}, "urn:t")["npl_id"] == "2" * 40
