"""`sovforge ingest INPUT... --out DIR`: documents → screened, deduplicated, classified corpus artifact.

    sovforge ingest ../shared/corpus runs/demo/docs --out runs/corpus --tokenizer runs/base --workers 2
    sovforge ingest docs/ --out corpus --config ingest.yaml        # every threshold (an `ingest:` section or bare)

Options given on the command line override the same keys of --config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

# CLI parameter → IngestConfig field, for options that override --config only when given explicitly.
_OVERRIDES = {
    "max_classification": "max_classification", "tokenizer": "tokenizer", "workers": "workers", "tasks": "tasks",
    "executor": "executor", "val_share": "val_share", "canaries": "canaries", "canary_repeats": "canary_repeats",
    "max_file_mb": "max_file_mb", "language": "languages", "quarantine_text": "quarantine_text",
    "progress": "progress",
}


def _config_file(path: Path) -> dict:
    import yaml

    if not path.exists():
        raise ValueError(f"--config {path}: no such file")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a YAML mapping")
    return dict(data.get("ingest", data)) if "ingest" in data else data


def register(app: typer.Typer) -> None:
    @app.command("ingest")
    def ingest(
        ctx: typer.Context,
        inputs: Annotated[list[Path], typer.Argument(help="Files or directories to ingest.", show_default=False)],
        out: Annotated[Path, typer.Option("--out", help="Output corpus artifact directory.")],
        max_classification: Annotated[str, typer.Option(
            help="Quarantine documents marked above this level (UNCLASSIFIED, RESTRICTED/대외비, CONFIDENTIAL, "
                 "SECRET, TOP_SECRET).")] = "UNCLASSIFIED",
        tokenizer: Annotated[Optional[Path], typer.Option(
            help="Tokenizer or model dir: also write packed/<split>.npy token streams for training.")] = None,
        workers: Annotated[int, typer.Option(help="Worker processes running at once.")] = 1,
        tasks: Annotated[Optional[int], typer.Option(help="Shards of the input files (default: --workers).")] = None,
        executor: Annotated[str, typer.Option(
            help="datatrove executor: local | slurm | ray (slurm/ray options via --config executor_options).")]
        = "local",
        val_share: Annotated[float, typer.Option(help="Share of documents in the validation split.")] = 0.05,
        canaries: Annotated[int, typer.Option(help="Canary sentences to plant into training documents.")] = 0,
        canary_repeats: Annotated[int, typer.Option(help="Times each canary is planted.")] = 1,
        max_file_mb: Annotated[float, typer.Option(
            help="Quarantine files larger than this as too_large (bigger text files stream in parts).")] = 100.0,
        language: Annotated[Optional[list[str]], typer.Option(
            "--language", help="Allowed language (ISO 639-1), repeatable.  [default: ko, en]")] = None,
        quarantine_text: Annotated[bool, typer.Option(
            help="Keep the redacted text of quality/duplicate drops in quarantine (never above the ceiling).")]
        = True,
        progress: Annotated[bool, typer.Option(help="Progress bar over the input files.")] = True,
        config: Annotated[Optional[Path], typer.Option(
            "--config", help="YAML with any IngestConfig keys (bare, or under `ingest:`).")] = None,
    ) -> None:
        """Read PDF/DOCX/HWPX/HTML/TXT/MD/JSONL; normalise, screen (PII, classification), filter, dedup, split."""
        from click.core import ParameterSource
        from pydantic import ValidationError

        from sovforge.cli import console, fail
        from sovforge.config import format_validation_error
        from sovforge.ingest.config import IngestConfig
        from sovforge.ingest.pipeline import IngestError, run_ingest

        values = locals()
        try:
            data = _config_file(config) if config is not None else {}
            for param, field in _OVERRIDES.items():
                if ctx.get_parameter_source(param) == ParameterSource.COMMANDLINE or field not in data:
                    if values[param] is not None:
                        data[field] = values[param]
            data["inputs"] = list(inputs)
            cfg = IngestConfig.model_validate(data)
        except ValidationError as exc:
            raise fail(format_validation_error(exc, str(config or "ingest options"), "ingest config")) from None
        except ValueError as exc:
            raise fail(str(exc)) from None
        try:
            path = run_ingest(cfg, out)
        except (IngestError, FileNotFoundError) as exc:
            raise fail(str(exc)) from None
        from sovforge.artifacts import load_artifact

        art = load_artifact(path)
        stats = art.stats
        drops = ", ".join(f"{reason} {n}" for reason, n in sorted(stats["drops"].items(), key=lambda kv: -kv[1]))
        splits = stats["splits"]
        console.print(f"[green]corpus[/green] {path}: {stats['documents']} documents (train "
                      f"{splits.get('train', 0)}, validation {splits.get('validation', 0)}) "
                      f"[{art.classification}], {stats['quarantined']} quarantined"
                      + (f" ({drops})" if drops else "")
                      + f"; {stats['throughput']['docs_per_s']} docs/s, {stats['throughput']['mb_per_s']} MB/s")
        typer.echo(str(path))
