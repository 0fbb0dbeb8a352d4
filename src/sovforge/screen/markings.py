"""Classification markings: `python -c "from sovforge.screen import detect_markings as d; print(d('CUI'))"`.

Two kinds are recognised, both anchored to line structure so that prose merely *mentioning* a level passes:

- banner: a whole line that is a marking — ``SECRET//NOFORN``, ``TOP SECRET//SI//REL TO USA, FVEY``, ``CUI``,
  ``Ⅱ급비밀``, ``[대외비]`` — or a header field ``비밀등급: Ⅱ급비밀`` / ``Classification: SECRET``.
- portion: ``(S//NF)``, ``(TS//SI)``, ``(C)``, ``(U)``, ``(CUI)``, ``(U//FOUO)`` at the start of a paragraph.

US markings are upper case by rule, so only upper-case English is taken ("Secret" in a title is not a banner).
``(C) 2024`` is a copyright line, and a single letter in an alphabetic run — ``(B)``, ``(C)``, ``(D)`` — is an
enumeration, not a portion mark.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Literal

from sovforge.classification import Level, parse_level


@dataclass(frozen=True)
class Marking:
    """One classification marking found in a text; `line` is 1-based."""

    level: Level
    kind: Literal["banner", "portion"]
    text: str
    line: int


# ---------------------------------------------------------------- vocabulary

_US_LEVEL = r"(?:TOP[ \-]SECRET|SECRET|CONFIDENTIAL|UNCLASSIFIED|RESTRICTED|CUI)"
# Control / dissemination markings that may follow '//' in a banner.
_US_CONTROL = (
    r"(?:NOFORN|NF|ORCON|OC|PROPIN|IMCON|RELIDO|FISA|SI(?:-G)?|TK|HCS(?:-[A-Z])?|SAR-[A-Z0-9\- ]+|RSEN|FRD|RD"
    r"|FOR OFFICIAL USE ONLY|FOUO|LIMDIS|LES|SBU|NOCONTRACT|EXDIS|NODIS"
    r"|REL(?: TO)?(?: [A-Z]{3,4}(?:,? ?[A-Z]{3,4})*)?"
    r"|DISPLAY ONLY(?: [A-Z, ]+)?|FVEY|SPECAT|[A-Z]{2,6}(?:-[A-Z0-9]+)?)"
)
# Dissemination controls that by themselves raise an UNCLASSIFIED banner to RESTRICTED.
_RAISES_TO_RESTRICTED = re.compile(r"\b(?:FOR OFFICIAL USE ONLY|FOUO|CUI|LES|SBU|LIMDIS)\b")

_KO_LEVEL = r"(?:군사)?\s?(?:[ⅠⅡⅢ]|III|II|I|[123])\s?급\s?비밀|(?:군사)?\s?대외비"

_US_BANNER = _US_LEVEL + r"(?:\s?//\s?" + _US_CONTROL + r"(?:\s?/\s?" + _US_CONTROL + r")*)*"
# Decoration that commonly surrounds a banner: brackets, markdown bold/heading, dashes.
# Possessive (*+): indentation is never given back, which keeps the scan linear on deeply indented text.
_DECOR_L = r"[ \t]*+(?:#{1,6}[ \t]+)?[\[<(*\-=_ \t]*+"
_DECOR_R = r"[\]>)*\-=_ \t\r]*"

_BANNER = re.compile(
    r"^" + _DECOR_L + r"(?P<mark>" + _US_BANNER + r"|" + _KO_LEVEL + r")" + _DECOR_R + r"$",
    re.MULTILINE,
)
_HEADER_FIELD = re.compile(
    r"^[ \t]*+[\[(*]*+[ \t]*+(?:비밀\s?등급|보안\s?등급|비밀\s?구분|분류|CLASSIFICATION|Classification|classification)"
    r"[ \t]*[:：][ \t]*(?P<mark>" + _US_BANNER + r"|" + _KO_LEVEL + r"|평문|일반|Unclassified)" + _DECOR_R + r"$",
    re.MULTILINE,
)

_PORTION_LEVEL = r"(?:TS|S|C|U|R|CUI)"
_PORTION = re.compile(
    r"^[ \t]*+\((?P<mark>" + _PORTION_LEVEL + r"(?://[A-Z0-9\-]+(?:[ ,/]+[A-Z0-9\-]+)*)*)\)"
    r"(?P<after>[ \t]*\S?.{0,12})",
    re.MULTILINE,
)
_COPYRIGHT_AFTER = re.compile(r"\s*(?:\d{4}|copyright|all rights)", re.IGNORECASE)
_ENUMERATION_START = re.compile(r"^[ \t]*+\(([A-Za-z])\)", re.MULTILINE)


# ---------------------------------------------------------------- level mapping


def _level_of_token(token: str) -> Level:
    """Map one level token (``TOP SECRET``, ``Ⅱ급비밀``, ``NF``-free portion head) onto a Level."""
    cleaned = re.sub(r"\s+", "", token)
    if cleaned == "R":  # NATO/UK RESTRICTED portion mark; not in parse_level's aliases
        return Level.RESTRICTED
    return parse_level(cleaned)


def _level_of_marking(mark: str) -> Level:
    head, _, controls = mark.partition("//")
    level = _level_of_token(head)
    if level == Level.UNCLASSIFIED and _RAISES_TO_RESTRICTED.search(controls):
        return Level.RESTRICTED
    return level


def _is_enumeration(text: str, start: int, letter: str, enumerations: list[tuple[int, str]]) -> bool:
    """True when the neighbouring paragraph-start letters run alphabetically into `letter` ((B), (C), (D))."""
    positions = [pos for pos, _ in enumerations]
    index = bisect.bisect_left(positions, start)
    neighbours = []
    if index > 0:
        neighbours.append(enumerations[index - 1][1])
    if index + 1 < len(enumerations):
        neighbours.append(enumerations[index + 1][1])
    code = ord(letter.lower())
    return any(abs(ord(other.lower()) - code) == 1 for other in neighbours)


# ---------------------------------------------------------------- public


def detect_markings(text: str) -> list[Marking]:
    """All banner and portion markings in `text`, in order of position."""
    found: list[tuple[int, Marking]] = []
    newlines: list[int] | None = None  # built only once a marking is found: most texts have none

    def line_of(offset: int) -> int:
        nonlocal newlines
        if newlines is None:
            newlines = [match.start() for match in re.finditer("\n", text)]
        return bisect.bisect_left(newlines, offset) + 1

    for pattern in (_BANNER, _HEADER_FIELD):
        for match in pattern.finditer(text):
            mark = match.group("mark").strip()
            line = line_of(match.start())
            marking = Marking(_level_of_marking(mark), "banner", match.group(0).strip(), line)
            found.append((match.start(), marking))

    enumerations: list[tuple[int, str]] | None = None
    for match in _PORTION.finditer(text):
        mark = match.group("mark")
        after = match.group("after")
        if not after.strip():
            continue  # "(U)" alone on a line is a label, not the start of a marked paragraph
        if mark == "C" and _COPYRIGHT_AFTER.match(after):
            continue
        if len(mark) == 1:
            if enumerations is None:
                enumerations = [(m.start(), m.group(1)) for m in _ENUMERATION_START.finditer(text)]
            if _is_enumeration(text, match.start(), mark, enumerations):
                continue
        marking = Marking(_level_of_marking(mark), "portion", f"({mark})", line_of(match.start()))
        found.append((match.start(), marking))

    found.sort(key=lambda item: item[0])
    # A header field line also matches nothing else; keep one marking per (line, kind).
    seen: set[tuple[int, str]] = set()
    markings: list[Marking] = []
    for _, marking in found:
        key = (marking.line, marking.kind)
        if key not in seen:
            seen.add(key)
            markings.append(marking)
    return markings
