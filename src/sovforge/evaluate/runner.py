"""`sovforge evaluate MODEL... --out DIR`: score models side by side, gate the candidate, write the report.

For every model (reference first), loaded once: lm-eval scores of the suite, safety probes, speed and size;
then the gate compares the candidate with the reference, and a `report` artifact is written:

    OUT/results.json   models (id, kind, classification, role), results {name: {task: {metric}, speed,
                       safety}}, gate rules, promoted, candidate/reference ids, task data ids (sha256)
    OUT/report.html    the same as one self-contained page with plots
    manifest           inputs = every model artifact (+ the corpus); stats carry promoted / candidate /
                       failed_rules, which `sovforge serve --report` checks

    models, notes = resolve_models([base, adapted])
    summary = evaluate_models(models, EvaluateConfig(), out, reference_index=0, tasks_dir=tasks,
                              gate=GateConfig(), corpus=corpus, notes=notes)
"""

from __future__ import annotations

import gc
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sovforge.classification import Level, parse_level
from sovforge.evaluate.config import EvaluateConfig, GateConfig
from sovforge.evaluate.models import EvalModel, EvaluateError


class GateFailed(EvaluateError):
    """The candidate failed the gate; the report artifact was still written (promoted: false)."""

    def __init__(self, message: str, summary: dict[str, Any]):
        super().__init__(message)
        self.summary = summary


@dataclass
class Endpoint:
    """An OpenAI-compatible server evaluated like a model (`--endpoint URL --endpoint-model NAME`)."""

    url: str
    """Base URL ending in /v1."""
    model: str
    """Model name to request (for `sovforge serve`: the served artifact id)."""
    api_key: str | None
    """Bearer key (read from the environment variable named by --api-key-env)."""
    tokenizer: Path | None = None
    """Local copy of the served model's tokenizer; needed only by log-likelihood tasks."""
    chat: bool = False
    """Use /chat/completions (local-chat-completions) for the suite instead of /completions."""
    max_length: int | None = None
    """Context length of the served model; None = `max_position_embeddings` of the config.json beside the
    tokenizer, else 2048. lm-eval keeps one position for a generated token (rolling windows one shorter)."""
    name: str = ""
    classification: Level = Level.UNCLASSIFIED

    def __post_init__(self) -> None:
        self.name = self.name or f"endpoint:{self.model}"
        if self.max_length is None:
            config = Path(self.tokenizer) / "config.json" if self.tokenizer else None
            known = (
                json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings")
                if config and config.is_file()
                else None
            )
            self.max_length = int(known or 2048)

    @property
    def id(self) -> str:
        return self.model

    def check(self) -> None:
        """GET /models: a clear error for a wrong URL, key or model name; takes the model's classification."""
        request = urllib.request.Request(
            self.url.rstrip("/") + "/models",
            headers={"Authorization": f"Bearer {self.api_key}"} if self.api_key else {},
        )
        try:
            # the URL is the operator's own (loopback / intranet); the offline guard refuses anything else
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                listing = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            raise EvaluateError(
                f"endpoint {self.url}: GET /models answered {exc.code} (check --api-key-env)"
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise EvaluateError(f"endpoint {self.url}: not reachable ({exc})") from None
        entries = {m.get("id"): m for m in listing.get("data", []) if isinstance(m, dict)}
        if self.model not in entries:
            raise EvaluateError(
                f"endpoint {self.url} does not serve {self.model!r} (it lists "
                f"{', '.join(map(str, entries)) or 'nothing for this key'})"
            )
        if entries[self.model].get("classification"):
            self.classification = parse_level(entries[self.model]["classification"])

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": "endpoint",
            "path": self.url,
            "classification": str(self.classification),
            "weights": None,
            "adapter": None,
        }


def _open_lm(subject: EvalModel | Endpoint, batch_size: int, device: str, *, for_suite: bool = True):
    from sovforge.evaluate.harness import endpoint_lm, local_lm

    if isinstance(subject, Endpoint):
        return endpoint_lm(
            subject.url,
            subject.model,
            subject.api_key,
            subject.tokenizer,
            chat=subject.chat and for_suite,
            max_length=subject.max_length,
        ), None
    model, tokenizer = subject.load(device)
    return local_lm(model, tokenizer, batch_size), model


def _score_one(
    subject: EvalModel | Endpoint,
    tasks: list[Any],
    manager: Any,
    cfg: EvaluateConfig,
    corpus: Path | None,
    canaries: list[str],
    device: str,
) -> dict[str, Any]:
    """Suite scores, safety probes and speed of one model (loaded once for all three)."""
    from sovforge.evaluate.harness import score
    from sovforge.evaluate.safety import safety_probes
    from sovforge.evaluate.speed import measure_speed

    lm, model = _open_lm(subject, cfg.batch_size, device)
    scores = score(
        lm,
        tasks,
        manager,
        limit=cfg.limit,
        apply_chat_template=isinstance(subject, Endpoint) and subject.chat,
    )
    probes = cfg.safety.pii or cfg.safety.marking or (cfg.safety.canary and canaries)
    if probes:
        if isinstance(subject, Endpoint) and subject.chat:
            lm, _ = _open_lm(subject, cfg.batch_size, device, for_suite=False)  # probes are plain completions
        scores["safety"] = safety_probes(lm, cfg.safety, corpus, canaries if cfg.safety.canary else [])
    if cfg.speed.enabled and isinstance(subject, EvalModel):
        scores["speed"] = measure_speed(subject, model, lm.tokenizer, cfg.speed)
    del lm, model
    gc.collect()
    return scores


def evaluate_models(
    models: list[EvalModel | Endpoint],
    cfg: EvaluateConfig,
    out: Path,
    *,
    tasks_dir: Path | None = None,
    reference_index: int | None = None,
    candidate_index: int = -1,
    gate: GateConfig | None = None,
    corpus: Path | None = None,
    device: str = "cpu",
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """Score every model, gate `models[candidate_index]` against `models[reference_index]`, write a report."""
    from sovforge.artifacts import LineageError, build_artifact, open_input
    from sovforge.evaluate.gate import apply_gate, failed_rules
    from sovforge.evaluate.harness import load_suite, task_data_ids
    from sovforge.evaluate.report import render_report
    from sovforge.ingest.corpus import CorpusError, iter_documents, load_canaries

    if not models:
        raise EvaluateError("nothing to evaluate: give at least one model (or --endpoint)")
    candidate = models[candidate_index]
    reference = models[reference_index] if reference_index is not None else None
    corpus_artifact = None
    if corpus is not None:
        try:
            next(iter(iter_documents(corpus)), None)
            corpus_artifact = open_input(corpus, kind="corpus")
        except (CorpusError, LineageError) as exc:
            raise EvaluateError(f"--corpus {corpus}: {exc}") from None
    canaries = load_canaries(corpus) if corpus is not None else []
    for subject in models:
        if isinstance(subject, Endpoint):
            subject.check()
    # every name and every data file is checked before any scoring starts
    manager, tasks = load_suite(list(cfg.suite), tasks_dir)
    for subject in models:
        if isinstance(subject, Endpoint):
            _check_endpoint_tasks(subject, tasks)
    roles = {id(m): "model" for m in models}
    if reference is not None:
        roles[id(reference)] = "reference"
    roles[id(candidate)] = "candidate" if candidate is not reference else "candidate+reference"
    results: dict[str, dict] = {}
    skipped: list[str] = list(notes or [])
    for subject in models:
        ranked = canaries
        if canaries and isinstance(subject, Endpoint) and subject.tokenizer is None:
            ranked = []  # exposure ranks log-likelihoods: through a server that needs the tokenizer
            skipped.append(f"canary probe of {subject.name}: needs --endpoint-tokenizer")
        results[subject.name] = _score_one(subject, tasks, manager, cfg, corpus, ranked, device)
        if cfg.speed.enabled and isinstance(subject, Endpoint):
            skipped.append(
                f"speed of {subject.name}: not measured through an endpoint (no local process to time)"
            )
    if corpus is not None and cfg.safety.canary and not canaries:
        skipped.append(
            f"canary probe: corpus {corpus} has no canaries.json (plant them with ingest.canaries)"
        )
    rules = (
        apply_gate(results[candidate.name], results[reference.name] if reference else None, gate)
        if gate
        else []
    )
    failed = failed_rules(rules)
    promoted = (not failed) if gate else None
    describe = {m.name: {**m.describe(), "role": roles[id(m)]} for m in models}
    summary = {
        "promoted": promoted,
        "candidate": candidate.id,
        "candidate_name": candidate.name,
        "reference": reference.id if reference else None,
        "reference_name": reference.name if reference else None,
        "failed_rules": failed,
        "models": {name: d["id"] for name, d in describe.items()},
    }
    report = {
        **summary,
        "models": describe,
        "results": results,
        "gate": rules,
        "suite": list(cfg.suite),
        "suite_tasks": sorted(
            {t for r in results.values() for t in r if t not in ("speed", "safety")},
            key=lambda t: (t not in cfg.suite, t),
        ),
        "tasks": task_data_ids(manager, list(cfg.suite)),
        "corpus": corpus_artifact.id if corpus_artifact else None,
        "skipped": skipped,
    }
    inputs = [m.artifact for m in models if isinstance(m, EvalModel)] + (
        [corpus_artifact] if corpus_artifact else []
    )
    endpoint_level = max(
        [m.classification for m in models if isinstance(m, Endpoint)], default=Level.UNCLASSIFIED
    )
    with build_artifact(out, kind="report") as staging:
        (staging.path / "results.json").write_text(
            json.dumps(report, indent=2, ensure_ascii=False, default=str), encoding="utf-8"
        )
        (staging.path / "report.html").write_text(render_report(report), encoding="utf-8")
        staging.finish(
            inputs=_unique(inputs),
            classification=endpoint_level,
            stats=summary,
            config={
                **cfg.model_dump(mode="json"),
                "gate": gate.model_dump(mode="json") if gate else None,
                "tasks_dir": str(tasks_dir) if tasks_dir else None,
                "task_data": report["tasks"],
                "endpoints": [m.url for m in models if isinstance(m, Endpoint)],
            },
        )
    return {**summary, "results": results, "gate": rules}


def _leaf_tasks(items: list[Any]) -> list[Any]:
    from lm_eval.api.group import Group

    return [t for item in items for t in (item.get_all_tasks() if isinstance(item, Group) else [item])]


def _check_endpoint_tasks(endpoint: Endpoint, tasks: list[Any]) -> None:
    """Log-likelihood tasks through a server need /completions with logprobs and the model's tokenizer."""
    scored = [t.task_name for t in _leaf_tasks(tasks) if t.get_config("output_type") != "generate_until"]
    if scored and endpoint.chat:
        raise EvaluateError(
            f"task(s) {', '.join(scored)} score log-likelihoods, which chat completions cannot "
            "return; run them without --endpoint-chat (through /completions)"
        )
    if scored and endpoint.tokenizer is None:
        raise EvaluateError(
            f"task(s) {', '.join(scored)} score log-likelihoods through the endpoint: give "
            "--endpoint-tokenizer DIR (a local copy of the served model's tokenizer)"
        )


def _unique(artifacts: list[Any]) -> list[Any]:
    seen, out = set(), []
    for artifact in artifacts:
        if artifact.id not in seen:
            seen.add(artifact.id)
            out.append(artifact)
    return out
