"""Tests of the rag stage: `.venv/bin/python -m pytest -q tests/rag -p no:cacheprovider`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sovforge.artifacts import load_artifact
from sovforge.classification import Level
from sovforge.rag import QueryError, check_citations, grounded_messages, open_index
from sovforge.rag.chunking import chunk_document
from sovforge.rag.index import build_index
from tests.conftest import write_corpus_artifact

STATUTE = """# 군사기밀 보호법

##### 제1조 (목적)

이 법은 군사기밀을 보호하여 국가안전보장에 이바지함을 목적으로 한다.

##### 제3조 (군사기밀의 구분)

군사기밀은 그 내용이 누설되는 경우 국가안전보장에 미치는 영향의 정도에 따라 Ⅰ급비밀, Ⅱ급비밀, Ⅲ급비밀로 등급을 구분한다.

##### 제3조의2 (군사기밀의 지정)

군사기밀은 그 내용과 가치의 정도에 따라 적절히 보호할 수 있는 최저등급으로 지정하여야 한다.

## 부칙

이 법은 공포 후 6개월이 경과한 날부터 시행한다. 다만, 부칙 제2조는 공포한 날부터 시행한다.
"""
MANUAL = """Chapter 3 Leadership

3-35. Counseling is the process used by leaders to review with a subordinate the subordinate's demonstrated
performance and potential. Leaders conduct counseling at least quarterly.

3-36. Resilience is the ability to recover quickly from setbacks, shock, injuries, adversity, and stress while
maintaining a mission and organizational focus.
"""
SECRET_TEXT = "3-99. The counseling codeword for Operation Nightfall is AZURE HERON. Leaders brief it quarterly."


def _corpus(path: Path, docs: list[dict]) -> Path:
    return write_corpus_artifact(path, docs,
                                 stats={"documents": len(docs), "splits": {"train": len(docs), "validation": 0}})


def _doc(doc_id: str, text: str, classification: str = "UNCLASSIFIED", split: str = "train", title: str = "") -> dict:
    return {"id": doc_id, "text": text, "source": f"/src/{doc_id}.md", "sha256": "0" * 64, "lang": "ko",
            "classification": classification, "redactions": [], "split": split, "title": title}


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rag")
    corpus = _corpus(root / "corpus", [
        _doc("law", STATUTE, title="군사기밀 보호법"),
        _doc("fm", MANUAL, split="validation", title="FM 6-22"),
        _doc("secret", SECRET_TEXT, classification="SECRET", title="OPORD"),
    ])
    return build_index(corpus, root / "index")


def test_chunking_follows_articles_paragraphs_and_addenda():
    chunks = chunk_document(_doc("law", STATUTE), min_chars=20)
    headings = [c.heading for c in chunks]
    assert any(h.startswith("제3조의2") for h in headings)
    assert any(h.startswith("부칙") for h in headings)
    assert all(STATUTE[c.span[0]:c.span[1]] == c.text for c in chunks)
    fm = chunk_document(_doc("fm", MANUAL), min_chars=20)
    assert [c.heading[:5] for c in fm][-2:] == ["3-35.", "3-36."]


def test_index_manifest_records_corpus_tokenizer_and_max_level(index_dir):
    art = load_artifact(index_dir, kind="index")
    assert art.classification == Level.SECRET
    assert "kiwipiepy" in art.config["tokenizer"]
    assert "lexical only" in art.config["retrieval"]
    assert art.stats["documents"] == 3


def test_korean_query_finds_article_by_number_and_by_meaning(index_dir):
    index = open_index(index_dir)
    top = index.search("제3조의2", k=3)[0]
    assert top.heading.startswith("제3조의2")
    top = index.search("군사기밀 등급은 어떻게 구분하나요?", k=3)[0]
    assert "Ⅰ급비밀" in top.text and top.doc_id == "law"


def test_english_query_uses_stemming(index_dir):
    passages = open_index(index_dir).search("how often do leaders counsel subordinates", k=2)
    assert "3-35. Counseling" in passages[0].text
    assert passages[0].span[1] > passages[0].span[0] and passages[0].score > 0


def test_secret_chunk_never_returned_below_clearance(index_dir):
    index = open_index(index_dir)
    for query in ("AZURE HERON codeword", "counseling quarterly Nightfall"):
        assert all(p.classification != "SECRET" for p in index.search(query, k=100, clearance=Level.UNCLASSIFIED))
    assert any(p.doc_id == "secret" for p in index.search("AZURE HERON codeword", k=5, clearance="SECRET"))


@pytest.mark.parametrize("query, message", [
    ("", "empty"), ("   ", "empty"), ("x" * 100_000, "limit"),
    ("สวัสดีครับ", "only Korean and English"), ("Привет мир", "only Korean and English"), ("😀🚀", "only Korean"),
])
def test_bad_queries_raise_query_error_fast(index_dir, query, message):
    index = open_index(index_dir)
    start = time.perf_counter()
    with pytest.raises(QueryError, match=message):
        index.search(query)
    assert time.perf_counter() - start < 0.5


def test_grounded_messages_and_citation_check(index_dir):
    passages = open_index(index_dir).search("counseling subordinate performance", k=2)
    messages = grounded_messages("How often is counseling done?", passages)
    assert messages[0]["role"] == "system" and "[1]" in messages[0]["content"] and "3-35." in messages[0]["content"]
    assert messages[-1] == {"role": "user", "content": "How often is counseling done?"}
    answer, citations = check_citations("At least quarterly [1], per doctrine [7].", passages)
    assert answer == "At least quarterly [1], per doctrine ."
    assert [c["n"] for c in citations] == [1] and citations[0]["doc_id"] == "fm"
    refusal = grounded_messages("unrelated", [], history=[{"role": "user", "content": "hi"}])
    assert "(none found)" in refusal[0]["content"] and len(refusal) == 3


def test_incremental_add_makes_new_version(index_dir, tmp_path):
    extra = _corpus(tmp_path / "corpus2", [_doc("law", STATUTE), _doc("new", "3-40. Mentorship is voluntary and "
                                                                          "developmental for both mentor and mentee.")])
    out = build_index(extra, tmp_path / "index2", add_to=index_dir)
    art = load_artifact(out, kind="index")
    old = load_artifact(index_dir, kind="index")
    assert old.id in art.manifest["inputs"] and load_artifact(tmp_path / "corpus2").id in art.manifest["inputs"]
    assert art.stats["added"] == {"documents": 1, "chunks": 1, "skipped_duplicate_documents": 1}
    assert open_index(out).search("mentorship mentor", k=1)[0].doc_id == "new"


def test_cli_index_and_query_json(tmp_path, index_dir):
    from sovforge.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["rag", "query", str(index_dir), "resilience setbacks", "--k", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["results"][0]["text"].startswith("3-36.")
    bad = runner.invoke(app, ["rag", "query", str(index_dir), "   "])
    assert bad.exit_code == 1 and "empty" in bad.output and "Traceback" not in bad.output
    missing = runner.invoke(app, ["rag", "index", str(tmp_path / "nope"), "--out", str(tmp_path / "i")])
    assert missing.exit_code == 1


def test_cli_index_and_add_then_stage_runner(tmp_path):
    from types import SimpleNamespace

    from sovforge.cli import app
    from sovforge.rag.config import RagConfig
    from sovforge.rag.stage import run_stage

    first = _corpus(tmp_path / "c1", [_doc("fm", MANUAL)])
    second = _corpus(tmp_path / "c2", [_doc("law", STATUTE)])
    runner = CliRunner()
    made = runner.invoke(app, ["rag", "index", str(first), "--out", str(tmp_path / "i1")])
    assert made.exit_code == 0 and "lexical only" in made.output, made.output
    added = runner.invoke(app, ["rag", "index", str(second), "--out", str(tmp_path / "i2"), "--add", str(tmp_path / "i1")])
    assert added.exit_code == 0, added.output
    assert {p.doc_id for p in open_index(tmp_path / "i2").search("군사기밀 counseling", k=10)} == {"fm", "law"}
    dense = runner.invoke(app, ["rag", "index", str(first), "--out", str(tmp_path / "i3"), "--embedding-model", "x"])
    assert dense.exit_code == 1 and "no such model directory" in dense.output, dense.output
    ctx = SimpleNamespace(input=lambda stage: {"ingest": second}[stage], out=tmp_path / "staged")
    assert load_artifact(run_stage(RagConfig(), ctx), kind="index").stats["documents"] == 1


def test_unknown_clearance_is_a_query_error(index_dir):
    with pytest.raises(QueryError, match="clearance"):
        open_index(index_dir).search("counseling", clearance="PURPLE")
