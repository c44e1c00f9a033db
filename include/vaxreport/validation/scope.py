"""Which vaccines the register takes: out-of-scope products are excluded, never sent, never errors."""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources


def normalise_name(name: str | None) -> str:
    """Case- and whitespace-insensitive form of a free-text vaccine name."""
    return re.sub(r"\s+", " ", (name or "").strip()).casefold()


@cache
def out_of_scope() -> tuple[frozenset[str], frozenset[str]]:
    """(NPL-ids, normalised names) of products the register does not take."""
    data = json.loads(resources.files("vaxreport.validation").joinpath("out_of_scope.json").read_text())
    products = data["products"]
    return (frozenset(p["npl_id"] for p in products), frozenset(normalise_name(p["name"]) for p in products))


def is_out_of_scope(npl_id: str | None, name: str | None) -> bool:
    npl_ids, names = out_of_scope()
    if npl_id:
        return npl_id in npl_ids
    return normalise_name(name) in names
