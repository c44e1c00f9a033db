"""Checks of Swedish person ids (personnummer and samordningsnummer), 12 digits.

Written here rather than taken from python-stdnum on purpose: the emulator must check the
pipeline, not echo the library the pipeline uses. (python-stdnum 2.2's
``stdnum.se.personnummer`` also rejects samordningsnummer: it reads day + 60 as an invalid
date.) The unit tests compare this module with stdnum on personnummer.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum


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


@dataclass(frozen=True)
class PersonId:
    """A person id that passed every format check."""

    value: str
    kind: IdKind
    birth_date: dt.date


def luhn_valid(digits: str) -> bool:
    """Luhn (mod 10) check over ``digits``; the last digit is the check digit."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = int(char)
        if position % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def kind_of(value: str) -> IdKind:
    """The kind a 12-digit number has by its day field (day > 60 means samordningsnummer)."""
    return IdKind.SAMORDNINGSNUMMER if int(value[6:8]) > SAMORDNING_DAY_OFFSET else IdKind.PERSONNUMMER


def birth_date(value: str) -> dt.date | None:
    """The birth date encoded in a 12-digit number, or None if it is no calendar date."""
    if not _TWELVE_DIGITS.fullmatch(value):
        return None
    day = int(value[6:8])
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
    born = birth_date(value)
    if born is None or not luhn_valid(value[2:]):
        return None
    kind = kind_of(value)
    if SYSTEMS[system] is not kind:
        return None
    return PersonId(value=value, kind=kind, birth_date=born)
