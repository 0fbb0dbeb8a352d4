"""The retrieval index: `sovforge rag index CORPUS --out INDEX [--add]` builds it, `sovforge rag query` searches it.

Storage is one SQLite file (`index.sqlite`) with an FTS5 table over OUR analyzer's tokens (kiwipiepy morphemes /
Porter stems, see analyzer.py) ranked by SQLite's built-in bm25(). The chunk's classification level is an UNINDEXED
column of the same FTS table and is compared in the WHERE clause, so a chunk above the caller's clearance is never
scored into the results (not filtered afterwards).
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from sovforge.classification import Level, parse_level
from sovforge.ingest.corpus import CorpusError, iter_documents
from sovforge.rag.analyzer import TOKENIZER_NAME, analyze, has_searchable_text
from sovforge.rag.chunking import Chunk, chunk_document
from sovforge.rag.config import RagConfig

INDEX_FILE = "index.sqlite"
MAX_QUERY_CHARS = 2000
MAX_K = 100
SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
  rowid INTEGER PRIMARY KEY, chunk_id TEXT UNIQUE NOT NULL, doc_id TEXT NOT NULL, source TEXT, title TEXT,
  heading TEXT, text TEXT NOT NULL, span_start INTEGER, span_end INTEGER, position INTEGER,
  classification TEXT NOT NULL, level INTEGER NOT NULL, corpus_id TEXT);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(tokens, level UNINDEXED, tokenize='unicode61 remove_diacritics 0');
"""


class QueryError(ValueError):
    """A query the index refuses (empty, too long, no searchable script, bad k); message is fit for an HTTP 4xx."""


@dataclass
class Passage:
    """One search result; `span` is (start, end) character offsets into the source document's text."""

    doc_id: str
    source: str
    text: str
    score: float
    classification: str
    chunk_id: str
    span: tuple[int, int]
    title: str
    heading: str = ""
    lexical_score: float | None = None
    """BM25 score of the passage for this query (None: the lexical retriever did not return it)."""
    dense_score: float | None = None
    """Cosine similarity to the query (None: lexical-only index, or not among the dense candidates)."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["span"] = list(self.span)
        return out


def iter_corpus_documents(corpus_dir: Path, splits: Iterable[str] | None = None) -> Iterator[dict]:
    """Documents of a corpus artifact in the given splits (all when None)."""
    wanted = set(splits) if splits else None
    try:
        for doc in iter_documents(corpus_dir):
            if wanted is None or doc.get("split", "train") in wanted:
                yield doc
    except CorpusError as exc:
        raise FileNotFoundError(str(exc)) from None


def _level_of(name: str) -> Level:
    try:
        return parse_level(name)
    except (ValueError, KeyError):
        # An unknown label must not lower protection: treat it as the highest level.
        return Level.TOP_SECRET


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path))
    db.executescript(SCHEMA)
    return db


def add_corpus(db: sqlite3.Connection, corpus_dir: Path, corpus_id: str, cfg: RagConfig,
               new_chunks: list[tuple[int, int, str]] | None = None) -> dict[str, int]:
    """Chunk and insert every document of a corpus not already indexed (by doc_id); returns counts.

    `new_chunks`, when given, receives (rowid, level, text to embed) of every inserted chunk.
    """
    known = {row[0] for row in db.execute("SELECT DISTINCT doc_id FROM chunks")}
    docs = chunks = skipped = 0
    for doc in iter_corpus_documents(corpus_dir, cfg.splits):
        if doc["id"] in known:
            skipped += 1
            continue
        known.add(doc["id"])
        docs += 1
        for chunk in chunk_document(doc, max_chars=cfg.max_chunk_chars, min_chars=cfg.min_chunk_chars):
            rowid = _insert(db, chunk, corpus_id)
            if new_chunks is not None:
                new_chunks.append((rowid, int(_level_of(chunk.classification)), _embedding_text(chunk)))
            chunks += 1
    db.commit()
    return {"documents": docs, "chunks": chunks, "skipped_duplicate_documents": skipped}


def _embedding_text(chunk: Chunk) -> str:
    return f"{chunk.title} {chunk.heading}\n{chunk.text}".strip()


def _insert(db: sqlite3.Connection, chunk: Chunk, corpus_id: str) -> int:
    level = int(_level_of(chunk.classification))
    cur = db.execute(
        "INSERT INTO chunks (chunk_id, doc_id, source, title, heading, text, span_start, span_end, position,"
        " classification, level, corpus_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (chunk.chunk_id, chunk.doc_id, chunk.source, chunk.title, chunk.heading, chunk.text, chunk.span[0],
         chunk.span[1], chunk.position, Level(level).name, level, corpus_id))
    # The title and heading are indexed with the body: questions often name the statute or the article title.
    tokens = analyze(f"{chunk.title}\n{chunk.heading}\n{chunk.text}")
    db.execute("INSERT INTO chunks_fts (rowid, tokens, level) VALUES (?,?,?)", (cur.lastrowid, " ".join(tokens), level))
    return int(cur.lastrowid)


def _embedding_config(cfg: RagConfig, old: Any) -> dict[str, str] | None:
    """The embedding model of the new index version; an --add must keep the old index's model."""
    from sovforge.rag.dense import embedder_identity

    old_model = (old.config.get("embedding_model") if old is not None else None) or None
    if cfg.embedding_model is None:
        if old_model:
            raise ValueError(f"index {old.path} was built with embedding model {old_model['path']}; pass the same "
                             f"--embedding-model to add to it")
        return None
    identity = embedder_identity(Path(cfg.embedding_model))
    if old is not None and (not old_model or old_model["content_id"] != identity["content_id"]):
        built = f"with {old_model['path']}" if old_model else "without an embedding model"
        raise ValueError(f"index {old.path} was built {built}; an --add must use the same model "
                         f"(got {cfg.embedding_model})")
    return identity


def build_index(corpus: str | Path, out: str | Path, cfg: RagConfig | None = None, *,
                add_to: str | Path | None = None, progress: bool = False) -> Path:
    """Write a kind "index" artifact over `corpus`; with `add_to`, a new version = old index + this corpus."""
    from sovforge.artifacts import build_artifact, load_artifact, open_input
    from sovforge.rag import dense

    cfg = cfg or RagConfig()
    corpus_art = open_input(corpus, kind="corpus")
    inputs = [corpus_art]
    old = None
    if add_to is not None:
        old = load_artifact(add_to, kind="index")
        inputs.insert(0, old)
    embedding = _embedding_config(cfg, old)
    embedder = dense.load_embedder(str(cfg.embedding_model)) if embedding else None  # fail before any work
    with build_artifact(out, kind="index") as staging:
        db_path = Path(staging.path) / INDEX_FILE
        if old is not None:
            shutil.copyfile(old.path / INDEX_FILE, db_path)
            for name in (dense.EMBEDDINGS_FILE, dense.ROWS_FILE, dense.LEVELS_FILE):
                if (old.path / name).exists():
                    shutil.copyfile(old.path / name, Path(staging.path) / name)
        db = _connect(db_path)
        new_chunks: list[tuple[int, int, str]] = []
        try:
            counts = add_corpus(db, corpus_art.path, corpus_art.id, cfg, new_chunks)
            total_chunks, total_docs = db.execute("SELECT COUNT(*), COUNT(DISTINCT doc_id) FROM chunks").fetchone()
            top = db.execute("SELECT MAX(level) FROM chunks").fetchone()[0]
            corpora = [r[0] for r in db.execute("SELECT DISTINCT corpus_id FROM chunks")]
            db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('optimize')")
            db.commit()
        finally:
            db.close()
        if embedder is not None:
            vectors = dense.encode(embedder, [text for _, _, text in new_chunks], cfg.embed_batch_size, progress)
            dense.write_embeddings(Path(staging.path), [r for r, _, _ in new_chunks], [lv for _, lv, _ in new_chunks],
                                   vectors)
        retrieval = ("hybrid: BM25 + dense cosine, reciprocal rank fusion" if embedding
                     else "lexical only (BM25); no dense embedding model")
        staging.finish(
            inputs=inputs,
            config={**cfg.model_dump(mode="json"), "tokenizer": TOKENIZER_NAME, "ranking": "sqlite-fts5-bm25",
                    "retrieval": retrieval, "embedding_model": embedding,
                    "added_to": old.id if old is not None else None},
            classification=Level(top) if top is not None else None,
            stats={"chunks": total_chunks, "documents": total_docs, "corpus_ids": corpora, "added": counts,
                   "embedded_chunks": len(new_chunks) if embedding else 0})
    return Path(out)


Translator = Callable[[str], str | None]
"""Turns a query into the other language (e.g. the served model prompted to translate); None = no translation."""


class Index:
    """An opened index artifact; `search` is safe to call from several threads (one connection per call)."""

    def __init__(self, path: Path, manifest: dict[str, Any], embedding_model: Path | None = None):
        self.path = path
        self.manifest = manifest
        self._db_path = path / INDEX_FILE
        config = manifest.get("config", {})
        self.candidates = int(config.get("candidates", 50))
        self.fusion_k = int(config.get("fusion_k", 60))
        self.expand_terms = bool(config.get("expand_terms", True))
        # Relevance thresholds of grounded answers (rag.grounding.relevant), as configured when the index was built.
        self.min_score = float(config.get("min_score", 1.0))
        self.min_similarity = float(config.get("min_similarity", 0.5))
        self.dense = None
        recorded = config.get("embedding_model")
        if recorded:
            from sovforge.rag.dense import DenseSearcher, EmbeddingModelError, embedder_identity

            model = Path(embedding_model or recorded["path"])
            if not model.is_dir():
                raise FileNotFoundError(f"index {path} needs its embedding model {recorded['path']}, which is not "
                                        f"here; pass its local copy (--embedding-model DIR)")
            if embedder_identity(model)["content_id"] != recorded["content_id"]:
                raise EmbeddingModelError(f"{model} is not the embedding model this index was built with "
                                          f"(content id differs from {recorded['content_id'][:12]})")
            self.dense = DenseSearcher(path, model)

    @property
    def id(self) -> str:
        return self.manifest.get("id", "")

    @property
    def retrieval(self) -> str:
        return "hybrid (BM25 + dense)" if self.dense is not None else "lexical only (BM25)"

    def search(self, query: str, k: int = 5, clearance: Level | str = Level.UNCLASSIFIED, *,
               translate: Translator | None = None) -> list[Passage]:
        """Top-k passages among chunks at or below `clearance`; raises QueryError for unusable queries.

        Lexical: BM25 over the query's tokens, plus (cross-lingual) the glossary's other-language terms and the
        tokens of `translate(query)` when given. Dense (when the index has vectors): cosine similarity of the query.
        With more than one ranking they are fused by reciprocal rank fusion; `score` is then the fused score, and
        `lexical_score` / `dense_score` keep each retriever's own figure.
        """
        tokens = validate_query(query, k)
        try:
            level = int(clearance if isinstance(clearance, Level) else parse_level(clearance))
        except (ValueError, KeyError) as exc:
            raise QueryError(f"unknown clearance {clearance!r}: {exc}") from None
        queries = [query]
        if translate is not None:
            translated = (translate(query) or "").strip()[:MAX_QUERY_CHARS]
            if translated and translated != query and has_searchable_text(translated):
                queries.append(translated)
                tokens = tokens + analyze(translated)
        if self.expand_terms:
            from sovforge.rag.crosslingual import expand

            tokens = tokens + expand(" ".join(queries))
        n = max(k, self.candidates) if self.dense is not None else k
        lexical = self._lexical(tokens, level, n)
        rankings = [[rowid for rowid, _ in lexical]]
        dense_scores: dict[int, float] = {}
        if self.dense is not None:
            for q in queries:
                hits = self.dense.search(q, level, n)
                rankings.append([rowid for rowid, _ in hits])
                for rowid, sim in hits:
                    dense_scores[rowid] = max(sim, dense_scores.get(rowid, -1.0))
        lexical_scores = dict(lexical)
        if len(rankings) == 1:
            order = [(rowid, score) for rowid, score in lexical[:k]]
        else:
            from sovforge.rag.dense import reciprocal_rank_fusion

            fused = reciprocal_rank_fusion(rankings, self.fusion_k)
            order = sorted(fused.items(), key=lambda item: -item[1])[:k]
        return self._passages(order, level, lexical_scores, dense_scores)

    def _lexical(self, tokens: list[str], level: int, n: int) -> list[tuple[int, float]]:
        """(rowid, BM25 score) best first, among chunks at or below `level` — the level is part of the query."""
        match = " OR ".join('"' + t.replace('"', '""') + '"' for t in dict.fromkeys(tokens))
        db = sqlite3.connect(f"file:{self._db_path}?mode=ro", uri=True)
        try:
            return [(int(r[0]), float(r[1])) for r in db.execute(
                "SELECT rowid, -bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ? AND level <= ?"
                " ORDER BY bm25(chunks_fts) LIMIT ?", (match, level, n))]
        finally:
            db.close()

    def _passages(self, order: list[tuple[int, float]], level: int, lexical: dict[int, float],
                  dense_scores: dict[int, float]) -> list[Passage]:
        if not order:
            return []
        db = sqlite3.connect(f"file:{self._db_path}?mode=ro", uri=True)
        try:
            marks = ",".join("?" * len(order))
            rows = {r[0]: r[1:] for r in db.execute(
                "SELECT rowid, doc_id, source, text, classification, chunk_id, span_start, span_end, title, heading"
                f" FROM chunks WHERE rowid IN ({marks}) AND level <= ?", (*[rowid for rowid, _ in order], level))}
        finally:
            db.close()
        out = []
        for rowid, score in order:
            if rowid not in rows:  # belt and braces: both retrievers already filtered by level
                continue
            r = rows[rowid]
            out.append(Passage(doc_id=r[0], source=r[1], text=r[2], score=float(score), classification=r[3],
                               chunk_id=r[4], span=(r[5], r[6]), title=r[7], heading=r[8],
                               lexical_score=lexical.get(rowid), dense_score=dense_scores.get(rowid)))
        return out


def validate_query(query: str, k: int = 5) -> list[str]:
    """Check a query cheaply BEFORE analysing it; return its search tokens."""
    if not isinstance(query, str) or not query.strip():
        raise QueryError("query is empty")
    if len(query) > MAX_QUERY_CHARS:
        raise QueryError(f"query is {len(query)} characters; the limit is {MAX_QUERY_CHARS}")
    if not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise QueryError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    if not has_searchable_text(query):
        raise QueryError("query has no Korean, English or digit characters; only Korean and English are supported")
    tokens = analyze(query)
    if not tokens:
        raise QueryError("query has no searchable words (only stop words or particles)")
    return tokens


def open_index(index_dir: str | Path, *, embedding_model: str | Path | None = None) -> Index:
    """Open a kind "index" artifact; a hybrid index also loads its embedding model (`embedding_model` overrides
    the recorded path, e.g. after copying the index to another machine — the model's content id must match)."""
    from sovforge.artifacts import load_artifact

    art = load_artifact(index_dir, kind="index")
    if not (art.path / INDEX_FILE).is_file():
        raise FileNotFoundError(f"{art.path} has no {INDEX_FILE}")
    return Index(art.path, art.manifest, Path(embedding_model) if embedding_model else None)
