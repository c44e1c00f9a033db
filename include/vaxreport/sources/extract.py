"""Read one window of a journal-system source as canonical records, streamed in chunks."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import sqlalchemy as sa

from vaxreport.sources.mapping import Kind, to_canonical
from vaxreport.window import DayWindow


def extract(
    engine: sa.Engine, kind: Kind, window: DayWindow, system_uri: str | None = None, chunk_size: int = 5000
) -> Iterator[dict]:
    """Yield the canonical records registered or changed in the window (server-side cursor)."""
    uri = system_uri or kind.system_uri
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=chunk_size).execute(
            sa.text(kind.sql("extract.sql")), kind.window_params(window)
        )
        for part in result.mappings().partitions(chunk_size):
            for row in part:
                raw = dict(row)
                record = to_canonical(kind, raw, uri)
                if not record["source_record_id"]:  # unaddressable: name it by its content, stably
                    digest = hashlib.sha256(repr(sorted(raw.items(), key=str)).encode()).hexdigest()[:20]
                    record["source_record_id"] = f"unidentified-{digest}"
                yield record
