"""Fault injection: what goes wrong, for which request, decided by seed.

:class:`FaultConfig` says what may go wrong and how often; :class:`FaultInjector` numbers the
``/fhir`` requests (1, 2, 3 ... since the configuration was last replaced) and decides each
one's fault from ``(seed, request number)`` alone, so the same seed and the same sequence of
requests give the same faults, whatever the timing. The HTTP side (sleeping, answering,
dropping the connection) is :mod:`nvr_emulator.fault_middleware`; the per-entry transient
answer and silent drop are :meth:`nvr_emulator.register.Register.process_bundle`'s.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

#: Whole-request faults in the order their probability bands are laid out on [0, 1).
REQUEST_FAULTS = ("429", "500", "503", "drop", "hang", "malformed", "drop_after_processing")
_RATE_FIELDS = {
    "429": "rate_429",
    "500": "rate_500",
    "503": "rate_503",
    "drop": "rate_drop",
    "hang": "rate_hang",
    "malformed": "rate_malformed",
    "drop_after_processing": "rate_drop_after_processing",
}
#: Per-entry rates: independent draws per batch entry, not part of the whole-request bands.
_ENTRY_RATE_FIELDS = ("rate_entry_transient", "rate_silent_drop")
MALFORMED_KINDS = ("truncated", "not-json", "not-fhir", "empty-batch-response")
HANG_THEN = ("drop", "answer")
REVOKE_AS = ("revoke", "expire")
RECENT_LIMIT = 500


class FaultConfigError(ValueError):
    """A fault configuration that cannot be used (unknown key, wrong type, bad range)."""


@dataclass(frozen=True)
class FaultConfig:
    """What may go wrong. All rates are probabilities per ``/fhir`` request (per entry for
    ``rate_entry_transient`` and ``rate_silent_drop``); the whole-request rates together must
    not exceed 1.

    Attributes:
        seed: decides every random choice together with the request number.
        latency_ms: extra delay of every ``/fhir`` and ``/oauth2/token`` call.
        latency_jitter_ms: plus a uniform random 0..jitter ms.
        rate_429: answer 429 ``throttled`` with ``Retry-After``, unprocessed.
        rate_500: answer 500 ``exception``, unprocessed.
        rate_503: answer 503 ``transient`` with ``Retry-After``, unprocessed.
        retry_after: seconds in ``Retry-After`` of 429, 503 and the outage.
        rate_drop: close the connection without an answer, unprocessed.
        rate_hang: answer nothing for ``hang_seconds``; then ``hang_then``.
        hang_seconds: how long a hang lasts (make it longer than the client's read timeout).
        hang_then: ``drop`` (close the connection, unprocessed; ends early when the client
            gives up) or ``answer`` (then process and answer as usual, so the request takes
            effect although the client has probably timed out).
        rate_malformed: answer 200 with a body that is not the call's answer.
        malformed_kinds: the bodies to choose from: ``truncated`` (JSON cut off),
            ``not-json`` (an HTML error page), ``not-fhir`` (valid JSON, no resourceType),
            ``empty-batch-response`` (a batch-response without entries).
        malformed_processed: process the request first (its answer is kept for replay) and
            corrupt the answer; by default a malformed answer has no effect.
        rate_drop_after_processing: process and commit, keep the answer for replay, then
            close the connection without sending it (the crash window).
        rate_entry_transient: per batch entry: answer it ``503 Service Unavailable``,
            ``transient`` / ``TRANSIENT``, without storing it; the other entries as usual.
        rate_silent_drop: per batch entry that would be created: answer ``201 Created`` with a
            location as if stored, but store nothing (records the register silently lost).
            Drawn independently of ``rate_entry_transient``; a transient entry is not dropped.
        token_ttl: lifetime of tokens issued from now on (None: the start-up ``--token-ttl``).
        revoke_tokens_after_requests: N > 0: after N ``/fhir`` requests every token is revoked
            (request N + 1 meets the revocation); 0 = off.
        revoke_tokens_repeat: revoke again after every further N requests, not once.
        revoke_tokens_as: ``revoke`` (tokens forgotten: 401 ``login``) or ``expire``
            (tokens expire now: 401 ``expired``).
        outage: every ``/fhir`` call answers 503 with ``Retry-After`` until cleared.
    """

    seed: int = 0
    latency_ms: int = 0
    latency_jitter_ms: int = 0
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_503: float = 0.0
    retry_after: int = 1
    rate_drop: float = 0.0
    rate_hang: float = 0.0
    hang_seconds: float = 30.0
    hang_then: str = "drop"
    rate_malformed: float = 0.0
    malformed_kinds: tuple[str, ...] = MALFORMED_KINDS
    malformed_processed: bool = False
    rate_drop_after_processing: float = 0.0
    rate_entry_transient: float = 0.0
    rate_silent_drop: float = 0.0
    token_ttl: int | None = None
    revoke_tokens_after_requests: int = 0
    revoke_tokens_repeat: bool = False
    revoke_tokens_as: str = "revoke"
    outage: bool = False

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def from_dict(cls, data: Any, base: FaultConfig | None = None) -> FaultConfig:
        """A configuration from JSON: ``base`` (default: no faults) with ``data``'s fields."""
        if not isinstance(data, dict):
            raise FaultConfigError("the fault configuration must be a JSON object")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise FaultConfigError(f"unknown fault setting(s): {', '.join(unknown)}")
        values = {name: _coerce(name, value) for name, value in data.items()}
        return replace(base or cls(), **values)

    @classmethod
    def parse(cls, text: str) -> FaultConfig:
        """The ``--faults`` option: a JSON object, or ``@FILE`` holding one."""
        if text.startswith("@"):
            text = Path(text[1:]).read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FaultConfigError(f"not JSON: {exc}") from exc
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as JSON (what ``GET /admin/faults`` shows)."""
        data = asdict(self)
        data["malformed_kinds"] = list(self.malformed_kinds)
        return data


_INT_FIELDS = {"seed", "latency_ms", "latency_jitter_ms", "retry_after", "revoke_tokens_after_requests"}
_BOOL_FIELDS = {"malformed_processed", "revoke_tokens_repeat", "outage"}


def _coerce(name: str, value: Any) -> Any:
    """JSON value → field value, strictly (no ``"1"`` for 1, no ``true`` for 1)."""
    if name in _BOOL_FIELDS:
        if not isinstance(value, bool):
            raise FaultConfigError(f"{name} must be true or false")
        return value
    if name in _INT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise FaultConfigError(f"{name} must be an integer")
        return value
    if name == "token_ttl":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise FaultConfigError("token_ttl must be an integer or null")
        return value
    if name == "malformed_kinds":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise FaultConfigError("malformed_kinds must be a list of strings")
        return tuple(value)
    if name in {"hang_then", "revoke_tokens_as"}:
        if not isinstance(value, str):
            raise FaultConfigError(f"{name} must be a string")
        return value
    # the rates and hang_seconds
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultConfigError(f"{name} must be a number")
    return float(value)


def _validate(config: FaultConfig) -> None:
    for name in _RATE_FIELDS.values():
        if not 0.0 <= getattr(config, name) <= 1.0:
            raise FaultConfigError(f"{name} must be between 0 and 1")
    for name in _ENTRY_RATE_FIELDS:
        if not 0.0 <= getattr(config, name) <= 1.0:
            raise FaultConfigError(f"{name} must be between 0 and 1")
    total = sum(getattr(config, name) for name in _RATE_FIELDS.values())
    if total > 1.0 + 1e-9:
        raise FaultConfigError(f"the whole-request rates add up to {total:g}, more than 1")
    for name in ("latency_ms", "latency_jitter_ms", "retry_after", "revoke_tokens_after_requests"):
        if getattr(config, name) < 0:
            raise FaultConfigError(f"{name} must not be negative")
    if config.hang_seconds <= 0:
        raise FaultConfigError("hang_seconds must be positive")
    if config.hang_then not in HANG_THEN:
        raise FaultConfigError(f"hang_then must be one of {', '.join(HANG_THEN)}")
    if config.revoke_tokens_as not in REVOKE_AS:
        raise FaultConfigError(f"revoke_tokens_as must be one of {', '.join(REVOKE_AS)}")
    if not config.malformed_kinds or set(config.malformed_kinds) - set(MALFORMED_KINDS):
        raise FaultConfigError(f"malformed_kinds must be a non-empty list of {', '.join(MALFORMED_KINDS)}")
    if config.token_ttl is not None and config.token_ttl < 1:
        raise FaultConfigError("token_ttl must be at least 1 second")


@dataclass(frozen=True)
class Decision:
    """What happens to one ``/fhir`` request.

    Attributes:
        number: the request's place in the sequence (1 = the first since the configuration).
        config: the configuration it was decided under (a later change does not touch it).
        fault: one of :data:`REQUEST_FAULTS`, ``outage``, or None.
        latency: seconds to wait before anything else.
        revoke: ``revoke`` or ``expire`` when the tokens go before this request, else None.
        malformed: the malformed body's kind, when ``fault`` is ``malformed``.
    """

    number: int
    config: FaultConfig
    fault: str | None = None
    latency: float = 0.0
    revoke: str | None = None
    malformed: str | None = None

    def entry_transient(self, index: int) -> bool:
        """Whether entry ``index`` (0-based) of this request's batch gets a transient answer."""
        rate = self.config.rate_entry_transient
        if rate <= 0.0:
            return False
        return random.Random(f"nvr-faults:{self.config.seed}:{self.number}:entry:{index}").random() < rate

    def entry_silent_drop(self, index: int) -> bool:
        """Whether entry ``index`` (0-based), if it would be created, is answered 201 but not stored.

        Its own random stream, so switching it on moves none of the transient draws.
        """
        rate = self.config.rate_silent_drop
        if rate <= 0.0:
            return False
        return random.Random(f"nvr-faults:{self.config.seed}:{self.number}:entry:{index}:silent-drop").random() < rate


def decide(config: FaultConfig, number: int) -> Decision:
    """The fault of request ``number`` under ``config``: a function of the two alone."""
    rng = random.Random(f"nvr-faults:{config.seed}:{number}")
    # Always the same draws in the same order, whatever is switched on.
    band, jitter, kind = rng.random(), rng.random(), rng.random()
    every = config.revoke_tokens_after_requests
    # Request N + 1 (and, repeating, 2N + 1, 3N + 1 ...) meets the revocation.
    due = every > 0 and number > every and (number - 1) % every == 0
    revoke = config.revoke_tokens_as if due and (config.revoke_tokens_repeat or number == every + 1) else None
    fault = None
    if config.outage:
        fault = "outage"
    else:
        upper = 0.0
        for name in REQUEST_FAULTS:
            upper += getattr(config, _RATE_FIELDS[name])
            if band < upper:
                fault = name
                break
    return Decision(
        number=number,
        config=config,
        fault=fault,
        latency=(config.latency_ms + jitter * config.latency_jitter_ms) / 1000.0,
        revoke=revoke,
        malformed=config.malformed_kinds[int(kind * len(config.malformed_kinds))] if fault == "malformed" else None,
    )


@dataclass
class _Sequence:
    config: FaultConfig
    requests: int = 0
    injected: Counter[str] = field(default_factory=Counter)
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_LIMIT))


class FaultInjector:
    """The emulator's current fault configuration, request counter and what it injected.

    ``on_config`` is called with each new configuration (the app sets the token lifetime);
    ``on_revoke`` with ``revoke``/``expire`` when a decision takes the tokens away.
    """

    def __init__(
        self,
        config: FaultConfig,
        on_config: Callable[[FaultConfig], None] | None = None,
        on_revoke: Callable[[str], None] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._on_config = on_config or (lambda _config: None)
        self._on_revoke = on_revoke or (lambda _how: None)
        self._seq = _Sequence(config)
        self._on_config(config)

    @property
    def config(self) -> FaultConfig:
        """The configuration in force."""
        return self._seq.config

    def replace(self, config: FaultConfig) -> None:
        """A new configuration and a new sequence: request numbers start again at 1, the
        injected counts at 0 (``PUT /admin/faults``)."""
        with self._lock:
            self._seq = _Sequence(config)
        self._on_config(config)

    def update(self, config: FaultConfig) -> None:
        """A changed configuration that keeps the sequence going (``PATCH /admin/faults``)."""
        with self._lock:
            self._seq.config = config
        self._on_config(config)

    def clear_counts(self) -> None:
        """Forget what was injected (``POST /admin/reset``); the sequence goes on."""
        with self._lock:
            self._seq.injected.clear()
            self._seq.recent.clear()

    def next_request(self, method: str, path: str) -> Decision:
        """Number the next ``/fhir`` request, decide its fault, take the tokens if due."""
        with self._lock:
            self._seq.requests += 1
            decision = decide(self._seq.config, self._seq.requests)
        if decision.revoke is not None:
            self._on_revoke(decision.revoke)
            self.record(decision, "tokens_revoked", method, path, how=decision.revoke)
        if decision.latency > 0:
            self.record(decision, "latency", method, path, log=False)
        if decision.fault is not None:
            extra = {"malformed": decision.malformed} if decision.malformed else {}
            self.record(decision, decision.fault, method, path, **extra)
        return decision

    def record(self, decision: Decision, kind: str, method: str, path: str, log: bool = True, **extra: Any) -> None:
        """Count an injected fault of ``kind`` and (unless ``log`` is off) keep it in ``recent``."""
        with self._lock:
            self._seq.injected[kind] += 1
            if log:
                self._seq.recent.append(
                    {"request": decision.number, "method": method, "path": path, "fault": kind, **extra}
                )

    def record_entries(
        self,
        decision: Decision,
        indices: list[int],
        method: str,
        path: str,
        kind: str = "entry_transient",
        **extra: Any,
    ) -> None:
        """Count the entries of one batch that met a per-entry fault (``entry_transient``,
        ``silent_drop``)."""
        if not indices:
            return
        with self._lock:
            self._seq.injected[kind] += len(indices)
            self._seq.recent.append(
                {
                    "request": decision.number,
                    "method": method,
                    "path": path,
                    "fault": kind,
                    "entries": indices,
                    **extra,
                }
            )

    def injected(self) -> dict[str, int]:
        """Faults injected by kind since the configuration was set (or the counts cleared)."""
        with self._lock:
            return dict(sorted(self._seq.injected.items()))

    def snapshot(self) -> dict[str, Any]:
        """``GET /admin/faults``: configuration, request count, injected faults, recent ones."""
        with self._lock:
            return {
                "config": self._seq.config.to_dict(),
                "requests": self._seq.requests,
                "injected": dict(sorted(self._seq.injected.items())),
                "recent": list(self._seq.recent),
            }
