"""Grounded-answer helpers used by `sovforge serve` for `"retrieval": true` chat (and `sovforge rag query --prompt`).

`grounded_messages` numbers the passages [1]..[n] in the system prompt and tells the model to cite them;
`check_citations` keeps only [n] markers that point at a passage that was actually given.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from sovforge.rag.index import Passage

CITATION_RE = re.compile(r"\[(\d{1,3})\]")
REFUSAL_TEXT = ("I could not find this in the indexed documents, so I cannot answer it from them. "
                "(색인된 문서에서 관련 내용을 찾지 못해 답변할 수 없습니다.)")
SYSTEM_TEMPLATE = (
    "Answer the question using ONLY the numbered passages below. After each statement cite the passage it comes "
    "from as [n]. If the passages do not contain the answer, reply exactly: {refusal}\n"
    "Answer in the language of the question.\n\nPassages:\n{passages}")
PASSAGE_CHARS = 1500


def relevant(passages: Sequence[Passage], min_score: float = 1.0, min_similarity: float = 0.5) -> list[Passage]:
    """Passages whose BM25 score reaches `min_score` (below it a match is a few common words, not an answer) or
    whose dense cosine similarity reaches `min_similarity`."""
    return [p for p in passages if (p.lexical_score is not None and p.lexical_score >= min_score)
            or (p.dense_score is not None and p.dense_score >= min_similarity)]


def grounded_messages(question: str, passages: Sequence[Passage], history: list[dict] | None = None,
                      *, min_score: float = 1.0, min_similarity: float = 0.5) -> list[dict[str, str]]:
    """Chat messages for a grounded answer. With no relevant passage, the system prompt tells the model to refuse."""
    # Number ALL given passages (so check_citations(answer, passages) uses the same numbering); refuse only when
    # none of them is relevant.
    kept = list(passages) if relevant(passages, min_score, min_similarity) else []
    if kept:
        body = "\n\n".join(f"[{i}] ({p.title or p.source}{' - ' + p.heading if p.heading else ''})\n{p.text[:PASSAGE_CHARS]}"
                           for i, p in enumerate(kept, 1))
    else:
        body = "(none found)"
    messages = [{"role": "system", "content": SYSTEM_TEMPLATE.format(refusal=REFUSAL_TEXT, passages=body)}]
    messages += [m for m in (history or []) if m.get("role") in ("user", "assistant")]
    messages.append({"role": "user", "content": question})
    return messages


def check_citations(answer_text: str, passages: Sequence[Passage]) -> tuple[str, list[dict[str, Any]]]:
    """Drop [n] markers that do not name a given passage; return (clean answer, citations of the valid ones).

    Each citation: {"n", "doc_id", "source", "chunk_id", "span", "title", "classification"}. An answer that cites
    nothing valid gets no citations (the caller decides whether to flag it).
    """
    cited: dict[int, dict[str, Any]] = {}

    def keep_or_drop(match: re.Match) -> str:
        n = int(match.group(1))
        if 1 <= n <= len(passages):
            p = passages[n - 1]
            cited.setdefault(n, {"n": n, "doc_id": p.doc_id, "source": p.source, "chunk_id": p.chunk_id,
                                 "span": list(p.span), "title": p.title, "classification": p.classification})
            return match.group(0)
        return ""

    cleaned = CITATION_RE.sub(keep_or_drop, answer_text)
    cleaned = re.sub(r"[ \t]{2,}", " ", cleaned).strip()
    return cleaned, [cited[n] for n in sorted(cited)]
