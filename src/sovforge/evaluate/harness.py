"""EleutherAI lm-evaluation-harness as the engine of `sovforge evaluate`: task lookup, data checks, scoring.

Our domain tasks are plain lm-eval YAMLs (`sovforge evaluate make-tasks`), so the numbers here are the numbers
of `lm_eval --include_path DIR --tasks NAME`. Every data file must be local: a task whose data is not on this
machine is an error naming the files it needs, never a download.

    manager, tasks = load_suite(["sovforge_ppl", "kobest_boolq"], tasks_dir)
    scores = score(local_lm(model, tokenizer), tasks, manager, limit=10)      # {task: {metric: value}}
    scores = score(endpoint_lm(url, "model-id", key, "tok/"), tasks, manager)  # same suite against a server
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any

from sovforge.evaluate.models import EvaluateError

LOCAL_BUILDERS = ("json", "csv", "parquet", "text", "arrow")


def offline_env() -> None:
    # lm-eval / datasets must never reach the hub: local data files and the local datasets cache only.
    for var in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[var] = "1"


def task_manager(suite: list[str], include_path: Path | None):
    """A TaskManager that knows every name in `suite`. lm-eval's own ~15k task index (seconds to build) is
    read only when the suite names a task our include path does not define."""
    offline_env()
    from lm_eval.tasks import TaskManager

    if include_path is not None:
        if not Path(include_path).is_dir():
            raise EvaluateError(
                f"--tasks-dir {include_path}: no such directory (write one with "
                "`sovforge evaluate make-tasks CORPUS --out DIR`)"
            )
        ours = TaskManager(include_path=str(include_path), include_defaults=False)
        if all(t in ours.all_tasks for t in suite):
            return ours
    manager = _full_manager(str(include_path) if include_path else None, _fingerprint(include_path))
    unknown = [t for t in suite if t not in manager.all_tasks]
    if unknown:
        raise EvaluateError(
            f"unknown lm-eval task(s): {', '.join(unknown)} (generate domain tasks with "
            f"`sovforge evaluate make-tasks CORPUS --out DIR` and pass --tasks-dir DIR; "
            f"`lm_eval ls tasks` lists the built-in ones)"
        )
    return manager


def _fingerprint(include_path: Path | None) -> tuple:
    """What the index of an include path depends on: its YAML files and their modification times."""
    if include_path is None:
        return ()
    return tuple(sorted((str(p), p.stat().st_mtime_ns) for p in Path(include_path).rglob("*.yaml")))


@functools.lru_cache(maxsize=4)
def _full_manager(include_path: str | None, _fingerprint: tuple):
    """lm-eval's built-in index plus ours, built once per process for the same files (it takes seconds)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_path)


def _leaf_entries(manager, name: str, seen: set[str] | None = None) -> list[Any]:
    """Index entries of the leaf tasks behind a task, group or tag name."""
    from lm_eval.tasks._index import Kind

    seen = seen if seen is not None else set()
    entry = manager.task_index.get(name)
    if entry is None or name in seen:
        return []
    seen.add(name)
    if entry.kind is Kind.TAG:
        return [leaf for task in sorted(entry.tags) for leaf in _leaf_entries(manager, task, seen)]
    if entry.kind is Kind.GROUP:
        children = (entry.cfg or {}).get("task") or []
        leaves = []
        for child in children if isinstance(children, list) else [children]:
            if isinstance(child, str):
                leaves.extend(_leaf_entries(manager, child, seen))
            elif isinstance(child, dict) and isinstance(child.get("task"), str):
                leaves.extend(_leaf_entries(manager, child["task"], seen) or [child])
        return leaves
    return [entry]


def _datasets_cached(dataset_path: str) -> bool:
    """Whether a hub dataset id is in the local datasets or hub cache (usable with HF_DATASETS_OFFLINE)."""
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    datasets_cache = Path(os.environ.get("HF_DATASETS_CACHE", home / "datasets"))
    hub_cache = Path(os.environ.get("HF_HUB_CACHE", home / "hub"))
    return (datasets_cache / dataset_path.replace("/", "___")).is_dir() or (
        hub_cache / ("datasets--" + dataset_path.replace("/", "--"))
    ).is_dir()


def data_files(cfg: dict[str, Any]) -> list[Path]:
    files = ((cfg.get("dataset_kwargs") or {}).get("data_files")) or {}
    values = files.values() if isinstance(files, dict) else [files]
    return [Path(p) for v in values for p in ([v] if isinstance(v, str) else v)]


def check_data(task: str, cfg: dict[str, Any], yaml_path: Path | None) -> None:
    """Raise EvaluateError naming the local files a task needs when they are not here."""
    dataset_path = cfg.get("dataset_path")
    if dataset_path is None or "custom_dataset" in cfg or "class" in cfg:
        return  # Python-defined task or custom loader: lm-eval reports its own errors
    splits = [
        cfg[k] for k in ("test_split", "validation_split", "training_split", "fewshot_split") if cfg.get(k)
    ]
    if dataset_path in LOCAL_BUILDERS:
        files = data_files(cfg)
        missing = [str(p) for p in files if not p.exists()]
        if not files or missing:
            raise EvaluateError(
                f"task {task} needs local data files that do not exist: "
                f"{', '.join(missing) or '(no dataset_kwargs.data_files in ' + str(yaml_path) + ')'}"
            )
        return
    if Path(str(dataset_path)).exists() or _datasets_cached(str(dataset_path)):
        return
    config = f" config {cfg['dataset_name']!r}" if cfg.get("dataset_name") else ""
    raise EvaluateError(
        f"task {task} reads hub dataset {dataset_path!r}{config}, which is not on this machine (sovforge "
        f"never downloads). Copy its split file(s) {', '.join(dict.fromkeys(splits)) or '(all)'} here as "
        f"JSONL and add "
        f"a YAML to --tasks-dir: `task: {task}`, `include: {yaml_path}`, `dataset_path: json`, "
        f"`dataset_name: null`, `dataset_kwargs: {{data_files: {{SPLIT: /path/SPLIT.jsonl}}}}`"
    )


def load_suite(suite: list[str], include_path: Path | None) -> tuple[Any, list[Any]]:
    """(TaskManager, built task/group objects) after checking every name and every local data file.

    Built once and reused for every model, so each dataset is read once per report, not once per model.
    """
    if not suite:
        raise EvaluateError("the suite is empty: name at least one lm-eval task (--suite)")
    manager = task_manager(suite, include_path)
    for name in suite:
        for entry in _leaf_entries(manager, name):
            if isinstance(entry, dict):
                check_data(entry.get("task", name), entry, None)
            else:
                check_data(entry.name, entry.cfg or {}, entry.yaml_path)
    try:
        loaded = manager.load(list(suite))
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise EvaluateError(f"could not load task(s) {', '.join(suite)}: {exc}") from None
    # Hand lm-eval back the top-level objects (a group keeps its aggregate score); a tag is its tasks.
    top: list[Any] = []
    for name in suite:
        if name in loaded["groups"]:
            top.append(loaded["groups"][name])
        elif name in loaded["tasks"]:
            top.append(loaded["tasks"][name])
        else:
            top.extend(
                loaded["tasks"][t] for t in sorted(manager.task_index[name].tags) if t in loaded["tasks"]
            )
    return manager, top


def task_data_ids(manager, suite: list[str]) -> dict[str, dict[str, str]]:
    """{task: {file: sha256}} of each leaf task's YAML and local data files (recorded in the report)."""
    ids: dict[str, dict[str, str]] = {}
    for name in suite:
        for entry in _leaf_entries(manager, name):
            cfg, yaml_path = (entry, None) if isinstance(entry, dict) else (entry.cfg or {}, entry.yaml_path)
            files = [p for p in [yaml_path, *data_files(cfg)] if p is not None and Path(p).is_file()]
            task = entry.get("task", name) if isinstance(entry, dict) else entry.name
            ids[task] = {str(p): _sha256(Path(p)) for p in files}
            if cfg.get("dataset_path") not in (None, *LOCAL_BUILDERS):
                ids[task]["dataset"] = f"{cfg['dataset_path']}:{cfg.get('dataset_name') or ''}"
    return ids


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def local_lm(model: Any, tokenizer: Any, batch_size: int = 1):
    """lm-eval's `hf` backend around a model we loaded ourselves (safe loader; adapters already merged)."""
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)


def endpoint_lm(
    base_url: str,
    model: str,
    api_key: str | None,
    tokenizer: Path | None,
    *,
    chat: bool = False,
    max_length: int = 2048,
):
    """lm-eval's `local-completions` (or `local-chat-completions`) backend against an OpenAI-compatible API.

    Log-likelihood tasks need the server to return `echo` + `logprobs` and a local copy of the served model's
    tokenizer: requests then go as token ids, so the continuation starts exactly where lm-eval computed it.
    Generation-only tasks and the probes need neither (text prompts).
    """
    offline_env()
    from lm_eval.api.registry import get_model

    if tokenizer is not None:
        from sovforge.model.loading import tokenizer_dir

        tokenizer_dir(tokenizer)  # clear error before lm-eval tries to resolve it (never from a hub)
    args: dict[str, Any] = {
        "model": model,
        "max_length": max_length,
        "num_concurrent": 1,
        "max_retries": 1,
        "timeout": 300,
        # our key, not $OPENAI_API_KEY (what the backend reads by default)
        "header": {"Authorization": f"Bearer {api_key}"} if api_key else {},
    }
    if chat:
        args.update(base_url=base_url.rstrip("/") + "/chat/completions")
    else:
        args.update(
            base_url=base_url.rstrip("/") + "/completions",
            tokenized_requests=tokenizer is not None,
            tokenizer_backend="huggingface" if tokenizer is not None else "none",
        )
        if tokenizer is not None:
            args["tokenizer"] = str(tokenizer)
            # lm-eval's hf backend encodes with the tokenizer's own special tokens (a Llama BOS), its API
            # backend without; match the hf backend so a served model scores what it scores locally.
            args["add_bos_token"] = _adds_bos(tokenizer)
    return get_model("local-chat-completions" if chat else "local-completions")(**args)


def _adds_bos(tokenizer: Path) -> bool:
    from sovforge.model.loading import load_tokenizer

    tok = load_tokenizer(tokenizer)
    ids = tok("a")["input_ids"]
    return tok.bos_token_id is not None and bool(ids) and ids[0] == tok.bos_token_id


def score(
    lm, tasks: list[Any], manager, *, limit: int | None, apply_chat_template: bool = False
) -> dict[str, dict]:
    """{task: {metric: value}} (stderr dropped) for one model over the already-built task objects.

    `manager` is passed on: without one, lm-eval indexes its ~15k built-in task files again on every call."""
    from lm_eval import simple_evaluate

    out = simple_evaluate(
        model=lm,
        tasks=tasks,
        task_manager=manager,
        limit=limit,
        log_samples=False,
        bootstrap_iters=0,
        random_seed=0,
        numpy_random_seed=0,
        torch_random_seed=0,
        apply_chat_template=apply_chat_template,
    )
    return {
        task: {
            k.split(",")[0]: v
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and "stderr" not in k
        }
        for task, metrics in out["results"].items()
    }
