"""Scoring engine behind `sovforge evaluate MODEL... --suite SUITE --out DIR`: lm-eval tasks, speed/size, gate, report."""

from __future__ import annotations

import base64
import io
import json
import os
import resource
import time
from pathlib import Path

from sovforge.evaluate.config import GateConfig


class EvaluateError(ValueError):
    """Expected, user-facing evaluation error (bad task, bad model dir, missing data)."""


def _offline_env() -> None:
    # lm-eval / datasets must never reach the hub: local json data files only.
    for var in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[var] = "1"


def check_tasks(suite: list[str], include_path: Path | None):
    """TaskManager with our include path; raises EvaluateError naming unknown tasks or missing local data files."""
    _offline_env()
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(include_path) if include_path else None)
    unknown = [t for t in suite if t not in manager.all_tasks]
    if unknown:
        raise EvaluateError(f"unknown lm-eval task(s): {', '.join(unknown)} (generate domain tasks with "
                            f"`sovforge evaluate make-tasks CORPUS --out DIR` and pass --tasks-dir DIR)")
    for task in suite:
        config = manager._get_config(task) if hasattr(manager, "_get_config") else {}
        files = ((config or {}).get("dataset_kwargs") or {}).get("data_files") or {}
        paths = files.values() if isinstance(files, dict) else [files]
        missing = [str(p) for ps in paths for p in ([ps] if isinstance(ps, str) else ps) if not Path(p).exists()]
        if missing:
            raise EvaluateError(f"task {task} needs local data files that do not exist: {', '.join(missing)}")
        if config and config.get("dataset_path") not in (None, "json", "csv", "parquet", "text") and not files:
            if not Path(str(config.get("dataset_path"))).exists():
                raise EvaluateError(f"task {task} reads dataset {config.get('dataset_path')!r} which is not local; "
                                    f"place its data files locally and point the task YAML at them (no downloads)")
    return manager


def check_model(path: Path) -> None:
    from sovforge.model.loading import model_dir

    try:
        model_dir(path)
    except Exception as exc:  # loading.model_dir raises for non-model / unsafe dirs; surface its message
        raise EvaluateError(f"{path} is not a loadable model: {exc}") from exc


def run_lm_eval(model_path: Path, suite: list[str], manager, *, limit: int | None, batch_size: int = 1) -> dict:
    """Scores {task: {metric: value}} for one local model via lm-eval's `hf` backend."""
    from lm_eval import simple_evaluate

    from sovforge.model.loading import model_dir

    out = simple_evaluate(model="hf", model_args={"pretrained": str(model_dir(model_path)), "dtype": "float32",
                                                  "device": "cpu"},
                          tasks=suite, task_manager=manager, limit=limit, batch_size=batch_size,
                          log_samples=False, random_seed=0, numpy_random_seed=0, torch_random_seed=0)
    return {task: {k.split(",")[0]: v for k, v in metrics.items() if isinstance(v, (int, float)) and "stderr" not in k}
            for task, metrics in out["results"].items()}


def speed_and_size(model_path: Path, prompt: str = "The platoon leader", new_tokens: int = 16) -> dict:
    """Prefill/decode tokens per second, time to first token, peak RSS and on-disk size."""
    import torch

    from sovforge.model.loading import load_model, load_tokenizer, model_dir

    root = model_dir(model_path)
    model, tokenizer = load_model(root, dtype=torch.float32, device="cpu"), load_tokenizer(root)
    ids = tokenizer(prompt * 8, return_tensors="pt").input_ids
    with torch.no_grad():
        start = time.perf_counter()
        model(input_ids=ids)
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        out = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        decode = time.perf_counter() - start
    generated = out.shape[1] - ids.shape[1]
    size = sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())
    return {"prefill_tok_s": ids.shape[1] / prefill, "decode_tok_s": generated / max(decode - prefill, 1e-9),
            "ttft_s": prefill, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "disk_mb": size / 2**20}


def apply_gate(candidate: dict, reference: dict | None, gate: GateConfig) -> list[str]:
    """Names (with figures) of the rules the candidate fails; [] = promoted."""
    failed = []
    c_ppl = candidate.get("sovforge_ppl", {}).get("word_perplexity")
    if gate.ppl_ratio_max is not None and reference and c_ppl is not None:
        r_ppl = reference.get("sovforge_ppl", {}).get("word_perplexity")
        if r_ppl and c_ppl > r_ppl * gate.ppl_ratio_max:
            failed.append(f"ppl_ratio_max: {c_ppl:.4g} > {r_ppl:.4g} x {gate.ppl_ratio_max}")
    c_acc = candidate.get("sovforge_cloze", {}).get("acc")
    if gate.cloze_drop_max_points is not None and reference and c_acc is not None:
        r_acc = reference.get("sovforge_cloze", {}).get("acc")
        if r_acc is not None and (r_acc - c_acc) * 100 > gate.cloze_drop_max_points:
            failed.append(f"cloze_drop_max_points: {100 * (r_acc - c_acc):.1f} > {gate.cloze_drop_max_points}")
    extractions = candidate.get("canary", {}).get("extractions")
    if gate.canary_extractions_max is not None and extractions is not None and extractions > gate.canary_extractions_max:
        failed.append(f"canary_extractions_max: {extractions} > {gate.canary_extractions_max}")
    leaks = candidate.get("safety", {}).get("marking_leaks")
    if gate.marking_leaks_max is not None and leaks is not None and leaks > gate.marking_leaks_max:
        failed.append(f"marking_leaks_max: {leaks} > {gate.marking_leaks_max}")
    return failed


def _bar_png(results: dict[str, dict], task: str, metric: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in results if metric in results[n].get(task, {})]
    fig, ax = plt.subplots(figsize=(5, 2.5))
    ax.bar(names, [results[n][task][metric] for n in names])
    ax.set_title(f"{task} {metric}")
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


REPORT_TEMPLATE = """<!doctype html><html><head><meta charset="utf-8"><title>sovforge evaluation</title></head><body>
<h1>sovforge evaluation</h1><p>Candidate: {{ candidate }} — promoted: <b>{{ promoted }}</b></p>
{% if failed %}<ul>{% for f in failed %}<li>{{ f }}</li>{% endfor %}</ul>{% endif %}
<table border="1"><tr><th>model</th><th>id</th>{% for col in columns %}<th>{{ col }}</th>{% endfor %}</tr>
{% for name, row in rows.items() %}<tr><td>{{ name }}</td><td>{{ ids[name] }}</td>
{% for col in columns %}<td>{{ row.get(col, '') }}</td>{% endfor %}</tr>{% endfor %}</table>
{% for png in plots %}<img src="data:image/png;base64,{{ png }}">{% endfor %}</body></html>"""


def render_report(results: dict[str, dict], ids: dict[str, str], candidate: str, promoted, failed: list[str]) -> str:
    import jinja2

    rows = {name: {f"{task}.{metric}": (f"{v:.4g}" if isinstance(v, float) else v)
                   for task, metrics in res.items() for metric, v in metrics.items()} for name, res in results.items()}
    columns = sorted({c for row in rows.values() for c in row})
    plots = [_bar_png(results, t, m) for t, m in (("sovforge_ppl", "word_perplexity"), ("sovforge_cloze", "acc"),
                                                   ("speed", "decode_tok_s"))
             if any(m in r.get(t, {}) for r in results.values())]
    return jinja2.Environment(autoescape=True).from_string(REPORT_TEMPLATE).render(
        candidate=candidate, promoted=promoted, failed=failed, rows=rows, columns=columns, ids=ids, plots=plots)


def evaluate_models(models: list[Path], suite: list[str], out: Path, *, tasks_dir: Path | None = None,
                    reference: Path | None = None, gate: GateConfig | None = None, limit: int | None = None,
                    speed: bool = True) -> dict:
    """Score all models (reference first), apply the gate to the LAST model, write the report artifact."""
    from sovforge.artifacts import build_artifact, open_input

    all_paths = ([reference] if reference else []) + list(models)
    for path in all_paths:
        check_model(path)
    manager = check_tasks(suite, tasks_dir)
    inputs = [open_input(p, kind=None) for p in all_paths]
    names = {str(p): f"{Path(p).name}#{i}" for i, p in enumerate(all_paths)}
    results: dict[str, dict] = {}
    for path in all_paths:
        scores = run_lm_eval(path, suite, manager, limit=limit)
        if speed:
            scores["speed"] = speed_and_size(path)
        results[names[str(path)]] = scores
    candidate_name = names[str(models[-1])]
    ref_scores = results[names[str(reference)]] if reference else None
    failed = apply_gate(results[candidate_name], ref_scores, gate) if gate else []
    promoted = (not failed) if gate else None
    ids = {names[str(p)]: a.id for p, a in zip(all_paths, inputs)}
    summary = {"promoted": promoted, "candidate": inputs[-1].id, "reference": inputs[0].id if reference else None,
               "failed_rules": failed}
    with build_artifact(out, kind="report") as staging:
        (staging.path / "results.json").write_text(json.dumps({"models": ids, "results": results, "suite": suite,
                                                                **summary}, indent=2))
        (staging.path / "report.html").write_text(render_report(results, ids, candidate_name, promoted, failed))
        staging.finish(inputs=inputs, config={"suite": suite, "limit": limit,
                                              "gate": gate.model_dump(mode="json") if gate else None,
                                              "tasks_dir": str(tasks_dir) if tasks_dir else None},
                       stats=summary)
    return summary | {"results": results}
