"""Byte-level BPE tokenizer for Korean + English, trained locally with the `tokenizers` library.

Byte-level means no unknown tokens: any Hangul syllable, Hanja or symbol decomposes into bytes, and BPE merges
recover whole syllables and frequent morphemes from the training text. The chat template is ChatML with
`{% generation %}` markers, so `apply_chat_template(..., return_assistant_tokens_mask=True)` gives SFT its
assistant-only loss mask.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

BOS = "<|begin_of_text|>"
EOS = "<|endoftext|>"
PAD = "<|pad|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, IM_START, IM_END]

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}{{- '\\n' }}"
    "{%- else %}"
    "{{- message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

TEXT_SUFFIXES = {".txt", ".md", ".html", ".htm", ".jsonl"}


def iter_text_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Text files under the given files/directories, in a stable order."""
    for path in map(Path, paths):
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        elif path.is_file():
            yield path
        else:
            raise FileNotFoundError(f"{path}: no such file or directory")


def iter_texts(paths: Iterable[str | Path], jsonl_field: str = "text") -> Iterator[str]:
    """Plain text of each file (one item per JSONL row); HTML is reduced to its text."""
    for path in iter_text_files(paths):
        raw = path.read_text(encoding="utf-8", errors="replace")
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            for line in raw.splitlines():
                if line.strip():
                    row = json.loads(line)
                    if isinstance(row.get(jsonl_field), str):
                        yield row[jsonl_field]
        elif suffix in (".html", ".htm"):
            from lxml import html as lxml_html

            tree = lxml_html.fromstring(raw or "<html/>")
            for bad in tree.xpath("//script|//style"):
                bad.drop_tree()
            yield tree.text_content()
        else:
            yield raw


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | Path | None = None,
                    model_max_length: int = 1024) -> Any:
    """Train a byte-level BPE tokenizer and return it as a transformers fast tokenizer (saved if `out_dir`)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()  # Korean text arrives both composed and decomposed; train on one form
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    # Llama convention: every encoded sequence starts with BOS; the chat template therefore does not add one.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        model_max_length=model_max_length, padding_side="left", clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    if out_dir is not None:
        fast.save_pretrained(out_dir)
    return fast
