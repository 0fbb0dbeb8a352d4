"""Config of the `compress` stage: `sovforge compress MODEL --corpus CORPUS --out OUT` / recipe section `compress:`.

A compress config is a list of **variants**, each a name plus exactly one way of making it (DESIGN.md §4,
"declared, not scripted"):

    compress:
      calibration: {samples: 64, seq_len: 256}
      variants:
        - fp16                                   # a preset name (see PRESETS below)
        - name: w4a16                            # an llm-compressor recipe: modifier name → its arguments
          modifiers: [{GPTQModifier: {scheme: W4A16, targets: Linear, ignore: [lm_head]}}]
        - name: sparse24
          modifiers: [{SparseGPTModifier: {sparsity: 0.5, mask_structure: "2:4", targets: [Linear],
                                           ignore: [lm_head]}}]
        - {name: pruned, structured: {drop_layers: 2, mlp_keep: 0.75}}
        - {name: distilled, distill: {student: pruned, temperature: 2.0}}
        - {name: gguf-q8, parent: distilled, gguf: {type: Q8_0}}

`parent` names an earlier variant to start from (default: the input model). Modifier names and quantisation
schemes are checked against what llmcompressor / compressed-tensors provide before any work starts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from sovforge._config_base import StrictModel
from sovforge.adapt.config import TrainConfig

Dtype = Literal["float16", "bfloat16", "float32"]


class CompressError(ValueError):
    """Bad input to the compress stage (unknown modifier or scheme, too few calibration samples, an architecture a
    step cannot handle...): raised before any variant is written; the message names the problem."""


# The ways a variant can be made; exactly one is set per variant.
VARIANT_KINDS = ("modifiers", "structured", "distill", "gguf", "hf")


class CalibrationConfig(StrictModel):
    """Calibration samples for llm-compressor and for structured-pruning importance, drawn from the domain corpus."""

    samples: int = Field(64, ge=1)
    """Number of calibration sequences (an error if the corpus split has fewer `seq_len` blocks)."""
    seq_len: int = Field(256, ge=8)
    """Tokens per calibration sequence."""
    split: Literal["train", "validation"] = "train"
    """Corpus split the samples come from (the validation split is kept for measurement by default)."""
    seed: int = 0
    """Seed of the document order and of which blocks are picked."""


class StructuredConfig(StrictModel):
    """Structured pruning into a genuinely smaller dense model (Llama/Qwen2/Mistral/Qwen3 layouts)."""

    drop_layers: int = Field(0, ge=0)
    """Decoder blocks to remove, least important first (importance = 1 - cos(block input, block output), ShortGPT)."""
    mlp_keep: float = Field(1.0, gt=0, le=1)
    """Fraction of MLP intermediate channels kept in every block, by mean |activation| on the calibration text."""
    mlp_multiple: int = Field(64, ge=1)
    """Round the kept MLP width down to a multiple of this (so group quantisation and 2:4 still apply)."""
    keep_first: int = Field(1, ge=0)
    """Never drop the first N blocks (they turn embeddings into the residual stream)."""
    keep_last: int = Field(1, ge=0)
    """Never drop the last N blocks (they shape the output distribution)."""

    @model_validator(mode="after")
    def _something_to_do(self) -> "StructuredConfig":
        if self.drop_layers == 0 and self.mlp_keep == 1.0:
            raise ValueError("structured: set drop_layers > 0 and/or mlp_keep < 1 (otherwise nothing is pruned)")
        return self


class DistillConfig(StrictModel):
    """Logit knowledge distillation from the parent (teacher) into a smaller student, on the corpus train split."""

    student: str | None = None
    """Name of an earlier variant (e.g. a `structured` one) whose model is the student's starting point."""
    student_config: dict[str, int] | None = None
    """Or: HF config overrides for a fresh, randomly initialised smaller student (same tokenizer), e.g.
    `{num_hidden_layers: 4, intermediate_size: 512}`."""
    temperature: float = Field(2.0, gt=0)
    """Softmax temperature T of teacher and student; the KD term is T²·KL(teacher ‖ student)."""
    kd_weight: float = Field(1.0, ge=0)
    """Weight of the KD term (0 = no teacher: plain next-token training, the baseline KD is compared against)."""
    ce_weight: float = Field(0.0, ge=0)
    """Weight of the next-token cross-entropy on the corpus text."""
    seq_len: int = Field(256, ge=8)
    """Tokens per training sequence."""
    batch_size: int = Field(8, ge=1)
    """Sequences per micro-batch."""
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(max_steps=200, learning_rate=1e-3,
                                                                    warmup_steps=10))
    """Settings of the training loop (the adapt stage's `sovforge.adapt.trainer.train`)."""

    @model_validator(mode="after")
    def _one_student_and_a_loss(self) -> "DistillConfig":
        if (self.student is None) == (self.student_config is None):
            raise ValueError("distill: give exactly one of `student` (an earlier variant) or `student_config`")
        if self.kd_weight == 0 and self.ce_weight == 0:
            raise ValueError("distill: kd_weight and ce_weight are both 0; nothing to train on")
        return self


class GgufConfig(StrictModel):
    """Export to a single GGUF file for llama.cpp (written with the `gguf` package's GGUFWriter)."""

    type: Literal["F32", "F16", "BF16", "Q8_0", "Q4_0"] = "Q8_0"
    """Storage type of the 2-D weight matrices (norms and other 1-D tensors stay F32, as llama.cpp expects)."""


class HfConfig(StrictModel):
    """A plain dense HF safetensors checkpoint (merged, cast to `dtype`) that transformers and vLLM load."""

    dtype: Dtype = "bfloat16"
    """Weight dtype on disk."""


class VariantConfig(StrictModel):
    """One output model: a name and exactly one of `modifiers` / `structured` / `distill` / `gguf` / `hf`."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    """Directory name of the variant under OUT/ (letters, digits, `.`, `_`, `-`)."""
    parent: str | None = None
    """An earlier variant to start from; None = the input model."""
    modifiers: list[dict[str, dict[str, Any]]] | None = None
    """An llm-compressor recipe: a list of `{ModifierName: {argument: value}}`, applied by `oneshot` in order."""
    pipeline: Literal["sequential", "basic", "datafree", "independent"] | None = None
    """llm-compressor calibration pipeline; None = what llm-compressor infers (sequential when data is needed)."""
    structured: StructuredConfig | None = None
    """Structured width/depth pruning."""
    distill: DistillConfig | None = None
    """Knowledge distillation into a smaller student."""
    gguf: GgufConfig | None = None
    """GGUF export for llama.cpp."""
    hf: HfConfig | None = None
    """Dense HF safetensors export (the fp16 reference, or a merged bf16 checkpoint for vLLM)."""
    dtype: Dtype | None = None
    """dtype of the non-quantised weights on disk; None = `compress.dtype`."""

    @field_validator("modifiers")
    @classmethod
    def _modifier_shape(cls, value: list[dict[str, dict[str, Any]]] | None) -> Any:
        if value is None:
            return None
        if not value:
            raise ValueError("modifiers: an empty list; give at least one {ModifierName: {...}}")
        for entry in value:
            if len(entry) != 1:
                raise ValueError(f"modifiers: each entry is one {{ModifierName: {{...}}}}, got keys {list(entry)}")
        return value

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> "VariantConfig":
        given = [k for k in VARIANT_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"variant {self.name!r}: set exactly one of {list(VARIANT_KINDS)}, got {given or 'none'}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in VARIANT_KINDS if getattr(self, k) is not None)

    def depends_on(self) -> list[str]:
        """Earlier variants this one needs."""
        names = [self.parent] if self.parent else []
        if self.distill is not None and self.distill.student:
            names.append(self.distill.student)
        return names


_IGNORE_HEAD = {"targets": ["Linear"], "ignore": ["lm_head"]}

# Named variants for `--variant NAME` and for plain strings in `variants:`. Quantisation presets use
# compressed-tensors' preset schemes (W4A16 = int4 weights, group 128, symmetric; W8A8 = int8 channel-wise weights
# with dynamic per-token int8 activations; FP8_DYNAMIC = fp8 channel-wise weights, dynamic per-token fp8 activations).
PRESETS: dict[str, dict[str, Any]] = {
    "fp16": {"hf": {"dtype": "float16"}},
    "bf16": {"hf": {"dtype": "bfloat16"}},
    "w4a16": {"modifiers": [{"GPTQModifier": {"scheme": "W4A16", **_IGNORE_HEAD}}]},
    "w8a16": {"modifiers": [{"GPTQModifier": {"scheme": "W8A16", **_IGNORE_HEAD}}]},
    "w8a8": {"modifiers": [{"SmoothQuantModifier": {"smoothing_strength": 0.8}},
                           {"GPTQModifier": {"scheme": "W8A8", **_IGNORE_HEAD}}]},
    "fp8": {"modifiers": [{"QuantizationModifier": {"scheme": "FP8_DYNAMIC", **_IGNORE_HEAD}}]},
    "sparse24": {"modifiers": [{"SparseGPTModifier": {"sparsity": 0.5, "mask_structure": "2:4", **_IGNORE_HEAD}}]},
    "sparsegpt50": {"modifiers": [{"SparseGPTModifier": {"sparsity": 0.5, "mask_structure": "0:0", **_IGNORE_HEAD}}]},
    "wanda24": {"modifiers": [{"WandaPruningModifier": {"sparsity": 0.5, "mask_structure": "2:4", **_IGNORE_HEAD}}]},
    "wanda50": {"modifiers": [{"WandaPruningModifier": {"sparsity": 0.5, "mask_structure": "0:0", **_IGNORE_HEAD}}]},
    "pruned": {"structured": {"drop_layers": 2, "mlp_keep": 0.75}},
    "distilled": {"distill": {"student": "pruned"}},
    "distilled-ce": {"distill": {"student": "pruned", "kd_weight": 0.0, "ce_weight": 1.0}},
    "gguf-f16": {"gguf": {"type": "F16"}},
    "gguf-q8": {"gguf": {"type": "Q8_0"}},
    "gguf-q4": {"gguf": {"type": "Q4_0"}},
}


def preset_variant(name: str) -> VariantConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown variant preset {name!r}; presets are {sorted(PRESETS)} "
                         "(or give a mapping with name + one of modifiers/structured/distill/gguf/hf)")
    return VariantConfig(name=name, **PRESETS[name])


def with_dependencies(names: list[str]) -> list[str]:
    """Preset names plus the presets they need (e.g. `distilled` needs `pruned`), dependencies first."""
    ordered: list[str] = []

    def add(name: str) -> None:
        for dep in preset_variant(name).depends_on():
            if dep not in ordered:
                add(dep)
        if name not in ordered:
            ordered.append(name)

    for name in names:
        add(name)
    return ordered


class MeasureConfig(StrictModel):
    """What is measured for the parent and every variant (same prompts, same tokens, one run)."""

    enabled: bool = True
    """Measure at all (off = only build the variants)."""
    prompts: list[str] = Field(default_factory=lambda: [
        "제1조(목적) 이 법은 군인의 복무에 관한 기본 사항을 규정함을 목적으로 한다. 제2조(정의) 이 법에서",
        "Leaders develop subordinates through counseling, coaching and mentoring. A leader who",
    ])
    """Prompts for the prefill/decode speed measurement."""
    new_tokens: int = Field(32, ge=1)
    """Tokens generated per prompt (greedy, no early stop) for decode tokens/s."""
    repeats: int = Field(2, ge=1)
    """Timed repetitions per prompt after one warm-up; the median is reported."""
    ppl_tokens: int = Field(4096, ge=16)
    """Validation-split tokens scored for perplexity, top-1 agreement and KL vs the parent."""
    ppl_seq_len: int = Field(256, ge=8)
    """Sequence length of the perplexity blocks."""
    speed: bool = True
    """Measure prefill/decode tokens/s on CPU."""
    rss: bool = True
    """Measure peak resident memory while loading (in a fresh subprocess per model)."""
    threads: int | None = Field(None, ge=1)
    """torch / llama.cpp CPU threads; None = torch's default."""


class CompressConfig(StrictModel):
    """`sovforge compress`: quantised, pruned and distilled variants of a model, each measured."""

    variants: list[VariantConfig] = Field(default_factory=lambda: [preset_variant(n) for n in ("fp16", "w4a16")])
    """The variants to build, in order; a plain string is a preset name (see `sovforge compress --help`)."""
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    """Calibration samples from the corpus."""
    measure: MeasureConfig = Field(default_factory=MeasureConfig)
    """The comparison measurements."""
    dtype: Dtype = "bfloat16"
    """dtype of non-quantised weights in saved HF variants (quantised Linear layers are packed by compressed-tensors)."""

    @field_validator("variants", mode="before")
    @classmethod
    def _presets(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        return [preset_variant(v) if isinstance(v, str) else v for v in value]

    @field_validator("variants", mode="after")
    @classmethod
    def _names_and_order(cls, variants: list[VariantConfig]) -> list[VariantConfig]:
        if not variants:
            raise ValueError("no variants: list at least one (a preset name or a mapping)")
        seen: list[str] = []
        for variant in variants:
            if variant.name in seen:
                raise ValueError(f"variant name {variant.name!r} appears twice")
            for dep in variant.depends_on():
                if dep not in seen:
                    raise ValueError(f"variant {variant.name!r} needs variant {dep!r}, which must be declared "
                                     f"before it (declared so far: {seen or 'none'})")
            seen.append(variant.name)
        return variants
