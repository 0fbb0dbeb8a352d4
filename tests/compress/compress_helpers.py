"""Helpers of the compress tests: corpus artifacts cut from the shared Korean defence statutes, and variant recipes
sized for the 2-layer hidden-64 test model."""

from __future__ import annotations

import re
from pathlib import Path



def statute_chunks(corpus_dir: Path, max_chars: int = 1500, limit_files: int | None = None) -> list[tuple[str, str]]:
    """(id, text) chunks of the Korean statutes, cut at article boundaries (제N조) into ~max_chars pieces."""
    chunks = []
    files = sorted((corpus_dir / "ko-defense-law").glob("*.md"))[:limit_files]
    for path in files:
        text = path.read_text(encoding="utf-8")
        articles = re.split(r"(?=\n제\d+조)", text)
        piece = ""
        for article in articles:
            if len(piece) + len(article) > max_chars and piece:
                chunks.append((f"{path.stem}#{len(chunks)}", piece.strip()))
                piece = ""
            piece += article
        if piece.strip():
            chunks.append((f"{path.stem}#{len(chunks)}", piece.strip()))
    return chunks


def write_corpus(out: Path, docs: list[tuple[str, str]], validation_every: int = 8,
                 classification: str = "UNCLASSIFIED") -> Path:
    """A corpus artifact (documents/*.jsonl, DESIGN.md §3): every `validation_every`-th document is validation."""
    from tests.conftest import write_corpus_artifact

    rows = [{"id": doc_id, "text": text, "source": doc_id.split("#")[0],
             "split": "validation" if n % validation_every == validation_every - 1 else "train"}
            for n, (doc_id, text) in enumerate(docs)]
    return write_corpus_artifact(out, rows, classification=classification, config={"test": True})


# Test-model-sized recipes: hidden 64 → group_size 32 (the W4A16 preset's 128 does not divide 64).
W4A16_G32 = {"name": "w4a16", "modifiers": [{"GPTQModifier": {"ignore": ["lm_head"], "config_groups": {"group_0": {
    "targets": ["Linear"], "weights": {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group",
                                       "group_size": 32}}}}}]}
SPARSE24 = {"name": "sparse24", "modifiers": [{"SparseGPTModifier": {"sparsity": 0.5, "mask_structure": "2:4",
                                                                      "targets": ["Linear"], "ignore": ["lm_head"]}}]}
