"""The population register (folkbokföringen) as the emulator knows it: Skatteverket's test list.

The register looks every stored vaccination's person up here; a miss is no HTTP answer but a
later finding (``PERSON-NOT-FOUND`` in ``GET /reports/errors``). The list is ``population.txt``
next to this module, a copy of Skatteverket's open data "Testpersonnummer" (CC0): numbers
reserved for testing that belong to no real person. Skatteverket publishes no test
samordningsnummer, so every samordningsnummer is a miss, as a synthetic one would be for real.
"""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def population() -> frozenset[str]:
    """Every 12-digit person id the population register knows (loaded once)."""
    text = resources.files("nvr_emulator").joinpath("population.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def is_registered(person_id: str) -> bool:
    """Whether the population register has this person."""
    return person_id in population()
