"""`sovforge serve MODEL`, `sovforge keys create|list|revoke`, `sovforge audit verify|export|purge`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

_DB = typer.Option("--db", help="SQLAlchemy URL (default sqlite under $SOVFORGE_HOME/serve; postgresql+psycopg://...).")
_PREFIX = typer.Option("--table-prefix", help="Table name prefix.")


def _store(db: Optional[str], prefix: str):
    from sovforge.serve.store import Store

    return Store(db, prefix=prefix)


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        model: Annotated[Path, typer.Argument(help="Model artifact or local HF checkpoint to serve.")],
        host: Annotated[str, typer.Option(help="Interface to bind (loopback unless you mean it).")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
        db: Annotated[Optional[str], _DB] = None,
        table_prefix: Annotated[str, _PREFIX] = "sf_",
        backend: Annotated[str, typer.Option(help="transformers, transformers-process (the model in a child process) "
                                                  "or vllm (needs CUDA).")] = "transformers",
        device: Annotated[Optional[str], typer.Option(help="Torch device (default cuda if present, else cpu).")] = None,
        report: Annotated[Optional[Path], typer.Option(help="Evaluation report; model must be its promoted candidate.")] = None,
        force_unpromoted: Annotated[bool, typer.Option(help="Serve without a report / unpromoted (logged).")] = False,
        index: Annotated[Optional[Path], typer.Option(help="RAG index artifact for retrieval.")] = None,
        redis: Annotated[Optional[str], typer.Option(help="redis:// URL for shared rate limits (default in-process).")] = None,
        requests_per_minute: Annotated[int, typer.Option(help="Per-key requests per minute.")] = 60,
        tokens_per_day: Annotated[int, typer.Option(help="Per-key tokens per UTC day.")] = 200_000,
        max_concurrent: Annotated[int, typer.Option(help="Per-key concurrent requests.")] = 4,
        max_batch_size: Annotated[int, typer.Option(help="Most requests merged into one forward pass.")] = 8,
        request_timeout: Annotated[float, typer.Option(help="Seconds before a generation is abandoned (504).")] = 120.0,
        drain_timeout: Annotated[float, typer.Option(help="On SIGTERM, seconds in-flight requests may finish.")] = 30.0,
        audit_text: Annotated[bool, typer.Option(help="Store prompt/answer text in the audit log (hashes always).")] = False,
    ) -> None:
        """Run the audited, clearance-aware OpenAI-compatible gateway (JSON log lines on stderr)."""
        import uvicorn
        from pydantic import ValidationError

        from sovforge.cli import fail
        from sovforge.serve.app import PromotionError, create_app
        from sovforge.serve.backend import BackendError, make_backend
        from sovforge.serve.config import ServeConfig
        from sovforge.serve.ops import configure_logging

        configure_logging()  # before the model loads: its messages are JSON lines too
        engine = None
        try:
            cfg = ServeConfig(model=model, host=host, port=port, db=db, table_prefix=table_prefix, backend=backend,
                              device=device, report=report, force_unpromoted=force_unpromoted, index=index,
                              redis=redis, requests_per_minute=requests_per_minute, tokens_per_day=tokens_per_day,
                              max_concurrent=max_concurrent, max_batch_size=max_batch_size,
                              request_timeout_s=request_timeout, drain_timeout_s=drain_timeout, audit_text=audit_text)
            from sovforge.artifacts import open_input
            from sovforge.serve.app import check_promotion

            check_promotion(open_input(model).id, report, force_unpromoted)  # refuse before loading weights
            engine = make_backend(cfg.backend, model, device=device, max_batch_size=max_batch_size)  # before binding
            application = create_app(cfg, backend=engine)
        except (ValidationError, PromotionError, BackendError, ValueError, FileNotFoundError) as exc:
            if engine is not None:
                engine.close()
            raise fail(str(exc)) from None
        if host not in ("127.0.0.1", "localhost", "::1"):
            typer.echo(f"warning: binding {host}: reachable beyond this machine", err=True)
        try:
            # SIGTERM/SIGINT: uvicorn stops accepting, waits up to drain_timeout for in-flight requests, then runs
            # the app's shutdown (backend stopped, audit queue written, final signed checkpoint)
            uvicorn.run(application, host=host, port=port, log_config=None, access_log=False,
                        timeout_graceful_shutdown=int(max(1, drain_timeout)))
        finally:
            engine.close()  # idempotent; also when uvicorn could not bind the port

    keys_app = typer.Typer(help="Manage gateway API keys.", no_args_is_help=True)
    app.add_typer(keys_app, name="keys")

    @keys_app.command("create")
    def keys_create(
        name: Annotated[Optional[str], typer.Argument(help="Who the key is for (or --name).")] = None,
        name_option: Annotated[Optional[str], typer.Option("--name", help="Who the key is for.")] = None,
        role: Annotated[str, typer.Option(help="user, operator or admin.")] = "user",
        clearance: Annotated[str, typer.Option(help="Highest classification the key may see.")] = "UNCLASSIFIED",
        db: Annotated[Optional[str], _DB] = None,
        table_prefix: Annotated[str, _PREFIX] = "sf_",
    ) -> None:
        """Create a key; it is printed once (only its HMAC is stored)."""
        from sovforge.cli import fail

        if not (name or name_option) or (name and name_option and name != name_option):
            raise fail("give the key's holder once: `sovforge keys create NAME` or `--name NAME`")
        try:
            key_id, key = _store(db, table_prefix).create_key(name or name_option, role, clearance)
        except ValueError as exc:
            raise fail(str(exc)) from None
        typer.echo(json.dumps({"key_id": key_id, "key": key}))

    @keys_app.command("list")
    def keys_list(db: Annotated[Optional[str], _DB] = None, table_prefix: Annotated[str, _PREFIX] = "sf_") -> None:
        """List keys (never the key values)."""
        for row in _store(db, table_prefix).list_keys():
            typer.echo(json.dumps(row))

    @keys_app.command("revoke")
    def keys_revoke(key_id: Annotated[str, typer.Argument(help="Key id (the part after sf-).")],
                    db: Annotated[Optional[str], _DB] = None, table_prefix: Annotated[str, _PREFIX] = "sf_") -> None:
        """Revoke a key at once."""
        from sovforge.cli import fail

        if not _store(db, table_prefix).revoke_key(key_id):
            raise fail(f"no key {key_id!r}")
        typer.echo(f"revoked {key_id}")

    audit_app = typer.Typer(help="Check and export the gateway audit log.", no_args_is_help=True)
    app.add_typer(audit_app, name="audit")

    @audit_app.command("verify")
    def audit_verify(db: Annotated[Optional[str], _DB] = None, table_prefix: Annotated[str, _PREFIX] = "sf_") -> None:
        """Check the hash chain and signed Merkle checkpoints; name each tampered record."""
        from sovforge.cli import fail

        store = _store(db, table_prefix)
        problems = store.verify()
        for problem in problems:
            typer.echo(f"FAIL {problem}")
        if problems:
            raise fail(f"audit log tampered: {len(problems)} problem(s)")
        typer.echo(f"OK {store.count()} records, chain and checkpoints intact")

    @audit_app.command("export")
    def audit_export(out: Annotated[Optional[Path], typer.Option(help="JSONL file (default stdout).")] = None,
                     db: Annotated[Optional[str], _DB] = None, table_prefix: Annotated[str, _PREFIX] = "sf_") -> None:
        """Export records and checkpoints as JSONL for auditors."""
        lines = _store(db, table_prefix).export()
        if out is None:
            for line in lines:
                sys.stdout.write(line + "\n")
        else:
            with open(out, "w", encoding="utf-8") as fh:
                fh.writelines(line + "\n" for line in lines)

    @audit_app.command("purge")
    def audit_purge(days: Annotated[int, typer.Option(help="Retention in days.")] = 730,
                    db: Annotated[Optional[str], _DB] = None, table_prefix: Annotated[str, _PREFIX] = "sf_") -> None:
        """Remove the content of records older than the retention period (export first); hashes and chain stay."""
        store = _store(db, table_prefix)
        store.checkpoint()  # a purge only reaches as far as a signed checkpoint covers
        typer.echo(f"purged {store.purge_older_than(days)} records older than {days} days "
                   "(content removed; seq, hashes and a signed purge anchor kept, so `audit verify` still passes)")
