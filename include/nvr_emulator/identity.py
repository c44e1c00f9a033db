"""Checks of Swedish person ids (personnummer and samordningsnummer), 12 digits.

Written here rather than taken from python-stdnum on purpose: the emulator must check the
pipeline, not echo the library the pipeline uses. (python-stdnum 2.2's
``stdnum.se.personnummer`` also rejects samordningsnummer: it reads day + 60 as an invalid
date.) The unit tests compare this module with stdnum on personnummer.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import NamedTuple


class IdKind(StrEnum):
    """Which of the two national id kinds a number is."""

    PERSONNUMMER = "personnummer"
    SAMORDNINGSNUMMER = "samordningsnummer"


#: Identifier systems accepted for each kind: the HL7 Sweden URI and the RIV-TA/Inera OID.
SYSTEMS: dict[str, IdKind] = {
    "http://electronichealth.se/identifier/personnummer": IdKind.PERSONNUMMER,
    "urn:oid:1.2.752.129.2.1.3.1": IdKind.PERSONNUMMER,
    "http://electronichealth.se/identifier/samordningsnummer": IdKind.SAMORDNINGSNUMMER,
    "urn:oid:1.2.752.129.2.1.3.3": IdKind.SAMORDNINGSNUMMER,
}

_TWELVE_DIGITS = re.compile(r"[0-9]{12}")
#: Samordningsnummer carry the day of birth plus 60 (Skatteverket, SKVFS 2010:3).
SAMORDNING_DAY_OFFSET = 60
#: A digit doubled, as the Luhn check counts it (the digit sum of 2d).
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)
#: Two ASCII digits "ab" → doubled a + b: the Luhn sum of a 10-digit number is five look-ups.
_LUHN_PAIRS = {f"{a}{b}": _DOUBLED[a] + b for a in range(10) for b in range(10)}


class PersonId(NamedTuple):
    """A person id that passed every format check."""

    value: str
    kind: IdKind
    birth_date: dt.date


def luhn_valid(digits: str) -> bool:
    """Luhn (mod 10) check over ``digits``; the last digit is the check digit."""
    # From the right: every first digit counts as it is, every second one doubled (digit sum).
    total = sum(map(int, digits[-1::-2])) + sum([_DOUBLED[int(char)] for char in digits[-2::-2]])
    return total % 10 == 0


def kind_of(value: str) -> IdKind:
    """The kind a 12-digit number has by its day field (day > 60 means samordningsnummer)."""
    return IdKind.SAMORDNINGSNUMMER if int(value[6:8]) > SAMORDNING_DAY_OFFSET else IdKind.PERSONNUMMER


def birth_date(value: str) -> dt.date | None:
    """The birth date encoded in a 12-digit number, or None if it is no calendar date."""
    if not _TWELVE_DIGITS.fullmatch(value):
        return None
    return _birth_date(value, int(value[6:8]))


def _birth_date(value: str, day: int) -> dt.date | None:
    """:func:`birth_date` of a number known to be 12 digits, whose day field is ``day``."""
    if day > SAMORDNING_DAY_OFFSET:
        day -= SAMORDNING_DAY_OFFSET
    try:
        return dt.date(int(value[0:4]), int(value[4:6]), day)
    except ValueError:
        return None


def parse_person_id(system: str | None, value: object) -> PersonId | None:
    """Check a Patient identifier as the register does; None when it fails.

    The number must be 12 ASCII digits, carry a valid birth date (day + 60 for a
    samordningsnummer), pass the Luhn check over its last 10 digits, and be of the kind its
    ``system`` names: a samordningsnummer sent under the personnummer system (or the other way
    round) is malformed, as in HL7 Sweden's identifier invariants.
    """
    if system not in SYSTEMS or not isinstance(value, str) or not _TWELVE_DIGITS.fullmatch(value):
        return None
    day = int(value[6:8])  # kind_of and birth_date, without parsing the number again
    kind = IdKind.SAMORDNINGSNUMMER if day > SAMORDNING_DAY_OFFSET else IdKind.PERSONNUMMER
    if SYSTEMS[system] is not kind:
        return None
    born = _birth_date(value, day)
    pairs = _LUHN_PAIRS  # luhn_valid(value[2:]) for twelve ASCII digits, without its loop
    luhn = pairs[value[2:4]] + pairs[value[4:6]] + pairs[value[6:8]] + pairs[value[8:10]] + pairs[value[10:12]]
    if born is None or luhn % 10:
        return None
    return PersonId(value, kind, born)
