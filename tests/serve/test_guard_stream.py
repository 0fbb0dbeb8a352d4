"""The incremental answer guard: same result as screening the whole answer, at linear cost; detokenisation and stop
strings across token boundaries."""

from __future__ import annotations

import asyncio
import random

import pytest

from sovforge.classification import Level
from sovforge.screen import redact_pii, screen_text
from sovforge.serve.guard import HOLD_BACK, AnswerGuard

FRAGMENTS = [
    "제3조(계급) 장교는 대령, 중령, 소령으로 구분한다. ", "The unit reports to Range 7 at 0700. ", "\n", "\n\n",
    "연락처 kim.minsu@army.mil 입니다. ", "주민번호 900101-1234568 ", "phone 010-1234-5678 ", "군번 22-76543210 ",
    "card 4111 1111 1111 1111 ", "SECRET//NOFORN\n", "(S//NF) The plan moves at dawn.\n", "CUI\n", "대외비\n",
    "(B) first item\n(C) second item\n(D) third item\n", "order no. 2024-000123-77 ", "😀 e\u0301 한국어 ",
    "a.very.long.address.of.someone.in.the.signal.corps@korea.army.mil ", "ISBN 978-89-123-4567-8 ",
]


def guarded(text: str, clearance: Level, chunks: list[int]) -> tuple[str, AnswerGuard]:
    guard, out, pos = AnswerGuard(clearance), [], 0
    for size in chunks:
        out.append(guard.feed(text[pos:pos + size]))
        pos += size
    out.append(guard.feed(text[pos:]))
    out.append(guard.finish())
    return "".join(out), guard


@pytest.mark.parametrize("seed", range(60))
def test_incremental_guard_equals_whole_text_screening(seed):
    rng = random.Random(seed)
    text = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 30)))
    chunks = [rng.randint(1, 6) for _ in range(len(text))]
    whole = screen_text(text, redact=True)
    out, guard = guarded(text, Level.TOP_SECRET, chunks)
    assert out == whole.text
    assert guard.redactions == whole.redactions
    assert guard.level == whole.level
    # a caller cleared below the text's markings gets nothing from the first marked line on
    low_out, low = guarded(text, Level.UNCLASSIFIED, chunks)
    assert low.blocked == (whole.level > Level.UNCLASSIFIED)
    if low.blocked:
        first = min(m.line for m in whole.markings if m.level > Level.UNCLASSIFIED)
        line_start = 0
        for _ in range(first - 1):  # redaction keeps newlines, so line numbers hold in the redacted text
            line_start = whole.text.index("\n", line_start) + 1
        assert whole.text.startswith(low_out) and len(low_out) <= line_start


def test_no_pii_value_leaves_before_it_is_complete():
    guard, sent = AnswerGuard(Level.UNCLASSIFIED), ""
    text = "담당자 이메일은 kim.minsu@army.mil 이고 주민번호는 900101-1234568 입니다. " * 3
    for ch in text:  # one character per token: the worst case for a streaming leak
        sent += guard.feed(ch)
        assert "kim.minsu" not in sent and "900101" not in sent and "1234568" not in sent
    sent += guard.finish()
    assert sent == redact_pii(text)[0]


def test_guard_cost_is_linear_in_answer_length(monkeypatch):
    import sovforge.screen as screen_module

    screened = [0]
    real = screen_module.find_pii

    def counting(text):
        screened[0] += len(text)
        return real(text)

    monkeypatch.setattr(screen_module, "find_pii", counting)
    text = ("The unit conducts weapons qualification training on Tuesday; all personnel report to Range 7. " * 400)
    out, _ = guarded(text, Level.UNCLASSIFIED, [3] * (len(text) // 3))
    assert out == text
    # a bounded window per step: a fixed multiple of the length (re-screening the whole answer per token would be
    # about len/3 times the length here, i.e. ~13000x)
    assert screened[0] < 30 * len(text), screened[0] / len(text)


def test_hold_back_then_release():
    guard = AnswerGuard(Level.UNCLASSIFIED)
    assert guard.feed("short answer") == ""  # nothing released while it could still become a PII value
    assert guard.finish() == "short answer"
    guard = AnswerGuard(Level.UNCLASSIFIED)
    released = guard.feed("word " * 40)
    assert released and len(released) <= 200 - HOLD_BACK


def test_retract_only_undecided_text():
    guard = AnswerGuard(Level.UNCLASSIFIED)
    guard.feed("x " * 100)
    with pytest.raises(ValueError):
        guard.retract(150)


def test_detokenizer_pieces_concatenate_to_decode(tiny_model, tiny_qwen2):
    from sovforge.model.loading import load_tokenizer
    from sovforge.serve.generation import token_pieces

    for path in (tiny_model, tiny_qwen2):
        tokenizer = load_tokenizer(path)
        for text in ("hello 안녕하세요 👩‍👩‍👧 e\u0301 국방 정보\n\n  spaced", "제1조(목적) 이 법은 군인의 인사관리"):
            ids = tokenizer(text)["input_ids"]
            assert "".join(token_pieces(tokenizer, ids)) == tokenizer.decode(ids, skip_special_tokens=True)
        rng = random.Random(0)  # arbitrary id sequences, incl. ones that end inside a multi-byte character
        for _ in range(20):
            ids = [rng.randrange(len(tokenizer)) for _ in range(rng.randint(1, 12))]
            assert "".join(token_pieces(tokenizer, ids)) == tokenizer.decode(ids, skip_special_tokens=True)


@pytest.mark.parametrize("stop", ["[END]", "END", "\n\n", "e"])
def test_stop_string_split_across_tokens(tiny_model, stop):
    from sovforge.serve.backend import EchoTestBackend, Job
    from sovforge.serve.generation import Generation

    backend = EchoTestBackend(tiny_model)
    text = "The unit reports at 0700 [END] and this must never be sent\n\nnor this"
    ids = backend.encode(text)

    async def run():
        gen = Generation(backend, Job(ids, 200), [stop], Level.UNCLASSIFIED, timeout=30)
        return "".join([d async for d in gen.deltas()]), gen

    out, gen = asyncio.run(run())
    decoded = backend.decode(ids)
    assert out == decoded[: decoded.index(stop)] and gen.stopped and gen.finish_reason == "stop"
