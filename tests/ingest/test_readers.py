"""Readers and normalisation: `.venv/bin/python -m pytest -q -p no:cacheprovider tests/ingest/test_readers.py`."""

from __future__ import annotations

import tracemalloc
import zipfile
from pathlib import Path

import pytest

from sovforge.ingest.normalize import Vocabulary, join_pieces, join_split_paragraphs, join_wrapped_lines, normalize_text
from sovforge.ingest.readers import ReadLimits, Unreadable, read_file
from sovforge.ingest.readers.safety import detect_encoding
from tests.ingest.helpers import KOREAN, PDF_LINES, make_docx, make_hwpx, make_pdf, make_zip_bomb

LIMITS = ReadLimits()


def read_one(path: Path, fmt: str, limits: ReadLimits = LIMITS):
    parts = list(read_file(path, fmt, limits))
    assert len(parts) == 1
    return parts[0]


# ------------------------------------------------------------------------------------------- text


@pytest.mark.parametrize("encoding", ["cp949", "euc-kr", "utf-8", "utf-8-sig", "utf-16"])
def test_text_encodings_are_detected(tmp_path, encoding):
    path = tmp_path / "법률.txt"
    path.write_bytes(KOREAN.encode(encoding))
    part = read_one(path, "txt")
    assert part.text.lstrip("\ufeff") == KOREAN
    assert part.title == "제1조(목적) 이 법은 군인의 인사관리에 관한 기본 사항을 규정함을 목적으로 한다."
    if encoding in ("cp949", "euc-kr"):
        assert part.meta["encoding"] == "cp949"  # EUC-KR is a subset of CP949


def test_binary_garbage_with_a_txt_name_is_unreadable(tmp_path):
    import random

    path = tmp_path / "notes.txt"
    path.write_bytes(random.Random(0).randbytes(50_000))
    with pytest.raises(Unreadable) as exc:
        read_one(path, "txt")
    assert exc.value.reason == "binary"
    with pytest.raises(Unreadable):
        detect_encoding(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")


def test_markdown_front_matter_and_markup(tmp_path):
    path = tmp_path / "law.md"
    path.write_text("---\n제목: 군사기밀 보호법\n법령ID: '000928'\n---\n\n# 군사기밀 보호법\n\n##### 제1조 (목적)\n\n"
                    "**①** 이 법은 [군사기밀](https://law.go.kr)을 보호한다.\n  1\\. 정의\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
                    encoding="utf-8")
    part = read_one(path, "md")
    assert part.title == "군사기밀 보호법"
    assert "법령ID" not in part.text and "---" not in part.text
    assert "##### 제1조 (목적)" in part.text  # headings stay: retrieval chunks on them
    assert "① 이 법은 군사기밀을 보호한다." in part.text and "1. 정의" in part.text
    assert "| 1 | 2 |" in part.text and "https" not in part.text


def test_big_text_streams_in_parts_with_bounded_memory(tmp_path):
    path = tmp_path / "big.txt"
    paragraph = ("가나다라마바사 " * 60 + "\n\n").encode()
    with open(path, "wb") as fh:
        for _ in range(40_000):  # ~40 MB
            fh.write(paragraph)
    limits = ReadLimits(max_document_chars=200_000)
    tracemalloc.start()
    count, longest = 0, 0
    for part in read_file(path, "txt", limits):
        count += 1
        longest = max(longest, len(part.text))
        assert part.text.endswith("\n\n") or part is not None  # cut at paragraph boundaries
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count > 60 and longest <= 200_000
    assert peak < 16 << 20, f"peak {peak >> 20} MiB while reading a {path.stat().st_size >> 20} MiB file"


# ------------------------------------------------------------------------------------------- html


def test_html_drops_markup_keeps_paragraph_numbers(tmp_path):
    path = tmp_path / "fm.html"
    path.write_text("""<html><head><title>FM 6-22.pdf</title><style>p { color: #231F20; font-family: Arial }</style>
<script>var tracking = 1;</script></head><body><nav class='menu'><a href='/'>Home</a></nav>
<h1>FM 6-22</h1><p style="padding-left: 5pt">3-35. Another way to identify
   satisfying goals is to align interests.</p><p>A leader is a wise investment of</p><p>a professional
   Soldier's time.</p><div id="sidebar">Related links</div>
<table><tr><th>Rank</th><th>Duty</th></tr><tr><td>SGT</td><td>Team<br>leader</td></tr></table>
<footer>Copyright 2026</footer></body></html>""", encoding="utf-8")
    part = read_one(path, "html")
    text = normalize_text(part.text, "html", join_formats=("html",))
    assert part.title == "FM 6-22"  # the <title> is a converter's file name, so the heading wins
    for markup in ("{", "font-family", "tracking", "Home", "Related links", "Copyright", "<", "padding"):
        assert markup not in text
    assert "\n3-35. Another way to identify satisfying goals is to align interests." in text
    assert "a wise investment of a professional Soldier's time." in text  # split <p>s re-joined
    assert "Rank | Duty\nSGT | Team leader" in text


def test_html_in_cp949(tmp_path):
    path = tmp_path / "page.html"
    path.write_bytes("<html><body><p>국방부 공지사항입니다.</p></body></html>".encode("cp949"))
    assert read_one(path, "html").text == "국방부 공지사항입니다."


# ------------------------------------------------------------------------------------ office formats


def test_docx_paragraphs_tables_in_order_and_header_banner(tmp_path):
    part = read_one(make_docx(tmp_path / "order.docx", banner="대외비"), "docx")
    assert part.title == "인사명령"
    assert part.text.index("1. 아래") < part.text.index("계급 | 성명 | 군번") < part.text.index("2. 본 명령")
    assert "대위 | 김민준 | 12-71234567" in part.text
    assert "병합 | 끝" in part.text  # a merged cell once
    assert "대외비" not in part.text and part.marking_text == "대외비"  # screened, not kept


def test_hwpx_sections_tables_and_page_header(tmp_path):
    part = read_one(make_hwpx(tmp_path / "plan.hwpx", header="Ⅱ급비밀"), "hwpx")
    assert "1. 차량 정비 일정을 다음과 같이 정한다." in part.text
    assert "차량 | 일자\nK-311 | 2026. 3. 2.\nK-511 | 2026. 3. 9." in part.text
    assert "Ⅱ급비밀" not in part.text and part.marking_text == "Ⅱ급비밀"


@pytest.mark.parametrize(("name", "member", "fmt"), [("bomb.docx", "word/document.xml", "docx"),
                                                     ("bomb.hwpx", "Contents/section0.xml", "hwpx")])
def test_zip_bombs_are_refused_before_inflating(tmp_path, name, member, fmt):
    path = make_zip_bomb(tmp_path / name, member)
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    with pytest.raises(Unreadable) as exc:
        read_one(path, fmt)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert exc.value.reason == "zip_bomb" and peak < 8 << 20
    small = ReadLimits(max_unzipped_bytes=1 << 20, max_zip_ratio=1e9)  # the total cap alone also holds
    with pytest.raises(Unreadable, match="uncompressed"):
        read_one(path, fmt, small)


def test_not_a_zip_and_missing_parts(tmp_path):
    fake = tmp_path / "fake.docx"
    fake.write_text("not a zip", encoding="utf-8")
    with pytest.raises(Unreadable) as exc:
        read_one(fake, "docx")
    assert exc.value.reason == "not_a_zip"
    empty = tmp_path / "empty.hwpx"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("mimetype", "application/hwp+zip")
    with pytest.raises(Unreadable) as exc:
        read_one(empty, "hwpx")
    assert exc.value.reason == "missing_part"


# -------------------------------------------------------------------------------------------- pdf


def test_pdf_text_and_truncated_pdf(tmp_path):
    path = make_pdf(tmp_path / "log.pdf", PDF_LINES)
    part = read_one(path, "pdf")
    assert "Performed PMCS on the generator set" in part.text and part.meta["pages"] == 1
    joined = normalize_text(part.text, "pdf", join_formats=("pdf",))
    assert "Maintenance Log\n\nPerformed PMCS" in joined and "\nthe operator" not in joined
    cut = tmp_path / "cut.pdf"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    with pytest.raises(Unreadable) as exc:
        read_one(cut, "pdf")
    assert exc.value.reason == "pdf_truncated"


# ------------------------------------------------------------------------------------------ jsonl


def test_jsonl_records_and_a_bad_line(tmp_path):
    path = tmp_path / "export.jsonl"
    path.write_text('{"body": "첫 문서", "title": "A"}\nnot json\n{"other": 1}\n{"body": "둘째", "classification": "대외비"}\n',
                    encoding="utf-8")
    parts = list(read_file(path, "jsonl", ReadLimits(jsonl_text_field="body")))
    assert [p.part for p in parts] == [1, 2, 3, 4]
    assert parts[0].text == "첫 문서" and parts[0].title == "A"
    assert parts[1].error[0] == "jsonl_record" and "not JSON" in parts[1].error[1]
    assert parts[2].error[0] == "jsonl_record" and "body" in parts[2].error[1]
    assert parts[3].meta["declared_classification"] == "대외비"


# -------------------------------------------------------------------------------------- normalise


def test_normalize_nfc_width_invisible_whitespace():
    decomposed = "\u1100\u1161\u11a8"  # 각 as conjoining jamo
    text = f"ＡＢＣ１２３（가）\u3000{decomposed}\u200b나\u00a0\u00a0다 ① Ⅱ급비밀\r\n\n\n\nｶﾀｶﾅ ﾡ"
    out = normalize_text(text)
    assert out.startswith("ABC123(가) 각나 다 ① Ⅱ급비밀\n\nカタカナ ㄱ")


def test_pdf_dehyphenation_uses_the_documents_own_vocabulary():
    vocab = Vocabulary("decision-making matters; making a plan. leadership is learned.")
    assert join_pieces("the decision-", "making process", vocab) == "the decision-making process"
    assert join_pieces("strong lead-", "ership counts", vocab) == "strong leadership counts"
    assert join_pieces("plain", "words", vocab) == "plain words"
    text = ("Leaders develop subordinates through counseling, coaching and mentoring in garri-\n"
            "son and in the field, every day of the year, wherever they serve.\n"
            "1. First item\n2. Second item\n")
    joined = join_wrapped_lines(text)
    assert "garrison and in the field" in joined and "\n\n1. First item\n\n2. Second item" in joined
    assert join_split_paragraphs("It is a wise investment of\n\na professional's time.\n\nNext.") == \
        "It is a wise investment of a professional's time.\n\nNext."
