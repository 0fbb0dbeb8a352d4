"""The tiny base model: standard HF layout, loads with plain transformers, generates, Korean round-trips."""

import json

import torch

from sovforge.artifacts import load_artifact, verify


def test_loads_with_plain_transformers_and_generates(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    assert model.config.model_type == "llama"
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 64
    ids = tok("제1조(목적) 이 법은", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
    assert not list(tiny_model.glob("*.bin")), "weights must be safetensors only"


def test_tokenizer_round_trips_korean_and_english(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    text = "군인사법 제12조의3: The commander 평가한다 — Ⅱ급비밀 ✓"
    assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text
    assert tok.bos_token == "<|begin_of_text|>" and tok.eos_token == "<|endoftext|>"


def test_chat_template_marks_assistant_tokens(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    out = tok.apply_chat_template(
        [{"role": "user", "content": "군번이 뭐야?"}, {"role": "assistant", "content": "군 복무 번호입니다."}],
        tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    mask = out["assistant_masks"]
    assert 0 < sum(mask) < len(mask)
    answer = tok.decode([t for t, m in zip(out["input_ids"], mask) if m])
    assert answer.startswith("군 복무 번호입니다.")


def test_save_load_round_trip_keeps_weights(tiny_model, tmp_path):
    from sovforge.model.loading import load_model

    model = load_model(tiny_model)
    model.save_pretrained(tmp_path / "copy")
    again = load_model(tmp_path / "copy")
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name


def test_base_artifact_manifest(tiny_model):
    artifact = load_artifact(tiny_model)
    assert artifact.kind == "model" and artifact.stats["parameters"] > 0
    assert artifact.stats["pretrain"]["steps"] == 3
    assert verify(tiny_model).ok
    config = json.loads((tiny_model / "config.json").read_text())
    assert "auto_map" not in config


def test_loader_refuses_unsafe_checkpoints(tiny_model, tmp_path):
    import shutil

    import pytest

    from sovforge.model.loading import ModelLoadError, load_model, load_tokenizer

    remote = tmp_path / "remote"
    shutil.copytree(tiny_model, remote)
    config = json.loads((remote / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (remote / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="custom model code"):
        load_model(remote)

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_model, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="pickle"):
        load_model(pickled)

    with pytest.raises(ModelLoadError, match="no such model directory"):
        load_model(tmp_path / "nowhere")
    no_tok = tmp_path / "no-tok"
    no_tok.mkdir()
    with pytest.raises(ModelLoadError, match="no tokenizer"):
        load_tokenizer(no_tok)
