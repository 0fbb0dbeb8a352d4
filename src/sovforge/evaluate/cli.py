"""`sovforge evaluate MODEL... --suite SUITE --out DIR` and `sovforge evaluate make-tasks CORPUS --out DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

DEFAULT_COMMAND = "run"


class DefaultCommandGroup(TyperGroup):
    """Routes `sovforge evaluate MODEL...` to the default `run` command when the first token is not a subcommand."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)


def register(app: typer.Typer) -> None:
    eval_app = typer.Typer(cls=DefaultCommandGroup, no_args_is_help=True,
                           help="Score models side by side (lm-eval tasks, safety, speed) and gate promotion.")
    app.add_typer(eval_app, name="evaluate")

    @eval_app.command(DEFAULT_COMMAND)
    def run(
        models: Annotated[list[Path], typer.Argument(help="Model artifact dirs; the LAST one is the candidate.")],
        out: Annotated[Path, typer.Option("--out", help="Report artifact directory to write.")],
        suite: Annotated[str, typer.Option("--suite", help="Comma-separated lm-eval task names.")] =
            "sovforge_ppl,sovforge_cloze",
        tasks_dir: Annotated[Optional[Path], typer.Option("--tasks-dir", help="Dir of task YAMLs (make-tasks).")] = None,
        reference: Annotated[Optional[Path], typer.Option("--reference", help="Reference model for the gate.")] = None,
        gate: Annotated[Optional[Path], typer.Option("--gate", help="YAML file of gate rules (GateConfig).")] = None,
        limit: Annotated[Optional[int], typer.Option("--limit", help="Most documents per task.")] = None,
        speed: Annotated[bool, typer.Option(help="Measure prefill/decode speed and size.")] = True,
    ) -> None:
        """Evaluate MODEL... and write report.html + results.json; exit 2 when the candidate fails the gate."""
        import yaml
        from pydantic import ValidationError

        from sovforge.cli import fail
        from sovforge.evaluate.config import GateConfig
        from sovforge.evaluate.runner import EvaluateError, evaluate_models

        try:
            gate_cfg = GateConfig(**(yaml.safe_load(gate.read_text()) or {})) if gate else (
                GateConfig() if reference else None)
            summary = evaluate_models(models, [t.strip() for t in suite.split(",") if t.strip()], out,
                                      tasks_dir=tasks_dir, reference=reference, gate=gate_cfg, limit=limit,
                                      speed=speed)
        except (EvaluateError, ValidationError, FileNotFoundError, ValueError) as exc:
            raise fail(str(exc)) from None
        typer.echo(str(out))
        if summary["promoted"] is False:
            raise fail("candidate NOT promoted; failed rules: " + "; ".join(summary["failed_rules"]), code=2)

    @eval_app.command("make-tasks")
    def make_tasks_cmd(
        corpus: Annotated[Path, typer.Argument(help="Corpus artifact directory (ingest output).")],
        out: Annotated[Path, typer.Option("--out", help="Directory for task JSONL + YAML.")],
        max_items: Annotated[int, typer.Option(help="Most cloze items.")] = 500,
        seed: Annotated[int, typer.Option(help="Distractor seed.")] = 0,
    ) -> None:
        """Write perplexity + cloze lm-eval tasks from the corpus validation split."""
        from sovforge.cli import fail
        from sovforge.evaluate.maketasks import TaskDataError, make_tasks

        try:
            counts = make_tasks(corpus, out, max_items=max_items, seed=seed)
        except (TaskDataError, FileNotFoundError) as exc:
            raise fail(str(exc)) from None
        typer.echo(f"{out}: {counts}")
