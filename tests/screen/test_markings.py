"""Markings and the shared corpus: `.venv/bin/python -m pytest -q tests/screen -p no:cacheprovider`."""

from __future__ import annotations

import pytest

from sovforge.classification import Level
from sovforge.screen import detect_markings, screen_text


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("SECRET//NOFORN\n본문", Level.SECRET),
        ("TOP SECRET//SI//REL TO USA, FVEY\nbody", Level.TOP_SECRET),
        ("CONFIDENTIAL\nbody", Level.CONFIDENTIAL),
        ("UNCLASSIFIED//FOR OFFICIAL USE ONLY\nbody", Level.RESTRICTED),
        ("CUI\nbody", Level.RESTRICTED),
        ("Ⅱ급비밀\n본문", Level.SECRET),
        ("군사Ⅱ급비밀\n본문", Level.SECRET),
        ("Ⅲ급비밀\n본문", Level.CONFIDENTIAL),
        ("[대외비]\n본문", Level.RESTRICTED),
        ("비밀등급: Ⅱ급비밀\n본문", Level.SECRET),
        ("Classification: TOP SECRET\nbody", Level.TOP_SECRET),
        ("UNCLASSIFIED\nbody", Level.UNCLASSIFIED),
    ],
)
def test_banners(text: str, level: Level) -> None:
    markings = detect_markings(text)
    assert [(m.kind, m.level, m.line) for m in markings] == [("banner", level, 1)]
    assert screen_text(text).level == level


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("(S//NF) The unit moves at dawn.", Level.SECRET),
        ("(TS//SI) Collection details follow.", Level.TOP_SECRET),
        ("(C) Readiness is degraded.", Level.CONFIDENTIAL),
        ("(U) General information.", Level.UNCLASSIFIED),
        ("(CUI) Contract data.", Level.RESTRICTED),
        ("(U//FOUO) Internal guidance.", Level.RESTRICTED),
    ],
)
def test_portion_marks(text: str, level: Level) -> None:
    markings = detect_markings("intro line\n\n" + text)
    assert [(m.kind, m.level, m.line) for m in markings] == [("portion", level, 3)]


@pytest.mark.parametrize(
    "text",
    [
        "The Secretary of Defense approved the plan.",
        "비밀번호를 입력하십시오.",
        "He was a Confidential informant for years.",
        "(C) 2024 Acme Corp. All rights reserved.",
        "(B) first item\n(C) second item\n(D) third item",
        "(R) rule one\n(S) rule two\n(T) rule three",
        "군사기밀은 Ⅰ급비밀, Ⅱ급비밀, Ⅲ급비밀로 등급을 구분한다.",
        "이 문서는 대외비로 분류될 수 있다.",
        "Secret\nA heading in title case is not a US banner.",
        "the SECRET//NOFORN caveat mentioned mid-sentence",
    ],
)
def test_hard_negatives(text: str) -> None:
    assert detect_markings(text) == []
    assert screen_text(text).level == Level.UNCLASSIFIED


def test_highest_marking_wins() -> None:
    text = "UNCLASSIFIED\n(U) Intro.\n\n(S//NF) Secret part.\n\n(C) Confidential part."
    assert screen_text(text).level == Level.SECRET


def test_statutes_screen_unclassified_and_untouched(shared_corpus) -> None:
    statutes = sorted((shared_corpus / "ko-defense-law").glob("*__*.md"))
    assert len(statutes) >= 12
    for path in statutes:
        text = path.read_text(encoding="utf-8")
        result = screen_text(text)
        assert result.level == Level.UNCLASSIFIED, (path.name, result.markings)
        assert result.markings == []
        assert result.redactions == {}, path.name
        assert result.text == text
    secrets_act = (shared_corpus / "ko-defense-law" / "군사기밀보호법__법률.md").read_text(encoding="utf-8")
    assert "Ⅱ급비밀" in secrets_act  # the hard negative really is there


def test_field_manual_unclassified(shared_corpus) -> None:
    from selectolax.lexbor import LexborHTMLParser

    html = (shared_corpus / "en-army-fm" / "fm6_22.html").read_text(encoding="utf-8", errors="replace")
    text = LexborHTMLParser(html).body.text(separator="\n")
    result = screen_text(text)
    assert result.level == Level.UNCLASSIFIED
    assert result.markings == []
    # The only PII is the manual's public feedback address (army.mil e-mail); redacting it is by design.
    assert result.redactions == {"email": 1}


def test_crlf_banner_and_bare_label() -> None:
    assert [m.level for m in detect_markings("SECRET//NOFORN\r\nbody\r\n")] == [Level.SECRET]
    assert detect_markings("(U)\nA label alone on its line is not a marked paragraph.") == []


def test_deep_indentation_stays_fast() -> None:
    import time

    text = ("\n" + " " * 200 + "indented text (CAR) at 3-35.") * 5000
    start = time.perf_counter()
    assert detect_markings(text) == []
    assert time.perf_counter() - start < 1.0
