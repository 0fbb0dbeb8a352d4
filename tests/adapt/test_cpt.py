"""CPT (memmapped packed tokens, replay), LoRA → PEFT load, merge, QLoRA gating: `pytest -q tests/adapt`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sovforge.adapt.config import AdaptConfig, TrainConfig
from sovforge.adapt.cpt import TokenBlocks, block_refs, corpus_stream, mixed_refs, run_cpt
from sovforge.adapt.merge import merge_adapter
from sovforge.adapt.trainer import TrainingError
from sovforge.artifacts import load_artifact, verify


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
    assert art.manifest["inputs"] == [load_artifact(tiny_model).id, load_artifact(corpus).id]
    assert art.classification.name == "RESTRICTED"  # inherited from the corpus
    assert art.stats["token_source"] == "tokenised" and art.stats["method_used"] == "lora"
    assert not (tmp_path / ".adapter.run").exists()  # the run directory is removed once the artifact is signed

    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, str(out)).eval()
    merged_dir = merge_adapter(out, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    ids = torch.arange(3, 35).view(1, -1)
    with torch.no_grad():
        diff = (peft_model(input_ids=ids).logits - merged(input_ids=ids).logits).abs().max().item()
    assert diff < 1e-4, diff
    assert verify(merged_dir).ok and load_artifact(merged_dir).classification.name == "RESTRICTED"


def test_full_cpt_on_packed_memmap_with_replay(tiny_model: Path, make_corpus, sample_text_dir: Path, tmp_path: Path):
    texts = {"train": [f"제{i}조(보안) 군사기밀은 보호한다. section {i} protects classified information. " * 3
                       for i in range(12)],
             "validation": [f"제{i}조(보안) 군사기밀은 보호한다. section {i}. " * 3 for i in range(40, 43)]}
    packed = make_corpus(tmp_path / "packed", texts, packed_with=tiny_model)
    stream, source = corpus_stream(packed, tiny_model, None, "train")  # tokenizer unused on the packed path
    assert source == "packed" and isinstance(stream, np.memmap)
    out = run_cpt(tiny_model, packed, _cfg(method="full", replay_text=[sample_text_dir], replay_share=0.25),
                  tmp_path / "full")
    stats = load_artifact(out, kind="model").stats
    assert stats["token_source"] == "packed" and stats["train_tokens"] == len(stream)
    assert stats["replay_blocks"] > 0 and stats["general_heldout_blocks"] > 0
    assert "general_val_ppl" in stats["after"] and "general_val_ppl" in stats["before"]
    assert stats["after"]["val_ppl"] < stats["before"]["val_ppl"]


def test_token_blocks_slice_streams_and_mix_replay():
    domain = np.arange(100, dtype=np.uint16)
    replay = np.arange(1000, 1040, dtype=np.uint16)
    refs = mixed_refs(n_domain=10, replay_pool=4, share=0.5, seed=0)  # 10 domain blocks + 10 replay blocks
    assert len(refs) == 20 and (refs[:, 0] == 1).sum() == 10 and set(refs[refs[:, 0] == 1][:, 1]) <= {0, 1, 2, 3}
    batches = TokenBlocks([domain, replay], refs, seq_len=10, batch_size=4)
    assert len(batches) == 5
    every = torch.cat([batches[i]["input_ids"] for i in range(len(batches))])  # (20, 10)
    for (stream, block), row in zip(refs, every):
        source = domain if stream == 0 else replay
        assert row.tolist() == source[block * 10:(block + 1) * 10].tolist()
    assert batches[0]["input_ids"].dtype == torch.long
    with pytest.raises(IndexError):
        batches[5]
    assert block_refs(0, np.arange(3)).tolist() == [[0, 0], [0, 1], [0, 2]]


MEMORY_SCRIPT = """
import json, resource, sys
from pathlib import Path
from sovforge.adapt.cpt import TokenBlocks, corpus_stream, mixed_refs
stream, source = corpus_stream(Path(sys.argv[1]), Path(sys.argv[2]), None, "train")
blocks = TokenBlocks([stream, stream[:0]], mixed_refs(len(stream) // 512, 0, 0.0, 0), 512, 8)
total = sum(int(blocks[i]["input_ids"].sum()) for i in range(0, len(blocks), len(blocks) // 50))
print(json.dumps({"source": source, "tokens": len(stream), "batches": len(blocks), "probe": total,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def test_billion_token_stream_trains_in_bounded_memory(tmp_path: Path):
    """A 1e9-token packed stream (2 GB, sparse on disk) is blocked without reading it into RAM.

    `.astype(int64).tolist()` of it — the old code — would need > 8 GB; the memmap path stays near the
    interpreter's own footprint.
    """
    from sovforge.ingest.corpus import tokenizer_sha256

    n = 1_000_000_000
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "tokenizer.json").write_text('{"fake": "tokenizer"}')
    packed = tmp_path / "corpus" / "packed"
    packed.mkdir(parents=True)
    stream = np.lib.format.open_memmap(packed / "train.npy", mode="w+", dtype=np.uint16, shape=(n,))
    stream[-512:] = 7  # touch only the last page(s); the rest stays a hole in the file
    stream.flush()
    del stream
    (packed / "meta.json").write_text(json.dumps({"tokenizer_sha256": tokenizer_sha256(tmp_path / "tok/tokenizer.json"),
                                                  "dtype": "uint16", "tokens": {"train": n}}))
    proc = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path / "corpus"), str(tmp_path / "tok")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["source"] == "packed" and report["tokens"] == n and report["batches"] == n // 512 // 8 + (
        1 if (n // 512) % 8 else 0)
    assert report["maxrss_mb"] < 1500, report  # the stream alone is 2000 MB; as Python ints it would be > 8000 MB


def test_bad_inputs_fail_before_training(tiny_model: Path, corpus: Path, make_corpus, tmp_path: Path):
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


def test_qlora_needs_cuda_unless_fallback_asked(tiny_model: Path, corpus: Path, tmp_path: Path, monkeypatch):
    import sovforge.adapt.methods as methods
    import sovforge.model.loading as loading

    loaded = []
    real_load = loading.load_model
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: loaded.append(a) or real_load(*a, **k))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(TrainingError, match="qlora needs a CUDA GPU"):
        run_cpt(tiny_model, corpus, _cfg(method="qlora"), tmp_path / "q")
    assert loaded == [] and not (tmp_path / "q").exists()  # refused before any weights were read

    out = run_cpt(tiny_model, corpus, _cfg(method="qlora", qlora_cpu_fallback=True,
                                           train=TrainConfig(max_steps=2, progress=False)), tmp_path / "fallback")
    art = load_artifact(out, kind="adapter")
    assert art.config["method"] == "qlora" and art.stats["method_used"] == "lora"
    assert "trained plain LoRA" in art.stats["warnings"][0]

    # With a GPU but without bitsandbytes: a clear install hint, still before loading.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with pytest.raises(TrainingError, match=r"sovforge\[gpu\]"):
        methods.resolve_method(_cfg(method="qlora"))


def test_merge_refuses_a_quantised_base(tiny_model: Path, corpus: Path, tmp_path: Path):
    adapter = run_cpt(tiny_model, corpus, _cfg(train=TrainConfig(max_steps=1, progress=False)), tmp_path / "a")
    quantised = tmp_path / "quantised-base"
    shutil.copytree(tiny_model, quantised)
    (quantised / "manifest.json").unlink()
    config = json.loads((quantised / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (quantised / "config.json").write_text(json.dumps(config))
    with pytest.raises(TrainingError, match="quantised"):
        merge_adapter(adapter, tmp_path / "merged", base_path=quantised)
    assert not (tmp_path / "merged").exists()


def test_lora_on_a_plain_qwen2_checkpoint_uses_its_default_targets(tiny_qwen2: Path, corpus: Path, tmp_path: Path):
    """A.X 4.0 Light is Qwen2: a plain local checkpoint (no manifest) is a valid base; LoRA hits its projections."""
    from sovforge.artifacts import open_input
    from sovforge.model.loading import ARCHITECTURES

    out = run_cpt(tiny_qwen2, corpus, _cfg(train=TrainConfig(max_steps=2, progress=False)), tmp_path / "qwen")
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert sorted(adapter_config["target_modules"]) == sorted(ARCHITECTURES["qwen2"])
    assert load_artifact(out).manifest["inputs"][0] == open_input(tiny_qwen2).id  # content hash of the checkpoint
    custom = run_cpt(tiny_qwen2, corpus, _cfg(target_modules=["q_proj", "v_proj"],
                                              train=TrainConfig(max_steps=1, progress=False)), tmp_path / "qv")
    assert sorted(json.loads((custom / "adapter_config.json").read_text())["target_modules"]) == ["q_proj", "v_proj"]


def test_run_stage_uses_base_and_ingest_inputs(tiny_model: Path, corpus: Path, tmp_path: Path):
    from types import SimpleNamespace

    from sovforge.adapt.stage import run_stage

    ctx = SimpleNamespace(input={"base": tiny_model, "ingest": corpus}.__getitem__, out=tmp_path / "adapt")
    out = run_stage(_cfg(method="lora", train=TrainConfig(max_steps=2, progress=False)), ctx)
    assert load_artifact(out, kind="adapter").stats["steps"] == 2


@pytest.mark.gpu
def test_qlora_on_cuda_trains_a_4bit_base(tiny_model: Path, corpus: Path, tmp_path: Path):
    """Real QLoRA (bitsandbytes NF4 + prepare_model_for_kbit_training); runs only on a CUDA machine."""
    pytest.importorskip("bitsandbytes")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    out = run_cpt(tiny_model, corpus, _cfg(method="qlora", train=TrainConfig(max_steps=4, progress=False)),
                  tmp_path / "qlora")
    art = load_artifact(out, kind="adapter")
    assert art.stats["method_used"] == "qlora" and art.stats["after"]["val_ppl"] < art.stats["before"]["val_ppl"]
    merged = merge_adapter(out, tmp_path / "merged")  # into the full-precision base named in the manifest
    assert load_artifact(merged).config["base_model_path"] == str(Path(tiny_model).resolve())


def test_same_run_gives_the_same_artifact_id(tiny_model: Path, corpus: Path, tmp_path: Path):
    """Timings stay out of the artifact's files (they go to manifest stats), so a rerun reproduces the content id."""
    ids = []
    for name in ("a", "b"):
        out = run_cpt(tiny_model, corpus, _cfg(method="lora", train=TrainConfig(max_steps=2, progress=False)),
                      tmp_path / name)
        art = load_artifact(out)
        assert art.stats["step_timings"] and "tokens_per_s" in art.stats["step_timings"][0]
        assert "tokens_per_s" not in json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
        ids.append(art.id)
    assert ids[0] == ids[1]


def test_edited_sft_file_reruns_the_stage(tmp_path: Path):
    from sovforge.adapt.config import AdaptConfig
    from sovforge.pipeline import run_key

    data = tmp_path / "rows.jsonl"
    data.write_text('{"messages": []}\n')
    cfg = AdaptConfig(mode="sft", sft_data=[data])
    before = run_key("adapt", cfg, {})
    data.write_text('{"messages": [{"role": "user", "content": "x"}]}\n')
    assert run_key("adapt", cfg, {}) != before
