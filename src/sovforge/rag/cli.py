"""`sovforge rag index CORPUS --out INDEX [--add OLD]` and `sovforge rag query INDEX "question" --k 5 --json`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    rag_app = typer.Typer(help="Retrieval index over a corpus: cited passages filtered by clearance.",
                          no_args_is_help=True)
    app.add_typer(rag_app, name="rag")

    @rag_app.command("index")
    def index_cmd(
        corpus: Annotated[Path, typer.Argument(help="Corpus artifact directory (from `sovforge ingest`).")],
        out: Annotated[Path, typer.Option("--out", help="Output index artifact directory.")],
        add: Annotated[Optional[Path], typer.Option(
            "--add", help="Existing index artifact: write a new version = that index + CORPUS.")] = None,
        max_chunk_chars: Annotated[int, typer.Option(help="Longest chunk in characters.")] = 1200,
        embedding_model: Annotated[Optional[Path], typer.Option(
            help="Local sentence-transformers model dir: adds dense retrieval fused with BM25 (default: BM25 only).")]
        = None,
    ) -> None:
        """Chunk the corpus by structure (articles, numbered paragraphs, headings) and build a BM25 (+ dense) index."""
        from pydantic import ValidationError

        from sovforge.artifacts import LineageError, load_artifact
        from sovforge.cli import fail
        from sovforge.rag.config import RagConfig
        from sovforge.rag.index import build_index

        try:
            cfg = RagConfig(max_chunk_chars=max_chunk_chars, embedding_model=embedding_model)
            path = build_index(corpus, out, cfg, add_to=add, progress=True)
        except (ValidationError, ValueError, FileNotFoundError, LineageError) as exc:
            raise fail(str(exc)) from None
        art = load_artifact(path)
        typer.echo(f"{path}  ({art.stats['chunks']} chunks, {art.stats['documents']} documents; "
                   f"retrieval: {art.config['retrieval']})")

    @rag_app.command("query")
    def query_cmd(
        index: Annotated[Path, typer.Argument(help="Index artifact directory.")],
        question: Annotated[str, typer.Argument(help="Question in Korean or English.")],
        k: Annotated[int, typer.Option("--k", help="Number of passages.")] = 5,
        clearance: Annotated[str, typer.Option(help="Caller's clearance (e.g. UNCLASSIFIED, 대외비, SECRET).")]
        = "UNCLASSIFIED",
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON {results: [...]}.")] = False,
        embedding_model: Annotated[Optional[Path], typer.Option(
            help="Local copy of the index's embedding model, if it moved since indexing.")] = None,
    ) -> None:
        """Search the index; only passages at or below --clearance are considered."""
        from sovforge.artifacts import LineageError
        from sovforge.classification import parse_level
        from sovforge.cli import fail
        from sovforge.rag.index import QueryError, open_index

        try:
            level = parse_level(clearance)
        except (ValueError, KeyError) as exc:
            raise fail(f"unknown clearance {clearance!r}: {exc}") from None
        try:
            passages = open_index(index, embedding_model=embedding_model).search(question, k=k, clearance=level)
        except (QueryError, FileNotFoundError, LineageError, ValueError) as exc:
            raise fail(str(exc)) from None
        if as_json:
            typer.echo(json.dumps({"results": [p.to_dict() for p in passages]}, ensure_ascii=False, indent=2))
            return
        if not passages:
            typer.echo("no passage matched")
        for i, p in enumerate(passages, 1):
            snippet = " ".join(p.text.split())[:200]
            typer.echo(f"[{i}] {p.score:.2f} {p.classification} {p.title or p.source} {p.heading}\n    {snippet}")
