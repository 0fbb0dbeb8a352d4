"""Measurements of a model (any local HF checkpoint or GGUF file), shared code with a generic signature:
size on disk, parameter counts, peak RSS while loading (fresh subprocess), prefill/decode tokens/s, perplexity on
token blocks, and agreement with a parent (top-1, mean KL) on the same tokens.

    sizes = weight_sizes(path)                                    # {"disk_bytes", "weight_bytes", "linear_bytes", ...}
    rss = load_rss(path)                                          # {"peak_rss_mb", "load_rss_mb"} or {"error"}
    speed = torch_speed(model, token_ids_list, new_tokens=32)     # greedy, KV cache, same for every variant
    ref = Reference.of(parent_model, blocks); scores = ref.score(variant_model)   # ppl, top1_agreement, kl_mean

The evaluate stage's speed/size numbers can use the same functions (they take a model or a path, nothing
compress-specific). GGUF files are timed in llama.cpp (llama-cpp-python) when it is installed.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

# Decoder-block Linear weights (what GPTQ/SparseGPT target; not embeddings, not lm_head), HF and GGUF names.
LINEAR_HF = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LINEAR_GGUF = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
_DTYPE_BYTES = {"F64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2, "I8": 1, "U8": 1,
                "F8_E4M3": 1, "F8_E5M2": 1, "BOOL": 1, "I64": 8, "U64": 8}


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a .safetensors file (names, dtypes, shapes, offsets) without reading the tensors."""
    with open(path, "rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(length))
    header.pop("__metadata__", None)
    return header


def _is_linear(name: str, parts: tuple[str, ...]) -> bool:
    return any(f".{p}." in f".{name}" for p in parts) and ("layers." in name or name.startswith("blk."))


def weight_sizes(path: Path) -> dict[str, Any]:
    """Bytes on disk: every file, the weight files, the decoder Linear weights (+ their scales/zero points), and
    the same tensors' size if stored as fp16 (`*_fp16_bytes`, from element counts of dense tensors)."""
    path = Path(path)
    files = [p for p in path.rglob("*") if p.is_file() and p.name != "manifest.json"]
    sizes: dict[str, Any] = {"disk_bytes": sum(p.stat().st_size for p in files),
                             "weight_bytes": sum(p.stat().st_size for p in files if p.suffix in (".safetensors",
                                                                                                 ".gguf"))}
    linear = 0
    gguf_files = [p for p in files if p.suffix == ".gguf"]
    if gguf_files:
        import gguf

        for tensor in gguf.GGUFReader(str(gguf_files[0])).tensors:
            if _is_linear(tensor.name, LINEAR_GGUF):
                linear += int(tensor.n_bytes)
    for file in (p for p in files if p.suffix == ".safetensors"):
        for name, info in safetensors_header(file).items():
            if _is_linear(name, LINEAR_HF):
                linear += info["data_offsets"][1] - info["data_offsets"][0]
    sizes["linear_bytes"] = linear
    return sizes


def fp16_sizes(path: Path) -> dict[str, int]:
    """Bytes the dense checkpoint at `path` would take in fp16: all tensors, and the decoder Linear weights."""
    total = linear = 0
    for file in Path(path).glob("*.safetensors"):
        for name, info in safetensors_header(file).items():
            elements = math.prod(info["shape"]) * 2
            total += elements
            if _is_linear(name, LINEAR_HF):
                linear += elements
    return {"fp16_bytes": total, "linear_fp16_bytes": linear}


# compressed-tensors keeps quantised Linear layers packed after loading: these tensors are storage, not parameters.
_QUANT_AUX = ("weight_scale", "weight_zero_point", "weight_shape", "weight_global_scale", "input_scale",
              "input_zero_point", "input_global_scale", "output_scale", "output_zero_point", "weight_g_idx")


def parameter_counts(model: Any) -> dict[str, int | None]:
    """Logical parameters of the loaded model (a packed int4 matrix counts as its weight_shape) and how many are
    non-zero (None when some weights are packed and so cannot be counted without unpacking)."""
    logical, nonzero, packed = 0, 0, False
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if name in _QUANT_AUX:
                continue
            if name == "weight_packed":
                logical += math.prod(int(d) for d in module.weight_shape.tolist())
                packed = True
                continue
            logical += param.numel()
            nonzero += int((param != 0).sum())
    return {"parameters": logical, "nonzero_parameters": None if packed else nonzero}


_RSS_PRELUDE = """
import json, resource, sys

def resident_mb():  # current resident set (Linux /proc), not the high-water mark
    with open("/proc/self/statm") as f:
        import os
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

def report(before):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_rss_mb": peak, "load_rss_mb": resident_mb() - before}))
"""
_RSS_HF = _RSS_PRELUDE + """
import torch
from transformers import AutoConfig
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING
from sovforge.model.loading import load_model
config = AutoConfig.from_pretrained(sys.argv[1])
MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]  # import the model code now, so `before` counts code, not weights
if getattr(config, "quantization_config", None):
    import compressed_tensors, transformers.quantizers.quantizer_compressed_tensors
before = resident_mb()
model = load_model(sys.argv[1])
with torch.no_grad():
    model(input_ids=torch.tensor([[1, 2, 3, 4]]))
report(before)
"""
_RSS_GGUF = _RSS_PRELUDE + """
from sovforge.compress.measure import open_llama
before = resident_mb()
llm = open_llama(sys.argv[1], n_ctx=64, use_mmap=False)
llm.eval([1, 2, 3, 4])
report(before)
"""


def open_llama(path: Path, **kwargs: Any) -> Any:
    """`llama_cpp.Llama` on a GGUF file. ggml's extra CPU buffer types (AMX tiles, weight repacking) stay off unless
    SOVFORGE_LLAMA_EXTRA_BUFTS=1: a CPU can advertise AMX that its kernel or sandbox does not enable, and then the
    first matmul dies with SIGILL (seen on the development box); the plain CPU kernels still use AVX2/AVX-512."""
    import llama_cpp.llama as llama_module

    defaults = llama_module.llama_cpp.llama_model_default_params
    extra = os.environ.get("SOVFORGE_LLAMA_EXTRA_BUFTS") == "1"

    def params() -> Any:
        value = defaults()
        value.use_extra_bufts = extra
        return value

    llama_module.llama_cpp.llama_model_default_params = params
    try:
        return llama_module.Llama(model_path=str(path), verbose=False, **kwargs)
    finally:
        llama_module.llama_cpp.llama_model_default_params = defaults


def llama_cpp_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def load_rss(path: Path, timeout: float = 900) -> dict[str, Any]:
    """Peak RSS (high-water mark) of a fresh Python process that loads the model and runs one 4-token forward, and
    `load_rss_mb`: its resident memory after that minus before the load (imports excluded). GGUF: llama.cpp, no mmap."""
    path = Path(path)
    gguf_files = sorted(path.glob("*.gguf")) if path.is_dir() else [path]
    if gguf_files and gguf_files[0].suffix == ".gguf":
        if not llama_cpp_available():
            return {"error": "llama-cpp-python not installed (pip install 'sovforge[llamacpp]')"}
        code, target = _RSS_GGUF, gguf_files[0]
    else:
        code, target = _RSS_HF, path
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, env=env,
                          timeout=timeout)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["failed"])[-1]
        return {"error": f"loading failed in a fresh process: {tail[:300]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def torch_speed(model: Any, prompts: list[list[int]], *, new_tokens: int, repeats: int = 2) -> dict[str, Any]:
    """Median prefill and decode tokens/s of greedy generation with a KV cache (batch 1), after one warm-up.

    Prefill = one forward over the prompt; decode = `new_tokens` single-token forwards feeding the cache, timed
    on their own — the same loop for every variant, so ratios compare models, not generation settings.
    """
    import torch

    def run(ids: list[int]) -> tuple[float, float]:
        with torch.no_grad():
            start = time.perf_counter()
            out = model(input_ids=torch.tensor([ids]), use_cache=True)
            prefill = time.perf_counter() - start
            past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)  # (1, 1)
            start = time.perf_counter()
            for _ in range(new_tokens):
                out = model(input_ids=token, past_key_values=past, use_cache=True)
                past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
            return prefill, time.perf_counter() - start

    model.eval()
    return {"runtime": f"transformers {torch.__version__.split('+')[0]} fp32 CPU", "threads": torch.get_num_threads(),
            **_median_rates(run, prompts, new_tokens, repeats)}


def llama_cpp_speed(path: Path, prompts: list[list[int]], *, new_tokens: int, repeats: int = 2,
                    threads: int | None = None) -> dict[str, Any]:
    """The same measurement in llama.cpp (llama-cpp-python): prefill = eval(prompt), decode = eval(1 token) x N."""
    import llama_cpp
    import numpy as np

    longest = max(len(p) for p in prompts) + new_tokens + 8
    threads = threads or os.cpu_count()
    llm = open_llama(path, n_ctx=max(64, longest), n_threads=threads, n_threads_batch=threads,
                     n_batch=max(64, longest))
    n_vocab = llm.n_vocab()

    def next_token() -> int:  # greedy over the last position's logits (llama.cpp keeps only those)
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
        return int(np.argmax(logits))

    def run(ids: list[int]) -> tuple[float, float]:
        llm.reset()
        start = time.perf_counter()
        llm.eval(ids)
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(new_tokens):
            llm.eval([next_token()])
        return prefill, time.perf_counter() - start

    return {"runtime": f"llama.cpp (llama-cpp-python {llama_cpp.__version__}) CPU", "threads": threads,
            **_median_rates(run, prompts, new_tokens, repeats)}


def _median_rates(run: Callable[[list[int]], tuple[float, float]], prompts: list[list[int]], new_tokens: int,
                  repeats: int) -> dict[str, Any]:
    """Median prefill and decode tokens/s of `run(ids) -> (prefill s, decode s)` over prompts x repeats; one
    short warm-up call first (first-call allocations and kernel selection), so both runtimes are timed alike."""
    run(prompts[0][:8])
    prefill_rates, decode_rates = [], []
    for ids in prompts:
        for _ in range(repeats):
            prefill, decode = run(ids)
            prefill_rates.append(len(ids) / prefill)
            decode_rates.append(new_tokens / decode)
    return {"prefill_tok_s": statistics.median(prefill_rates), "decode_tok_s": statistics.median(decode_rates),
            "prompt_tokens": [len(p) for p in prompts]}


@dataclass
class Reference:
    """The parent's next-token log-probabilities on fixed token blocks: what every variant is compared with."""

    blocks: Any  # LongTensor (n, T)
    logprobs: list[Any]  # per batch: (B, T-1, V) float16
    top1: list[Any]  # per batch: (B, T-1) the parent's most likely next token
    batch_size: int = 4

    @classmethod
    def of(cls, parent: Any, blocks: Any, batch_size: int = 4) -> "Reference":
        import torch

        logprobs, top1 = [], []
        with torch.no_grad():
            for batch in blocks.split(batch_size):
                lp = torch.log_softmax(parent(input_ids=batch).logits[:, :-1].float(), -1)  # (B, T-1, V)
                top1.append(lp.argmax(-1))  # exact, before the fp16 rounding below
                logprobs.append(lp.half())  # fp16 halves what is held for KL (n_tokens x vocab)
        return cls(blocks=blocks, logprobs=logprobs, top1=top1, batch_size=batch_size)

    def score(self, model: Any) -> dict[str, float]:
        """Perplexity of the block tokens, top-1 agreement with the parent and mean KL(parent ‖ model), per token."""
        import torch

        nll = agree = kl = 0.0
        count = 0
        with torch.no_grad():
            for batch, parent_lp, parent_top1 in zip(self.blocks.split(self.batch_size), self.logprobs, self.top1):
                lp = torch.log_softmax(model(input_ids=batch).logits[:, :-1].float(), -1)  # (B, T-1, V)
                if lp.shape[-1] != parent_lp.shape[-1]:
                    raise ValueError(f"vocabulary {lp.shape[-1]} differs from the parent's {parent_lp.shape[-1]}")
                parent = parent_lp.float()
                targets = batch[:, 1:]
                nll += float(-lp.gather(-1, targets.unsqueeze(-1)).sum())
                agree += float((lp.argmax(-1) == parent_top1).sum())
                kl += float((parent.exp() * (parent - lp)).sum().clamp_min(0))
                count += targets.numel()
        return {"ppl": math.exp(nll / count), "top1_agreement": agree / count, "kl_mean": kl / count,
                "scored_tokens": count}


def machine() -> dict[str, Any]:
    import platform

    import torch

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
