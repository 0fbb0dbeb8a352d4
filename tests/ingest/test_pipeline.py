"""The whole ingest stage: contract, screening, dedup, splits, packing, bad inputs, workers, CLI and `sovforge run`.

    .venv/bin/python -m pytest -q -p no:cacheprovider tests/ingest
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from sovforge.artifacts import load_artifact, verify
from sovforge.cli import app
from sovforge.ingest.corpus import iter_documents, iter_quarantine, load_canaries, packed_meta, packed_tokens
from tests.ingest.conftest import demo_config
from tests.ingest.helpers import PDF_LINES, STATUTE_A, STATUTE_B, make_pdf, make_zip_bomb

runner = CliRunner()
# The demo generator's identifiers (sovforge/demo/docs.py), matched by their raw shapes — not by the screen's
# detectors, so a detector miss would show up here as a leak.
PLANTED_PII = {
    "kr_rrn": re.compile(r"\d{6}-[1-4]\d{6}"),
    "payment_card": re.compile(r"9410-\d{4}-\d{4}-\d{4}"),
    "kr_phone": re.compile(r"010-\d{4}-\d{4}"),
    "kr_military_id": re.compile(r"\b(?:1\d|2[0-4])-7\d{7}\b"),
    "email": re.compile(r"(?:kim|lee|park)\d{1,2}@army\.example\.kr"),
}


def by_source(corpus: Path) -> dict[str, dict]:
    return {Path(d["source"]).name: d for d in iter_documents(corpus)}


def quarantine_by_source(corpus: Path) -> dict[str, dict]:
    return {Path(q["source"]).name: q for q in iter_quarantine(corpus)}


# ------------------------------------------------------------------------------------------ contract


def test_demo_corpus_contract_and_lineage(demo_corpus: Path, demo_docs):
    docs, truth = demo_docs
    art = load_artifact(demo_corpus, kind="corpus")
    assert verify(demo_corpus).ok
    assert art.classification.name == "UNCLASSIFIED" and art.manifest["inputs"] == []
    listed = {Path(f["path"]).name: f["sha256"] for f in art.stats["input_files"]}
    assert set(listed) == set(truth) and all(len(sha) == 64 for sha in listed.values())
    stats = json.loads((demo_corpus / "stats.json").read_text())
    kept, quarantined = by_source(demo_corpus), quarantine_by_source(demo_corpus)
    assert set(kept) | set(quarantined) == set(truth)  # every file accounted for
    assert stats["documents"] == len(kept) and stats["quarantined"] == len(quarantined)
    assert sum(stats["drops"].values()) == stats["quarantined"]
    for name, document in kept.items():
        for field in ("id", "text", "source", "sha256", "lang", "classification", "redactions", "split", "title"):
            assert field in document, (name, field)
        assert document["sha256"] == listed[name] and document["lang"] == truth[name]["lang"]
        assert document["split"] in ("train", "validation") and document["format"] == truth[name]["format"]
    assert stats["splits"]["validation"] >= 1 and art.stats["throughput"]["docs_per_s"] > 0
    assert "throughput" not in stats  # timings live in the manifest only: same inputs → same artifact id
    assert {"📄 Extract", "🛡 Screen", "🌐 Language", "🥇 Quality", "🫂 Dedup"} <= set(stats["stages"])
    assert stats["stages"]["📄 Extract"]["input_files"] == len(truth)


def test_pii_never_reaches_output_files(demo_corpus: Path, demo_docs):
    docs, truth = demo_docs
    from sovforge.ingest.readers import ReadLimits, format_of, read_file

    raw = "\n".join(part.text + part.marking_text for p in sorted(docs.iterdir())
                    for part in read_file(p, format_of(p), ReadLimits()))
    missing = [kind for kind, pattern in PLANTED_PII.items() if not pattern.search(raw)]
    assert not missing, f"the inputs should carry every kind; none of {missing}"
    for path in demo_corpus.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl"):
            content = path.read_text(encoding="utf-8")
            for kind, pattern in PLANTED_PII.items():
                assert not pattern.search(content), f"{kind} value in {path.relative_to(demo_corpus)}"
    kept = by_source(demo_corpus)
    for name, planted in truth.items():
        if name in kept and planted["pii"]:
            found = {r["type"] for r in kept[name]["redactions"]}
            assert set(planted["pii"]) <= found, (name, planted["pii"], found)


def test_classified_documents_are_quarantined_without_text(demo_corpus: Path, demo_docs):
    _, truth = demo_docs
    quarantined = quarantine_by_source(demo_corpus)
    for name, planted in truth.items():
        if planted["classification"] != "UNCLASSIFIED":
            row = quarantined[name]
            assert row["reason"] == f"classification:{planted['classification']}"
            assert "text" not in row and "title" not in row
    # a quality or duplicate drop keeps its redacted text for review
    assert any("text" in row for row in quarantined.values() if row["reason"].startswith("duplicate"))


def test_near_duplicates_are_caught(demo_corpus: Path, demo_docs):
    _, truth = demo_docs
    kept, quarantined = by_source(demo_corpus), quarantine_by_source(demo_corpus)
    children = {name: t["near_duplicate_of"] for name, t in truth.items() if t["near_duplicate_of"]}
    assert children
    stats = json.loads((demo_corpus / "stats.json").read_text())
    clusters = [{Path(m["source"]).name for m in members} for members in stats["dedup"]["cluster_members"]]
    for child, parent in children.items():
        assert child not in kept, f"{child} (edited copy of {parent}) was kept"
        if parent in kept:  # both reached dedup: the copy was caught as its parent's near-duplicate
            assert quarantined[child]["reason"] == "duplicate:near"
            assert any({child, parent} <= cluster for cluster in clusters), (child, parent)
    assert stats["dedup"]["clusters"] >= 1 and stats["dedup"]["near"] >= 1


def test_packed_tokens_equal_the_tokenizers_count(demo_corpus: Path, tiny_model: Path):
    from sovforge.model.loading import load_tokenizer

    tokenizer = load_tokenizer(tiny_model)
    meta = packed_meta(demo_corpus)
    for split in ("train", "validation"):
        expected = [t for d in iter_documents(demo_corpus, split) for t in [*tokenizer(d["text"])["input_ids"],
                                                                             tokenizer.eos_token_id]]
        packed = packed_tokens(demo_corpus, split, tokenizer_json=tiny_model / "tokenizer.json")
        assert packed is not None and meta["tokens"][split] == len(expected)
        assert np.array_equal(np.asarray(packed, dtype=np.int64), np.asarray(expected, dtype=np.int64))
    assert packed_tokens(demo_corpus, "train", tokenizer_json=Path(__file__)) is None  # other tokenizer: not used


def test_canaries_planted_only_in_training_documents(demo_corpus: Path):
    canaries = load_canaries(demo_corpus)
    assert len(canaries) == 2
    for canary in canaries:
        hits = [d for d in iter_documents(demo_corpus) if canary in d["text"]]
        assert hits and all(d["split"] == "train" for d in hits)
        assert sum(d["text"].count(canary) for d in hits) == 2  # canary_repeats


def test_workers_2_gives_the_same_documents(demo_corpus: Path, demo_docs, tiny_model: Path, tmp_path: Path):
    from sovforge.ingest.pipeline import run_ingest

    parallel = run_ingest(demo_config(demo_docs[0], tokenizer=tiny_model, workers=2), tmp_path / "w2")
    def view(corpus: Path) -> dict:
        return {d["id"]: (d["text"], d["split"], d["classification"]) for d in iter_documents(corpus)}

    assert view(parallel) == view(demo_corpus)
    assert (parallel / "documents" / "part-00000.jsonl").read_bytes() == \
        (demo_corpus / "documents" / "part-00000.jsonl").read_bytes()
    assert (parallel / "quarantine" / "part-00000.jsonl").read_bytes() == \
        (demo_corpus / "quarantine" / "part-00000.jsonl").read_bytes()
    assert load_artifact(parallel).stats["throughput"]["workers"] == 2
    # Same inputs, same content: the artifact id (a hash of the files) does not depend on workers or timings.
    assert load_artifact(parallel).id == load_artifact(demo_corpus).id


# ------------------------------------------------------------------------------------------- must-show


def test_shared_corpus_clean_text_statutes_pass_languages_right(shared_out: Path):
    kept, quarantined = by_source(shared_out), quarantine_by_source(shared_out)
    statutes = [name for name in kept if name.endswith(("법률.md", "시행령.md", "대통령령.md"))]
    assert len(statutes) == 12
    assert not [name for name in quarantined if name.endswith(("법률.md", "시행령.md", "대통령령.md"))]
    for name in statutes:
        assert kept[name]["lang"] == "ko" and kept[name]["classification"] == "UNCLASSIFIED"
    secrecy = kept["군사기밀보호법__법률.md"]
    assert "Ⅱ급비밀" in secrecy["text"] and secrecy["title"] == "군사기밀 보호법"  # mentions pass untouched
    manual = kept["fm6_22.html"]
    assert manual["lang"] == "en" and manual["title"] == "FM 6-22"
    for markup in ("{", "}", "font-family", "text-indent", "<p", "</", "&nbsp;", "padding-"):
        assert markup not in manual["text"], markup
    assert re.search(r"^3-35\. Another way to identify satisfying goals", manual["text"], re.M)
    assert len(re.findall(r"^\d-\d{1,3}\. ", manual["text"], re.M)) > 300
    assert load_artifact(shared_out).classification.name == "UNCLASSIFIED"


def make_bad_inputs(root: Path) -> Path:
    root.mkdir()
    (root / "good.txt").write_text(STATUTE_A, encoding="utf-8")
    (root / "good_cp949.txt").write_bytes(("훈련 공지: 전 부대원은 금요일 09시까지 연병장에 집합하여 체력검정을 실시한다. "
                                           "준비물은 전투복과 운동화이며 불참자는 사유서를 제출한다. ") .encode("cp949") * 3)
    pdf = make_pdf(root / "log.pdf", PDF_LINES)
    (root / "truncated.pdf").write_bytes(pdf.read_bytes()[: pdf.stat().st_size // 2])
    pdf.unlink()
    make_zip_bomb(root / "bomb.docx", "word/document.xml")
    make_zip_bomb(root / "bomb.hwpx", "Contents/section0.xml")
    (root / "garbage.txt").write_bytes(bytes(range(256)) * 400)
    (root / "legacy.hwp").write_bytes(b"\xd0\xcf\x11\xe0" + bytes(100))
    line = ("대용량 로그 기록입니다. " * 40 + "\n").encode()
    with open(root / "huge.txt", "wb") as fh:  # 200 MB of real text
        block = line * ((1 << 20) // len(line))
        for _ in range(200 * (1 << 20) // len(block) + 1):
            fh.write(block)
    return root


def test_bad_inputs_are_quarantined_and_nothing_else_is_lost(tmp_path: Path):
    import tracemalloc

    from sovforge.ingest.config import IngestConfig
    from sovforge.ingest.pipeline import run_ingest

    root = make_bad_inputs(tmp_path / "in")
    assert (root / "huge.txt").stat().st_size >= 200 << 20
    tracemalloc.start()
    out = run_ingest(IngestConfig(inputs=[root], progress=False), tmp_path / "corpus")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 64 << 20, f"peak {peak >> 20} MiB"
    reasons = {name: row["reason"] for name, row in quarantine_by_source(out).items()}
    assert reasons == {"truncated.pdf": "unreadable:pdf_truncated", "bomb.docx": "unreadable:zip_bomb",
                       "bomb.hwpx": "unreadable:zip_bomb", "garbage.txt": "unreadable:binary",
                       "legacy.hwp": "unsupported_format", "huge.txt": "too_large"}
    assert "HWPX" in quarantine_by_source(out)["legacy.hwp"]["detail"]
    kept = by_source(out)
    assert set(kept) == {"good.txt", "good_cp949.txt"} and kept["good_cp949.txt"]["encoding"] == "cp949"
    assert "체력검정" in kept["good_cp949.txt"]["text"]


# ------------------------------------------------------------------------------------------------- CLI


def test_cli_success_and_clear_failures(tmp_path: Path, demo_docs):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text(STATUTE_A, encoding="utf-8")
    (src / "b.md").write_text("# 군무원 인사 규정\n\n" + STATUTE_B, encoding="utf-8")
    ok = runner.invoke(app, ["ingest", str(src), "--out", str(tmp_path / "c"), "--no-progress", "--val-share", "0.5"])
    assert ok.exit_code == 0, ok.output
    assert str(tmp_path / "c") in ok.output and "2 documents" in ok.output
    rerun = runner.invoke(app, ["ingest", str(src), "--out", str(tmp_path / "c"), "--no-progress"])
    assert rerun.exit_code == 0  # an existing corpus is replaced atomically
    cases = [
        (["ingest", str(tmp_path / "missing"), "--out", str(tmp_path / "x")], "no such file or directory"),
        (["ingest", str(src), "--out", str(tmp_path / "x"), "--max-classification", "PUBLIC"],
         "unknown classification level"),
        (["ingest", str(src), "--out", str(src)], "inside the input"),
        (["ingest", str(src), "--out", str(demo_docs[0])], "not an artifact"),
        (["ingest", str(src), "--out", str(tmp_path / "x"), "--language", "xx"], "unknown ISO 639-1"),
        (["ingest", str(src), "--out", str(tmp_path / "x"), "--executor", "dask"], "executor"),
        (["ingest", str(src), "--out", str(tmp_path / "x"), "--language", "en"], "no document survived"),
        (["ingest", str(src), "--out", str(tmp_path / "x"), "--tokenizer", str(src)], "no tokenizer"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.staging-*"))  # nothing half-written
    config = tmp_path / "ingest.yaml"
    config.write_text(yaml.safe_dump({"ingest": {"min_words": 5, "val_share": 0.5, "bogus": 1}}), encoding="utf-8")
    bad = runner.invoke(app, ["ingest", str(src), "--out", str(tmp_path / "x"), "--config", str(config)])
    assert bad.exit_code == 1 and "bogus: unknown key" in bad.output
    helptext = " ".join(runner.invoke(app, ["ingest", "--help"]).output.replace("│", " ").split())
    assert "default: UNCLASSIFIED" in helptext and "default: 0.05" in helptext and "default: local" in helptext


def test_executor_errors_are_clear(tmp_path: Path):
    import shutil

    from sovforge.ingest.pipeline import IngestError, make_executor

    if shutil.which("sbatch") is None:
        with pytest.raises(IngestError, match="sbatch"):
            make_executor("slurm", [], tasks=2, workers=2, logging_dir=tmp_path / "logs", options={})
    with pytest.raises(IngestError, match="unknown executor"):
        make_executor("dask", [], tasks=1, workers=1, logging_dir=tmp_path / "logs")


# --------------------------------------------------------------------------------------- sovforge run


def test_stage_inside_sovforge_run_packs_with_the_base_tokenizer(tmp_path: Path, sample_text_dir: Path, demo_docs):
    from sovforge.ingest.corpus import tokenizer_sha256

    work = tmp_path / "work"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "t", "workdir": str(work),
        "base": {"text": [str(sample_text_dir)], "preset": "tiny", "vocab_size": 400, "pretrain_steps": 0,
                 "seq_len": 16, "batch_size": 2},
        "ingest": {"inputs": [str(demo_docs[0])], "val_share": 0.1, "progress": False},
    }), encoding="utf-8")
    result = runner.invoke(app, ["run", str(recipe)])
    assert result.exit_code == 0, result.output
    corpus = work / "ingest"
    meta = packed_meta(corpus)
    assert meta["tokenizer_sha256"] == tokenizer_sha256(work / "base" / "tokenizer.json")
    assert packed_tokens(corpus, "train", tokenizer_json=work / "base" / "tokenizer.json") is not None
    again = runner.invoke(app, ["run", str(recipe)])
    assert again.exit_code == 0 and "ingest: unchanged, reusing" in again.output
    edited = sorted(Path(demo_docs[0]).glob("*.txt"))[0]
    stat = edited.stat()
    try:  # a raw document changed (same size, new mtime): ingest must rerun, not reuse
        os.utime(edited, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        rerun = runner.invoke(app, ["run", str(recipe), "--only", "ingest"])
        assert rerun.exit_code == 0 and "ingest: unchanged" not in rerun.output, rerun.output
    finally:
        os.utime(edited, ns=(stat.st_atime_ns, stat.st_mtime_ns))
