"""The embedded default source: a legacy journal export in SQLite under `var/`.

Shortcuts for the generator and the tests; the kind itself lives in `kinds/legacy_export/`.
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from vaxreport.sources import writers
from vaxreport.sources.mapping import load_kind
from vaxreport.synthetic.generate import Record

KIND = "legacy_export"


def write_day(engine: sa.Engine, records: list[Record], day: date) -> None:
    writers.write_day(engine, load_kind(KIND), records, day)


def ground_truth(engine: sa.Engine, day: date) -> dict[str, tuple[str, str | None]]:
    return writers.ground_truth(engine, day)
