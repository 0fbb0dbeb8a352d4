"""SFT: chat/instruction rows, assistant-only labels, packing without leakage, screening, PEFT/merge, make-sft.

    .venv/bin/python -m pytest -q -p no:cacheprovider tests/adapt/test_sft.py
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from sovforge.adapt.config import AdaptConfig, TrainConfig
from sovforge.adapt.sft import (IGNORE, Example, SFTDataError, encode, iter_conversations, packed_batches,
                                read_sft_files, row_messages, run_sft, supervised_ids)
from sovforge.artifacts import load_artifact, verify
from sovforge.classification import Level

# A Qwen2-style ChatML template *without* {% generation %} markers, as most real checkpoints ship (A.X 4.0 Light is
# Qwen2): the assistant mask then comes from rendering prefixes.
QWEN_TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")

CHAT = [{"role": "system", "content": "국방 행정 도우미입니다."},
        {"role": "user", "content": "군사기밀 보호법 제1조는?"},
        {"role": "assistant", "content": "목적 조항입니다."},
        {"role": "user", "content": "Which manual covers leader development?"},
        {"role": "assistant", "content": "FM 6-22, Developing Leaders."}]


def _cfg(**kw) -> AdaptConfig:
    return AdaptConfig(**{"mode": "sft", "seq_len": 128, "batch_size": 4, "lora_r": 4, "lora_alpha": 8,
                          "sft_val_share": 0.2,
                          "train": TrainConfig(max_steps=8, learning_rate=5e-3, progress=False), **kw})


@pytest.fixture(scope="module")
def qwen_markerless(tmp_path_factory, tiny_qwen2: Path) -> Path:
    """The tiny Qwen2 checkpoint with a marker-less ChatML template and no BOS (like real Qwen2 tokenizers)."""
    from sovforge.model.loading import load_tokenizer

    out = tmp_path_factory.mktemp("models") / "qwen-markerless"
    shutil.copytree(tiny_qwen2, out)
    tokenizer = load_tokenizer(out)
    tokenizer.chat_template = QWEN_TEMPLATE
    tokenizer.save_pretrained(out)
    return out


@pytest.mark.parametrize("which", ["tiny_model", "qwen_markerless"])
def test_labels_are_exactly_the_assistant_replies(which: str, request):
    from sovforge.model.loading import load_tokenizer

    tokenizer = load_tokenizer(request.getfixturevalue(which))
    ids, mask = supervised_ids(tokenizer, CHAT)
    supervised = tokenizer.decode([t for t, m in zip(ids, mask) if m])
    assert supervised == "목적 조항입니다.<|im_end|>FM 6-22, Developing Leaders.<|im_end|>"
    unsupervised = tokenizer.decode([t for t, m in zip(ids, mask) if not m])
    assert "군사기밀 보호법 제1조는?" in unsupervised and "국방 행정 도우미" in unsupervised
    (example,), _ = encode(tokenizer, [type("C", (), {"messages": CHAT})()], seq_len=512)
    assert [t for t in example.labels if t != IGNORE] == [t for t, m in zip(ids, mask) if m]
    if which == "tiny_model":  # this tokenizer starts every sequence with BOS, never supervised
        assert ids[0] == tokenizer.bos_token_id and example.labels[0] == IGNORE


def test_instruction_rows_and_row_errors(tmp_path: Path):
    messages = row_messages({"instruction": "요약하시오.", "input": "제1조(목적) ...", "output": "목적 조항."}, "f:1")
    assert [m["role"] for m in messages] == ["user", "assistant"] and "제1조(목적)" in messages[0]["content"]
    for row, message in [({"instruction": "질문", "output": ""}, "no assistant turn"),
                         ({"messages": [{"role": "user", "content": "q"}]}, "no assistant turn"),
                         ({"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}]},
                          "before any user turn"),
                         ({"messages": [{"role": "robot", "content": "x"}]}, "role in"),
                         ({"text": "plain"}, "neither a chat row")]:
        with pytest.raises(SFTDataError, match=message):
            row_messages(row, "f:1")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{not json}\n', encoding="utf-8")
    with pytest.raises(SFTDataError, match=r"bad.jsonl:2: not a JSON line"):
        list(iter_conversations(bad, Level.UNCLASSIFIED))


def test_screening_redacts_pii_and_refuses_rows_above_the_ceiling(tmp_path: Path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"instruction": "담당자 연락처는?", "output": "kim.soldier@example.com 으로 연락하십시오."},
        {"instruction": "보고서를 요약하시오.", "input": "대외비\n본문 내용", "output": "요약: 본문."},
        {"instruction": "작전 계획은?", "output": "SECRET//NOFORN\n세부 내용"},
    ]) + "\n", encoding="utf-8")
    with pytest.raises(SFTDataError, match=r"rows.jsonl:3: row is SECRET.*above data_max_classification RESTRICTED"):
        read_sft_files([rows], Level.RESTRICTED)
    rows.write_text("\n".join(rows.read_text(encoding="utf-8").splitlines()[:2]) + "\n", encoding="utf-8")
    with pytest.raises(SFTDataError, match=r"rows.jsonl:2: row is RESTRICTED"):
        read_sft_files([rows], Level.UNCLASSIFIED)
    conversations, files = read_sft_files([rows], Level.RESTRICTED)
    assert "kim.soldier@example.com" not in json.dumps([c.messages for c in conversations])
    assert "[EMAIL]" in conversations[0].messages[1]["content"]
    assert files[0]["redactions"] == {"email": 1} and files[0]["classification"] == "RESTRICTED"
    assert files[0]["rows"] == 2 and len(files[0]["sha256"]) == 64


def test_packing_keeps_examples_from_attending_to_each_other(tiny_model: Path):
    """Logits of an example packed behind another equal its logits alone; continuous positions would leak."""
    from sovforge.model.loading import load_model, load_tokenizer

    tokenizer = load_tokenizer(tiny_model)
    model = load_model(tiny_model).eval()
    first = [{"role": "user", "content": "제1조는?"}, {"role": "assistant", "content": "목적 조항입니다."}]
    second = [{"role": "user", "content": "Who develops leaders?"}, {"role": "assistant", "content": "Leaders do."}]
    examples = []
    for messages in (first, second):
        ids, mask = supervised_ids(tokenizer, messages)
        examples.append(Example(ids, [t if m else IGNORE for t, m in zip(ids, mask)]))
    (batch,) = packed_batches(examples, seq_len=256, batch_size=1, pad_id=tokenizer.pad_token_id)
    assert batch["input_ids"].shape == (1, len(examples[0].input_ids) + len(examples[1].input_ids))
    assert "attention_mask" not in batch and batch["position_ids"][0].tolist().count(0) == 2
    # Packing puts the longer example first (first-fit decreasing); find where the other one starts.
    long_ex, short_ex = sorted(examples, key=lambda e: -len(e.input_ids))
    start = len(long_ex.input_ids)
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                       use_cache=False).logits[0, start:]  # as the trainer calls it
        alone = model(input_ids=torch.tensor([short_ex.input_ids])).logits[0]
        leaky = model(input_ids=batch["input_ids"]).logits[0, start:]  # no position reset → attends across
    assert (packed - alone).abs().max().item() < 1e-4
    assert (leaky - alone).abs().max().item() > 1e-3
    assert batch["labels"][0].tolist() == long_ex.labels + short_ex.labels


@pytest.fixture(scope="module")
def sft_adapter(tiny_model: Path, sft_file: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sft") / "adapter"
    return run_sft(tiny_model, [sft_file], _cfg(), out)


def test_lora_sft_loads_with_peft_merges_and_agrees(sft_adapter: Path, tiny_model: Path, sft_file: Path,
                                                    tmp_path: Path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sovforge.adapt.merge import merge_adapter

    art = load_artifact(sft_adapter, kind="adapter")
    stats = art.stats
    assert stats["data"][0]["sha256"] == __import__("hashlib").sha256(sft_file.read_bytes()).hexdigest()
    assert stats["train_rows"] + stats["val_rows"] == 24 and stats["val_rows"] > 0
    assert stats["after"]["val_loss"] < stats["before"]["val_loss"]
    lines = [json.loads(x) for x in (sft_adapter / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["loss"] < lines[0]["loss"]
    assert art.manifest["inputs"] == [load_artifact(tiny_model).id] and verify(sft_adapter).ok

    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, str(sft_adapter)).eval()
    merged_dir = merge_adapter(sft_adapter, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "제3조의 요지는?"}], tokenize=False,
                                           add_generation_prompt=True)
    ids = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        diff = (peft_model(**ids).logits - merged(**ids).logits).abs().max().item()
        generated = merged.generate(**ids, max_new_tokens=8, do_sample=False)
    assert diff < 1e-4, diff  # stated bound: adapter vs merged max |Δlogit| < 1e-4 (fp32)
    assert generated.shape[1] > ids["input_ids"].shape[1]


def test_packed_sft_run_and_classification_inherited(tiny_model: Path, sft_file: Path, tmp_path: Path):
    marked = tmp_path / "marked.jsonl"
    marked.write_text(sft_file.read_text(encoding="utf-8") + json.dumps(
        {"instruction": "보고서 요지는?", "input": "대외비\n예산 집행 현황", "output": "예산 집행 현황입니다."},
        ensure_ascii=False) + "\n", encoding="utf-8")
    out = run_sft(tiny_model, [marked], _cfg(sft_packing=True, data_max_classification="RESTRICTED", seq_len=256,
                                             train=TrainConfig(max_steps=3, progress=False)),
                  tmp_path / "packed")
    art = load_artifact(out, kind="adapter")
    # The base is UNCLASSIFIED and no corpus is given: RESTRICTED comes from the one 대외비 row alone.
    assert art.classification == Level.RESTRICTED and art.stats["data"][0]["classification"] == "RESTRICTED"
    assert art.stats["packing"] is True and art.manifest["inputs"] == [load_artifact(tiny_model).id]
    assert art.stats["train_batches"] < -(-art.stats["train_rows"] // 4)  # several examples share a row


def test_cli_bad_inputs_fail_clearly_before_training(tiny_model: Path, tiny_qwen2: Path, corpus: Path,
                                                     sft_file: Path, make_corpus, tmp_path: Path):
    from typer.testing import CliRunner

    from sovforge.cli import app

    no_reply = tmp_path / "no_reply.jsonl"
    no_reply.write_text('{"instruction": "a", "output": "b"}\n{"messages": [{"role": "user", "content": "q"}]}\n')
    no_tok = tmp_path / "no_tok"
    shutil.copytree(tiny_model, no_tok)
    (no_tok / "tokenizer.json").unlink()
    no_template = tmp_path / "no_template"
    shutil.copytree(tiny_qwen2, no_template)
    (no_template / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((no_template / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (no_template / "tokenizer_config.json").write_text(json.dumps(config))
    empty = make_corpus(tmp_path / "empty", {"train": []})
    out = tmp_path / "out"
    sft = ["adapt", "sft", "--data", str(sft_file), "--out", str(out), "--max-steps", "1", "--seq-len", "64"]
    cpt = ["adapt", "cpt", "--corpus", str(corpus), "--out", str(out), "--max-steps", "1", "--seq-len", "32"]
    cases = [
        ([*cpt[:2], "--base", str(tiny_model), "--corpus", str(empty), *cpt[4:]], "no training text"),
        ([*sft[:2], "--base", str(tiny_model), "--data", str(no_reply), *sft[4:]],
         "no_reply.jsonl:2: no assistant turn"),
        ([*sft, "--base", str(no_tok)], "no tokenizer"),
        ([*cpt, "--base", str(no_tok)], "no tokenizer"),
        ([*sft, "--base", str(tiny_model), "--seq-len", "4096"], "exceeds the model's max_position_embeddings 256"),
        ([*cpt, "--base", str(tiny_model), "--seq-len", "4096"], "max_position_embeddings 256"),
        ([*sft, "--base", str(no_template)], "no chat template"),
        ([*sft, "--base", str(tiny_model), "--method", "qlora"], "qlora needs a CUDA GPU"),
        ([*sft, "--base", str(tiny_model), "--method", "dora"], "invalid option method"),
    ]
    runner = CliRunner()
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        assert message in " ".join(result.output.split()), (message, result.output)
        assert "Traceback" not in result.output and not out.exists()
        assert not (tmp_path / ".out.run").exists()  # nothing started: no run directory either


def test_make_sft_quotes_the_corpus_deterministically(shared_corpus: Path, make_corpus, tiny_model: Path,
                                                      tmp_path: Path):
    from types import SimpleNamespace

    from typer.testing import CliRunner

    from sovforge.adapt.stage import run_stage
    from sovforge.cli import app

    law = (shared_corpus / "ko-defense-law" / "군사기밀보호법__법률.md").read_text(encoding="utf-8")
    manual = ("LEADERSHIP REQUIREMENTS\n1-12. The Nation and the Army\n articulate their expectations of Army "
              "leaders through the Army leadership requirements model that illustrates expectations of every "
              "leader.\n1-13. Leaders develop subordinates through counseling, coaching and mentoring in garrison "
              "and in the field, and hold them to standards.\n")
    corpus = make_corpus(tmp_path / "laws", {"train": [law, manual]})
    runner = CliRunner()
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for path in (first, second):
        result = runner.invoke(app, ["adapt", "make-sft", str(corpus), "--out", str(path)])
        assert result.exit_code == 0, result.output
    assert first.read_bytes() == second.read_bytes()
    rows = [json.loads(x) for x in first.read_text(encoding="utf-8").splitlines()]
    kinds = {r["kind"] for r in rows}
    assert kinds == {"article_quote", "article_locate", "paragraph_quote"}
    quote = next(r for r in rows if r["ref"] == "「군사기밀 보호법」 제1조(목적)" and r["kind"] == "article_quote")
    assert quote["instruction"] == "「군사기밀 보호법」 제1조(목적)의 내용을 인용하시오."
    assert quote["output"] == "이 법은 군사기밀을 보호하여 국가안전보장에 이바지함을 목적으로 한다."
    flat_law = " ".join(law.replace("**", "").replace("\\", "").split())
    for row in rows:  # every answer is corpus text (the locate rows prefix the citation)
        body = row["output"].split("\n\n", 1)[-1] if row["kind"] == "article_locate" else row["output"]
        assert " ".join(body.split()) in flat_law or " ".join(body.split()) in " ".join(manual.split())
    assert not any("부칙" in r["ref"] for r in rows) and len({r["ref"] for r in rows}) > 20

    # The recipe stage: mode sft, rows generated from the ingest corpus, corpus recorded in the lineage.
    ctx = SimpleNamespace(input={"base": tiny_model, "ingest": corpus}.__getitem__, out=tmp_path / "adapt")
    out = run_stage(_cfg(sft_from_corpus=True, train=TrainConfig(max_steps=2, progress=False)), ctx)
    art = load_artifact(out, kind="adapter")
    assert art.stats["steps"] == 2 and art.manifest["inputs"][-1] == load_artifact(corpus).id
    assert art.stats["truncated"] > 0  # long articles were cut at seq_len, and said so
