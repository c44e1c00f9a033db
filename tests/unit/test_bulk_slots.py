"""The bulk generator's slot space, without a database: every record its own (person, vaccine,
date), one COVID-19 dose a person, and the same rows for the same seed."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import numpy as np
import pytest

from vaxreport.synthetic.bulk import COLUMNS, LATE_DAYS_MAX, Mix, _Permutation, _Plan, iter_chunks
from vaxreport.synthetic.generate import _persons

pytestmark = pytest.mark.unit
DAY = date(2026, 11, 21)


@pytest.mark.parametrize("size", [1, 2, 3, 17, 1000, 65_537])
def test_the_keyed_permutation_is_one(size):
    perm = _Permutation(size, [7, size])
    out = perm(np.arange(size, dtype=np.int64))
    assert sorted(out.tolist()) == list(range(size))
    if size > 16:
        assert not np.array_equal(out, np.arange(size))
        assert not np.array_equal(out, _Permutation(size, [8, size])(np.arange(size, dtype=np.int64)))


def test_a_million_records_take_a_million_distinct_slots_and_one_covid_dose_a_person_at_most():
    records, chunks = 1_000_000, 40
    plan = _Plan(DAY, records, seed=1, mix=Mix())
    parts = [plan.chunk(k, chunks) for k in range(chunks)]
    person, product, offset = (np.concatenate([p[i] for p in parts]) for i in range(3))
    assert len(person) == records
    key = (person * len(plan.products) + product) * (LATE_DAYS_MAX + 1) + offset
    assert len(np.unique(key)) == records
    covid_persons = person[plan.is_covid[product]]
    assert len(covid_persons) == len(np.unique(covid_persons)) > 0
    assert set(plan.persons.tolist()) <= set(_persons())
    # most records are vaccinations of the day itself, the rest late registrations of up to 14 days
    assert offset.min() >= 0
    assert offset.max() <= LATE_DAYS_MAX
    assert np.mean(offset == 0) > 0.6


def test_same_seed_same_rows_and_another_seed_other_rows():
    def day(seed: int) -> tuple[str, Counter]:
        texts, outcomes = [], Counter()
        for journal, _truth, labels in iter_chunks(DAY, 3_000, seed=seed, chunk_rows=1_000):
            texts.append(journal)
            outcomes.update(labels)
        return "".join(texts), outcomes

    first, outcomes = day(7)
    assert day(7) == (first, outcomes)
    assert day(8)[0] != first
    rows = [line.split("\t") for line in first.splitlines()]
    assert len(rows) == 3_000
    assert {len(r) for r in rows} == {len(COLUMNS)}
    registered = [r[COLUMNS.index("registered_at")] for r in rows]
    assert registered == sorted(registered)  # a journal fills in registration order
    dates = Counter(r[COLUMNS.index("administered_on")] for r in rows)
    window = {(DAY - timedelta(days=d)).isoformat() for d in range(LATE_DAYS_MAX + 1)}
    assert dates.most_common(1)[0][0] == DAY.isoformat()
    # outside the window only the defect that types the year wrong
    assert sum(n for d, n in dates.items() if d not in window) == outcomes["future_date"]
