"""Generate a day into a configured source connection, in that source's own journal schema."""

from __future__ import annotations

from datetime import date

from vaxreport.pipeline import Runtime, source_kind
from vaxreport.sources import writers
from vaxreport.synthetic.generate import Record, generate_day


def generate_into(
    rt: Runtime,
    conn_id: str,
    day: date,
    records: int = 2000,
    seed: int = 1,
    defect_rate: float = 0.08,
    out_of_scope_rate: float = 0.06,
) -> list[Record]:
    """Each enabled source gets its own record-id prefix and its own share of the test persons,
    so sources generated for the same day never report the same vaccination twice."""
    kind, _ = source_kind(rt, conn_id)
    enabled = rt.sources if conn_id in rt.sources else [*rt.sources, conn_id]
    prefix = rt.resolve(conn_id).extra.get("record_prefix", kind.record_prefix)
    generated = generate_day(
        day,
        records=records,
        seed=seed,
        defect_rate=defect_rate,
        out_of_scope_rate=out_of_scope_rate,
        prefix=prefix,
        partition=(enabled.index(conn_id), len(enabled)),
        without_defects=kind.unsupported_defects,
    )
    writers.write_day(rt.engine(conn_id), kind, generated, day, prefix=prefix)
    return generated
