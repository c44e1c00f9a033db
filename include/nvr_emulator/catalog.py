"""The vaccine catalog the register knows: reportable products, their batches, programmes.

The data is ``catalog.json`` next to this module (synthetic NPL-ids, real product names).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from typing import Any

#: NPL-id code system (Läkemedelsverket's product id), used in vaccineCode and Medication.code.
NPL_SYSTEM = "urn:oid:1.2.752.129.2.1.5.1"
SYNTHETIC_TAG = {"system": "urn:vaxreport:synthetic", "code": "synthetic"}
PROGRAMME_EXTENSION = "urn:vaxreport:programme"
BATCH_EXTENSION = "urn:vaxreport:batch"
COVID19 = "covid19"


@dataclass(frozen=True)
class Batch:
    """One lot (satsnummer) of a product."""

    lot: str
    expires: dt.date | None


@dataclass(frozen=True)
class Programme:
    """A national programme and the date from which the register accepts its vaccinations."""

    code: str
    name: str
    start: dt.date


@dataclass(frozen=True)
class Product:
    """A reportable vaccine product, identified by its NPL-id."""

    npl_id: str
    name: str
    programme: Programme
    synthetic: bool
    batches: tuple[Batch, ...]

    @cached_property
    def lots(self) -> frozenset[str]:
        """The product's lot numbers, for the batch checks (made once: every entry asks)."""
        return frozenset(batch.lot for batch in self.batches)

    @property
    def is_covid19(self) -> bool:
        """COVID-19 products need a dose number and a minimum interval between doses."""
        return self.programme.code == COVID19


class Catalog:
    """Lookups over the products, in the file's order (which is also the paging order)."""

    def __init__(self, products: tuple[Product, ...]) -> None:
        self.products = products
        self._by_npl = {product.npl_id: product for product in products}
        self._covid19 = frozenset(product.npl_id for product in products if product.is_covid19)

    def product(self, npl_id: str | None) -> Product | None:
        """The product with this NPL-id, or None when the register does not know it."""
        if npl_id is None:
            return None
        return self._by_npl.get(npl_id)

    @property
    def covid19_npl_ids(self) -> frozenset[str]:
        """NPL-ids of all COVID-19 products: the dose-interval rule spans products."""
        return self._covid19


def _date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


def parse_catalog(data: dict[str, Any]) -> Catalog:
    """Build a :class:`Catalog` from the JSON structure of ``catalog.json``."""
    programmes = {
        code: Programme(code=code, name=item["name"], start=dt.date.fromisoformat(item["start"]))
        for code, item in data["programmes"].items()
    }
    products = tuple(
        Product(
            npl_id=item["npl_id"],
            name=item["name"],
            programme=programmes[item["programme"]],
            synthetic=bool(item.get("synthetic", False)),
            batches=tuple(Batch(lot=b["lot"], expires=_date(b.get("expires"))) for b in item["batches"]),
        )
        for item in data["products"]
    )
    return Catalog(products)


def load_catalog() -> Catalog:
    """Load the catalog shipped with the package (works from a wheel as well as a checkout)."""
    text = resources.files("nvr_emulator").joinpath("catalog.json").read_text(encoding="utf-8")
    return parse_catalog(json.loads(text))


def medication_resource(product: Product) -> dict[str, Any]:
    """The FHIR R4 Medication the catalog endpoint lists for ``product``.

    R4's ``Medication.batch`` holds one lot only, so every lot is also listed as a
    ``urn:vaxreport:batch`` extension; ``batch`` carries the first lot. The programme is the
    ``urn:vaxreport:programme`` extension.
    """
    extensions: list[dict[str, Any]] = [{"url": PROGRAMME_EXTENSION, "valueCode": product.programme.code}]
    extensions += [{"url": BATCH_EXTENSION, "valueString": batch.lot} for batch in product.batches]
    resource: dict[str, Any] = {
        "resourceType": "Medication",
        "id": product.npl_id,
        "extension": extensions,
        "code": {
            "coding": [{"system": NPL_SYSTEM, "code": product.npl_id, "display": product.name}],
            "text": product.name,
        },
        "status": "active",
    }
    if product.synthetic:
        resource["meta"] = {"tag": [dict(SYNTHETIC_TAG)]}
    if product.batches:
        first = product.batches[0]
        resource["batch"] = {"lotNumber": first.lot}
        if first.expires is not None:
            resource["batch"]["expirationDate"] = first.expires.isoformat()
    return resource
