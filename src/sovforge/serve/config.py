"""Config of `sovforge serve` (issue 7 fills this in)."""

from __future__ import annotations

from sovforge._config_base import StrictModel


class ServeConfig(StrictModel):
    """`sovforge serve`: the audited, clearance-aware OpenAI-compatible gateway."""

    host: str = "127.0.0.1"
    """Interface to bind; loopback unless you mean it."""
    port: int = 8000
    """TCP port."""
