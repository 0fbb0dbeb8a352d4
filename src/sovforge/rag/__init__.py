"""rag stage: `sovforge rag index CORPUS --out INDEX`, `sovforge rag query INDEX "question"` (issue 8)."""

from sovforge.rag.grounding import REFUSAL_TEXT, check_citations, grounded_messages, relevant
from sovforge.rag.index import Index, Passage, QueryError, build_index, open_index

__all__ = ["open_index", "grounded_messages", "check_citations", "QueryError", "Passage", "Index", "build_index",
           "relevant", "REFUSAL_TEXT"]
