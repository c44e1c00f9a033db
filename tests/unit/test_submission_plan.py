"""The submission plan and claim owners, on a SQLite ledger (no servers)."""

from datetime import date

import pytest
import sqlalchemy as sa

from vaxreport import submission
from vaxreport.ledger import schema as s
from vaxreport.pipeline import Runtime
from vaxreport.settings import ConnectionInfo
from vaxreport.submission import Claimant, plan_shares

pytestmark = pytest.mark.unit
DAY = date(2026, 11, 21)
RUN = "5f0c1d2e-0000-4000-8000-0000000000aa"


@pytest.fixture
def rt(tmp_path):
    ledger = ConnectionInfo(conn_id="vaxreport_db", conn_type="sqlite", host=str(tmp_path / "ledger.sqlite"))
    runtime = Runtime(resolve={"vaxreport_db": ledger}.__getitem__, sources=[], context_id=RUN)
    yield runtime
    runtime.close()


def _bundles(rt: Runtime, n: int, **values) -> None:
    row = {"window_day": DAY.isoformat(), "entries": 100, "state": "built", "created_at": "2026-11-22T02:00:00Z"}
    with rt.ledger().begin() as conn:
        conn.execute(sa.insert(s.bundles), [{**row, "bundle_uuid": f"b{i}", **values} for i in range(n)])


@pytest.mark.parametrize(
    ("pending", "shares", "per_share"),
    [(0, 1, 1), (1, 1, 1), (200, 1, 200), (201, 2, 101), (2024, 11, 184), (3200, 16, 200), (10_000, 16, 625)],
)
def test_one_share_per_200_pending_bundles_at_least_one_at_most_16(rt, monkeypatch, pending, shares, per_share):
    monkeypatch.setattr(submission, "pending_count", lambda _rt, _day: pending)
    plan = plan_shares(rt, DAY, {"bundles": pending, "entries": 0})
    assert [p["share"] for p in plan] == list(range(shares))
    assert {(p["shares"], p["per_share"]) for p in plan} == {(shares, per_share)}
    assert shares * per_share >= pending  # together the shares cover every pending bundle


def test_a_dry_run_plans_one_share_with_nothing_to_send(rt):
    _bundles(rt, 5)
    assert plan_shares(rt, DAY, {"bundles": 3, "entries": 250, "dry_run": True}) == [
        {"share": 0, "shares": 1, "per_share": 1}
    ]


def test_pending_counts_built_bundles_and_claims_of_this_run_but_not_live_claims_of_another(rt):
    _bundles(rt, 3)
    _bundles(rt, 2, state="sending", claimed_at="2999-01-01T00:00:00Z", context_id=f"{RUN}/3/deadbeef")
    _bundles(rt, 4, state="sending", claimed_at="2999-01-01T00:00:00Z", context_id="another-run/0/cafe")
    _bundles(rt, 1, state="answered")
    assert submission.pending_count(rt, DAY) == 5


def test_claims_take_over_dead_tries_of_their_own_scope_only(rt):
    _bundles(rt, 2, state="sending", claimed_at="2999-01-01T00:00:00Z", context_id=f"{RUN}/1/0dead000")
    _bundles(rt, 2, state="sending", claimed_at="2999-01-01T00:00:00Z", context_id=RUN)  # before shares
    ledger = rt.ledger()
    assert submission._claim_chunk(ledger, DAY, Claimant.for_share(RUN, 2), 10) == []
    share_1 = Claimant.for_share(RUN, 1)
    assert [r["context_id"] for r in submission._claim_chunk(ledger, DAY, share_1, 10)] == [share_1.owner] * 2
    assert submission._claim_chunk(ledger, DAY, share_1, 10) == []  # never its own live claims again
    run = Claimant.for_run(RUN)
    assert len(submission._claim_chunk(ledger, DAY, run, 10)) == 4  # the whole run's, once shares are done


def test_owners_fit_the_column_and_a_long_context_id_is_refused():
    owner = Claimant.for_share(RUN, 15).owner
    assert owner.startswith(f"{RUN}/15/")
    assert len(owner) <= submission.OWNER_LENGTH
    with pytest.raises(ValueError, match="too long"):
        Claimant.for_run("x" * 60)
