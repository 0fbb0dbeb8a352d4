"""Config of `sovforge serve` (`sovforge serve MODEL ...` builds one of these from its options)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from sovforge._config_base import StrictModel


class ServeConfig(StrictModel):
    """`sovforge serve`: the audited, clearance-aware OpenAI-compatible gateway."""

    model: Path | None = None
    """Model artifact (or local HF checkpoint) to serve."""
    host: str = "127.0.0.1"
    """Interface to bind; loopback unless you mean it."""
    port: int = 8000
    """TCP port."""
    db: str | None = None
    """SQLAlchemy URL for keys + audit log; default sqlite file under the state dir. PostgreSQL: postgresql+psycopg://..."""
    table_prefix: str = "sf_"
    """Prefix of every table name (lets several gateways, or test runs, share one database)."""
    state_dir: Path | None = None
    """Where the SQLite file and the key pepper live; default $SOVFORGE_HOME/serve."""
    backend: Literal["transformers", "transformers-process", "vllm"] = "transformers"
    """Generation backend: transformers (CPU/GPU, batched), the same in its own process (the model's decoding does
    not share the gateway's interpreter), or vllm (needs CUDA and vllm installed)."""
    device: str | None = None
    """Torch device for the transformers backend; default cuda when available, else cpu."""
    max_batch_size: int = 8
    """Most concurrent requests merged into one `generate` call."""
    batch_wait_ms: float = 5.0
    """The batcher starts a batch once no request has arrived for this long (at most 3 such gaps after the first)."""
    report: Path | None = None
    """Evaluation report artifact; the served model must be its promoted candidate."""
    force_unpromoted: bool = False
    """Serve even without a report or with an unpromoted model (logged loudly)."""
    index: Path | None = None
    """RAG index artifact for /v1/retrieve and "retrieval": true."""
    redis: str | None = None
    """redis://127.0.0.1:6379/0 to share rate limits between workers; in-process when unset."""
    redis_prefix: str = "sovforge:"
    """Prefix of every Redis key the quotas use (lets gateways, or test runs, share one Redis)."""
    requests_per_minute: int = 60
    """Per-key request quota per rolling minute."""
    tokens_per_day: int = 200_000
    """Per-key (prompt + completion) token quota per UTC day."""
    max_prompt_chars: int = 32_000
    """Longest accepted prompt (all messages together), in characters."""
    max_concurrent: int = 4
    """Most in-flight requests per key."""
    max_body_bytes: int = 1_000_000
    """Largest accepted request body."""
    max_tokens_limit: int = 1024
    """Upper bound on max_tokens a caller may ask for."""
    request_timeout_s: float = 120.0
    """A generation running longer than this is abandoned with 504."""
    drain_timeout_s: float = 30.0
    """On SIGTERM: stop accepting, let in-flight requests finish for up to this long, then seal the audit log."""
    audit_text: bool = False
    """Also store prompt/answer text in the audit log (hashes are always stored)."""
    checkpoint_every: int = 100
    """Write a signed Merkle checkpoint after this many audit records (and at shutdown)."""
    retention_days: int = 730
    """Audit records older than this may be purged by `sovforge audit purge` (default 2 years)."""
    redact_prompts: bool = False
    """Also redact PII in prompts before the model sees them (answers are always redacted)."""
