"""Submission: the ledger's built bundles sent to the register, by one worker or by several at once.

The daily DAG splits submission into shares (`plan_shares`): each share is a mapped task that
claims chunks of pending bundles and sends them (`submit_share`), several shares at a time, and
`finish_submission` then does what is left once they are all done: entries the register failed
transiently, bundles a dead share left claimed, the deletes of voided records. `submit_day` (the
CLI, the benchmark) is `finish_submission` alone: one worker, every bundle, the whole rate.

Claims. A bundle is taken in two steps, both recorded in `bundles` before anything is sent:

1. a chunk claim takes up to CLAIM_CHUNK pending bundles at once (`state = 'sending'`, the claim
   time, and the claimant as owner in `context_id`). On PostgreSQL it selects them
   `FOR UPDATE SKIP LOCKED`, so two workers never take the same bundle and never wait for each
   other; on SQLite the transaction is `BEGIN IMMEDIATE` (writers take turns) and the `UPDATE`
   repeats the pending condition, the portable guarded claim.
2. per bundle, the checkpoint (`_checkpoint`): one guarded `UPDATE` that matches only while
   the bundle is still this owner's and stores its X-Request-ID, and in the same transaction the
   rows marked `submitted` (and read back). From that commit on a crash means "maybe sent", and
   the resend is a replay.

Owners. Each worker writes an owner of its own, `<X-Context-ID>/<share>/<nonce>` (or
`<X-Context-ID>/run/<nonce>` for the whole-run worker); the nonce is new for every try. A worker
takes over at once the claims a dead try of its own scope left (same run and share; for the
whole-run worker, any of the run's), and anybody's claim older than the lease; never the live
claims of another share, which it could not tell from its own without the share in the owner.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa

from vaxreport.fhir import bundles as fb
from vaxreport.ledger import schema as s
from vaxreport.ledger import store
from vaxreport.meters import BUNDLE_BUILDING
from vaxreport.registry.client import RegistryAuthError, RegistryClient, RegistryError, RegistryUnavailable, dumps
from vaxreport.registry.outcomes import interpret

if TYPE_CHECKING:
    from datetime import date

    from vaxreport.pipeline import Runtime

log = logging.getLogger(__name__)

BUNDLES_PER_SHARE = 200  # a share is a few minutes of sending at the register's rate
MAX_SHARES = 16  # mapped task instances per run, far below Airflow's 1024
CLAIM_CHUNK = 50  # bundles taken per claim: one transaction for many bundles, small enough to share
TRANSIENT_ROUNDS = 3
OWNER_LENGTH = 64  # bundles.context_id
PENDING = ("built", "sent")  # 'sent': bundles of ledgers written before the 'sending' state
NOTHING = {"sent": 0, "answered": 0, "transient": 0}


@dataclass(frozen=True)
class Claimant:
    """Who claims bundles: `owner` goes into `bundles.context_id`; claims of `run_id` (and, for a
    share, of that share) held by another owner are a dead try's and are taken over at once."""

    owner: str
    run_id: str
    share: int | None = None

    @classmethod
    def for_share(cls, context_id: str, share: int) -> Claimant:
        return cls._new(context_id, str(share), share)

    @classmethod
    def for_run(cls, context_id: str) -> Claimant:
        return cls._new(context_id, "run", None)

    @classmethod
    def _new(cls, context_id: str, scope: str, share: int | None) -> Claimant:
        owner = f"{context_id}/{scope}/{uuid.uuid4().hex[:8]}"
        if len(owner) > OWNER_LENGTH:
            raise ValueError(f"context id too long for a claim owner ({len(context_id)} characters; a UUID fits)")
        return cls(owner=owner, run_id=context_id, share=share)

    def takes_over(self, owner: sa.ColumnElement) -> sa.ColumnElement:
        """Claims of this claimant's scope held by another (so dead) try of it."""
        if self.share is None:
            mine = store.of_run(owner, self.run_id)
        else:
            mine = owner.startswith(f"{self.run_id}/{self.share}/", autoescape=True)
        return sa.and_(mine, owner != self.owner)


# -- the DAG's three steps ------------------------------------------------------------------------


def plan_shares(rt: Runtime, day: date, built: dict) -> list[dict]:
    """The submission plan after `build_day` (whose counts `built` are logged here): one share per
    BUNDLES_PER_SHARE pending bundles, at least 1, at most MAX_SHARES, each with `per_share`, the
    most bundles it sends. Shares are units of work of bounded size that together cover every
    pending bundle; the DAG maps `submit_share` over the list (Airflow maps over a task's whole
    return value, not a key of it, hence a list and not a count beside the build's counts)."""
    pending = 0 if built.get("dry_run") else pending_count(rt, day)
    # smaller shares spread a day over more workers (VAXREPORT_BUNDLES_PER_SHARE; default 200)
    size = max(1, int(os.environ.get("VAXREPORT_BUNDLES_PER_SHARE") or BUNDLES_PER_SHARE))
    shares = min(max(1, math.ceil(pending / size)), MAX_SHARES)
    per_share = max(1, math.ceil(pending / shares))
    log.info(
        "built %d bundles (%d entries); %d bundles pending: %d shares of at most %d",
        built.get("bundles", 0),
        built.get("entries", 0),
        pending,
        shares,
        per_share,
    )
    return [{"share": i, "shares": shares, "per_share": per_share} for i in range(shares)]


def submit_share(rt: Runtime, day: date, share: int, per_share: int, parallel: int = 1, dry_run: bool = False) -> dict:
    """One share: claim chunks of pending bundles and send them, until `per_share` bundles are
    taken or none is left. `parallel` is how many shares may send at once: this one paces at that
    part of the register's rate, with that part of the bundles in flight, so all of them together
    stay under the register's limit.

    Never raises for a register that is down: the share records what it could not send as
    `failed` and says `unavailable`; `finish_submission` decides what follows.
    """
    if dry_run:
        return {"share": share, "sent": 0, "bundles": 0, "unavailable": False, "dry_run": True}
    with rt.registry(parallel=parallel) as client:
        result = _send_claimed(rt, client, day, Claimant.for_share(rt.context_id, share), limit=per_share)
    log.info("share %d: %d entries sent in %d answered bundles", share, result["sent"], result["bundles"])
    return {"share": share, **result, "dry_run": False}


def finish_submission(
    rt: Runtime,
    day: date,
    shares: list[dict] | None = None,
    plan: list[dict] | None = None,
    dry_run: bool = False,
) -> dict:
    """Send everything still pending, in rounds; then the deletes. Returns the run's totals.

    Failed records of earlier tries are bundled again first, so a retry of this step (or the next
    run) does real work. Entries the register failed transiently inside an otherwise answered
    bundle go round again alone, up to TRANSIENT_ROUNDS times; real rejections stay rejections.
    Bundles a dead share of this run left claimed are taken over and resent with their stored
    X-Request-ID. If the register is down (retries spent, circuit open, time budget gone), this
    stops cleanly: what it could not send is `failed` and `unavailable` is set, for the caller to
    retry later.

    `shares` are the results of the run's shares (None: there were none, this sends everything)
    and `plan` what `plan_shares` planned; a run with shares and no plan (its build failed) sends
    nothing. When some share left no result (it failed), the run's `sent` is counted from the
    ledger instead of from the results.
    """
    if shares is not None and plan is None:
        raise RuntimeError("no submission plan (build_bundles did not finish): nothing is sent")
    if dry_run:
        return {"sent": 0, "bundles": 0, "dry_run": True, "unavailable": False}
    reported = [r for r in (shares or []) if r]
    totals = {
        "sent": sum(r["sent"] for r in reported),
        "bundles": sum(r["bundles"] for r in reported),
        "dry_run": False,
        "unavailable": False,
    }
    claimant = Claimant.for_run(rt.context_id)
    first_round = 0 if shares is None else 1  # the shares' sends were the first round
    deleted = 0
    with rt.registry() as client:
        from vaxreport.pipeline import _send_deletes, build_day

        for round_no in range(first_round, TRANSIENT_ROUNDS + 1):
            build_day(rt, day)
            result = _send_claimed(rt, client, day, claimant)
            totals["sent"] += result["sent"]
            totals["bundles"] += result["bundles"]
            if result["unavailable"]:
                totals["unavailable"] = True
                break
            if not result["transient"] or round_no == TRANSIENT_ROUNDS:
                break
            log.info("%d entries failed transiently; sending them again", result["transient"])
        if not totals["unavailable"]:
            deleted = _send_deletes(rt, client, day)
            totals["sent"] += deleted
    if plan is not None and len(reported) < len(plan):
        log.warning(
            "%d of %d shares left no result; the run's sends counted from the ledger",
            len(plan) - len(reported),
            len(plan),
        )
        totals["sent"] = store.sent_in_context(rt.ledger(), rt.context_id) + deleted
    log.info("sent %d entries in %d answered bundles", totals["sent"], totals["bundles"])
    return totals


def submit_day(rt: Runtime, day: date, dry_run: bool = False) -> dict:
    """Send the unanswered bundles of this and earlier windows; record each entry's outcome.

    What the DAG's shares and `finish_submission` do, in this process: one worker, at the whole
    rate (`concurrency` bundles in flight), every pending bundle, then the transient rounds and
    the deletes. See `finish_submission`.
    """
    return finish_submission(rt, day, dry_run=dry_run)


# -- claims ---------------------------------------------------------------------------------------


def claim_lease_minutes() -> float:
    return float(os.environ.get("VAXREPORT_CLAIM_LEASE_MINUTES", "30"))


def _stamp_ago(minutes: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _claimable(day: date, dead_claim: sa.ColumnElement) -> sa.ColumnElement:
    """Bundles of this and earlier windows with no answer yet: built ones, and claims of a dead try
    (`dead_claim`) or older than the lease."""
    bt = s.bundles
    return sa.and_(
        bt.c.window_day <= day.isoformat(),
        sa.or_(
            bt.c.state.in_(PENDING),
            sa.and_(
                bt.c.state == "sending",
                sa.or_(bt.c.claimed_at < _stamp_ago(claim_lease_minutes()), dead_claim),
            ),
        ),
    )


def pending_count(rt: Runtime, day: date) -> int:
    """Bundles a new worker of this run could take: built ones, the run's earlier claims, and
    claims past the lease."""
    bt = s.bundles
    with rt.ledger().connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).where(_claimable(day, store.of_run(bt.c.context_id, rt.context_id)))
        ).scalar_one()


def _claim_chunk(ledger: sa.Engine, day: date, claimant: Claimant, limit: int) -> list[dict]:
    """Take up to `limit` pending bundles for `claimant`, oldest first, in one transaction."""
    bt = s.bundles
    pending = _claimable(day, claimant.takes_over(bt.c.context_id))
    pick = sa.select(bt.c.id).where(pending).order_by(bt.c.id).limit(limit)
    with ledger.begin() as conn:
        if ledger.dialect.name == "postgresql":
            # rows another worker is claiming this instant are skipped, not waited for
            ids = conn.execute(pick.with_for_update(skip_locked=True)).scalars().all()
            guard = bt.c.id.in_(ids)
        else:
            # SQLite: BEGIN IMMEDIATE (pipeline._sqlite_begin) lets no other writer in between
            # the two statements; the UPDATE repeats the condition all the same
            ids = conn.execute(pick).scalars().all()
            guard = sa.and_(bt.c.id.in_(ids), pending)
        if not ids:
            return []
        claimed = conn.execute(
            sa.update(bt)
            .where(guard)
            .values(state="sending", claimed_at=store.now_text(), context_id=claimant.owner)
            .returning(*bt.c)
        )
        return sorted((dict(r) for r in claimed.mappings()), key=lambda r: r["id"])


def _checkpoint(ledger: sa.Engine, bundle_row, context_id: str, request_id: str) -> list[dict] | None:
    """Take a claimed bundle for `context_id` (an owner), store its X-Request-ID and mark its rows
    submitted, in one transaction: the checkpoint before the request goes out. Returns the
    bundle's rows to send, or None when another worker has it.

    The bundle's UPDATE is guarded (a portable row claim): it matches only if the bundle is as
    `bundle_row` saw it (state, claim time, owner), so if two workers reach for the same bundle,
    exactly one matches. The rows' UPDATE returns them, rows a crashed try left submitted
    included, so the checkpoint and the read are one round trip: the sender's ledger work per
    bundle is most of what it does besides waiting for the register.
    """
    bt, rv = s.bundles, s.record_versions
    stamp = store.now_text()
    with ledger.begin() as conn:
        claimed = conn.execute(
            sa.update(bt)
            .where(
                bt.c.id == bundle_row["id"],
                bt.c.state == bundle_row["state"],
                sa.or_(bt.c.claimed_at.is_(None), bt.c.claimed_at == bundle_row["claimed_at"]),
                bt.c.context_id.is_not_distinct_from(bundle_row["context_id"]),
            )
            .values(state="sending", claimed_at=stamp, context_id=context_id, request_id=request_id)
        ).rowcount
        if claimed != 1:
            return None
        rows = conn.execute(
            sa.update(rv)
            .where(rv.c.bundle_id == bundle_row["id"], rv.c.state.in_([s.READY, s.SUBMITTED]))
            .values(state=s.SUBMITTED, updated_at=stamp)
            .returning(*rv.c)
        )
        return [dict(r) for r in rows.mappings()]


# -- sending ----------------------------------------------------------------------------------------


def _send_claimed(rt: Runtime, client: RegistryClient, day: date, claimant: Claimant, limit: int | None = None) -> dict:
    """Claim chunks and send them, `concurrency` bundles in flight (the client paces the
    requests), until `limit` bundles are taken or none is pending.

    Each bundle is checkpointed, sent and answered on its own, so bundles in flight at once are as
    safe as bundles sent in turn; a person's records share one bundle (`build_day`), so the
    register sees them in order whatever order the bundles arrive in. Once the register is found
    unavailable, no further bundle is started and the rest of the chunk is failed for a later try.
    """
    ledger = rt.ledger()
    unavailable = threading.Event()
    totals = {"sent": 0, "bundles": 0, "transient": 0, "unavailable": False}

    def send(bundle_row: dict) -> dict | None:
        if unavailable.is_set():
            return None  # not started: failed below, with the others
        try:
            return _send_bundle(ledger, client, bundle_row, claimant.owner)
        except RegistryUnavailable as exc:
            if not unavailable.is_set():
                log.error("register unavailable, stopping: %s", exc)
            unavailable.set()
            _fail_claimed(ledger, bundle_row["id"], claimant.owner, "REGISTER-UNAVAILABLE")
            return NOTHING

    def tally(bundle_row: dict, result: dict | None) -> None:
        if result is None:
            _fail_claimed(ledger, bundle_row["id"], claimant.owner, "REGISTER-UNAVAILABLE")
            return
        totals["sent"] += result["sent"]
        totals["bundles"] += result["answered"]
        totals["transient"] += result["transient"]

    workers = max(1, client.settings.concurrency)
    taken = 0
    exhausted = False
    running: dict[Future, dict] = {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="submit") as pool:
        while True:
            # the next chunk is claimed while the last one's bundles are still in flight, so
            # the register never waits for a chunk's slowest bundle
            if not exhausted and not unavailable.is_set() and len(running) <= workers:
                size = CLAIM_CHUNK if limit is None else min(CLAIM_CHUNK, limit - taken)
                chunk = _claim_chunk(ledger, day, claimant, size) if size > 0 else []
                exhausted = not chunk
                taken += len(chunk)
                running.update({pool.submit(send, bundle_row): bundle_row for bundle_row in chunk})
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                tally(running.pop(future), future.result())
    totals["unavailable"] = unavailable.is_set()
    return totals


def _send_pending(rt: Runtime, client: RegistryClient, day: date) -> dict:
    """Every pending bundle, by one worker of the whole run (`submit_day`, `pipeline.stream_day`)."""
    return _send_claimed(rt, client, day, Claimant.for_run(rt.context_id))


def _send_bundle(ledger: sa.Engine, client: RegistryClient, bundle_row, context_id: str) -> dict:
    """Checkpoint, send and record one bundle (claimed by `context_id`, an owner). Raises
    RegistryUnavailable for the caller."""
    request_id = bundle_row["request_id"] or str(uuid.uuid4())
    # checkpoint: from this commit on a crash means "maybe sent"
    claimed = _checkpoint(ledger, bundle_row, context_id, request_id)
    if claimed is None:
        return NOTHING  # another worker has it (its claim outlived the lease and was taken over)
    rows = fb.send_order(claimed)
    if not rows:
        _finish_bundle(ledger, bundle_row["id"], "answered")
        return NOTHING
    started = time.perf_counter()
    body = bundle_body(rows)
    BUNDLE_BUILDING.add(len(rows), time.perf_counter() - started)
    try:
        answers = client.post_bundle_body(body, len(rows), request_id=request_id)
    except RegistryUnavailable:
        raise
    except RegistryAuthError as exc:  # tokens revoked under us: failed for the next round, not refused
        log.warning("bundle %s not processed: %s; it goes round again", bundle_row["bundle_uuid"], exc)
        _fail_rows(ledger, bundle_row["id"], "AUTH-RETRY")
        return {**NOTHING, "transient": len(rows)}
    except RegistryError as exc:
        log.error("bundle %s not accepted as a whole: %s", bundle_row["bundle_uuid"], exc)
        _fail_rows(ledger, bundle_row["id"], "BUNDLE-REFUSED")
        return NOTHING
    outcomes = [{"id": r["id"], **interpret(a)} for r, a in zip(rows, answers, strict=True)]
    stamp = store.now_text()
    with ledger.begin() as conn:  # not metered: the benchmark's ledger rate is of the bulk stages
        store.update_rows(conn, outcomes, [s.SUBMITTED], stamp)
        accepted = [r for r, o in zip(rows, outcomes, strict=True) if o["state"] == s.ACCEPTED]
        store.supersede_replaced_in(
            conn, [r["id"] for r in accepted], [(r["source"], r["source_record_id"]) for r in accepted]
        )
        conn.execute(
            sa.update(s.bundles).where(s.bundles.c.id == bundle_row["id"]).values(state="answered", answered_at=stamp)
        )
    return {
        "sent": len(rows),
        "answered": 1,
        "transient": sum(o["state"] == s.FAILED for o in outcomes),
    }


def bundle_body(rows: list[dict]) -> bytes:
    """A bundle's rows (in send order) as the request body: plain dicts, serialised once."""
    return dumps(fb.batch_bundle([fb.immunization_entry(r) for r in rows]))


def _finish_bundle(ledger: sa.Engine, bundle_id: int, state: str) -> None:
    with ledger.begin() as conn:
        conn.execute(
            sa.update(s.bundles).where(s.bundles.c.id == bundle_id).values(state=state, answered_at=store.now_text())
        )


def _fail_rows(ledger: sa.Engine, bundle_id: int, code: str) -> None:
    rv = s.record_versions
    with ledger.begin() as conn:
        conn.execute(
            sa.update(rv)
            .where(rv.c.bundle_id == bundle_id, rv.c.state.in_([s.READY, s.SUBMITTED]))
            .values(state=s.FAILED, code=code, updated_at=store.now_text())
        )
    _finish_bundle(ledger, bundle_id, "failed")


def _fail_claimed(ledger: sa.Engine, bundle_id: int, owner: str, code: str) -> None:
    """Fail a bundle `owner` holds and its unanswered rows, in one transaction; a bundle another
    worker has taken over meanwhile is left to it."""
    bt, rv = s.bundles, s.record_versions
    stamp = store.now_text()
    with ledger.begin() as conn:
        mine = conn.execute(
            sa.update(bt)
            .where(bt.c.id == bundle_id, bt.c.state == "sending", bt.c.context_id == owner)
            .values(state="failed", answered_at=stamp)
        ).rowcount
        if mine:
            conn.execute(
                sa.update(rv)
                .where(rv.c.bundle_id == bundle_id, rv.c.state.in_([s.READY, s.SUBMITTED]))
                .values(state=s.FAILED, code=code, updated_at=stamp)
            )
