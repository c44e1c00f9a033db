"""The emulator's fault decisions, configuration and token revocation, without a server."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter

import pytest

from nvr_emulator.__main__ import parse_args
from nvr_emulator.auth import TokenIssuer, TokenState
from nvr_emulator.config import EmulatorConfig
from nvr_emulator.faults import MALFORMED_KINDS, REQUEST_FAULTS, FaultConfig, FaultConfigError, FaultInjector, decide
from nvr_emulator.store import Store

pytestmark = pytest.mark.unit


def sequence(config: FaultConfig, requests: int = 400) -> list[tuple[str | None, str | None, float]]:
    return [(d.fault, d.malformed, d.latency) for d in (decide(config, n) for n in range(1, requests + 1))]


def test_no_faults_by_default() -> None:
    assert EmulatorConfig().faults == FaultConfig()
    assert {decide(FaultConfig(), n).fault for n in range(1, 200)} == {None}
    assert not any(decide(FaultConfig(), 1).entry_transient(i) for i in range(100))


def test_decisions_depend_on_seed_and_request_number_only() -> None:
    config = FaultConfig(seed=4, rate_429=0.1, rate_503=0.2, rate_malformed=0.1, latency_jitter_ms=50)
    assert sequence(config) == sequence(config)
    assert sequence(config) != sequence(FaultConfig.from_dict({"seed": 5}, base=config))
    # Switching an extra fault on does not shift the others: the same draws, banded differently.
    more = FaultConfig.from_dict({"rate_drop_after_processing": 0.1}, base=config)
    before, after = sequence(config), sequence(more)
    assert [b for b, a in zip(before, after, strict=True) if b[0] is not None] == [
        a for a, b in zip(after, before, strict=True) if b[0] is not None
    ]


def test_rates_are_roughly_honoured() -> None:
    config = FaultConfig(seed=1, rate_429=0.1, rate_500=0.05, rate_503=0.15, rate_drop=0.1, rate_hang=0.05)
    counts = Counter(d for d, _, _ in sequence(config, 10_000))
    for kind, rate in {"429": 0.1, "500": 0.05, "503": 0.15, "drop": 0.1, "hang": 0.05}.items():
        assert abs(counts[kind] / 10_000 - rate) < 0.02, (kind, counts)
    assert abs(counts[None] / 10_000 - 0.55) < 0.02


def test_every_request_fault_is_reachable_and_malformed_kinds_are_chosen() -> None:
    config = FaultConfig(**{f"rate_{k}": 1 / len(REQUEST_FAULTS) for k in REQUEST_FAULTS})
    found = sequence(config, 2000)
    assert {fault for fault, _, _ in found} == set(REQUEST_FAULTS)
    assert {kind for fault, kind, _ in found if fault == "malformed"} == set(MALFORMED_KINDS)
    assert {fault for fault, _, _ in sequence(FaultConfig(outage=True, rate_500=1.0), 20)} == {"outage"}


def test_latency_is_base_plus_jitter() -> None:
    latencies = [latency for _, _, latency in sequence(FaultConfig(latency_ms=100, latency_jitter_ms=50))]
    assert all(0.1 <= latency <= 0.15 for latency in latencies)
    assert len(set(latencies)) > 100


def test_entry_transient_is_deterministic_per_request_and_entry() -> None:
    config = FaultConfig(seed=2, rate_entry_transient=0.3)
    marks = [[decide(config, n).entry_transient(i) for i in range(100)] for n in (1, 2)]
    assert marks[0] == [decide(config, 1).entry_transient(i) for i in range(100)]
    assert marks[0] != marks[1]
    assert 15 <= sum(marks[0]) <= 45


@pytest.mark.parametrize(
    ("repeat", "revoked_at"),
    [(False, [4]), (True, [4, 7, 10])],
)
def test_token_revocation_schedule(repeat: bool, revoked_at: list[int]) -> None:
    config = FaultConfig(revoke_tokens_after_requests=3, revoke_tokens_repeat=repeat, revoke_tokens_as="expire")
    assert [n for n in range(1, 12) if decide(config, n).revoke] == revoked_at
    assert {decide(config, n).revoke for n in revoked_at} == {"expire"}


@pytest.mark.parametrize(
    "data",
    [
        {"rate_503": 1.01},
        {"rate_500": -0.1},
        {"rate_500": 0.5, "rate_503": 0.3, "rate_drop": 0.3},
        {"rate_entry_transient": 2},
        {"seed": 1.5},
        {"seed": True},
        {"outage": 1},
        {"rate_429": "0.1"},
        {"hang_then": "linger"},
        {"hang_seconds": 0},
        {"malformed_kinds": []},
        {"malformed_kinds": ["garbage"]},
        {"revoke_tokens_as": "forget"},
        {"token_ttl": 0},
        {"latency_ms": -1},
        {"unknown": 1},
    ],
)
def test_bad_configurations_are_refused(data: dict) -> None:
    with pytest.raises(FaultConfigError):
        FaultConfig.from_dict(data)


def test_configuration_round_trip_and_cli(tmp_path) -> None:
    config = FaultConfig.from_dict({"seed": 3, "rate_503": 0.25, "malformed_kinds": ["not-json"], "token_ttl": 5})
    assert FaultConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert FaultConfig.parse('{"seed": 3, "rate_503": 0.25, "malformed_kinds": ["not-json"], "token_ttl": 5}') == config
    path = tmp_path / "faults.json"
    path.write_text(json.dumps(config.to_dict()))
    assert parse_args(["--faults", f"@{path}"]).faults == config
    assert parse_args([]).faults == FaultConfig()
    with pytest.raises(SystemExit):
        parse_args(["--faults", '{"rate_503": 2}'])
    with pytest.raises(FaultConfigError):
        FaultConfig.parse("not json")


def test_injector_counts_replace_restarts_the_sequence_update_does_not() -> None:
    applied, revoked = [], []
    injector = FaultInjector(FaultConfig(), on_config=applied.append, on_revoke=revoked.append)
    injector.replace(FaultConfig(rate_503=1.0, revoke_tokens_after_requests=1))
    assert [injector.next_request("GET", "/fhir/Medication").number for _ in range(3)] == [1, 2, 3]
    assert injector.injected() == {"503": 3, "tokens_revoked": 1}
    assert revoked == ["revoke"]
    injector.update(FaultConfig(rate_500=1.0))
    assert injector.next_request("GET", "/fhir/Medication").number == 4
    assert injector.snapshot()["recent"][-1] == {
        "request": 4,
        "method": "GET",
        "path": "/fhir/Medication",
        "fault": "500",
    }
    injector.replace(FaultConfig(token_ttl=7))
    assert (injector.snapshot()["requests"], injector.injected()) == (0, {})
    assert [c.token_ttl for c in applied] == [None, None, None, 7]


def test_tokens_can_be_revoked_or_expired() -> None:
    now = [1000.0]
    issuer = TokenIssuer("c", "s", ttl=300, clock=lambda: now[0])
    first = issuer.issue("c").access_token
    assert issuer.revoke_all() == 1
    assert issuer.check(first) is TokenState.UNKNOWN
    second = issuer.issue("c").access_token
    assert issuer.expire_all() == 1
    assert issuer.check(second) is TokenState.EXPIRED
    issuer.ttl = 5
    assert issuer.issue("c").expires_in == 5


def test_file_store_is_wal_with_one_transaction_per_unit(tmp_path) -> None:
    store = Store(tmp_path / "nvr.sqlite")
    try:
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: with WAL, crash-safe

        def half_way() -> None:
            with store.transaction():
                store.bump("entries")
                raise RuntimeError("killed half-way")

        with pytest.raises(RuntimeError):
            half_way()
        assert store.counters() == {}  # rolled back as a whole
    finally:
        store.close()
    db = sqlite3.connect(tmp_path / "nvr.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # kept in the file
    db.close()
