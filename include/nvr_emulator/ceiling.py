"""How fast does the emulator accept batches? Post pre-built bundles and count what comes back.

The pipeline has to push a million vaccinations through the emulator in a few minutes, so the
emulator's own ceiling must sit well above the pipeline's rate, or a slow run would measure the
emulator instead of the pipeline. :func:`measure_ceiling` finds that ceiling: bundles are
serialised before the clock starts, ``concurrency`` requests stay in flight, and every answer is
read, so the figure is what the emulator *accepted*, not what was sent. A ``429`` (or ``503``)
is honoured: the worker waits ``Retry-After`` and sends the same body under the same
``X-Request-ID`` again, as a well-behaved client does, so a rate limit lowers the figure instead
of inflating it with refusals.

``python -m nvr_emulator.ceiling --base-url URL`` runs it from the command line with synthetic
bundles (valid, new vaccinations of the emulator's own test population) or bundles read from a
file, one JSON Bundle per line. The module imports nothing from ``vaxreport``, like the rest of
the emulator; callers that want the pipeline's own entries build them with
``vaxreport.fhir.bundles`` and pass the serialised bodies in.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from nvr_emulator.catalog import NPL_SYSTEM, load_catalog
from nvr_emulator.population import population

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from nvr_emulator.catalog import Product

FHIR_JSON = "application/fhir+json"
USER_AGENT = "nvr_emulator.ceiling/1"
#: Statuses answered "not now": wait ``Retry-After`` and send the same request again.
RETRY_STATUSES = frozenset({429, 503})
MAX_TOKEN_REFRESHES = 3
PERSONNUMMER = "http://electronichealth.se/identifier/personnummer"
HSA_SYSTEM = "urn:oid:1.2.752.29.4.19"
CAREGIVER, CAREUNIT = "SE2321000016-15CQ", "SE2321000016-F3KL"
SYNTHETIC_JOURNAL = "urn:vaxreport:ceiling"
#: Synthetic vaccinations start here (after every programme's start) and step a round ahead per
#: pass over the population, so (person, product, date) never repeats and doses stay 28 days apart.
SYNTHETIC_START = dt.date(2023, 1, 2)
ROUND_DAYS = 28


class CeilingError(RuntimeError):
    """The emulator refused a bundle in a way a retry cannot fix (400, 401 after refreshing, ...)."""


@dataclass
class _Tally:
    """What the workers saw, added up under a lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    entries: int = 0
    retries: int = 0
    statuses: Counter[str] = field(default_factory=Counter)

    def add(self, answer: dict[str, Any], retries: int) -> None:
        entries = answer.get("entry") or []
        codes = Counter(str(e.get("response", {}).get("status", "")).split(" ", 1)[0] for e in entries)
        with self.lock:
            self.entries += len(entries)
            self.retries += retries
            self.statuses.update(codes)


class _Token:
    """The bearer token all workers share; one refresh when the emulator says 401."""

    def __init__(self, fetch: Callable[[], str]) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()
        self._value = fetch()

    def current(self) -> str:
        return self._value

    def refresh(self, stale: str) -> str:
        with self._lock:
            if self._value == stale:  # the first worker to notice fetches; the others reuse it
                self._value = self._fetch()
            return self._value


def client_credentials(base_url: str, client_id: str, client_secret: str) -> Callable[[], str]:
    """A token getter for ``measure_ceiling``: OAuth2 client credentials against the emulator."""

    def fetch() -> str:
        answer = httpx.post(
            f"{base_url}/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, client_secret),
            timeout=30,
        )
        answer.raise_for_status()
        return str(answer.json()["access_token"])

    return fetch


def _retry_after(answer: httpx.Response) -> float:
    try:
        return max(0.0, float(answer.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


def _post(client: httpx.Client, token: _Token, body: bytes, request_id: str, context_id: str) -> tuple[dict, int]:
    """Send one bundle until it is accepted; the parsed batch-response and how many retries it took."""
    retries = refreshes = 0
    bearer = token.current()
    while True:
        headers = {
            "Authorization": f"Bearer {bearer}",
            "Content-Type": FHIR_JSON,
            "X-Request-ID": request_id,
            "X-Context-ID": context_id,
            "X-User-Agent": USER_AGENT,
        }
        answer = client.post("/fhir", content=body, headers=headers)
        if answer.status_code == 200:
            return orjson.loads(answer.content), retries
        if answer.status_code in RETRY_STATUSES:
            retries += 1
            time.sleep(_retry_after(answer))
        elif answer.status_code == 401 and refreshes < MAX_TOKEN_REFRESHES:
            refreshes += 1
            bearer = token.refresh(bearer)
        else:
            raise CeilingError(f"bundle {request_id}: HTTP {answer.status_code}: {answer.text[:500]}")


def measure_ceiling(
    base_url: str,
    bundles: Sequence[bytes],
    concurrency: int = 8,
    token: Callable[[], str] | None = None,
    *,
    client_id: str = "vaxreport-dev",
    client_secret: str = "dev-secret",  # noqa: S107 - the emulator's documented dev default
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Post every body in ``bundles`` to ``{base_url}/fhir`` with ``concurrency`` requests in flight.

    ``bundles`` are serialised FHIR batch Bundles (bytes), built before the call so that only
    sending and answering are timed. ``token`` returns a bearer token (called again on 401);
    without it the emulator's client credentials ``client_id``/``client_secret`` are used.
    Each bundle gets its own ``X-Request-ID``; a 429 or 503 is retried with the same id after
    ``Retry-After`` seconds, so the rate is what the emulator accepted. Any other refusal
    raises :class:`CeilingError` (a benchmark whose bundles are refused measures nothing).

    Returns ``bundles``, ``entries`` (response entries read back), ``wall_seconds``,
    ``entries_per_second``, ``bundles_per_second``, ``concurrency``, ``retries`` (429/503
    answers waited out) and ``statuses`` (entry ``response.status`` codes, e.g. ``{"201": n}``).
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    shared = _Token(token or client_credentials(base_url, client_id, client_secret))
    request_ids = [str(uuid.uuid4()) for _ in bundles]
    context_id = str(uuid.uuid4())
    tally = _Tally()
    next_index = itertools.count()  # next() on a count is atomic under the GIL
    failed = threading.Event()

    def worker() -> None:
        with httpx.Client(base_url=base_url, timeout=timeout) as client:
            while not failed.is_set():
                index = next(next_index)
                if index >= len(bundles):
                    return
                try:
                    answer, retries = _post(client, shared, bundles[index], request_ids[index], context_id)
                except BaseException:
                    failed.set()  # the other workers stop too; the first error is raised
                    raise
                tally.add(answer, retries)

    workers = min(concurrency, max(1, len(bundles)))
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ceiling") as pool:
        futures = [pool.submit(worker) for _ in range(workers)]
        for future in futures:
            future.result()
    wall = time.perf_counter() - started
    return {
        "bundles": len(bundles),
        "entries": tally.entries,
        "wall_seconds": wall,
        "entries_per_second": tally.entries / wall if wall > 0 else 0.0,
        "bundles_per_second": len(bundles) / wall if wall > 0 else 0.0,
        "concurrency": concurrency,
        "retries": tally.retries,
        "statuses": dict(sorted(tally.statuses.items())),
    }


# -- synthetic bundles (the command line's default load) --------------------------------------


def _birth(person_id: str) -> dt.date:
    return dt.date(int(person_id[0:4]), int(person_id[4:6]), int(person_id[6:8]))


def _vaccination(serial: int, person: str, on: dt.date, product: Product, run: str) -> dict[str, Any]:
    """One valid new vaccination, shaped like REGISTRY.md's entry, as a conditional create."""
    identifier = f"{run}-{serial:08d}"
    lot = product.batches[serial % len(product.batches)].lot
    resource: dict[str, Any] = {
        "resourceType": "Immunization",
        "contained": [
            {"resourceType": "Patient", "id": "patient", "identifier": [{"system": PERSONNUMMER, "value": person}]},
            {
                "resourceType": "Organization",
                "id": "caregiver",
                "identifier": [{"system": HSA_SYSTEM, "value": CAREGIVER}],
            },
            {
                "resourceType": "Location",
                "id": "careunit",
                "identifier": [{"system": HSA_SYSTEM, "value": CAREUNIT}],
                "managingOrganization": {"reference": "#caregiver"},
            },
            {
                "resourceType": "Medication",
                "id": "vaccine",
                "code": {"coding": [{"system": NPL_SYSTEM, "code": product.npl_id}]},
                "batch": {"lotNumber": lot},
            },
        ],
        "identifier": [{"system": SYNTHETIC_JOURNAL, "value": identifier}],
        "status": "completed",
        "vaccineCode": {"coding": [{"system": NPL_SYSTEM, "code": product.npl_id, "display": product.name}]},
        "patient": {"reference": "#patient"},
        "occurrenceDateTime": on.isoformat(),
        "recorded": f"{on.isoformat()}T10:00:00Z",
        "primarySource": True,
        "lotNumber": lot,
        "performer": [{"actor": {"reference": "#caregiver"}}],
        "location": {"reference": "#careunit"},
    }
    if product.is_covid19:
        resource["protocolApplied"] = [{"doseNumberPositiveInt": 1 + serial % 5}]
    return {
        "fullUrl": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{SYNTHETIC_JOURNAL}|{identifier}')}",
        "resource": resource,
        "request": {
            "method": "POST",
            "url": "Immunization",
            "ifNoneExist": f"identifier={SYNTHETIC_JOURNAL}|{identifier}",
        },
    }


def synthetic_entries(count: int, run: str | None = None) -> Iterator[dict[str, Any]]:
    """``count`` valid vaccinations that an empty store stores as new (201), up to 1.5 million.

    Persons are the emulator's population (born before the start, so no date is before birth),
    products cycle through the catalog; each pass over the population is ``ROUND_DAYS`` later,
    so no two entries share the duplicate-control key and COVID-19 doses keep their interval
    (1.5 million entries reach 2025-10). ``run`` prefixes the identifiers (a fresh one per call
    by default); the vaccinations themselves are the same each call, so sending them to a store
    that already holds them is answered ``DUPLICATE``.
    """
    run = run or uuid.uuid4().hex[:12]
    persons = sorted(p for p in population() if _birth(p) < SYNTHETIC_START)
    products = load_catalog().products
    for serial in range(count):
        person = persons[serial % len(persons)]
        on = SYNTHETIC_START + dt.timedelta(days=ROUND_DAYS * (serial // len(persons)))
        product = products[(serial // len(persons) + serial) % len(products)]
        yield _vaccination(serial, person, on, product, run)


def synthetic_bundles(bundles: int, size: int = 100, run: str | None = None) -> list[bytes]:
    """``bundles`` serialised batch Bundles of ``size`` new vaccinations each (see :func:`synthetic_entries`)."""
    entries = synthetic_entries(bundles * size, run)
    return [
        json.dumps(
            {"resourceType": "Bundle", "type": "batch", "entry": list(itertools.islice(entries, size))},
            separators=(",", ":"),
        ).encode("utf-8")
        for _ in range(bundles)
    ]


def read_bundles(path: Path) -> list[bytes]:
    """Bundles from a file, one JSON Bundle per line (blank lines skipped), as sent."""
    with path.open("rb") as lines:
        return [line.strip() for line in lines if line.strip()]


def main(argv: list[str] | None = None) -> int:
    """``python -m nvr_emulator.ceiling``: measure a running emulator, print the result as JSON."""
    parser = argparse.ArgumentParser(prog="python -m nvr_emulator.ceiling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8089", help="the running emulator")
    parser.add_argument("--bundles", type=int, default=1000, help="synthetic bundles to send (default 1000)")
    parser.add_argument("--size", type=int, default=100, help="entries per synthetic bundle (default 100)")
    parser.add_argument("--from", dest="source", type=Path, help="send these bundles instead (one JSON per line)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    parser.add_argument("--client-id", default="vaxreport-dev")
    parser.add_argument("--client-secret", default="dev-secret")
    args = parser.parse_args(argv)
    bundles = read_bundles(args.source) if args.source else synthetic_bundles(args.bundles, args.size)
    token = client_credentials(args.base_url, args.client_id, args.client_secret)
    result = measure_ceiling(args.base_url, bundles, args.concurrency, token)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
