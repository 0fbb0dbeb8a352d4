"""`sovforge demo`: sample documents, and the whole pipeline end to end on them.

    sovforge demo --make-docs runs/demo/docs     # only write the sample documents
    sovforge demo                                # documents, general text for the base model, examples/demo.yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        make_docs: Annotated[Optional[Path], typer.Option(
            "--make-docs", help="Only write the sample documents into this directory and exit.")] = None,
        recipe: Annotated[Path, typer.Option(help="Recipe to run on the sample documents.")] = Path(
            "examples/demo.yaml"),
        count: Annotated[int, typer.Option(help="Number of sample documents (plus classified and near-dups).")] = 150,
        seed: Annotated[int, typer.Option(help="Seed of the document generator.")] = 0,
    ) -> None:
        """Generate realistic defence-administration documents and run the demo recipe on them."""
        from rich.console import Console

        from sovforge.cli import fail
        from sovforge.config import RecipeError, load_recipe
        from sovforge.demo.docs import make_documents, make_general_text, truth_path
        from sovforge.pipeline import StageNotBuilt, run_recipe

        console = Console(stderr=True)
        if make_docs is not None:
            truth = make_documents(make_docs, count=count, seed=seed)
            typer.echo(f"wrote {len(truth)} documents to {make_docs} (planted truth: {truth_path(make_docs)})")
            return
        try:
            parsed = load_recipe(recipe)
        except RecipeError as exc:
            raise fail(str(exc)) from None
        docs, general = Path(parsed.workdir) / "docs", Path(parsed.workdir) / "general"
        truth = make_documents(docs, count=count, seed=seed)
        console.print(f"[bold]sample documents[/bold]: {len(truth)} files in {docs}")
        # the base model's pre-training text: same genre, none of the documents' facts (DocRandom says why)
        written = make_general_text(general, count=count, seed=seed + 1)
        console.print(f"[bold]general text for the base model[/bold]: {len(written)} files in {general}")
        try:
            results = run_recipe(parsed, console=console)
        except StageNotBuilt as exc:
            raise fail(str(exc), code=2) from None
        except (RecipeError, ValueError, FileNotFoundError) as exc:
            raise fail(str(exc)) from None
        console.print("\n[bold green]demo finished[/bold green]; artifacts:")
        for stage, path in results.items():
            typer.echo(f"  {stage:9s} {path}")
        if "evaluate" in results:
            report = Path(results["evaluate"]) / "report.html"
            typer.echo(f"evaluation report (base, adapt and every compressed variant; the gate's verdict): {report}")
        typer.echo(f"verify any of them with: sovforge lineage verify {next(iter(results.values()), docs)}")
