"""The register's vaccine catalog, fetched from the register and kept in the pipeline database.

Validation and bundle building use the stored copy, so a run checks records against the same
list the register itself uses, and a run does not depend on fetching it twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from vaxreport.ledger import schema as s
from vaxreport.ledger.store import now_text
from vaxreport.validation.scope import normalise_name

NPL_SYSTEM = "urn:oid:1.2.752.129.2.1.5.1"
PROGRAMME_EXT = "urn:vaxreport:programme"
BATCH_EXT = "urn:vaxreport:batch"

# Earliest vaccination date the register takes per programme (REGISTRY.md, rules, item 2).
PROGRAMME_START = {"child": "2013-01-01", "bcg": "2013-01-01", "pneumococcal": "2022-12-01", "covid19": "2020-12-27"}


@dataclass(frozen=True)
class Product:
    npl_id: str
    name: str
    programme: str
    lots: frozenset[str]


@dataclass
class Catalog:
    products: dict[str, Product] = field(default_factory=dict)

    def by_name(self, name: str | None) -> Product | None:
        wanted = normalise_name(name)
        for product in self.products.values():
            if normalise_name(product.name) == wanted:
                return product
        return None

    def resolve(self, npl_id: str | None, name: str | None) -> Product | None:
        """The product a record means: its NPL-id if it has one, else its exact (normalised) name."""
        if npl_id:
            return self.products.get(npl_id)
        return self.by_name(name)


def parse_medication(resource: dict) -> Product | None:
    """One Medication of the catalog searchset; anything unreadable is skipped, not guessed."""
    codings = (resource.get("code") or {}).get("coding") or []
    coding = next((c for c in codings if c.get("system") == NPL_SYSTEM and c.get("code")), None)
    if coding is None:
        return None
    programme = ""
    lots = set()
    for ext in resource.get("extension") or []:
        if ext.get("url") == PROGRAMME_EXT:
            programme = ext.get("valueCode") or ext.get("valueString") or ""
        elif ext.get("url") == BATCH_EXT and ext.get("valueString"):
            lots.add(ext["valueString"])
    lot = (resource.get("batch") or {}).get("lotNumber")
    if lot:
        lots.add(lot)
    return Product(coding["code"], coding.get("display") or "", programme, frozenset(lots))


def store(engine: sa.Engine, products: list[Product]) -> int:
    """Replace the stored catalog in one transaction (never half a catalog)."""
    stamp = now_text()
    with engine.begin() as conn:
        conn.execute(sa.delete(s.catalog_batches))
        conn.execute(sa.delete(s.catalog_products))
        if products:
            conn.execute(
                sa.insert(s.catalog_products),
                [{"npl_id": p.npl_id, "name": p.name, "programme": p.programme, "fetched_at": stamp} for p in products],
            )
            lots = [{"npl_id": p.npl_id, "lot": lot} for p in products for lot in p.lots]
            if lots:
                conn.execute(sa.insert(s.catalog_batches), lots)
    return len(products)


def age_hours(engine: sa.Engine) -> float | None:
    """Hours since the stored catalog was fetched; None when there is none."""
    from datetime import UTC, datetime

    with engine.connect() as conn:
        stamp = conn.execute(sa.select(sa.func.min(s.catalog_products.c.fetched_at))).scalar()
    if not stamp:
        return None
    fetched = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return (datetime.now(UTC) - fetched).total_seconds() / 3600


def load(engine: sa.Engine) -> Catalog:
    with engine.connect() as conn:
        lots: dict[str, set[str]] = {}
        for row in conn.execute(sa.select(s.catalog_batches)):
            lots.setdefault(row.npl_id, set()).add(row.lot)
        products = {
            row.npl_id: Product(row.npl_id, row.name, row.programme, frozenset(lots.get(row.npl_id, ())))
            for row in conn.execute(sa.select(s.catalog_products))
        }
    return Catalog(products)
