"""The `sovforge` command: one table of verbs, one module per stage.

    sovforge [--allow-network] VERB ...

Each stage package may ship `<stage>/cli.py` with `register(app: typer.Typer)`, which adds that stage's verbs;
verbs whose stage has not landed yet exit 2 with "not built yet" rather than pretend. Stage CLI modules must be
cheap to import (heavy libraries are imported inside the command functions) so `sovforge --help` stays fast.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from sovforge import __version__
from sovforge.offline import enforce_offline

console = Console(stderr=True, soft_wrap=True)

app = typer.Typer(
    name="sovforge",
    help="Sovereign LLM → defence-specialised, lightweight, safely served models. Air-gapped by default.",
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
)

# verb → module providing register(app). Order is the order of `sovforge --help`.
STAGE_CLIS: dict[str, str] = {
    "base": "sovforge.model.cli",
    "ingest": "sovforge.ingest.cli",
    "adapt": "sovforge.adapt.cli",
    "compress": "sovforge.compress.cli",
    "evaluate": "sovforge.evaluate.cli",
    "rag": "sovforge.rag.cli",
    "serve": "sovforge.serve.cli",  # also registers `keys` and `audit`
    "jobs": "sovforge.jobs.cli",
    "demo": "sovforge.demo.cli",
}
# Verbs a module registers besides its own name, so the placeholders know them.
EXTRA_VERBS = {"serve": ["keys", "audit"]}


class CliError(Exception):
    """An expected failure: printed as one clear line, exit code 1 (or `code`)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[bold red]error:[/bold red] {message}")
    return typer.Exit(code)


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    allow_network: Annotated[bool, typer.Option(
        "--allow-network", help="Allow connections beyond loopback (default: refused, air-gapped).")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        typer.echo(f"sovforge {__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    enforce_offline(allow_network=allow_network or os.environ.get("SOVFORGE_ALLOW_NETWORK") == "1")


def _not_built(verb: str) -> None:
    def placeholder(ctx: typer.Context) -> None:
        console.print(f"sovforge {verb}: not built yet")
        raise typer.Exit(2)

    app.command(verb, help=f"(not built yet) the {verb} verb.", context_settings={
        "allow_extra_args": True, "ignore_unknown_options": True})(placeholder)


def _register_stages() -> None:
    for verb, module_name in STAGE_CLIS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            for name in [verb, *EXTRA_VERBS.get(verb, [])]:
                _not_built(name)
            continue
        module.register(app)


# ------------------------------------------------------------------------------------------------- run


@app.command("run")
def run_cmd(
    recipe: Annotated[Path, typer.Argument(help="Pipeline recipe YAML.")],
    from_stage: Annotated[Optional[str], typer.Option(
        "--from", help="Rerun from this stage on, even if cached (base|ingest|adapt|compress|evaluate|rag).")] = None,
    only: Annotated[Optional[list[str]], typer.Option("--only", help="Run only these stages (repeatable).")] = None,
) -> None:
    """Run the stages a recipe names, in order; unchanged stages are reused from WORKDIR/state.json."""
    from sovforge.config import RecipeError, load_recipe
    from sovforge.pipeline import StageNotBuilt, run_recipe

    try:
        parsed = load_recipe(recipe)
        results = run_recipe(parsed, from_stage=from_stage, only=only, console=console)
    except StageNotBuilt as exc:
        raise fail(str(exc), code=2) from None
    except (RecipeError, ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    for stage, path in results.items():
        typer.echo(f"{stage}\t{path}")


# ------------------------------------------------------------------------------------------- preflight


@app.command("preflight")
def preflight_cmd(recipe: Annotated[Path, typer.Argument(help="Pipeline recipe YAML.")]) -> None:
    """List every local file the recipe needs (models, tokenizers, data, keys); fail closed if any is missing."""
    from sovforge.config import RecipeError, load_recipe
    from sovforge.preflight import preflight

    try:
        parsed = load_recipe(recipe)
    except RecipeError as exc:
        raise fail(str(exc)) from None
    needed, missing = preflight(parsed)
    for what, path in needed:
        mark = "[red]MISSING[/red]" if f"{what}: {path}" in missing else "[green]ok[/green]"
        console.print(f"{mark}  {what}: {path}")
    if missing:
        raise fail(f"{len(missing)} required path(s) missing:\n  " + "\n  ".join(missing))
    console.print(f"[green]preflight passed[/green]: {len(needed)} local path(s) present, network guard on")


# --------------------------------------------------------------------------------------------- lineage

lineage_app = typer.Typer(help="Verify and show the signed lineage of artifacts.", no_args_is_help=True)
app.add_typer(lineage_app, name="lineage")


@lineage_app.command("verify")
def lineage_verify(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory.")],
    no_inputs: Annotated[bool, typer.Option("--no-inputs", help="Check this artifact only, not its inputs.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Re-hash every file, check the Ed25519 signature and walk the inputs; exit 1 on any mismatch."""
    from sovforge.artifacts import verify

    report = verify(artifact, walk_inputs=not no_inputs, progress=not as_json)
    if as_json:
        typer.echo(json.dumps(report.__dict__, indent=2))
    else:
        for line in report.checked:
            console.print(f"checked {line}")
        for warning in report.warnings:
            console.print(f"[yellow]warning:[/yellow] {warning}")
        for problem in report.problems:
            console.print(f"[bold red]FAIL[/bold red] {problem}")
        if report.ok:
            console.print(f"[green]OK[/green] {artifact}: content, signature and lineage verified")
    raise typer.Exit(0 if report.ok else 1)


@lineage_app.command("show")
def lineage_show(artifact: Annotated[Path, typer.Argument(help="Artifact directory.")]) -> None:
    """Print the tree of inputs with their classifications."""
    from sovforge.artifacts import LineageError, lineage_tree

    try:
        typer.echo("\n".join(lineage_tree(artifact)))
    except LineageError as exc:
        raise fail(str(exc)) from None


@lineage_app.command("trust")
def lineage_trust(public_key: Annotated[Path, typer.Argument(help="Another installation's public key (PEM).")]) -> None:
    """Trust artifacts signed by another installation's key (copy its keys/trusted/*.pub here)."""
    from sovforge.artifacts import LineageError, trust_public_key

    try:
        typer.echo(f"trusted key {trust_public_key(public_key)}")
    except (LineageError, ValueError, OSError) as exc:
        raise fail(str(exc)) from None


_register_stages()


def main() -> None:
    """Console-script entry point."""
    enforce_offline(allow_network="--allow-network" in sys.argv or os.environ.get("SOVFORGE_ALLOW_NETWORK") == "1")
    app()


if __name__ == "__main__":
    main()
