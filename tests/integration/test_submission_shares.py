"""Submission in shares on a real PostgreSQL ledger: what the daily DAG's mapped `submit_bundles`
tasks do, each in a process of its own. Shares claim chunks with `FOR UPDATE SKIP LOCKED`: no
bundle is claimed by two shares, none waits for another, each bundle is posted once and the
register holds each record once. A dead share's claims go to its own retry or to
`finish_submission`, never to a live share."""

import json
import multiprocessing
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from datetime import date

import pytest
import sqlalchemy as sa
from tests.integration.test_daily_pipeline import ledger_states, seed
from tests.servers import postgres_database

from vaxreport import submission
from vaxreport.ledger import schema as s
from vaxreport.pipeline import Runtime, build_day, extract_day, report_day, validate_day
from vaxreport.submission import Claimant, finish_submission, plan_shares, submit_share

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 21)  # the day `seed` writes
CONTEXT = "5f0c1d2e-0000-4000-8000-00000000da7a"  # one DAG run: every share shares its X-Context-ID
SENT_STATES = {"accepted", "duplicate", "rejected_register"}


@pytest.fixture
def pg_ledger(embedded, monkeypatch):
    with postgres_database() as conn:
        monkeypatch.setenv("AIRFLOW_CONN_VAXREPORT_DB", json.dumps(conn))
        yield conn


def _built_day(records: int) -> tuple[dict, int]:
    rt = Runtime(context_id=CONTEXT)
    assert rt.ledger().dialect.name == "postgresql"
    truth = seed(rt, records)
    extract_day(rt, DAY)
    validate_day(rt, DAY)
    bundles = build_day(rt, DAY)["bundles"]
    rt.close()
    return truth, bundles


def _share_in_process(share: int, per_share: int, parallel: int, chunk: int, start) -> dict:
    """One mapped task instance: a process of its own, the run's context id, its claims recorded.
    The shares start together (`start`, a barrier), as an executor with free slots starts them."""
    claims: list[list[int]] = []
    claim_chunk = submission._claim_chunk

    def recorded(ledger, day, claimant, limit):
        rows = claim_chunk(ledger, day, claimant, limit)
        claims.append([r["id"] for r in rows])
        return rows

    submission.CLAIM_CHUNK = chunk
    submission._claim_chunk = recorded
    rt = Runtime(context_id=CONTEXT)
    rt.ledger()
    start.wait(timeout=120)
    started = time.monotonic()
    result = submit_share(rt, DAY, share, per_share, parallel=parallel)
    rt.close()
    return {**result, "claims": claims, "started": started, "ended": time.monotonic()}


def test_shares_in_parallel_processes_claim_disjoint_chunks_and_post_each_bundle_once(pg_ledger, emulator, monkeypatch):
    monkeypatch.setattr(submission, "BUNDLES_PER_SHARE", 8)
    truth, bundles = _built_day(3000)
    plan = plan_shares(Runtime(context_id=CONTEXT), DAY, {"bundles": bundles})
    assert len(plan) >= 3
    assert {p["per_share"] for p in plan} == {-(-bundles // len(plan))}

    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ProcessPoolExecutor(max_workers=len(plan), mp_context=ctx) as pool:
        start = manager.Barrier(len(plan))
        futures = [pool.submit(_share_in_process, p["share"], p["per_share"], len(plan), 2, start) for p in plan]
        shares = [f.result(timeout=300) for f in futures]

    # no bundle claimed twice, every bundle claimed, no share above its part
    claimed = [i for r in shares for chunk in r["claims"] for i in chunk]
    assert len(claimed) == len(set(claimed)) == bundles
    assert all(sum(len(c) for c in r["claims"]) <= p["per_share"] for r, p in zip(shares, plan, strict=True))
    # they did run at the same time: every share was still claiming when the last one started
    last_start = max(r["started"] for r in shares)
    assert all(r["ended"] > last_start for r in shares)
    assert sum(len(r["claims"]) for r in shares) > len(plan)  # several chunks each

    rt = Runtime(context_id=CONTEXT)
    finished = finish_submission(rt, DAY, [{k: r[k] for k in ("sent", "bundles")} for r in shares], plan=plan)
    assert finished["unavailable"] is False
    assert finished["bundles"] == sum(r["bundles"] for r in shares) == bundles  # finish found nothing left

    stats = emulator.stats()
    assert stats["posts"] == bundles  # not one bundle posted twice
    assert stats["entries"] == sum(state in SENT_STATES for state, _ in truth.values())
    held = Counter(i["identifier_value"] for i in emulator.immunizations() if not i["deleted"])
    assert [rid for rid, n in held.items() if n > 1] == []
    assert set(held) == {rid for rid, (state, _) in truth.items() if state == "accepted"}
    states = ledger_states(rt)
    assert {rid: (states[rid], truth[rid]) for rid in truth if states[rid] != truth[rid]} == {}
    summary = report_day(rt, DAY, sent=finished["sent"])
    assert summary["pending"] == 0
    assert summary["sent"] == stats["entries"]
    bt = s.bundles
    with rt.ledger().connect() as conn:
        owners = conn.execute(sa.select(bt.c.context_id)).scalars().all()
    assert {o.rsplit("/", 2)[1] for o in owners} == {str(p["share"]) for p in plan}  # each share's own owner
    assert len(set(owners)) == len(plan)


def test_a_claim_skips_bundles_another_worker_has_locked_instead_of_waiting(pg_ledger):
    _truth, bundles = _built_day(1500)
    assert bundles >= 6
    rt = Runtime(context_id=CONTEXT)
    ledger = rt.ledger()
    bt = s.bundles
    with ledger.connect() as other:
        locking = other.begin()  # another worker in the middle of its claim: rows locked, not committed
        locked = other.execute(sa.select(bt.c.id).order_by(bt.c.id).limit(3).with_for_update()).scalars().all()
        t0 = time.monotonic()
        got = submission._claim_chunk(ledger, DAY, Claimant.for_share(CONTEXT, 0), 3)
        assert time.monotonic() - t0 < 2  # would block until the other commits without SKIP LOCKED
        assert len(got) == 3
        assert not {r["id"] for r in got} & set(locked)
        assert {r["state"] for r in got} == {"sending"}
        locking.rollback()
    again = submission._claim_chunk(ledger, DAY, Claimant.for_share(CONTEXT, 1), bundles)
    with ledger.connect() as conn:
        every = set(conn.execute(sa.select(bt.c.id)).scalars())
    assert {r["id"] for r in again} == every - {r["id"] for r in got}


def test_a_dead_shares_claims_go_to_its_retry_or_to_finish_never_to_a_live_share(pg_ledger, emulator):
    truth, bundles = _built_day(1500)
    rt = Runtime(context_id=CONTEXT)
    ledger = rt.ledger()
    dead = Claimant.for_share(CONTEXT, 1)
    taken = submission._claim_chunk(ledger, DAY, dead, 2)  # share 1 claims two bundles ...
    # ... and checkpoints the first (X-Request-ID stored, rows submitted) before it is killed
    checkpointed = submission._checkpoint(ledger, taken[0], dead.owner, "5f0c1d2e-0000-4000-8000-0000000000a1")
    assert checkpointed
    assert {r["state"] for r in checkpointed} == {"submitted"}
    held = {r["id"] for r in taken}

    other = submission._claim_chunk(ledger, DAY, Claimant.for_share(CONTEXT, 2), bundles)
    assert not {r["id"] for r in other} & held  # share 2 leaves them: share 1 might be alive
    retry = submission._claim_chunk(ledger, DAY, Claimant.for_share(CONTEXT, 1), bundles)
    assert {r["id"] for r in retry} == held  # share 1's next try takes them over at once
    stored = {r["id"]: r["request_id"] for r in retry}
    assert stored[taken[0]["id"]] == "5f0c1d2e-0000-4000-8000-0000000000a1"  # the resend will be a replay

    # every claim above now belongs to a dead worker; the run's finish takes them all over
    finished = finish_submission(Runtime(context_id=CONTEXT), DAY, [], plan=[{"share": 0}])
    assert finished["bundles"] == bundles
    assert emulator.stats()["posts"] == bundles
    held_ids = Counter(i["identifier_value"] for i in emulator.immunizations() if not i["deleted"])
    assert set(held_ids) == {rid for rid, (state, _) in truth.items() if state == "accepted"}
    assert max(held_ids.values()) == 1
