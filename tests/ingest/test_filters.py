"""Language id, quality rules, screening step and dedup planning, one document at a time."""

from __future__ import annotations

from datatrove.data import Document

from sovforge.ingest.config import IngestConfig
from sovforge.ingest.dedup import exact_hash, minhash_of, plan_dedup
from sovforge.ingest.langid import LanguageFilter, language_shares
from sovforge.ingest.quality import QualityFilter, korean_words
from sovforge.ingest.screen import ScreenFilter
from sovforge.ingest.split import assign_splits
from tests.ingest.helpers import STATUTE_A

KO = ("제1조(목적) 이 법은 군인의 인사관리에 관한 기본 사항을 규정함을 목적으로 한다. 국방부장관은 필요한 사항을 정한다. "
      "제2조(적용 범위) 이 법은 현역 군인과 사관생도에게 적용하며, 병역의무를 마친 사람에게는 적용하지 아니한다.")
EN = ("Leaders develop subordinates through counseling, coaching and mentoring. The Army profession is built on "
      "trust between soldiers, leaders and the American people, and every leader shares that responsibility.")


def doc(text: str, **meta) -> Document:
    return Document(text=text, id="d", metadata={"source": "s", "sort_key": "s", **meta})


def test_language_shares_and_filter():
    assert next(iter(language_shares(KO, ("ko", "en")))) == "ko"
    assert next(iter(language_shares(EN, ("ko", "en")))) == "en"
    mixed = language_shares(KO + "\n" + EN, ("ko", "en"), chunk_chars=100)
    assert set(mixed) == {"ko", "en"} and abs(sum(mixed.values()) - 1) < 0.01
    keep = LanguageFilter(["ko", "en"])
    d = doc(KO)
    assert keep.filter(d) is True and d.metadata["lang"] == "ko"
    assert LanguageFilter(["ko"]).filter(doc(EN)) == (False, "language:en")
    assert LanguageFilter(["ko", "en"]).filter(doc("12345 67890 ---")) == (False, "language:und")


def quality(text: str, lang_share: dict | None = None, **overrides) -> bool | tuple[bool, str]:
    return QualityFilter(IngestConfig(**overrides)).filter(doc(text, lang_share=lang_share or {"ko": 1.0}))


def test_korean_words_are_morphemes():
    words = korean_words("군인사법에 따라 정한다.")
    assert len(words) > len("군인사법에 따라 정한다.".split())  # particles and endings are their own units
    assert "." not in words


def test_quality_rules_each_with_its_reason():
    assert quality(STATUTE_A) is True
    assert quality("제1조 목적.") == (False, "too_short")
    assert quality("| 12 | 34 | 56 |\n" * 40 + "합계", min_words=0) == (False, "symbol_heavy")
    repeated = "\n\n".join([KO] * 5 + ["제3조 다른 조문이다."])
    assert quality(repeated)[1] in {"dup_para_frac", "dup_para_char_frac"}
    boiler = "\n".join(["Copyright 2026. All rights reserved.", "로그인", "회원가입"] * 10 + ["짧은 글"])
    assert quality(boiler) == (False, "boilerplate")
    kept = doc("Home\n" + EN * 3, lang_share={"en": 1.0})
    assert QualityFilter(IngestConfig()).filter(kept) is True and not kept.text.startswith("Home")
    # a short log that repeats an entry is normal: repetition rules start at repetition_min_words
    log = "\n\n".join(["정비일지 K-311", "엔진오일 교환 완료, 누유 없음."] + ["타이어 공기압 보충."] * 3)
    assert quality(log, min_words=5) is True


def test_screen_filter_redacts_labels_and_enforces_the_ceiling():
    from sovforge.demo.docs import rrn

    import random

    value = rrn(random.Random(3))
    d = doc(f"대외비\n보안 점검 결과. 주민등록번호 {value}\n대외비", title=f"점검 {value}")
    assert ScreenFilter("RESTRICTED").filter(d) is True
    assert value not in d.text and value not in d.metadata["title"] and "[KR_RRN]" in d.text
    assert d.metadata["classification"] == "RESTRICTED" and d.metadata["redactions"] == [{"type": "kr_rrn", "count": 1}]
    secret = doc("본문", marking_text="SECRET//NOFORN", title="작전")
    assert ScreenFilter("UNCLASSIFIED").filter(secret) == (False, "classification:SECRET")
    assert secret.text == "" and "title" not in secret.metadata
    prose = doc("제3조 군사기밀은 Ⅰ급비밀, Ⅱ급비밀, Ⅲ급비밀로 구분한다. The Secretary sets 비밀번호 rules.")
    assert ScreenFilter("UNCLASSIFIED").filter(prose) is True and prose.metadata["classification"] == "UNCLASSIFIED"
    declared = doc("평범한 기록", declared_classification="대외비")
    assert ScreenFilter("UNCLASSIFIED").filter(declared) == (False, "classification:RESTRICTED")


def test_korean_domestic_card_numbers_are_redacted():
    d = doc("법인카드 9410-8219-7296-6877 로 결제함. ISBN 9788912345670")
    ScreenFilter("UNCLASSIFIED").filter(d)
    assert "9410-8219-7296-6877" not in d.text and "[PAYMENT_CARD]" in d.text and "9788912345670" in d.text


def test_dedup_plan_keeps_the_first_in_source_order():
    base = KO * 4
    texts = {"a": base, "b": base.replace("목적", "목적 (수정)", 1), "c": base.upper() + "  ", "d": EN * 4,
             "e": base.replace("군인", "군무원")}
    rows = [{"id": k, "sort_key": k, "hash": exact_hash(t), "minhash": minhash_of(t, 128, 5).hashvalues.tolist()}
            for k, t in sorted(texts.items())]
    plan = plan_dedup(rows, exact=True, near=True, threshold=0.7, num_perm=128)
    assert plan["drop"]["c"] == ("duplicate:exact", "a")
    assert plan["drop"]["b"] == ("duplicate:near", "a")
    assert "d" not in plan["drop"] and "a" not in plan["drop"]
    assert plan["clusters"][0][0] == "a"
    reversed_plan = plan_dedup(rows[::-1], exact=True, near=True, threshold=0.7, num_perm=128)
    assert set(reversed_plan["drop"]) != set(plan["drop"])  # order decides the keeper, so callers sort first
    off = plan_dedup(rows, exact=False, near=False, threshold=0.7, num_perm=128)
    assert off["drop"] == {}


def test_split_is_deterministic_and_has_a_validation_document():
    groups = [f"g{i}" for i in range(200)]
    splits = assign_splits(groups, 0.1)
    assert splits == assign_splits(list(reversed(groups)), 0.1)
    assert 8 <= sum(v == "validation" for v in splits.values()) <= 35
    assert list(assign_splits(["only"], 0.5).values()) == ["train"]
    small = assign_splits(["a", "b", "c"], 0.01, min_validation=1)
    assert sorted(small.values()) == ["train", "train", "validation"]
    assert set(assign_splits(["a", "b"], 0.0).values()) == {"train"}
