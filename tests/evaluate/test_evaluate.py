"""pytest tests/evaluate: generated lm-eval tasks, plain lm-eval parity, the safety probes on a memorising
model, the gate on a broken candidate (and serve's promotion check), the recipe stage (base + adapter +
compress variants in one report), per-model speed, bad inputs, the suite against a live `sovforge serve`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sovforge.artifacts import load_artifact, open_input, verify
from sovforge.cli import app
from sovforge.demo.broken import noisy_copy
from tests.evaluate.conftest import write_corpus

FAST = ["--no-speed", "--no-safety"]


def test_make_tasks_writes_rerunnable_lm_eval_tasks(tasks_dir, corpus):
    from sovforge.artifacts import file_sha256
    from sovforge.evaluate.maketasks import RECALL_PATTERN, TERM_PATTERNS

    cloze = [json.loads(line) for line in (tasks_dir / "sovforge_cloze.jsonl").read_text().splitlines()]
    recall = [json.loads(line) for line in (tasks_dir / "sovforge_recall.jsonl").read_text().splitlines()]
    assert cloze and len(cloze) == len(recall)
    for item, gen in zip(cloze, recall, strict=True):
        assert len(item["choices"]) == 4 and 0 <= item["label"] < 4 and len(set(item["choices"])) == 4
        # every choice is a term of the item's own kind: a fair choice, decided by knowledge, not by form
        assert all(
            TERM_PATTERNS[item["kind"]].search(c.strip() if item["kind"] != "kr_defined" else f"“{c}”란")
            for c in item["choices"]
        ), item
        assert gen["answer"] == item["choices"][item["label"]].strip()
        import re

        assert re.search(RECALL_PATTERN, gen["answer"]).group(0) == gen["answer"]
    assert {i["kind"] for i in cloze} & {"kr_article", "kr_rank", "kr_unit"} and {
        i["kind"] for i in cloze
    } & {"en_rank", "en_unit", "en_reference"}  # Korean and English items
    index = json.loads((tasks_dir / "tasks.json").read_text())
    assert index["corpus_id"] == open_input(corpus).id
    assert (
        index["files"] == {f: file_sha256(tasks_dir / f) for f in index["files"]} and len(index["files"]) == 6
    )


def test_our_scores_equal_plain_lm_eval(tiny_model, tasks_dir):
    """The numbers in a report are lm-eval's: the same tasks through plain `hf` pretrained=PATH give them."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from sovforge.evaluate.harness import load_suite, local_lm, score
    from sovforge.evaluate.models import resolve_models

    suite = ["sovforge_ppl", "sovforge_cloze"]
    manager, tasks = load_suite(suite, tasks_dir)
    model, tokenizer = resolve_models([tiny_model])[0][0].load()
    ours = score(local_lm(model, tokenizer), tasks, manager, limit=3)
    plain = simple_evaluate(
        model="hf",
        model_args=f"pretrained={tiny_model},dtype=float32,device=cpu",
        tasks=suite,
        task_manager=TaskManager(include_path=str(tasks_dir), include_defaults=False),
        limit=3,
        bootstrap_iters=0,
    )["results"]
    for task, metric in (
        ("sovforge_ppl", "word_perplexity"),
        ("sovforge_ppl", "bits_per_byte"),
        ("sovforge_cloze", "acc"),
    ):
        assert plain[task][f"{metric},none"] == pytest.approx(ours[task][metric], rel=1e-6), (task, metric)


def test_probes_tell_a_memorising_model_from_a_normal_one(
    memorised_model, lora_adapter, corpus, tasks_dir, tmp_path
):
    """Canaries planted by ingest: many epochs → high exposure and extraction; normal training → near chance.
    The leaky replay file's e-mail and SECRET header come back out of the memorising model only; the gate
    names each safety rule it fails and the command exits 2."""
    out = tmp_path / "report"
    config = tmp_path / "evaluate.yaml"
    config.write_text("batch_size: 16\nsafety: {canary_candidates: 64, max_new_tokens: 16}\n")
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(memorised_model),
            "--reference",
            str(lora_adapter),
            "--corpus",
            str(corpus),
            "--tasks-dir",
            str(tasks_dir),
            "--suite",
            "sovforge_ppl",
            "--limit",
            "2",
            "--no-speed",
            "--config",
            str(config),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 2, result.output
    for rule in ("canary_extractions_max", "pii_leaks_max", "marking_leaks_max"):
        assert rule in result.output
    results = json.loads((out / "results.json").read_text())["results"]
    memorised, normal = results["memorised"]["safety"], results["lora"]["safety"]
    assert memorised["canary"]["canaries"] == 3 == len(memorised["canary"]["per_canary"])
    # exposure is at most log2(64) = 6 bits; chance level is about 1 bit
    assert memorised["canary"]["exposure_mean"] > 4.5 and normal["canary"]["exposure_mean"] < 3
    assert memorised["canary"]["extractions"] >= 1 and normal["canary"]["extractions"] == 0
    assert memorised["pii"]["types"].get("email", 0) >= 1 and normal["pii_leaks"] == 0
    assert memorised["marking"]["levels"].get("SECRET", 0) >= 1 and normal["marking_leaks"] == 0
    assert memorised["pii"]["redacted_contexts"] >= 1  # prompts came from the document ingest redacted
    assert "kim@army.mil" not in (out / "results.json").read_text()  # counts and types, never the value
    report = load_artifact(out, kind="report")
    assert report.stats["promoted"] is False and open_input(corpus).id in report.manifest["inputs"]


def test_broken_candidate_fails_the_gate_and_serve_refuses_it(tiny_model, lora_adapter, tasks_dir, tmp_path):
    from sovforge.serve.app import PromotionError, check_promotion

    noisy = noisy_copy(tiny_model, tmp_path / "noisy")
    runner = CliRunner()
    args = ["--reference", str(tiny_model), "--tasks-dir", str(tasks_dir), "--limit", "4", *FAST]
    failed = runner.invoke(
        app, ["evaluate", str(lora_adapter), str(noisy), *args, "--out", str(tmp_path / "r1")]
    )
    assert failed.exit_code == 2, failed.output
    assert "candidate noisy NOT promoted" in failed.output and "ppl_ratio_max" in failed.output
    results = json.loads((tmp_path / "r1" / "results.json").read_text())
    assert set(results["models"]) == {"tiny-base", "lora", "noisy"}  # base vs adapted vs broken in one report
    assert (
        results["models"]["noisy"]["role"] == "candidate"
        and results["models"]["tiny-base"]["role"] == "reference"
    )
    assert [r["rule"] for r in results["gate"] if r["status"] == "fail"][0] == "ppl_ratio_max"
    with pytest.raises(PromotionError, match="ppl_ratio_max"):
        check_promotion(open_input(noisy).id, tmp_path / "r1", force=False)

    passed = runner.invoke(
        app, ["evaluate", str(lora_adapter), *args, "--suite", "sovforge_ppl", "--out", str(tmp_path / "r2")]
    )
    assert passed.exit_code == 0, passed.output
    assert check_promotion(open_input(lora_adapter).id, tmp_path / "r2", force=False) == "promoted"


def test_stage_reports_base_adapter_and_variants_in_one_report(tiny_model, corpus, lora_adapter, eval_root):
    """`sovforge run`'s evaluate stage: base (reference) + LoRA adapter (base + adapter) + every variant,
    speed measured per model; a failing gate raises after the report (promoted: false) is written."""
    from sovforge.compress.config import CompressConfig
    from sovforge.compress.stage import compress_model
    from sovforge.config import parse_recipe
    from sovforge.evaluate.runner import GateFailed
    from sovforge.evaluate.stage import run_stage
    from sovforge.pipeline import StageContext

    compressed = compress_model(
        tiny_model,
        corpus,
        CompressConfig(variants=[{"name": "bf16", "hf": {"dtype": "bfloat16"}}], measure={"enabled": False}),
        eval_root / "compress",
    )
    recipe = parse_recipe(
        {
            "workdir": str(eval_root / "run"),
            "evaluate": {
                "suite": ["sovforge_ppl", "sovforge_cloze"],
                "limit": 4,
                "safety": {"canary_candidates": 32, "max_new_tokens": 8},
                # peak RSS (a fresh process per model) has its own test below
                "speed": {"new_tokens": 4, "repeats": 1, "prompt_repeat": 1, "rss": False},
            },
            "gate": {"ppl_ratio_max": 0.001},
        }
    )
    ctx = StageContext(
        recipe=recipe,
        workdir=eval_root / "run",
        out=eval_root / "run" / "evaluate",
        artifacts={"base": tiny_model, "ingest": corpus, "adapt": lora_adapter, "compress": compressed},
    )
    with pytest.raises(GateFailed, match="candidate adapt NOT promoted.*ppl_ratio_max"):
        run_stage(recipe.evaluate, ctx)
    out = ctx.out
    report = json.loads((out / "results.json").read_text())
    assert list(report["models"]) == ["base", "adapt", "bf16"]
    assert report["models"]["adapt"]["kind"] == "adapter" and report["models"]["adapt"]["adapter"]
    assert report["promoted"] is False and report["candidate"] == open_input(lora_adapter).id
    ppl = {name: r["sovforge_ppl"]["word_perplexity"] for name, r in report["results"].items()}
    assert ppl["adapt"] < ppl["base"]  # the adapted model beats the base on the domain
    assert ppl["bf16"] == pytest.approx(ppl["base"], rel=0.05)  # a rounding, not a different model
    for name, r in report["results"].items():
        assert r["speed"]["decode_tok_s"] > 0 and r["speed"]["ttft_s"] > 0 and r["speed"]["disk_mb"] > 0, name
        assert set(r["safety"]) >= {"pii_leaks", "marking_leaks", "canary"}
    manifest = load_artifact(out, kind="report").manifest
    ids = {m["id"] for m in report["models"].values()}
    assert ids | {open_input(corpus).id} <= set(manifest["inputs"]) and verify(out).ok
    assert {"sovforge_ppl", "sovforge_cloze"} <= set(manifest["config"]["task_data"])
    assert all(len(h) == 64 for files in manifest["config"]["task_data"].values() for h in files.values())
    html = (out / "report.html").read_text()
    assert (
        html.count("<img") >= 3 and "data:image/png;base64," in html and "http" not in html.split("<body>")[1]
    )
    for text in (
        "ppl_ratio_max",
        "Safety",
        "Speed and size",
        "perplexity vs size vs speed",
        report["models"]["bf16"]["id"],
        "UNCLASSIFIED",
    ):
        assert text in html


def test_peak_rss_is_measured_per_model(tiny_model, tmp_path):
    """A large model measured first must not inflate the small one's memory (each has its own process)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from sovforge.evaluate.config import SpeedConfig
    from sovforge.evaluate.models import resolve_models
    from sovforge.evaluate.speed import measure_speed
    from sovforge.model.loading import load_tokenizer

    big = tmp_path / "big"
    config = LlamaConfig(
        vocab_size=len(load_tokenizer(tiny_model)),
        hidden_size=384,
        intermediate_size=1536,
        num_hidden_layers=4,
        num_attention_heads=6,
        max_position_embeddings=256,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(big, safe_serialization=True)
    load_tokenizer(tiny_model).save_pretrained(big)
    cfg = SpeedConfig(new_tokens=4, repeats=1)
    speeds = {}
    for path in (big, tiny_model):  # big first: an in-process high-water mark would report it for both
        subject = resolve_models([path])[0][0]
        model, tokenizer = subject.load()
        speeds[path.name] = measure_speed(subject, model, tokenizer, cfg)
        del model
    big_mb = sum(p.numel() for p in LlamaForCausalLM(config).parameters()) * 4 / 2**20
    assert speeds["tiny-base"]["load_rss_mb"] < speeds["big"]["load_rss_mb"] - big_mb / 2
    assert all(s["peak_rss_mb"] >= s["load_rss_mb"] for s in speeds.values())
    assert speeds["big"]["disk_mb"] > 10 * speeds["tiny-base"]["disk_mb"]
    for s in speeds.values():
        assert s["ttft_s"] > 0 and s["decode_tok_s"] > 0 and s["prefill_tok_s"] > 0 and s["new_tokens"] == 4


def test_bad_inputs_are_clear_errors(tiny_model, tasks_dir, tmp_path):
    runner = CliRunner()

    def evaluate(*args: str) -> str:
        r = runner.invoke(app, ["evaluate", *args, "--out", str(tmp_path / "never"), *FAST])
        assert r.exit_code == 1, r.output
        assert not (tmp_path / "never").exists()  # a failed run leaves no half report
        return " ".join(r.output.split())

    base = ["--tasks-dir", str(tasks_dir)]
    assert "unknown lm-eval task(s): no_such_task" in evaluate(
        str(tiny_model), "--suite", "no_such_task", *base
    )
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not a model")
    assert "is not a loadable model" in evaluate(str(tmp_path / "notes"), *base)
    r = runner.invoke(
        app,
        [
            "evaluate",
            "make-tasks",
            str(write_corpus(tmp_path / "c", validation=False)),
            "--out",
            str(tmp_path / "t"),
        ],
    )
    assert r.exit_code == 1 and "empty validation split" in r.output
    # a local task whose data file is gone, and a built-in lm-eval task whose hub data is not on this machine
    own = tmp_path / "own-tasks"
    own.mkdir()
    (own / "mine.yaml").write_text(
        (tasks_dir / "sovforge_cloze.yaml")
        .read_text()
        .replace("task: sovforge_cloze", "task: mine")
        .replace(str(tasks_dir / "sovforge_cloze.jsonl"), str(own / "gone.jsonl"))
    )
    assert f"task mine needs local data files that do not exist: {own / 'gone.jsonl'}" in evaluate(
        str(tiny_model), "--suite", "mine", "--tasks-dir", str(own)
    )
    message = evaluate(str(tiny_model), "--suite", "kobest_boolq", *base)
    assert (
        "kobest_boolq reads hub dataset 'skt/kobest_v1' config 'boolq'" in message
        and "never downloads" in message
    )
    assert "test, validation, train" in message  # the split files it needs
    assert "not a corpus" in evaluate(str(tiny_model), "--corpus", str(tmp_path / "notes"), *base)


def test_a_builtin_lm_eval_task_runs_from_local_files(tiny_model, tmp_path):
    """What the missing-data error advises: a YAML that includes lm-eval's own KoBEST BoolQ task and points it
    at local JSONL files makes `--suite kobest_boolq` run offline (its hub-evaluate f1 swapped for acc)."""
    from importlib import resources

    rows = [
        {"paragraph": "군인은 명령에 복종하여야 한다.", "question": "군인은 명령에 복종하는가?", "label": 1},
        {"paragraph": "휴가는 연 21일로 한다.", "question": "휴가는 30일인가?", "label": 0},
    ]
    data = {}
    for split in ("train", "validation", "test"):
        data[split] = tmp_path / f"{split}.jsonl"
        data[split].write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    builtin = resources.files("lm_eval.tasks").joinpath("kobest/kobest_boolq.yaml")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "kobest_boolq.yaml").write_text(
        f"task: kobest_boolq\ninclude: {builtin}\ndataset_path: json\ndataset_name: null\n"
        "dataset_kwargs:\n  data_files:\n" + "".join(f"    {k}: {v}\n" for k, v in data.items())
        + "metric_list:\n  - metric: acc\n")
    result = CliRunner().invoke(app, ["evaluate", str(tiny_model), "--suite", "kobest_boolq", "--tasks-dir",
                                      str(tasks), *FAST, "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "report" / "results.json").read_text())["results"]["tiny-base"]
    assert scores["kobest_boolq"]["sample_len"] == 2 and 0 <= scores["kobest_boolq"]["acc"] <= 1
    task_data = load_artifact(tmp_path / "report").config["task_data"]["kobest_boolq"]
    assert {str(p) for p in data.values()} <= set(task_data)  # the local files' sha256 are in the manifest


def test_the_suite_runs_against_a_live_sovforge_serve(tiny_model, tasks_dir, tmp_path):
    """Item 7: the same suite through lm-eval's local-completions backend against a real gateway on 127.0.0.1
    gives the local model's numbers (log-likelihoods via echo + logprobs, generations greedy)."""
    import shutil

    from sovforge.serve.app import create_app
    from sovforge.serve.config import ServeConfig
    from tests.serve.conftest import serving

    # lm-eval's API backend keeps one position for a generated token, so its rolling windows are one token
    # shorter than the hf backend's; with a context longer than every document both score each document in
    # one window.
    model = tmp_path / "tiny-base"
    shutil.copytree(tiny_model, model)
    (model / "manifest.json").unlink()
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 2048}))
    gateway = create_app(
        ServeConfig(
            model=model, state_dir=tmp_path / "serve", force_unpromoted=True, requests_per_minute=100_000
        )
    )
    key = gateway.state.store.create_key("evaluator")[1]
    suite = "sovforge_ppl,sovforge_cloze,sovforge_recall"
    local = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(model),
            "--tasks-dir",
            str(tasks_dir),
            "--suite",
            suite,
            "--limit",
            "3",
            *FAST,
            "--out",
            str(tmp_path / "local"),
        ],
    )
    assert local.exit_code == 0, local.output
    os.environ["SOVFORGE_TEST_KEY"] = key
    with serving(gateway) as url:
        served = CliRunner().invoke(
            app,
            [
                "evaluate",
                "--endpoint",
                f"{url}/v1",
                "--endpoint-model",
                gateway.state.model_id,
                "--api-key-env",
                "SOVFORGE_TEST_KEY",
                "--endpoint-tokenizer",
                str(model),
                "--tasks-dir",
                str(tasks_dir),
                "--suite",
                suite,
                "--limit",
                "3",
                "--no-speed",
                "--out",
                str(tmp_path / "served"),
            ],
        )
    assert served.exit_code == 0, served.output
    ours = json.loads((tmp_path / "local" / "results.json").read_text())["results"]["tiny-base"]
    theirs = json.loads((tmp_path / "served" / "results.json").read_text())
    remote = theirs["results"][f"endpoint:{gateway.state.model_id}"]
    assert remote["sovforge_ppl"]["word_perplexity"] == pytest.approx(
        ours["sovforge_ppl"]["word_perplexity"], rel=1e-3
    )
    assert remote["sovforge_cloze"]["acc"] == ours["sovforge_cloze"]["acc"]
    assert remote["sovforge_recall"]["exact_match"] == ours["sovforge_recall"]["exact_match"]
    assert remote["safety"]["pii"]["prompts"] > 0 and "marking_leaks" in remote["safety"]
    assert theirs["models"][f"endpoint:{gateway.state.model_id}"]["kind"] == "endpoint"
    assert gateway.state.store.verify() == []  # every request the evaluation made is in the audit chain
    wrong = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--endpoint",
            "http://127.0.0.1:9/v1",
            "--endpoint-model",
            "x",
            "--tasks-dir",
            str(tasks_dir),
            "--suite",
            "sovforge_recall",
            "--out",
            str(tmp_path / "none"),
        ],
    )
    assert wrong.exit_code == 1 and "not reachable" in wrong.output


@pytest.mark.slow
def test_plain_lm_eval_cli_reproduces_the_report(tiny_model, tasks_dir, tmp_path):
    """The README command: `lm_eval run --model hf --include_path TASKS ...` gives the report's numbers."""
    import subprocess
    import sys

    out = tmp_path / "lm_eval"
    subprocess.run(
        [
            str(Path(sys.executable).with_name("lm_eval")),
            "run",
            "--model",
            "hf",
            "--model_args",
            f"pretrained={tiny_model},dtype=float32",
            "--device",
            "cpu",
            "--include_path",
            str(tasks_dir),
            "--tasks",
            "sovforge_ppl,sovforge_cloze",
            "--limit",
            "3",
            "--output_path",
            str(out),
        ],
        check=True,
        env={**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"},
        timeout=900,
    )
    plain = json.loads(next(out.rglob("results_*.json")).read_text())["results"]
    r = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(tiny_model),
            "--tasks-dir",
            str(tasks_dir),
            "--limit",
            "3",
            *FAST,
            "--out",
            str(tmp_path / "ours"),
        ],
    )
    assert r.exit_code == 0, r.output
    ours = json.loads((tmp_path / "ours" / "results.json").read_text())["results"]["tiny-base"]
    assert plain["sovforge_ppl"]["word_perplexity,none"] == pytest.approx(
        ours["sovforge_ppl"]["word_perplexity"]
    )
    assert plain["sovforge_cloze"]["acc,none"] == pytest.approx(ours["sovforge_cloze"]["acc"])


@pytest.mark.slow
def test_recipe_end_to_end_gates_the_compressed_candidate(tmp_path):
    """`sovforge run` with every real stage: base → ingest (canaries) → adapt (LoRA) → compress (bf16, GPTQ
    W4A16) → evaluate: one report with base, adapter, its merge and both variants; W4A16 is the candidate."""
    import yaml

    from sovforge.config import load_recipe
    from sovforge.pipeline import run_recipe
    from tests.compress.compress_helpers import W4A16_G32
    from tests.conftest import SAMPLE_TEXT
    from tests.evaluate.conftest import DOCUMENTS

    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCUMENTS.items():
        (docs / name).write_text(text, encoding="utf-8")
    (tmp_path / "text.txt").write_text("\n".join(SAMPLE_TEXT))
    recipe = {
        "name": "e2e",
        "workdir": str(tmp_path / "run"),
        "base": {
            "text": [str(tmp_path / "text.txt")],
            "preset": "tiny",
            "vocab_size": 512,
            "pretrain_steps": 3,
            "seq_len": 32,
            "batch_size": 4,
            "max_position_embeddings": 256,
        },
        "ingest": {
            "inputs": [str(docs)],
            "val_share": 0.3,
            "canaries": 3,
            "canary_repeats": 2,
            "progress": False,
        },
        "adapt": {
            "mode": "cpt",
            "method": "lora",
            "seq_len": 32,
            "batch_size": 16,
            "train": {"max_steps": 20, "learning_rate": 1e-2, "progress": False},
        },
        "compress": {
            "variants": [{"name": "bf16", "hf": {"dtype": "bfloat16"}}, W4A16_G32],
            "calibration": {"samples": 8, "seq_len": 32},
            "measure": {"enabled": False},
        },
        "evaluate": {
            "suite": ["sovforge_ppl", "sovforge_cloze", "sovforge_recall"],
            "candidate": "w4a16",
            "safety": {"canary_candidates": 64},
            "speed": {"new_tokens": 8},
        },
        "gate": {"ppl_ratio_max": 1.05, "cloze_drop_max_points": 10.0},
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe, allow_unicode=True))
    from sovforge.evaluate.runner import GateFailed

    try:
        evaluated = run_recipe(load_recipe(tmp_path / "recipe.yaml"))["evaluate"]
    except GateFailed as exc:  # the report is written either way; the verdict is the gate's, checked below
        evaluated = tmp_path / "run" / "evaluate"
        assert "w4a16 NOT promoted" in str(exc)
    report = json.loads((evaluated / "results.json").read_text())
    # compress merged the adapter first ("merged": the dense model serve can load), then built both variants
    assert list(report["models"]) == ["base", "adapt", "merged", "bf16", "w4a16"]
    assert (
        report["models"]["adapt"]["kind"] == "adapter" and report["models"]["w4a16"]["kind"] == "compressed"
    )
    assert report["candidate_name"] == "w4a16"
    assert report["promoted"] is not any(r["status"] == "fail" for r in report["gate"])
    assert all("sovforge_recall" in r and "peak_rss_mb" in r["speed"] for r in report["results"].values())
    ppl = {n: r["sovforge_ppl"]["word_perplexity"] for n, r in report["results"].items()}
    assert ppl["adapt"] < ppl["base"] and ppl["merged"] == pytest.approx(ppl["adapt"], rel=1e-3)
    assert verify(evaluated).ok
