"""The retrieval index: `sovforge rag index CORPUS --out INDEX [--add]` builds it, `sovforge rag query` searches it.

Storage is one SQLite file (`index.sqlite`) with an FTS5 table over OUR analyzer's tokens (kiwipiepy morphemes /
Porter stems, see analyzer.py) ranked by SQLite's built-in bm25(). The chunk's classification level is an UNINDEXED
column of the same FTS table and is compared in the WHERE clause, so a chunk above the caller's clearance is never
scored into the results (not filtered afterwards).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

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


def add_corpus(db: sqlite3.Connection, corpus_dir: Path, corpus_id: str, cfg: RagConfig) -> dict[str, int]:
    """Chunk and insert every document of a corpus not already indexed (by doc_id); returns counts."""
    known = {row[0] for row in db.execute("SELECT DISTINCT doc_id FROM chunks")}
    docs = chunks = skipped = 0
    for doc in iter_corpus_documents(corpus_dir, cfg.splits):
        if doc["id"] in known:
            skipped += 1
            continue
        known.add(doc["id"])
        docs += 1
        for chunk in chunk_document(doc, max_chars=cfg.max_chunk_chars, min_chars=cfg.min_chunk_chars):
            _insert(db, chunk, corpus_id)
            chunks += 1
    db.commit()
    return {"documents": docs, "chunks": chunks, "skipped_duplicate_documents": skipped}


def _insert(db: sqlite3.Connection, chunk: Chunk, corpus_id: str) -> None:
    level = int(_level_of(chunk.classification))
    cur = db.execute(
        "INSERT INTO chunks (chunk_id, doc_id, source, title, heading, text, span_start, span_end, position,"
        " classification, level, corpus_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (chunk.chunk_id, chunk.doc_id, chunk.source, chunk.title, chunk.heading, chunk.text, chunk.span[0],
         chunk.span[1], chunk.position, Level(level).name, level, corpus_id))
    # The title and heading are indexed with the body: questions often name the statute or the article title.
    tokens = analyze(f"{chunk.title}\n{chunk.heading}\n{chunk.text}")
    db.execute("INSERT INTO chunks_fts (rowid, tokens, level) VALUES (?,?,?)", (cur.lastrowid, " ".join(tokens), level))


def build_index(corpus: str | Path, out: str | Path, cfg: RagConfig | None = None, *,
                add_to: str | Path | None = None) -> Path:
    """Write a kind "index" artifact over `corpus`; with `add_to`, a new version = old index + this corpus."""
    from sovforge.artifacts import build_artifact, load_artifact, open_input

    cfg = cfg or RagConfig()
    corpus_art = open_input(corpus, kind="corpus")
    inputs = [corpus_art]
    old = None
    if add_to is not None:
        old = load_artifact(add_to, kind="index")
        inputs.insert(0, old)
    with build_artifact(out, kind="index") as staging:
        db_path = Path(staging.path) / INDEX_FILE
        if old is not None:
            shutil.copyfile(old.path / INDEX_FILE, db_path)
        db = _connect(db_path)
        try:
            counts = add_corpus(db, corpus_art.path, corpus_art.id, cfg)
            total_chunks, total_docs = db.execute("SELECT COUNT(*), COUNT(DISTINCT doc_id) FROM chunks").fetchone()
            top = db.execute("SELECT MAX(level) FROM chunks").fetchone()[0]
            corpora = [r[0] for r in db.execute("SELECT DISTINCT corpus_id FROM chunks")]
            db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('optimize')")
            db.commit()
        finally:
            db.close()
        staging.finish(
            inputs=inputs,
            config={**cfg.model_dump(mode="json"), "tokenizer": TOKENIZER_NAME, "ranking": "sqlite-fts5-bm25",
                    "retrieval": "lexical only (BM25); no dense embedding model",
                    "added_to": old.id if old is not None else None},
            classification=Level(top) if top is not None else None,
            stats={"chunks": total_chunks, "documents": total_docs, "corpus_ids": corpora, "added": counts})
    return Path(out)


class Index:
    """An opened index artifact; `search` is safe to call from several threads (one connection per call)."""

    def __init__(self, path: Path, manifest: dict[str, Any]):
        self.path = path
        self.manifest = manifest
        self._db_path = path / INDEX_FILE

    @property
    def id(self) -> str:
        return self.manifest.get("id", "")

    def search(self, query: str, k: int = 5, clearance: Level | str = Level.UNCLASSIFIED) -> list[Passage]:
        """Top-k passages by BM25 among chunks at or below `clearance`; raises QueryError for unusable queries."""
        tokens = validate_query(query, k)
        try:
            level = int(clearance if isinstance(clearance, Level) else parse_level(clearance))
        except (ValueError, KeyError) as exc:
            raise QueryError(f"unknown clearance {clearance!r}: {exc}") from None
        match = " OR ".join('"' + t.replace('"', '""') + '"' for t in dict.fromkeys(tokens))
        db = sqlite3.connect(f"file:{self._db_path}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT c.doc_id, c.source, c.text, -bm25(chunks_fts) AS score, c.classification, c.chunk_id,"
                " c.span_start, c.span_end, c.title, c.heading FROM chunks_fts JOIN chunks c ON c.rowid = chunks_fts.rowid"
                " WHERE chunks_fts MATCH ? AND chunks_fts.level <= ? ORDER BY bm25(chunks_fts) LIMIT ?",
                (match, level, k)).fetchall()
        finally:
            db.close()
        return [Passage(doc_id=r[0], source=r[1], text=r[2], score=float(r[3]), classification=r[4], chunk_id=r[5],
                        span=(r[6], r[7]), title=r[8], heading=r[9]) for r in rows]


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


def open_index(index_dir: str | Path) -> Index:
    """Open a kind "index" artifact (signature/manifest checked by load_artifact)."""
    from sovforge.artifacts import load_artifact

    art = load_artifact(index_dir, kind="index")
    if not (art.path / INDEX_FILE).is_file():
        raise FileNotFoundError(f"{art.path} has no {INDEX_FILE}")
    return Index(art.path, art.manifest)
