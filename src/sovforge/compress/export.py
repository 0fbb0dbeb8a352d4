"""Exports: GGUF for llama.cpp edge deployment, and plain dense HF safetensors (merged, cast) for vLLM.

    stats = export_gguf(model_dir, out_dir / "model.gguf", "Q8_0")   # written with the `gguf` package's GGUFWriter
    stats = export_hf(model_dir, out_dir, "bfloat16")

GGUF is written by our own code on `gguf.GGUFWriter` (llama.cpp's convert_hf_to_gguf.py ships only in the llama.cpp
repository), following that converter's conventions for the two architectures A.X uses: `llama` (Q/K rows permuted
for llama.cpp's rotary layout) and `qwen2` (no permutation, QKV biases); tensor names from `gguf.TensorNameMap`;
a GPT-2-style byte-level BPE vocabulary with its merges, token types and special ids; 1-D tensors in F32.
Every export is read back with `gguf.GGUFReader`, dequantised (`gguf.quants`) and compared with the HF weights;
an export whose round-trip error exceeds its type's bound raises instead of being kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sovforge.compress.config import CompressError

GGUF_ARCHES = {"llama": "LLAMA", "qwen2": "QWEN2"}
HF_CONFIG = "hf_config.json"  # beside model.gguf: the HF config it was converted from (not config.json: not an HF dir)
# Relative Frobenius error ‖W_gguf - W‖ / ‖W‖ a correct export stays under, per storage type.
ROUND_TRIP_BOUND = {"F32": 0.0, "F16": 2e-3, "BF16": 1e-2, "Q8_0": 1e-2, "Q4_0": 0.2}
# Pre-tokenizer regexes → llama.cpp's `tokenizer.ggml.pre` names (llama-vocab.cpp implements these).
_PRE_MARKS = ((r"\p{N}{1,3}", "llama-bpe"), (r"\p{L}+|\p{N}|", "qwen2"))


def check_gguf_arch(config: dict[str, Any], variant: str) -> str:
    arch = config.get("model_type")
    if arch not in GGUF_ARCHES:
        raise CompressError(f"variant {variant}: GGUF export supports model types {sorted(GGUF_ARCHES)}, "
                            f"not {arch!r}")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        raise CompressError(f"variant {variant}: GGUF export handles plain RoPE only, not {rope.get('rope_type')!r}")
    return arch


def _regexes(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "Regex" and isinstance(v, str)] + [
            r for k, v in node.items() if k != "Regex" for r in _regexes(v)]
    if isinstance(node, list):
        return [r for item in node for r in _regexes(item)]
    return []


def _pre_tokenizer(tokenizer_json: dict[str, Any]) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenization; an error for one llama.cpp would split differently."""
    pre = tokenizer_json.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"  # tokenizers' ByteLevel regex is GPT-2's
    patterns = " ".join(_regexes(pre))
    for mark, name in _PRE_MARKS:
        if mark in patterns:
            return name
    raise CompressError(f"GGUF export: pre-tokenizer {pre.get('type')!r} is not one llama.cpp implements "
                        "(known here: GPT-2 byte-level, Llama-3 and Qwen2 regexes)")


def _vocab(model_dir: Path, vocab_size: int) -> tuple[list[str], list[int], str]:
    """(tokens by id, token types, pre-tokenizer name) of a byte-level BPE tokenizer.json."""
    import gguf

    tokenizer_json = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    model = tokenizer_json["model"]
    if model.get("type") != "BPE" or model.get("byte_fallback") or (tokenizer_json.get("decoder") or {}).get(
            "type") != "ByteLevel":
        raise CompressError("GGUF export: only byte-level BPE tokenizers (GPT-2 / Llama-3 / Qwen2 style) are supported")
    by_id = {i: tok for tok, i in model["vocab"].items()}
    special = {t["id"] for t in tokenizer_json.get("added_tokens", []) if t.get("special")}
    for added in tokenizer_json.get("added_tokens", []):
        by_id.setdefault(added["id"], added["content"])
    if max(by_id) >= vocab_size:
        raise CompressError(f"GGUF export: tokenizer has id {max(by_id)} but the model's vocab_size is {vocab_size}")
    tokens, types = [], []
    for i in range(vocab_size):  # embedding rows past the tokenizer are padding, as in llama.cpp's converter
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL)
    return tokens, types, _pre_tokenizer(tokenizer_json)


def _permute(weight: Any, n_head: int) -> Any:
    """HF → llama.cpp rotary layout of q_proj/k_proj rows (llama only): (n_head, 2, d/2) → (n_head, d/2, 2)."""
    return weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(
        weight.shape)


def _unpermute(weight: Any, n_head: int) -> Any:
    return weight.reshape(n_head, weight.shape[0] // n_head // 2, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(
        weight.shape)


def _rope_theta(config: dict[str, Any]) -> float:
    rope = config.get("rope_parameters") or {}
    return float(config.get("rope_theta") or rope.get("rope_theta") or 10000.0)


def _gguf_names(config: dict[str, Any], arch: str, state_keys: list[str]) -> dict[str, str]:
    import gguf

    names = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, GGUF_ARCHES[arch]), int(config["num_hidden_layers"]))
    mapping = {}
    for key in state_keys:
        if key == "lm_head.weight" and config.get("tie_word_embeddings"):
            continue  # llama.cpp reuses token_embd when there is no output tensor
        if key.endswith("rotary_emb.inv_freq"):
            continue
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise CompressError(f"GGUF export: no llama.cpp tensor name for {key} ({arch})")
        mapping[key] = name
    return mapping


def export_gguf(model_dir: Path, path: Path, qtype: str, *, variant: str = "gguf") -> dict[str, Any]:
    """Write `path` (one GGUF file) from the HF checkpoint in `model_dir`; read it back and check every tensor."""
    import gguf
    import numpy as np
    import torch

    from sovforge.model.loading import load_model

    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    arch = check_gguf_arch(config, variant)
    n_head, n_kv = int(config["num_attention_heads"]), int(config.get("num_key_value_heads") or
                                                           config["num_attention_heads"])
    head_dim = int(config.get("head_dim") or config["hidden_size"] // n_head)
    state = {k: v.detach().float().numpy() for k, v in load_model(model_dir, dtype=torch.float32).state_dict().items()}
    names = _gguf_names(config, arch, list(state))
    tokens, token_types, pre = _vocab(model_dir, int(config["vocab_size"]))

    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[getattr(gguf.MODEL_ARCH, GGUF_ARCHES[arch])])
    writer.add_name(model_dir.name)
    writer.add_context_length(int(config.get("max_position_embeddings", 2048)))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    writer.add_vocab_size(int(config["vocab_size"]))
    writer.add_file_type({"F32": gguf.LlamaFileType.ALL_F32, "F16": gguf.LlamaFileType.MOSTLY_F16,
                          "BF16": gguf.LlamaFileType.MOSTLY_BF16, "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
                          "Q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[qtype])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)

    stored: dict[str, str] = {}
    for key, array in state.items():
        if key not in names:
            continue
        if arch == "llama" and key.endswith("self_attn.q_proj.weight"):
            array = _permute(array, n_head)
        elif arch == "llama" and key.endswith("self_attn.k_proj.weight"):
            array = _permute(array, n_kv)
        kind = qtype if array.ndim == 2 else "F32"  # norms and biases stay F32 (llama.cpp's convention)
        if kind in ("Q8_0", "Q4_0") and array.shape[-1] % 32:
            kind = "F16"  # block quants need rows of 32; the converter falls back the same way
        if kind == "F32":
            writer.add_tensor(names[key], array.astype(np.float32))
        elif kind == "F16":
            writer.add_tensor(names[key], array.astype(np.float16))
        else:
            qt = getattr(gguf.GGMLQuantizationType, kind)
            writer.add_tensor(names[key], gguf.quants.quantize(array.astype(np.float32), qt), raw_dtype=qt)
        stored[names[key]] = kind
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    (path.parent / HF_CONFIG).write_text(json.dumps(config, indent=2), encoding="utf-8")

    errors = round_trip(path, state, names, arch, n_head, n_kv, stored)
    worst = max(errors.values())
    return {"file": path.name, "type": qtype, "architecture": arch, "tensors": len(stored),
            "tensor_types": {t: sum(1 for v in stored.values() if v == t) for t in sorted(set(stored.values()))},
            "tokenizer_pre": pre, "round_trip_max_rel_error": worst,
            "round_trip_bound": ROUND_TRIP_BOUND[qtype] if worst <= ROUND_TRIP_BOUND[qtype] else None}


def read_gguf_tensors(path: Path) -> dict[str, Any]:
    """{gguf tensor name: float32 numpy array in numpy (row-major) shape}, dequantised."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(path))
    tensors = {}
    for tensor in reader.tensors:
        data = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        tensors[tensor.name] = np.asarray(data, dtype=np.float32).reshape(
            [int(d) for d in reversed(tensor.shape.tolist())])
    return tensors


def _hf_layout(array: Any, key: str, arch: str, n_head: int, n_kv: int) -> Any:
    """A tensor read from GGUF in the HF layout: llama.cpp stores Llama's q/k projections row-permuted for RoPE."""
    if arch == "llama" and key.endswith("self_attn.q_proj.weight"):
        return _unpermute(array, n_head)
    if arch == "llama" and key.endswith("self_attn.k_proj.weight"):
        return _unpermute(array, n_kv)
    return array


def round_trip(path: Path, state: dict[str, Any], names: dict[str, str], arch: str, n_head: int, n_kv: int,
               stored: dict[str, str]) -> dict[str, float]:
    """Relative error of every tensor read back from `path` against the HF weight; CompressError over the bound."""
    import numpy as np

    back = read_gguf_tensors(path)
    missing = sorted(set(stored) - set(back))
    if missing:
        raise CompressError(f"GGUF round-trip: tensors missing after writing {path.name}: {missing[:3]}")
    errors = {}
    for key, name in names.items():
        array = _hf_layout(back[name], key, arch, n_head, n_kv)
        reference = state[key]
        if array.shape != reference.shape:
            raise CompressError(f"GGUF round-trip: {name} has shape {array.shape}, expected {reference.shape}")
        scale = float(np.linalg.norm(reference)) or 1.0
        errors[name] = float(np.linalg.norm(array - reference)) / scale
        if errors[name] > ROUND_TRIP_BOUND[stored[name]] + 1e-7:
            raise CompressError(f"GGUF round-trip: {name} ({stored[name]}) differs from the HF weight by "
                                f"{errors[name]:.3g} relative (bound {ROUND_TRIP_BOUND[stored[name]]})")
    return errors


def gguf_as_hf_model(path: Path) -> Any:
    """The GGUF file's weights (dequantised, un-permuted) in an HF model of its source's config (`hf_config.json`
    beside it) — to score what llama.cpp computes with, in the same torch runtime as every other variant."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = json.loads((path.parent / HF_CONFIG).read_text(encoding="utf-8"))
    arch = check_gguf_arch(config, path.parent.name)
    fields = {k: v for k, v in config.items() if k not in ("model_type", "_name_or_path", "quantization_config")}
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(arch, **fields), dtype=torch.float32)
    n_head, n_kv = int(config["num_attention_heads"]), int(config.get("num_key_value_heads") or
                                                           config["num_attention_heads"])
    names = _gguf_names(config, arch, list(model.state_dict()))
    back = read_gguf_tensors(path)
    state = {}
    for key, name in names.items():
        state[key] = torch.from_numpy(_hf_layout(back[name], key, arch, n_head, n_kv).copy())
    model.load_state_dict(state, strict=False)
    if config.get("tie_word_embeddings"):
        model.tie_weights()
    return model.eval()


def export_hf(model_dir: Path, out_dir: Path, dtype: str) -> dict[str, Any]:
    """A plain dense HF checkpoint in `dtype` (compressed-tensors parents are decompressed by transformers)."""
    import torch

    from sovforge.model.loading import load_model, load_tokenizer

    model = load_model(model_dir, dtype=getattr(torch, dtype))
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config  # the weights are dense now; the checkpoint must say so
    model.save_pretrained(out_dir, safe_serialization=True)
    load_tokenizer(model_dir).save_pretrained(out_dir)
    return {"dtype": dtype, "parameters": sum(p.numel() for p in model.parameters())}
