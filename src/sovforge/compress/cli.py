"""`sovforge compress MODEL --corpus CORPUS --out OUT [--recipe FILE.yaml | --variant NAME ...]`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("compress")
    def compress(
        model: Annotated[Path, typer.Argument(help="Model or adapter artifact, or a local HF checkpoint.")],
        corpus: Annotated[Path, typer.Option("--corpus", help="Corpus artifact (calibration, distillation, scoring).")],
        out: Annotated[Path, typer.Option("--out", help="Output directory: one artifact per variant + comparison.")],
        recipe: Annotated[Optional[Path], typer.Option(
            "--recipe", help="YAML with the `compress:` settings (a pipeline recipe or just that section).")] = None,
        variant: Annotated[Optional[list[str]], typer.Option(
            "--variant", help="A preset variant (repeatable): fp16 bf16 w4a16 w8a16 w8a8 fp8 sparse24 sparsegpt50 "
                              "wanda24 wanda50 pruned distilled distilled-ce gguf-f16 gguf-q8 gguf-q4.")] = None,
        samples: Annotated[Optional[int], typer.Option(help="Calibration samples (default 64).")] = None,
        seq_len: Annotated[Optional[int], typer.Option(help="Calibration sequence length (default 256).")] = None,
        dtype: Annotated[Optional[str], typer.Option(help="dtype of saved dense weights (default bfloat16).")] = None,
        measure: Annotated[bool, typer.Option(help="Measure every variant and write the comparison.")] = True,
        speed: Annotated[bool, typer.Option(help="Include prefill/decode tokens/s.")] = True,
        rss: Annotated[bool, typer.Option(help="Include peak RSS while loading (a subprocess per model).")] = True,
    ) -> None:
        """Quantise / prune / distil / export MODEL into lighter variants, each its own artifact, all compared."""
        import yaml
        from pydantic import ValidationError

        from sovforge.cli import fail
        from sovforge.compress.config import CompressConfig, with_dependencies
        from sovforge.config import format_validation_error

        if recipe is not None and variant:
            raise fail("give --recipe or --variant, not both")
        data: dict = {}
        if recipe is not None:
            if not recipe.exists():
                raise fail(f"{recipe}: no such recipe file")
            try:
                loaded = yaml.safe_load(recipe.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as exc:
                raise fail(f"{recipe}: not valid YAML ({exc})") from None
            if not isinstance(loaded, dict):
                raise fail(f"{recipe}: expected a mapping")
            data = loaded.get("compress", loaded) if "compress" in loaded else loaded
        try:
            if variant:
                data["variants"] = with_dependencies(variant)
            for key, value in (("samples", samples), ("seq_len", seq_len)):
                if value is not None:
                    data.setdefault("calibration", {})[key] = value
            if dtype is not None:
                data["dtype"] = dtype
            for key, on in (("enabled", measure), ("speed", speed), ("rss", rss)):
                if not on:  # the flags only switch off; a recipe's own measure settings stand otherwise
                    data.setdefault("measure", {})[key] = False
            cfg = CompressConfig.model_validate(data)
        except ValidationError as exc:
            message = format_validation_error(exc, str(recipe or "compress options"), "compress config")
            raise fail(message.replace("\n", " ")) from None
        except ValueError as exc:
            raise fail(str(exc)) from None

        from sovforge.adapt.trainer import TrainingError
        from sovforge.artifacts import LineageError
        from sovforge.compress.config import CompressError
        from sovforge.compress.stage import compress_model
        from sovforge.ingest.corpus import CorpusError
        from sovforge.model.loading import ModelLoadError

        try:
            path = compress_model(model, corpus, cfg, out)
        except (CompressError, TrainingError, ModelLoadError, LineageError, CorpusError, FileNotFoundError) as exc:
            raise fail(str(exc)) from None
        compare = path / "compare.md"
        if compare.exists():
            typer.echo(compare.read_text(encoding="utf-8"))
        typer.echo(str(path))
