"""PII detectors: `python -c "from sovforge.screen import redact_pii; print(redact_pii('a@b.kr'))"`.

Each detector is a precompiled regex that finds *candidates* plus a validator (checksum, date, number-range
rules) and, for identifiers that look like ordinary numbers, a required context word shortly before the value.
Candidates that fail validation are left alone — precision matters as much as recall, because statutes,
field manuals and dates are full of digit runs.

The original value is never logged or returned; only the type name and a count leave this module.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable
from dataclasses import dataclass

PII_TYPES: tuple[str, ...] = (
    "kr_rrn",
    "kr_frn",
    "kr_military_id",
    "kr_phone",
    "email",
    "passport",
    "us_ssn",
    "payment_card",
    "dod_id",
)

# A value glued to more digits/hyphens is part of a longer number (order numbers, NSNs, ISBNs).
# ASCII classes on purpose: Korean particles glue directly onto numbers ("900101-1234567입니다").
_LEFT = r"(?<![0-9A-Za-z\-+.])"
_RIGHT = r"(?![0-9A-Za-z\-]|\.\d)"
# A leading lookahead on the first character lets the regex engine skip ahead fast (~2x on prose).
_DIGIT = r"(?=\d)"

# Context words are searched this many characters before the value (labels usually precede it) and a shorter
# window after it ("S12345678 여권 소지"), after lower-casing.
_CONTEXT_BEFORE = 40
_CONTEXT_AFTER = 15


@dataclass(frozen=True)
class _Detector:
    type: str
    pattern: re.Pattern[str]
    validate: Callable[[re.Match[str]], bool] | None = None
    context: re.Pattern[str] | None = None
    # Overlapping candidates: the detector listed first wins.


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


# ---------------------------------------------------------------- 주민등록번호 / 외국인등록번호

# The 7th digit encodes century and sex: 1,2 / 5,6 → 1900s; 3,4 / 7,8 → 2000s; 9,0 → 1800s (people long dead,
# but still valid numbers). 5-8 are foreigners (외국인등록번호).
_CENTURY = {"1": 1900, "2": 1900, "5": 1900, "6": 1900, "9": 1800, "0": 1800}
_CENTURY.update({"3": 2000, "4": 2000, "7": 2000, "8": 2000})
_RRN_WEIGHTS = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)
# From October 2020 the last six digits are random (no checksum), so numbers of people born since then
# cannot be checked — only their date and gender digit.
_RANDOM_SERIAL_SINCE = _dt.date(2020, 10, 1)

_RRN = re.compile(_DIGIT + _LEFT + r"(\d{2})(\d{2})(\d{2})(?:[ \t]?[-–][ \t]?)?([0-9])(\d{6})" + _RIGHT)


def _registration_number_kind(match: re.Match[str]) -> str | None:
    """'kr_rrn', 'kr_frn' or None when the 13 digits are not a plausible registration number."""
    groups = match.groups()
    yy, mm, dd, gender, _rest = groups
    try:
        born = _dt.date(_CENTURY[gender] + int(yy), int(mm), int(dd))
    except ValueError:
        return None
    if born > _dt.date.today():
        return None
    digits = "".join(groups)
    kind = "kr_frn" if gender in "5678" else "kr_rrn"
    if born >= _RANDOM_SERIAL_SINCE:
        return kind
    total = sum(int(d) * w for d, w in zip(digits[:12], _RRN_WEIGHTS, strict=True))
    # Residents: (11 - s mod 11) mod 10. Foreigners (pre-2020): (13 - s mod 11) mod 10.
    expected = ((13 if kind == "kr_frn" else 11) - total % 11) % 10
    return kind if expected == int(digits[12]) else None


# ---------------------------------------------------------------- 군번, phones, e-mail, passports

_MILITARY_ID = re.compile(_DIGIT + _LEFT + r"\d{2}-\d{7,8}" + _RIGHT)
_MILITARY_CONTEXT = re.compile(r"군\s?번|군번호|service\s*(?:number|no\.?|#)|serial\s*(?:number|no\.?)")

# Mobile 010/011/016-019, Seoul 02, regional 0NN; +82 drops the leading 0. Land lines need separators so that
# bare 9-10 digit runs (order numbers, IDs) are not mistaken for phones.
_PHONE = re.compile(
    r"(?=[+(0])" + _LEFT + r"(?:"
    r"\+82[ \-]?(?:\(0\))?(?:1[016789]|2|[3-6][1-5]|70)[ \-]?\d{3,4}[ \-]?\d{4}"
    r"|01[016789][ \-.]?\d{3,4}[ \-.]?\d{4}"
    r"|\(0(?:2|[3-6][1-5]|70)\)[ ]?\d{3,4}-\d{4}"
    r"|0(?:2|[3-6][1-5]|70)-\d{3,4}-\d{4}"
    r")" + _RIGHT
)

_EMAIL = re.compile(
    r"(?<![\w.+\-])[A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
    r"(?![\w\-])"
)

# Korean passports: M/S/R/G/D + 8 digits (old) or M + 3 digits + letter + 4 digits (2021+). Other countries'
# (and other Korean letters') numbers are only taken with a passport context word.
_PASSPORT_BARE = re.compile(r"(?=M)" + _LEFT + r"(?:M\d{8}|M\d{3}[A-Z]\d{4})" + _RIGHT)
_PASSPORT_CTX = re.compile(r"(?=[A-Z])" + _LEFT + r"(?:[A-Z]{1,2}\d{7,8}|[A-Z]\d{3}[A-Z]\d{4})" + _RIGHT)
_PASSPORT_CONTEXT = re.compile(r"여권|passport")

_SSN = re.compile(_DIGIT + _LEFT + r"(\d{3})([ \-]?)(\d{2})\2(\d{4})" + _RIGHT)
_SSN_CONTEXT = re.compile(r"ssn|social\s*security|사회보장")


def _ssn_valid(match: re.Match[str]) -> bool:
    area, _separator, group, serial = match.groups()
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


# ---------------------------------------------------------------- payment cards, DoD ID

# 4-4-4-4(-1..3) groups with one consistent separator (or none), or American Express 4-6-5.
_CARD = re.compile(
    _DIGIT + _LEFT + r"(?:\d{4}([ \-]?)\d{4}\1\d{4}\1\d{1,7}|3[47]\d{2}([ \-]?)\d{6}\2\d{5})" + _RIGHT
)
# Issuer prefixes by length (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro). 16 digits may also
# start with 9: Korean domestic-only cards (국내전용, e.g. BC 9410-…). Only 16: no 9 at 13 digits keeps ISBN-13
# (978/979…) out even when its digits happen to pass Luhn.
_CARD_PREFIX_BY_LENGTH = {
    13: re.compile(r"4"),
    14: re.compile(r"3[068]"),
    15: re.compile(r"3[47]"),
    16: re.compile(r"4|5[1-5]|2[2-7]|6|35|9"),
}
_CARD_PREFIX_LONG = re.compile(r"4|5[1-5]|2[2-7]|6|35")
# YYMMDD + gender digit: a 13-digit run of this shape is a (mistyped) registration number, not a card.
_RRN_SHAPE = re.compile(r"\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])[1-8]")


def luhn_valid(number: str) -> bool:
    """Luhn (mod 10) check used by payment cards."""
    total = 0
    for index, char in enumerate(reversed(number)):
        value = int(char)
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card_valid(match: re.Match[str]) -> bool:
    number = _digits(match.group(0))
    if not 13 <= len(number) <= 19:
        return False
    prefix = _CARD_PREFIX_BY_LENGTH.get(len(number), _CARD_PREFIX_LONG)
    if not prefix.match(number) or (len(number) == 13 and _RRN_SHAPE.match(number)):
        return False
    return luhn_valid(number)


_DOD_ID = re.compile(_DIGIT + _LEFT + r"\d{10}" + _RIGHT)
_DOD_CONTEXT = re.compile(r"dod\s*id|edipi|dod\s*identification|cac\s*(?:id|number)")


# Order = priority on overlap: the more specific, validated detectors first.
_DETECTORS: tuple[_Detector, ...] = (
    _Detector("email", _EMAIL),
    _Detector("kr_rrn", _RRN, lambda m: _registration_number_kind(m) is not None),
    _Detector("payment_card", _CARD, _card_valid),
    _Detector("kr_military_id", _MILITARY_ID, None, _MILITARY_CONTEXT),
    _Detector("us_ssn", _SSN, _ssn_valid, None),
    _Detector("dod_id", _DOD_ID, None, _DOD_CONTEXT),
    _Detector("kr_phone", _PHONE),
    _Detector("passport", _PASSPORT_BARE),
    _Detector("passport", _PASSPORT_CTX, None, _PASSPORT_CONTEXT),
)


@dataclass(frozen=True)
class PiiSpan:
    """Where a PII value sits in the text; carries only offsets and the type, never the value."""

    start: int
    end: int
    type: str


# How far up a text table `_column_header` looks for the header row.
_TABLE_MAX_ROWS = 200


def _column_header(text: str, start: int) -> str | None:
    """For a value inside a text table (`a | b | c` rows, one per line, as ingest renders DOCX/HWPX/HTML/Markdown
    tables), the header cell of its column — the label ("군번") is there, not next to the value."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", start)
    line = text[line_start : line_end if line_end != -1 else len(text)]
    if "|" not in line:
        return None
    column = line[: start - line_start].count("|")
    header, cursor = line, line_start
    for _ in range(2 * _TABLE_MAX_ROWS):
        if cursor == 0:
            break
        previous_start = text.rfind("\n", 0, cursor - 1) + 1
        previous = text[previous_start : cursor - 1]
        if previous.strip() and "|" not in previous:
            break
        if previous.strip():  # plain-text exports put blank lines between rows; those do not end the table
            header = previous
        cursor = previous_start
    cells = header.split("|")
    return cells[column] if column < len(cells) else None


def _has_context(text: str, match: re.Match[str], context: re.Pattern[str]) -> bool:
    start, end = match.start(), match.end()
    before = text[max(0, start - _CONTEXT_BEFORE) : start].lower()
    after = text[end : end + _CONTEXT_AFTER].lower()
    if context.search(before) is not None or context.search(after) is not None:
        return True
    header = _column_header(text, start)
    return header is not None and context.search(header.lower()) is not None


def find_pii(text: str) -> list[PiiSpan]:
    """Non-overlapping PII spans in `text`, sorted by position."""
    candidates: list[tuple[int, int, int, str]] = []  # (start, priority, end, type)
    for priority, detector in enumerate(_DETECTORS):
        for match in detector.pattern.finditer(text):
            kind = detector.type
            if detector.type == "kr_rrn":
                resolved = _registration_number_kind(match)
                if resolved is None:
                    continue
                kind = resolved
            elif detector.validate is not None and not detector.validate(match):
                continue
            if detector.type == "us_ssn" and match.group(2) != "-":
                # Nine bare or space-separated digits are an SSN only when the text says so.
                if not _has_context(text, match, _SSN_CONTEXT):
                    continue
            if detector.context is not None and not _has_context(text, match, detector.context):
                continue
            candidates.append((match.start(), priority, match.end(), kind))
    candidates.sort()
    # Sweep by position; of two overlapping candidates keep the higher-priority one (linear, not pairwise).
    kept: list[tuple[int, int, int, str]] = []
    for candidate in candidates:
        if kept and candidate[0] < kept[-1][2]:
            if candidate[1] < kept[-1][1]:
                kept[-1] = candidate
            continue
        kept.append(candidate)
    return [PiiSpan(start, end, kind) for start, _priority, end, kind in kept]


def placeholder(kind: str) -> str:
    """The typed placeholder that replaces a value: ``kr_rrn`` → ``[KR_RRN]``."""
    return f"[{kind.upper()}]"


def redact_pii(text: str) -> tuple[str, dict[str, int]]:
    """Replace every PII value with its typed placeholder; returns (redacted text, {type: count})."""
    spans = find_pii(text)
    if not spans:
        return text, {}
    counts: dict[str, int] = {}
    pieces: list[str] = []
    cursor = 0
    for span in spans:
        pieces.append(text[cursor : span.start])
        pieces.append(placeholder(span.type))
        counts[span.type] = counts.get(span.type, 0) + 1
        cursor = span.end
    pieces.append(text[cursor:])
    return "".join(pieces), counts
