"""Dense + fused retrieval and cross-lingual expansion: `.venv/bin/python -m pytest -q tests/rag -p no:cacheprovider`.

The embedding model is built here (1-layer BERT, hidden 32, random weights, the tiny base's tokenizer): it proves the
plumbing — vectors stored, clearance applied before scoring, fusion, model identity checks — not retrieval quality,
which bench/retrieve.py measures with a real model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sovforge.artifacts import load_artifact
from sovforge.classification import Level
from sovforge.rag import open_index
from sovforge.rag.config import RagConfig
from sovforge.rag.crosslingual import expand, load_glossary, translations
from sovforge.rag.dense import EMBEDDINGS_FILE, EmbeddingModelError, read_embeddings, reciprocal_rank_fusion
from sovforge.rag.grounding import relevant
from sovforge.rag.index import build_index
from tests.conftest import write_corpus_artifact

DOCS = [
    ("counsel", "3-35. Counseling is the process used by leaders to review a subordinate's performance and potential.",
     "UNCLASSIFIED"),
    ("promo", "제21조(진급) 장교의 진급은 진급심사위원회의 심의를 거쳐 국방부장관이 결정한다.", "UNCLASSIFIED"),
    ("secret", "3-99. The counseling codeword for Operation Nightfall is AZURE HERON.", "SECRET"),
]


def _corpus(path: Path, docs=DOCS) -> Path:
    return write_corpus_artifact(path, [{"id": doc_id, "text": text, "source": f"/src/{doc_id}.md",
                                         "classification": level, "title": doc_id} for doc_id, text, level in docs],
                                 stats={})


@pytest.fixture(scope="module")
def embedder(tmp_path_factory, tiny_model: Path) -> Path:
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel

    from sovforge.model.loading import load_tokenizer

    root = tmp_path_factory.mktemp("embedder")
    tokenizer = load_tokenizer(tiny_model)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=256)).save_pretrained(root / "bert")
    tokenizer.save_pretrained(root / "bert")
    word = models.Transformer(str(root / "bert"), max_seq_length=128)
    SentenceTransformer(modules=[word, models.Pooling(word.get_embedding_dimension(), "mean")],
                        device="cpu").save(str(root / "st"))
    return root / "st"


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory, embedder: Path) -> Path:
    root = tmp_path_factory.mktemp("hybrid")
    return build_index(_corpus(root / "corpus"), root / "index", RagConfig(embedding_model=embedder))


def test_hybrid_index_stores_unit_vectors_and_records_the_model(hybrid: Path, embedder: Path):
    art = load_artifact(hybrid, kind="index")
    assert art.config["retrieval"].startswith("hybrid") and art.config["embedding_model"]["path"] == str(embedder)
    rows, levels, vectors = read_embeddings(hybrid)
    assert vectors.shape == (3, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert sorted(levels.tolist()) == [0, 0, int(Level.SECRET)] and art.stats["embedded_chunks"] == 3


def test_dense_never_scores_a_chunk_above_clearance(hybrid: Path):
    index = open_index(hybrid)
    # The dense retriever alone proposes candidates for every query; the SECRET chunk must never be among them.
    assert all(rowid != 3 for rowid, _ in index.dense.search("AZURE HERON codeword Nightfall", 0, 10))
    for query in ("AZURE HERON codeword Nightfall", "counseling", "진급"):
        passages = index.search(query, k=5, clearance=Level.UNCLASSIFIED)
        assert "secret" not in {p.doc_id for p in passages}
        assert all(p.dense_score is not None for p in passages)  # every visible chunk is a dense candidate
    top = index.search("AZURE HERON codeword", k=5, clearance=Level.SECRET)
    assert top[0].doc_id == "secret" and top[0].lexical_score is not None


def test_rrf_fuses_rankings():
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1]], k=60)
    assert max(fused, key=fused.get) == 1 and fused[3] > fused[2]
    assert fused[1] == pytest.approx(1 / 61 + 1 / 62)


def test_model_identity_is_checked(hybrid: Path, tmp_path: Path, embedder: Path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(embedder, other)
    weights = next(other.rglob("model.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    with pytest.raises(EmbeddingModelError, match="not the embedding model"):
        open_index(hybrid, embedding_model=other)
    moved = tmp_path / "moved"
    shutil.copytree(embedder, moved)
    assert open_index(hybrid, embedding_model=moved).search("counseling", k=1)  # a same-content copy works
    with pytest.raises(ValueError, match="same --embedding-model"):
        build_index(_corpus(tmp_path / "c2"), tmp_path / "i2", RagConfig(), add_to=hybrid)


def test_incremental_add_embeds_only_new_chunks(hybrid: Path, tmp_path: Path, embedder: Path):
    extra = _corpus(tmp_path / "c3", DOCS + [("new", "3-40. Mentorship is voluntary and developmental.", "UNCLASSIFIED")])
    out = build_index(extra, tmp_path / "i3", RagConfig(embedding_model=embedder), add_to=hybrid)
    art = load_artifact(out, kind="index")
    assert art.stats["embedded_chunks"] == 1 and read_embeddings(out)[2].shape == (4, 32)
    assert (out / EMBEDDINGS_FILE).exists()


def test_bad_embedding_model_dirs(tmp_path: Path, tiny_model: Path):
    corpus = _corpus(tmp_path / "c")
    with pytest.raises(ValueError, match="modules.json"):  # a causal LM is not a sentence-transformers model
        build_index(corpus, tmp_path / "i", RagConfig(embedding_model=tiny_model))
    assert not (tmp_path / "i").exists()
    from sovforge.cli import app

    result = CliRunner().invoke(app, ["rag", "index", str(corpus), "--out", str(tmp_path / "i"),
                                      "--embedding-model", str(tmp_path)])
    assert result.exit_code == 1 and "config.json" in result.output and not (tmp_path / "i").exists()


def test_glossary_translates_both_ways():
    assert {"counseling", "mentoring"} <= set(translations("상담과 멘토링의 차이는 무엇인가?"))
    assert "진급" in translations("How is an officer's promotion decided?")
    # A phrase wins over its words; English matches on Porter stems, so inflections match but other words do not.
    assert translations("leader development programs") == ["리더 개발", "리더십 개발"]  # not also 리더, 지도자, ...
    assert translations("counselor") == []  # "counselor" stems to counselor, not counsel
    assert expand("no glossary term here") == []
    assert len(load_glossary()) > 100


def test_cross_lingual_query_finds_other_language_passage(tmp_path: Path):
    index = open_index(build_index(_corpus(tmp_path / "c"), tmp_path / "i"))
    assert index.search("리더는 부하를 어떻게 상담하나요?", k=1)[0].doc_id == "counsel"
    assert index.search("How are officers promoted?", k=1)[0].doc_id == "promo"
    off = RagConfig(expand_terms=False)
    plain = open_index(build_index(_corpus(tmp_path / "c2"), tmp_path / "i2", off))
    assert plain.search("리더는 부하를 어떻게 상담하나요?", k=1) == [] or \
        plain.search("리더는 부하를 어떻게 상담하나요?", k=1)[0].doc_id != "counsel"


def test_translate_hook_adds_the_translated_query(tmp_path: Path):
    index = open_index(build_index(_corpus(tmp_path / "c"), tmp_path / "i", RagConfig(expand_terms=False)))
    asked = []

    def translate(query: str) -> str:  # stands in for the served model prompted to translate the query
        asked.append(query)
        return "counseling performance"

    assert index.search("수행 검토 절차", k=1, translate=translate)[0].doc_id == "counsel" and asked


def test_relevance_uses_each_retrievers_own_score(hybrid: Path):
    # BM25 on a 3-document corpus scores low (idf of a term in 1 of 3 documents is ln(2.5/1.5) ≈ 0.51).
    passages = open_index(hybrid).search("subordinate performance potential", k=3)
    kept = relevant(passages, min_score=0.5, min_similarity=1.01)  # dense threshold unreachable: lexical decides
    assert [p.doc_id for p in kept] == ["counsel"] and kept[0].lexical_score >= 0.5
    assert relevant(passages, min_score=1e9, min_similarity=-1.0) == passages  # dense decides alone


def test_preflight_lists_the_embedding_model(tmp_path: Path):
    from sovforge.config import parse_recipe
    from sovforge.preflight import preflight

    recipe = parse_recipe({"rag": {"embedding_model": str(tmp_path / "no-such-model")}})
    _, missing = preflight(recipe)
    assert any("embedding model" in line and "no-such-model" in line for line in missing)
