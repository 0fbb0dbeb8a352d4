"""pytest tests/evaluate: make-tasks, lm-eval scoring, gate on a noisy candidate, canary probe, bad inputs."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from sovforge.artifacts import build_artifact, load_artifact
from sovforge.cli import app
from sovforge.evaluate.canary import canary_probe, make_canaries, plant_canaries
from sovforge.evaluate.maketasks import make_tasks

KO = "제{n}조(정의) 이 법에서 “군사기밀”이란 대대 및 연대의 작전 계획을 말한다. 소대장은 중대장에게 보고한다."
EN = "The platoon leader reports to the company commander under FM 6-22. The battalion staff plans operations."


def _corpus(path, validation=True):
    docs = [{"id": f"d{i}", "text": (KO.format(n=i + 1) + " " + EN) * 2, "source": f"s{i}.md", "sha256": "0" * 64,
             "lang": "ko", "classification": "UNCLASSIFIED", "redactions": [],
             "split": "validation" if validation and i % 2 else "train"} for i in range(8)]
    with build_artifact(path, kind="corpus") as staging:
        (staging.path / "documents").mkdir()
        (staging.path / "documents" / "part-0.jsonl").write_text(
            "\n".join(json.dumps(d, ensure_ascii=False) for d in docs) + "\n")
        staging.finish(inputs=[], config={}, stats={"documents": len(docs)})
    return path


@pytest.fixture(scope="module")
def tasks_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    out = root / "tasks"
    counts = make_tasks(_corpus(root / "corpus"), out)
    assert counts["ppl_documents"] == 4 and counts["cloze_items"] > 0
    return out


def test_cloze_items_have_same_kind_distractors(tasks_dir):
    items = [json.loads(line) for line in (tasks_dir / "sovforge_cloze.jsonl").read_text().splitlines()]
    for item in items:
        assert len(item["choices"]) == 4 and 0 <= item["label"] < 4
    articles = [i for i in items if i["kind"] == "kr_article"]
    assert all(c.strip().startswith("제") for i in articles for c in i["choices"])


def _noisy_copy(model, out):
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(model, out)
    (out / "manifest.json").unlink()  # a plain HF checkpoint: new content, new id
    for path in out.glob("*.safetensors"):
        torch.manual_seed(0)
        tensors = {k: v + torch.randn_like(v) * 0.5 for k, v in load_file(path).items()}
        save_file(tensors, path, metadata={"format": "pt"})
    return out


def test_noisy_candidate_fails_gate(tiny_model, tasks_dir, tmp_path):
    noisy = _noisy_copy(tiny_model, tmp_path / "noisy")
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["evaluate", str(noisy), "--reference", str(tiny_model), "--tasks-dir",
                                      str(tasks_dir), "--out", str(out), "--limit", "4"])
    assert result.exit_code == 2, result.output
    assert "ppl_ratio_max" in result.output
    report = load_artifact(out, kind="report")
    assert report.stats["promoted"] is False and report.stats["failed_rules"]
    results = json.loads((out / "results.json").read_text())
    assert len(results["models"]) == 2 and "<img" in (out / "report.html").read_text()


def test_plain_lm_eval_gives_same_numbers(tiny_model, tasks_dir):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from sovforge.evaluate.runner import check_tasks, run_lm_eval

    ours = run_lm_eval(tiny_model, ["sovforge_ppl"], check_tasks(["sovforge_ppl"], tasks_dir), limit=2)
    plain = simple_evaluate(model="hf", model_args=f"pretrained={tiny_model},dtype=float32,device=cpu",
                            tasks=["sovforge_ppl"], task_manager=TaskManager(include_path=str(tasks_dir)), limit=2)
    assert plain["results"]["sovforge_ppl"]["word_perplexity,none"] == pytest.approx(
        ours["sovforge_ppl"]["word_perplexity"])


def test_bad_inputs_are_clear_errors(tiny_model, tasks_dir, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["evaluate", str(tiny_model), "--suite", "no_such_task", "--tasks-dir", str(tasks_dir),
                            "--out", str(tmp_path / "r1")])
    assert r.exit_code == 1 and "unknown lm-eval task" in r.output
    r = runner.invoke(app, ["evaluate", str(tmp_path), "--tasks-dir", str(tasks_dir), "--out", str(tmp_path / "r2")])
    assert r.exit_code == 1 and "not a loadable model" in r.output
    r = runner.invoke(app, ["evaluate", "make-tasks", str(_corpus(tmp_path / "c", validation=False)),
                            "--out", str(tmp_path / "t")])
    assert r.exit_code == 1 and "empty validation split" in r.output


def test_canary_exposure_separates_memorised_model(tiny_model):
    import torch

    from sovforge.model.loading import load_model, load_tokenizer

    tokenizer = load_tokenizer(tiny_model)
    canaries = make_canaries(2, seed=1)
    texts = plant_canaries(["The platoon moves at dawn."] * 4, canaries, repeats=2)
    clean = load_model(tiny_model, dtype=torch.float32, device="cpu")
    trained = load_model(tiny_model, dtype=torch.float32, device="cpu")
    torch.manual_seed(0)
    opt = torch.optim.AdamW(trained.parameters(), lr=3e-3)
    batch = tokenizer(canaries, return_tensors="pt", padding=True)
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    for _ in range(150):  # many epochs on the canary text: deliberate memorisation
        loss = trained(**batch, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert any(c in t for c in canaries for t in texts)
    memorised = canary_probe(trained.eval(), tokenizer, canaries, candidates=64)
    baseline = canary_probe(clean.eval(), tokenizer, canaries, candidates=64)
    assert memorised["exposure_mean"] > 4 and memorised["exposure_mean"] > baseline["exposure_mean"] + 2
