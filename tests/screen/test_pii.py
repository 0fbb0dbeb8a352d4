"""PII detectors: `.venv/bin/python -m pytest -q tests/screen -p no:cacheprovider`."""

from __future__ import annotations

import pytest

from sovforge.screen import PII_TYPES, redact_pii, screen_text
from sovforge.screen.pii import luhn_valid


def rrn_with_checksum(first12: str, foreign: bool = False) -> str:
    weights = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)
    total = sum(int(d) * w for d, w in zip(first12, weights))
    check = ((13 if foreign else 11) - total % 11) % 10
    return f"{first12[:6]}-{first12[6:]}{check}"


def wrong_check(number: str) -> str:
    return number[:-1] + str((int(number[-1]) + 1) % 10)


VALID_RRN = rrn_with_checksum("900101123456")
VALID_FRN = rrn_with_checksum("850315612345", foreign=True)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (f"주민등록번호 {VALID_RRN}입니다", "kr_rrn"),
        (VALID_RRN.replace("-", ""), "kr_rrn"),
        ("210315-4928371", "kr_rrn"),  # born 2021 (after Oct 2020): random serial, no checksum
        (f"외국인등록번호: {VALID_FRN}", "kr_frn"),
        ("군번: 21-12345678", "kr_military_id"),
        ("service number 12-71234567", "kr_military_id"),
        ("연락처 010-1234-5678", "kr_phone"),
        ("대표번호 02-123-4567", "kr_phone"),
        ("call +82 10 2345 6789", "kr_phone"),
        ("(031) 123-4567", "kr_phone"),
        ("mail kim.soldier@army.mil.kr please", "email"),
        ("여권번호 M12345678", "passport"),
        ("passport no. M123A4567", "passport"),
        ("SSN: 123-45-6789", "us_ssn"),
        ("social security number 123 45 6789", "us_ssn"),
        ("card 4111 1111 1111 1111", "payment_card"),
        ("카드 5500-0000-0000-0004", "payment_card"),
        ("amex 378282246310005", "payment_card"),
        ("DoD ID: 1234567890", "dod_id"),
        ("EDIPI 1234567890", "dod_id"),
    ],
)
def test_detector_finds_and_types_value(text: str, kind: str) -> None:
    redacted, counts = redact_pii(text)
    assert counts == {kind: 1}
    assert f"[{kind.upper()}]" in redacted
    assert kind in PII_TYPES


@pytest.mark.parametrize(
    "text",
    [
        wrong_check(VALID_RRN),  # pre-2020 birth date with a bad checksum
        wrong_check(VALID_FRN),
        "901301-1234567",  # month 13
        "991232-1234567",  # impossible date
        "21-12345678",  # 군번 shape without context words
        "1234567890",  # DoD ID shape without context
        "000-12-3456 666-12-3456 912-12-3456 123-00-4567 123-45-0000",  # SSN rules
        "4111 1111 1111 1112",  # Luhn fails
        "ISBN 978-89-1234-567-8 and 9788912345670",
        "법률 제12345호, 제12조의3, 2024-01-01, 2024. 3. 15.",
        "주문번호 2023-1234-5678, 접수번호 20230101-0001",
        "NSN 5820-01-234-5678",
        "123 45 6789 rounds",  # spaced SSN shape without context
        "Secretary of Defense; 비밀번호를 변경",
    ],
)
def test_hard_negatives_untouched(text: str) -> None:
    redacted, counts = redact_pii(text)
    assert counts == {}
    assert redacted == text


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")


def test_original_values_absent_from_every_output() -> None:
    values = [VALID_RRN, "010-9876-5432", "hong@example.co.kr", "M98765432", "123-45-6789"]
    values.append("4111 1111 1111 1111")
    text = "신상: " + " / ".join(values) + "\nSSN 그리고 여권"
    result = screen_text(text)
    dumped = repr(result) + str(result.redactions) + "".join(m.text for m in result.markings)
    for value in values:
        assert value not in dumped
    assert sum(result.redactions.values()) == len(values)


def test_redact_false_counts_but_keeps_text() -> None:
    text = f"번호 {VALID_RRN}"
    result = screen_text(text, redact=False)
    assert result.text == text
    assert result.redactions == {"kr_rrn": 1}


def test_one_megabyte_is_fast() -> None:
    import time

    text = ("제12조의3(군사기밀의 보호) 연락처 010-1234-5678. " * 20000)[:1_000_000]
    start = time.perf_counter()
    screen_text(text)
    assert time.perf_counter() - start < 2.0  # generous for the shared 2-core box; typical ~0.4 s
