"""CPT, LoRA → PEFT load, merge, CLI errors: `.venv/bin/python -m pytest -q tests/adapt -p no:cacheprovider`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sovforge.adapt.config import AdaptConfig, TrainConfig
from sovforge.adapt.cpt import run_cpt
from sovforge.adapt.merge import merge_adapter
from sovforge.adapt.trainer import TrainingError
from sovforge.artifacts import build_artifact, load_artifact

DOMAIN = ("제{i}조(군사기밀의 보호) 군사기밀을 취급하는 사람은 보안 규정을 지켜야 한다. "
          "The unit commander shall protect classified information in section {i}. ")


def make_corpus(path: Path, texts: dict[str, list[str]], classification: str = "UNCLASSIFIED") -> Path:
    with build_artifact(path, kind="corpus") as staging:
        docs = staging.path / "documents"
        docs.mkdir()
        with open(docs / "part-0.jsonl", "w", encoding="utf-8") as handle:
            for split, items in texts.items():
                for n, text in enumerate(items):
                    handle.write(json.dumps({"id": f"{split}{n}", "text": text, "source": f"s{n}.md", "sha256": "0",
                                             "lang": "ko", "classification": "UNCLASSIFIED", "redactions": [],
                                             "split": split}, ensure_ascii=False) + "\n")
        staging.finish(inputs=[], config={}, classification=classification, stats={"documents": sum(map(len, texts.values()))})
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    return make_corpus(root / "c", {"train": [DOMAIN.format(i=i) * 3 for i in range(12)],
                                   "validation": [DOMAIN.format(i=i) * 3 for i in range(40, 43)]},
                       classification="RESTRICTED")


def _cfg(**kw) -> AdaptConfig:
    return AdaptConfig(**{"seq_len": 32, "batch_size": 4, "lora_r": 4, "lora_alpha": 8,
                          "train": TrainConfig(max_steps=8, learning_rate=5e-3, progress=False), **kw})


def test_lora_cpt_lowers_domain_ppl_loads_with_peft_and_merges(tiny_model: Path, corpus: Path, tmp_path: Path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = run_cpt(tiny_model, corpus, _cfg(method="lora"), tmp_path / "adapter")
    art = load_artifact(out, kind="adapter")
    assert art.stats["after"]["val_ppl"] < art.stats["before"]["val_ppl"]
    assert (out / "adapter_model.safetensors").exists() and (out / "metrics.jsonl").exists()
    assert load_artifact(corpus).id in art.manifest["inputs"]
    assert art.classification.name == "RESTRICTED"  # inherited from the corpus

    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, str(out)).eval()
    merged_dir = merge_adapter(out, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    ids = torch.arange(3, 35).view(1, -1)
    with torch.no_grad():
        diff = (peft_model(input_ids=ids).logits - merged(input_ids=ids).logits).abs().max().item()
    assert diff < 1e-4, diff
    assert load_artifact(merged_dir, kind="model").manifest["inputs"]


def test_full_cpt_with_replay(tiny_model: Path, corpus: Path, sample_text_dir: Path, tmp_path: Path):
    out = run_cpt(tiny_model, corpus, _cfg(method="full", replay_text=[sample_text_dir], replay_share=0.25),
                  tmp_path / "full")
    stats = load_artifact(out, kind="model").stats
    assert stats["replay_blocks"] > 0 and "general_val_ppl" in stats["after"]
    assert stats["after"]["val_ppl"] < stats["before"]["val_ppl"]


def test_bad_inputs_fail_before_training(tiny_model: Path, corpus: Path, tmp_path: Path):
    empty = make_corpus(tmp_path / "empty", {"train": []})
    with pytest.raises(TrainingError, match="no training text"):
        run_cpt(tiny_model, empty, _cfg(), tmp_path / "o1")
    with pytest.raises(TrainingError, match="max_position_embeddings"):
        run_cpt(tiny_model, corpus, _cfg(seq_len=100_000), tmp_path / "o2")
    no_tok = tmp_path / "no_tok"
    shutil.copytree(tiny_model, no_tok)
    (no_tok / "tokenizer.json").unlink()
    from sovforge.model.loading import ModelLoadError

    with pytest.raises(ModelLoadError, match="no tokenizer"):
        run_cpt(no_tok, corpus, _cfg(), tmp_path / "o3")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o3").exists()


def test_cli_clear_errors_and_print_launch(tiny_model: Path, corpus: Path, tmp_path: Path):
    from sovforge.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["adapt", "cpt", "--base", str(tiny_model), "--corpus", str(tmp_path / "nope"),
                                 "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    launch = runner.invoke(app, ["adapt", "cpt", "--base", "B", "--corpus", "C", "--out", "O",
                                 "--print-launch", "fsdp", "--num-machines", "2"])
    assert launch.exit_code == 0, launch.output
    assert "accelerate launch --config_file examples/accelerate/fsdp.yaml --num_processes 16" in launch.output


def test_run_stage_uses_base_and_ingest_inputs(tiny_model: Path, corpus: Path, tmp_path: Path):
    from types import SimpleNamespace

    from sovforge.adapt.stage import run_stage

    ctx = SimpleNamespace(input={"base": tiny_model, "ingest": corpus}.__getitem__, out=tmp_path / "adapt")
    out = run_stage(_cfg(method="lora", train=TrainConfig(max_steps=2, progress=False)), ctx)
    assert load_artifact(out, kind="adapter").stats["steps"] == 2
