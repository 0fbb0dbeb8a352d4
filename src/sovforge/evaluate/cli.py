"""`sovforge evaluate MODEL... --out DIR [--reference REF] [--corpus C]` and `sovforge evaluate make-tasks`.

    sovforge evaluate make-tasks runs/demo/ingest --out runs/tasks
    sovforge evaluate runs/demo/adapt runs/demo/compress --reference runs/demo/base --tasks-dir runs/tasks \\
        --corpus runs/demo/ingest --out runs/report            # exit 2 when the candidate fails the gate
    sovforge evaluate --endpoint http://127.0.0.1:8000/v1 --endpoint-model MODEL_ID --api-key-env SOVFORGE_KEY
    \\
        --endpoint-tokenizer runs/demo/adapt --tasks-dir runs/tasks --out runs/report-served
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

DEFAULT_COMMAND = "run"


class DefaultCommandGroup(TyperGroup):
    """Routes `sovforge evaluate MODEL...` to the default `run` command unless a command is named."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)


def register(app: typer.Typer) -> None:
    eval_app = typer.Typer(
        cls=DefaultCommandGroup,
        no_args_is_help=True,
        help="Score models side by side (lm-eval tasks, safety, speed) and gate promotion.",
    )
    app.add_typer(eval_app, name="evaluate")

    @eval_app.command(DEFAULT_COMMAND)
    def run(
        out: Annotated[Path, typer.Option("--out", help="Report artifact directory to write.")],
        models: Annotated[
            Optional[list[Path]],
            typer.Argument(
                help="Model, adapter or compress artifact dirs (a compress output = each variant); the LAST "
                "is the candidate unless --candidate."
            ),
        ] = None,
        suite: Annotated[
            str, typer.Option("--suite", help="Comma-separated lm-eval task names.")
        ] = "sovforge_ppl,sovforge_cloze",
        tasks_dir: Annotated[
            Optional[Path], typer.Option("--tasks-dir", help="Dir of task YAMLs (make-tasks).")
        ] = None,
        reference: Annotated[
            Optional[Path], typer.Option("--reference", help="Reference model for the gate.")
        ] = None,
        candidate: Annotated[
            Optional[str],
            typer.Option("--candidate", help="Name of the model the gate judges (default: the last one)."),
        ] = None,
        gate: Annotated[
            Optional[Path],
            typer.Option(
                "--gate", help="YAML of gate rules (GateConfig); default rules when --reference is given."
            ),
        ] = None,
        corpus: Annotated[
            Optional[Path],
            typer.Option(
                "--corpus",
                help="Corpus artifact: canaries, redacted contexts and domain prompts for the safety probes.",
            ),
        ] = None,
        config: Annotated[
            Optional[Path],
            typer.Option(
                "--config", help="YAML of an `evaluate:` section (EvaluateConfig: safety, speed...)."
            ),
        ] = None,
        limit: Annotated[
            Optional[int], typer.Option("--limit", help="Most documents per task (default: all).")
        ] = None,
        batch_size: Annotated[
            Optional[int], typer.Option("--batch-size", help="lm-eval batch size (default: evaluate's, 8).")
        ] = None,
        speed: Annotated[
            bool, typer.Option(help="Measure prefill/decode speed, TTFT, peak memory and size.")
        ] = True,
        safety: Annotated[bool, typer.Option(help="Run the PII / marking / canary probes.")] = True,
        device: Annotated[str, typer.Option(help="Device the models run on (cpu, cuda).")] = "cpu",
        endpoint: Annotated[
            Optional[str],
            typer.Option(
                "--endpoint", help="Also evaluate an OpenAI-compatible server: base URL ending in /v1."
            ),
        ] = None,
        endpoint_model: Annotated[
            Optional[str],
            typer.Option(
                "--endpoint-model", help="Model name the endpoint serves (sovforge serve: the artifact id)."
            ),
        ] = None,
        api_key_env: Annotated[
            Optional[str],
            typer.Option("--api-key-env", help="Environment variable holding the endpoint's API key."),
        ] = None,
        endpoint_tokenizer: Annotated[
            Optional[Path],
            typer.Option(
                "--endpoint-tokenizer",
                help="Local dir with the served model's tokenizer (log-likelihood tasks).",
            ),
        ] = None,
        endpoint_max_length: Annotated[
            Optional[int],
            typer.Option(
                "--endpoint-max-length",
                help="Context length of the served model (default: from the tokenizer dir's "
                "config.json, else 2048).",
            ),
        ] = None,
        endpoint_chat: Annotated[
            bool,
            typer.Option(
                help="Run the suite through /chat/completions (local-chat-completions), not /completions."
            ),
        ] = False,
    ) -> None:
        """Evaluate MODEL..., write report.html + results.json; exit 2 when the candidate fails the gate."""
        import os

        import yaml
        from pydantic import ValidationError

        from sovforge.cli import fail
        from sovforge.evaluate.config import EvaluateConfig, GateConfig
        from sovforge.evaluate.models import EvaluateError, resolve_models
        from sovforge.evaluate.runner import Endpoint, evaluate_models

        try:
            section = yaml.safe_load(config.read_text(encoding="utf-8")) if config else {}
            cfg = EvaluateConfig(**(section or {}))
            updates = {"suite": [t.strip() for t in suite.split(",") if t.strip()]}
            if limit is not None:
                updates["limit"] = limit
            if batch_size is not None:
                updates["batch_size"] = batch_size
            cfg = EvaluateConfig(**{**cfg.model_dump(), **updates})
            if not speed:
                cfg.speed.enabled = False
            if not safety:
                cfg.safety.pii = cfg.safety.marking = cfg.safety.canary = False
            gate_cfg = (
                GateConfig(**(yaml.safe_load(gate.read_text(encoding="utf-8")) or {}))
                if gate
                else (GateConfig() if reference else None)
            )
            subjects, notes = resolve_models(([reference] if reference else []) + list(models or []))
            if endpoint:
                if not endpoint_model:
                    raise EvaluateError("--endpoint needs --endpoint-model NAME (GET /v1/models lists it)")
                key = os.environ.get(api_key_env) if api_key_env else None
                if api_key_env and not key:
                    raise EvaluateError(f"--api-key-env {api_key_env}: that environment variable is not set")
                subjects.append(
                    Endpoint(
                        endpoint,
                        endpoint_model,
                        key,
                        endpoint_tokenizer,
                        chat=endpoint_chat,
                        max_length=endpoint_max_length,
                    )
                )
            names = [s.name for s in subjects]
            if candidate is not None and candidate not in names:
                raise EvaluateError(
                    f"--candidate {candidate}: no such model here (models: {', '.join(names)})"
                )
            summary = evaluate_models(
                subjects,
                cfg,
                out,
                tasks_dir=tasks_dir,
                reference_index=0 if reference else None,
                candidate_index=names.index(candidate) if candidate else -1,
                gate=gate_cfg,
                corpus=corpus,
                device=device,
                notes=notes,
            )
        except (EvaluateError, ValidationError, FileNotFoundError, ValueError, yaml.YAMLError) as exc:
            raise fail(str(exc)) from None
        typer.echo(str(out))
        if summary["promoted"] is False:
            raise fail(
                f"candidate {summary['candidate_name']} NOT promoted; failed rules: "
                + "; ".join(summary["failed_rules"]),
                code=2,
            )

    @eval_app.command("make-tasks")
    def make_tasks_cmd(
        corpus: Annotated[Path, typer.Argument(help="Corpus artifact directory (ingest output).")],
        out: Annotated[Path, typer.Option("--out", help="Directory for task JSONL + YAML.")],
        max_items: Annotated[int, typer.Option(help="Most cloze / recall items.")] = 500,
        seed: Annotated[int, typer.Option(help="Distractor seed.")] = 0,
    ) -> None:
        """Write perplexity, cloze and recall lm-eval tasks from the corpus validation split."""
        from sovforge.cli import fail
        from sovforge.evaluate.maketasks import TaskDataError, make_tasks

        try:
            counts = make_tasks(corpus, out, max_items=max_items, seed=seed)
        except (TaskDataError, FileNotFoundError) as exc:
            raise fail(str(exc)) from None
        typer.echo(f"{out}: {counts}")
