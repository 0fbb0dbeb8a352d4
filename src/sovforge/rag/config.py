"""Config of the `rag` stage (issue 8 fills this in)."""

from __future__ import annotations

from sovforge._config_base import StrictModel


class RagConfig(StrictModel):
    """`sovforge rag index`: a retrieval index over a corpus artifact."""
