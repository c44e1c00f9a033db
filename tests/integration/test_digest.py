"""The weekly rejection digest: the XLSX opens with openpyxl and matches the ledger's rejected rows."""

from datetime import date

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from vaxreport.ledger import schema as s
from vaxreport.pipeline import Runtime, run_day
from vaxreport.reports import digest
from vaxreport.synthetic.seed import generate_into

pytestmark = pytest.mark.integration
DAYS = [date(2026, 11, 16), date(2026, 11, 17), date(2026, 11, 18)]


def test_digest_sheets_hold_exactly_the_rejected_rows(embedded, emulator, tmp_path):
    rt = Runtime()
    for day in DAYS:
        generate_into(rt, "vaxreport_source_embedded", day, records=250, seed=4, defect_rate=0.2)
        run_day(rt, day)
    first, following = digest.week_bounds(DAYS[1])
    assert first == date(2026, 11, 16)
    rows = digest.open_rejections(rt.ledger(), first, following)
    files = digest.write(rows, tmp_path / "digest", "2026-W47")

    rv = s.record_versions
    with rt.ledger().connect() as conn:
        ledger = {
            (r.caregiver_hsa_id, r.care_unit_hsa_id, r.source_record_id, r.code)
            for r in conn.execute(sa.select(rv).where(rv.c.state.in_(["rejected_local", "rejected_register"])))
        }
    assert len(ledger) > 50

    in_books = set()
    for path in (f for f in files if f.suffix == ".xlsx"):
        book = load_workbook(path, read_only=True)
        assert book.sheetnames[0] == "Sammanfattning"
        summary_rows = list(book["Sammanfattning"].iter_rows(min_row=3, values_only=True))
        caregiver = path.stem
        for sheet in book.sheetnames[1:]:
            values = list(book[sheet].iter_rows(values_only=True))
            assert values[0] == digest.DETAIL_COLUMNS
            for record_id, _date, _vaccine, _batch, _by, code, reason_sv, reason_en, fix_sv, fix_en in values[1:]:
                assert all((reason_sv, reason_en, fix_sv, fix_en))
                in_books.add((caregiver, record_id, code))
        assert sum(r[3] for r in summary_rows) == sum(len(list(book[n].iter_rows())) - 1 for n in book.sheetnames[1:])
    assert in_books == {(cg, rid, code) for cg, _unit, rid, code in ledger}
    assert all(f.with_suffix(".html").exists() for f in files if f.suffix == ".xlsx")
