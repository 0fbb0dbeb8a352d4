"""Compress stage: `.venv/bin/python -m pytest -q -p no:cacheprovider tests/compress`.

Real llm-compressor oneshot (GPTQ, SparseGPT) on the 2-layer hidden-64 test model, calibrated on Korean statute
text; structured pruning + distillation + GGUF on the Qwen2 test checkpoint; bad inputs fail before any work.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from compress_helpers import SPARSE24, W4A16_G32, statute_chunks, write_corpus
from sovforge.artifacts import load_artifact, verify
from sovforge.compress.config import CompressConfig, CompressError, with_dependencies
from sovforge.compress.stage import compress_model

QUICK_MEASURE = {"ppl_tokens": 256, "ppl_seq_len": 64, "new_tokens": 4, "repeats": 1, "rss": False,
                 "prompts": ["제1조(목적) 이 법은"]}


def _cfg(variants: list, **extra) -> CompressConfig:
    return CompressConfig.model_validate({"calibration": {"samples": 8, "seq_len": 64}, "variants": variants,
                                          "measure": QUICK_MEASURE, **extra})


def test_config_presets_dependencies_and_errors():
    cfg = CompressConfig.model_validate({"variants": ["fp16", "w4a16", {"name": "p", "structured": {"drop_layers": 1}}]})
    assert [v.kind for v in cfg.variants] == ["hf", "modifiers", "structured"]
    assert with_dependencies(["distilled", "gguf-q8"]) == ["pruned", "distilled", "gguf-q8"]
    with pytest.raises(ValueError, match="unknown variant preset 'w4a17'"):
        CompressConfig.model_validate({"variants": ["w4a17"]})
    with pytest.raises(ValueError, match="exactly one of"):
        CompressConfig.model_validate({"variants": [{"name": "x", "hf": {}, "gguf": {}}]})
    with pytest.raises(ValueError, match="must be declared before it"):
        CompressConfig.model_validate({"variants": [{"name": "d", "distill": {"student": "p"}}]})
    with pytest.raises(ValueError, match="extra|unknown|Extra"):
        CompressConfig.model_validate({"variants": ["fp16"], "calibraton": {}})


def test_quantise_prune_export_measure_end_to_end(tiny_model: Path, statute_corpus: Path, tmp_path: Path):
    from llmcompressor.recipe import Recipe
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sovforge.compress.measure import fp16_sizes, load_rss, safetensors_header
    from sovforge.ingest.corpus import iter_documents

    out = compress_model(tiny_model, statute_corpus, _cfg(["fp16", W4A16_G32, SPARSE24,
                                                           {"name": "gguf-q8", "gguf": {"type": "Q8_0"}}]),
                         tmp_path / "out")
    report = load_artifact(out, kind="compressed")
    assert report.stats["variants"] == {"fp16": "fp16", "w4a16": "w4a16", "sparse24": "sparse24"}
    assert report.stats["gguf"] == {"gguf-q8": "gguf-q8/model.gguf"}
    assert report.stats["formats"] == {"fp16": "hf", "w4a16": "compressed-tensors", "sparse24": "hf",
                                       "gguf-q8": "gguf"}
    assert verify(out).ok, verify(out).problems
    corpus_id, parent_id = load_artifact(statute_corpus).id, load_artifact(tiny_model).id
    doc_ids = {d["id"] for d in iter_documents(statute_corpus)}
    for name in report.stats["formats"]:
        variant = load_artifact(out / name, kind="compressed")
        assert verify(out / name).ok, verify(out / name).problems  # each variant verifies on its own, inputs walked
        assert variant.manifest["inputs"] == [parent_id, corpus_id]
        assert variant.classification.name == "RESTRICTED"  # inherited from the corpus
        assert (out / name / "variant.yaml").exists() and (out / name / "recipe.yaml").exists()

    # W4A16: compressed-tensors checkpoint, plain AutoModelForCausalLM, Linear weights <= 0.35x their fp16 size
    w4 = out / "w4a16"
    config = json.loads((w4 / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "compressed-tensors"
    calib = json.loads((w4 / "calibration.json").read_text())
    assert calib["corpus_id"] == corpus_id and calib["samples"] == 8 and set(calib["documents"]) <= doc_ids
    recipe = Recipe.create_instance(str(w4 / "recipe.yaml"))  # llm-compressor reads our safe recipe.yaml back
    assert [type(m).__name__ for m in recipe.modifiers] == ["GPTQModifier"]
    model = AutoModelForCausalLM.from_pretrained(w4, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(w4)
    ids = tokenizer("제1조(목적) 이 법은", return_tensors="pt")
    assert model.generate(**ids, max_new_tokens=5, do_sample=False).shape[1] == ids.input_ids.shape[1] + 5
    linear_w4 = sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in
                    safetensors_header(w4 / "model.safetensors").items() if "layers." in k)
    assert linear_w4 / fp16_sizes(tiny_model)["linear_fp16_bytes"] <= 0.35
    rss = load_rss(w4)  # a fresh process loads it with sovforge.model.loading (plain transformers underneath)
    assert rss["peak_rss_mb"] > rss["load_rss_mb"] > 0, rss

    # 2:4: exactly half of every targeted Linear is zero, two in every four consecutive inputs — on disk
    from safetensors.torch import load_file

    sparse = load_file(out / "sparse24" / "model.safetensors")
    targeted = [k for k in sparse if k.startswith("model.layers.") and k.endswith("_proj.weight")]
    assert len(targeted) == 14
    for key in targeted:
        zeros = (sparse[key] == 0).reshape(sparse[key].shape[0], -1, 4).sum(-1)  # (out, in/4)
        assert bool((zeros == 2).all()), key
    assert (sparse["lm_head.weight"] != 0).all()
    layers = load_artifact(out / "sparse24").stats["sparsity"]["layers"]
    assert len(layers) == 14 and all(r["sparsity"] == 0.5 and r["pattern"] == "2:4" for r in layers.values())

    # GGUF: read back within the Q8_0 bound, llama names and tokenizer metadata present
    import gguf

    gguf_stats = load_artifact(out / "gguf-q8").stats
    assert gguf_stats["round_trip_max_rel_error"] <= 1e-2 and gguf_stats["tokenizer_pre"] == "gpt-2"
    reader = gguf.GGUFReader(str(out / "gguf-q8" / "model.gguf"))
    assert reader.get_field("general.architecture").contents() == "llama"
    assert len(reader.get_field("tokenizer.ggml.tokens").contents()) == len(tokenizer)

    # The comparison: every model measured on the same tokens
    rows = {r["name"]: r for r in json.loads((out / "compare.json").read_text())["rows"]}
    assert list(rows) == ["parent", "fp16", "w4a16", "sparse24", "gguf-q8"]
    assert rows["parent"]["top1_agreement"] == 1.0 and rows["parent"]["kl_mean"] < 1e-4
    assert rows["fp16"]["size_vs_fp16"] == pytest.approx(1.0, abs=0.02)
    assert rows["w4a16"]["linear_vs_fp16"] <= 0.35 and rows["w4a16"]["parameters"] == rows["parent"]["parameters"]
    assert rows["sparse24"]["nonzero_parameters"] < rows["parent"]["nonzero_parameters"]
    for name in ("fp16", "w4a16", "sparse24"):
        assert rows[name]["ppl"] > 1 and rows[name]["decode_tok_s"] > 0 and 0 <= rows[name]["top1_agreement"] <= 1
    assert (out / "compare.png").stat().st_size > 1000 and "| w4a16 |" in (out / "compare.md").read_text()


def test_structured_prune_distill_and_qwen2_gguf(tiny_qwen2: Path, statute_corpus: Path, tmp_path: Path):
    from transformers import AutoModelForCausalLM

    from sovforge.compress.export import read_gguf_tensors

    train = {"max_steps": 3, "learning_rate": 1e-3, "progress": False}
    cfg = _cfg([{"name": "pruned", "structured": {"drop_layers": 1, "keep_last": 0, "mlp_keep": 0.5}},
                {"name": "student", "distill": {"student": "pruned", "seq_len": 64, "batch_size": 4,
                                                "ce_weight": 0.5, "train": train}},
                {"name": "student-gguf", "parent": "student", "gguf": {"type": "F16"}}], measure={"enabled": False})
    out = compress_model(tiny_qwen2, statute_corpus, cfg, tmp_path / "out")
    pruned = AutoModelForCausalLM.from_pretrained(out / "pruned", dtype=torch.float32)
    parent = AutoModelForCausalLM.from_pretrained(tiny_qwen2, dtype=torch.float32)
    assert pruned.config.num_hidden_layers == 1 and pruned.config.intermediate_size == 128
    n_params = sum(p.numel() for p in pruned.parameters())
    assert n_params < sum(p.numel() for p in parent.parameters())
    assert pruned.generate(torch.tensor([[1, 5, 9]]), max_new_tokens=4, do_sample=False).shape[1] == 7
    stats = load_artifact(out / "pruned").stats
    assert stats["parameters"][1] == n_params and len(stats["block_importance"]) == 2

    student = load_artifact(out / "student")
    assert student.stats["steps"] == 3 and student.stats["student_parameters"] == n_params
    assert load_artifact(out / "pruned").id in student.manifest["inputs"]  # lineage: teacher, corpus, student init
    assert (out / "student" / "metrics.jsonl").exists()

    exported = load_artifact(out / "student-gguf")
    assert exported.stats["architecture"] == "qwen2" and exported.stats["round_trip_max_rel_error"] <= 2e-3
    assert exported.manifest["inputs"][0] == student.id
    tensors = read_gguf_tensors(out / "student-gguf" / "model.gguf")
    assert "blk.0.attn_q.bias" in tensors and "blk.1.attn_q.weight" not in tensors  # qwen2 biases; 1 block left
    assert verify(out).ok, verify(out).problems


def test_bad_inputs_fail_before_any_work(tiny_model: Path, statute_corpus: Path, tmp_path: Path):
    from sovforge.cli import app

    runner = CliRunner()
    recipe = tmp_path / "recipe.yaml"
    cases = {
        "unknown modifier": ({"variants": [{"name": "x", "modifiers": [{"GPTQModifer": {"scheme": "W4A16"}}]}]},
                             "unknown llm-compressor modifier 'GPTQModifer'"),
        "unknown scheme": ({"variants": [{"name": "x", "modifiers": [{"GPTQModifier": {"scheme": "W5A5"}}]}]},
                           "unknown quantisation scheme 'W5A5'"),
        "bad argument": ({"variants": [{"name": "x", "modifiers": [{"SparseGPTModifier": {"sparsity": 0.5,
                                                                                         "mask": "2:4"}}]}]},
                         "mask: unknown argument"),
        "group size": ({"variants": ["w4a16"]}, "group_size 128 does not divide the 64 input columns"),
        "too many samples": ({"variants": [SPARSE24], "calibration": {"samples": 5000, "seq_len": 256}},
                             "calibration.samples 5000 is more than the corpus holds"),
        "too deep": ({"variants": [{"name": "p", "structured": {"drop_layers": 2}}]},
                     "only 0 of the model's 2 blocks may be dropped"),
    }
    for name, (config, message) in cases.items():
        recipe.write_text(yaml.safe_dump({"compress": config}))
        result = runner.invoke(app, ["compress", str(tiny_model), "--corpus", str(statute_corpus),
                                     "--out", str(tmp_path / "out"), "--recipe", str(recipe), "--no-measure"])
        assert result.exit_code == 1, (name, result.output)
        assert message in " ".join(result.output.split()), (name, result.output)
        assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*")), name  # nothing half-written

    # an adapter input gets a `merged` variant written by compress itself: a user variant of that name is refused
    from sovforge.adapt.config import AdaptConfig, TrainConfig
    from sovforge.adapt.cpt import run_cpt

    adapter = run_cpt(tiny_model, statute_corpus, AdaptConfig(method="lora", seq_len=32, batch_size=2, lora_r=4,
                                                              train=TrainConfig(max_steps=1)), tmp_path / "lora")
    with pytest.raises(CompressError, match="variant name 'merged' is taken"):
        compress_model(adapter, statute_corpus, _cfg([{"name": "merged", "hf": {"dtype": "float32"}}]),
                       tmp_path / "out")
    assert not (tmp_path / "out").exists()

    # an architecture llm-compressor cannot trace (data-dependent Python in the model's forward): a clear error
    from transformers.models.llama import modeling_llama

    original = modeling_llama.LlamaModel.forward

    def untraceable(self, input_ids=None, *args, **kwargs):
        if int(input_ids.max()) >= 0:  # needs a concrete value: torch.fx cannot trace it
            return original(self, input_ids, *args, **kwargs)
        raise AssertionError

    modeling_llama.LlamaModel.forward = untraceable
    try:
        with pytest.raises(CompressError, match="cannot trace this llama model"):
            compress_model(tiny_model, statute_corpus, _cfg(["fp16", SPARSE24]), tmp_path / "out")
    finally:
        modeling_llama.LlamaModel.forward = original
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_cli_presets_run_and_help(tiny_model: Path, statute_corpus: Path, tmp_path: Path):
    from sovforge.cli import app

    runner = CliRunner()
    help_text = runner.invoke(app, ["compress", "--help"]).output
    assert "--variant" in help_text and "--recipe" in help_text and "default" in help_text.lower()
    result = runner.invoke(app, ["compress", str(tiny_model), "--corpus", str(statute_corpus), "--out",
                                 str(tmp_path / "o"), "--variant", "fp16", "--variant", "gguf-f16", "--no-rss",
                                 "--no-speed"])
    assert result.exit_code == 0, result.output
    assert "| gguf-f16 | gguf |" in result.output and load_artifact(tmp_path / "o").stats["variants"] == {"fp16": "fp16"}


def test_recipe_stage_and_empty_validation(tiny_model: Path, tmp_path: Path, shared_corpus: Path):
    """run_stage picks the adapt output (or base) and the ingest corpus; no validation split → no scores, no crash."""
    from sovforge.compress.stage import run_stage
    from sovforge.config import Recipe
    from sovforge.pipeline import StageContext

    corpus = write_corpus(tmp_path / "c", statute_chunks(shared_corpus, limit_files=1), validation_every=10**6)
    cfg = _cfg(["fp16"], measure={**QUICK_MEASURE, "speed": False})
    ctx = StageContext(recipe=Recipe(), workdir=tmp_path, out=tmp_path / "compress",
                       artifacts={"base": tiny_model, "ingest": corpus})
    out = run_stage(cfg, ctx)
    rows = json.loads((out / "compare.json").read_text())["rows"]
    assert "no validation split" in rows[0]["errors"]["scores"] and rows[1]["name"] == "fp16"


@pytest.mark.slow
def test_demo_small_model_w4a16_ratio_and_24(tmp_path: Path, statute_corpus: Path, shared_corpus: Path):
    """The must-shows that do not depend on training, on the demo-size `small` preset (8 layers, hidden 256) with
    the W4A16 preset (group 128): Linear weights <= 0.35x fp16, loads with AutoModelForCausalLM; 2:4 exact."""
    from transformers import AutoModelForCausalLM

    from sovforge.model.base import init_base
    from sovforge.model.config import BaseConfig

    base = init_base(BaseConfig(text=[shared_corpus / "ko-defense-law"], preset="small", vocab_size=4096,
                                pretrain_steps=5, seq_len=64, batch_size=4), tmp_path / "base")
    cfg = CompressConfig.model_validate({"calibration": {"samples": 16, "seq_len": 128},
                                         "variants": ["fp16", "w4a16", "sparse24"],
                                         "measure": {**QUICK_MEASURE, "speed": False}})
    out = compress_model(base, statute_corpus, cfg, tmp_path / "out")
    rows = {r["name"]: r for r in json.loads((out / "compare.json").read_text())["rows"]}
    assert rows["w4a16"]["linear_vs_fp16"] <= 0.35 and rows["w4a16"]["size_vs_fp16"] < 0.6
    assert AutoModelForCausalLM.from_pretrained(out / "w4a16").config.quantization_config is not None
    layers = load_artifact(out / "sparse24").stats["sparsity"]["layers"]
    assert len(layers) == 8 * 7 and all(r["sparsity"] == 0.5 and r["pattern"] == "2:4" for r in layers.values())


def test_gguf_export_runs_in_llama_cpp(tiny_model: Path, tiny_qwen2: Path, tmp_path: Path):
    """The exported file is what llama.cpp computes with: same tokens, and next-token logits matching transformers'
    (F32 tightly — Q/K permutation and names right; Q8_0 within quantisation error)."""
    llama_cpp = pytest.importorskip("llama_cpp")
    import numpy as np
    from transformers import AutoModelForCausalLM

    from sovforge.compress.export import export_gguf
    from sovforge.compress.measure import open_llama

    ids = [1, 40, 41, 42, 100, 200, 300, 7]
    for source in (tiny_model, tiny_qwen2):
        with torch.no_grad():
            hf = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)(
                input_ids=torch.tensor([ids])).logits[0, -1].numpy()
        for qtype, tolerance in (("F32", 1e-3), ("Q8_0", 5e-2)):
            path = tmp_path / f"{source.name}-{qtype}.gguf"
            export_gguf(source, path, qtype)
            llm = open_llama(path, n_ctx=64)
            assert llm.tokenize("제1조(목적) 이 법은".encode(), add_bos=False) == hf_token_ids(source, "제1조(목적) 이 법은")
            llm.eval(ids)
            ours = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
            assert np.abs(ours - hf).max() < tolerance * max(1.0, np.abs(hf).max()), (source.name, qtype)


def hf_token_ids(source: Path, text: str) -> list[int]:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source)(text, add_special_tokens=False)["input_ids"]
