"""Supervised fine-tuning: `sovforge adapt sft --base BASE --data FILE.jsonl [--data ...] --out OUT`.

Rows are chat JSONL (`{"messages": [{"role": "system|user|assistant", "content": ...}, ...]}`) or instruction JSONL
(`{"instruction", "input", "output"}`, optional `system`). Steps, top to bottom in `run_sft`:
1. check the base (tokenizer with a chat template, seq_len within the model) and the method — no weights yet;
2. read every row of every file, screened with `sovforge.screen.screen_text`: PII is redacted in place, a row whose
   marking (or `classification` field) is above `data_max_classification` is refused naming file:line, a row with
   no assistant turn is refused; each file's sha256, row count and classification go into the manifest;
3. render each conversation with the base tokenizer's own chat template; labels are the token ids on assistant
   tokens and -100 everywhere else (the template's `{% generation %}` markers when it has them, else the span
   between the rendered prompt and the rendered reply);
4. batches: padded to the longest in a batch of similar lengths, or `sft_packing`: several examples per sequence
   with `position_ids` restarting at 0 for each, which transformers turns into a block-diagonal causal mask
   (`masking_utils.find_packed_sequence_indices`), so no example attends to another;
5. `train()`, validation loss on the held-out rows (`sft_val_share`), the adapter/model artifact.

Why our loop and not TRL's SFTTrainer: sovforge has one training loop (`adapt/trainer.py`) that owns resumption,
the checkpoint format (safetensors + JSON, nothing pickled — HF Trainer checkpoints pickle optimizer and RNG state
through torch.save), the metrics JSONL and accelerate launching; CPT, SFT and distillation share it. What TRL would
add here is the data side — chat templating, assistant-only masks, packing — and that is the ~200 lines below.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sovforge.adapt.config import AdaptConfig
from sovforge.adapt.methods import check_base, fingerprint, load_for_training, resolve_method, run_dir, write_result
from sovforge.adapt.trainer import TrainingError, evaluate_loss, train
from sovforge.classification import Level, parse_level

ROLES = ("system", "user", "assistant")
IGNORE = -100  # label of a token the loss skips
_GENERATION_MARK = re.compile(r"\{%-?\s*generation\s*-?%\}")


class SFTDataError(TrainingError):
    """An SFT data file or row that cannot be trained on; the message names file:line."""


@dataclass
class Conversation:
    """One screened row: where it came from, its messages (PII redacted) and its classification."""

    where: str
    messages: list[dict[str, str]]
    level: Level = Level.UNCLASSIFIED
    redactions: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------- 1. rows → screened conversations

def row_messages(row: Any, where: str) -> list[dict[str, str]]:
    """Messages of a chat or instruction row, validated; SFTDataError names the row otherwise."""
    if not isinstance(row, dict):
        raise SFTDataError(f"{where}: a row must be a JSON object, got {type(row).__name__}")
    if "messages" in row:
        raw = row["messages"]
        if not isinstance(raw, list) or not raw:
            raise SFTDataError(f"{where}: `messages` must be a non-empty list")
        messages = []
        for n, message in enumerate(raw):
            if not isinstance(message, dict) or message.get("role") not in ROLES \
                    or not isinstance(message.get("content"), str):
                raise SFTDataError(f"{where}: message {n} needs a role in {list(ROLES)} and a string content")
            messages.append({"role": message["role"], "content": message["content"]})
    elif "instruction" in row or "output" in row:
        instruction, extra, output = row.get("instruction"), row.get("input") or "", row.get("output")
        if not isinstance(instruction, str) or not instruction.strip() or not isinstance(extra, str):
            raise SFTDataError(f"{where}: instruction row needs a non-empty string `instruction` (and string `input`)")
        if not isinstance(output, str) or not output.strip():
            raise SFTDataError(f"{where}: no assistant turn — the instruction row has no `output`")
        system = [{"role": "system", "content": row["system"]}] if isinstance(row.get("system"), str) else []
        user = instruction.strip() + (f"\n\n{extra.strip()}" if extra.strip() else "")
        messages = [*system, {"role": "user", "content": user}, {"role": "assistant", "content": output}]
    else:
        raise SFTDataError(f"{where}: neither a chat row (`messages`) nor an instruction row (`instruction`/`output`)")
    replies = [i for i, m in enumerate(messages) if m["role"] == "assistant" and m["content"].strip()]
    if not replies:
        raise SFTDataError(f"{where}: no assistant turn — nothing to learn from this row")
    if not any(m["role"] == "user" for m in messages[:replies[0]]):
        raise SFTDataError(f"{where}: the assistant speaks before any user turn")
    return messages


def iter_conversations(path: Path, ceiling: Level) -> Iterator[Conversation]:
    """Screened conversations of one JSONL file, in order (a generator: a bad row stops it with file:line)."""
    from sovforge.screen import screen_text

    if not path.is_file():
        raise SFTDataError(f"{path}: no such SFT data file")
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SFTDataError(f"{where}: not a JSON line ({exc.msg})") from None
            messages = row_messages(row, where)
            try:
                level = parse_level(row.get("classification") or Level.UNCLASSIFIED)
            except ValueError as exc:
                raise SFTDataError(f"{where}: {exc}") from None
            redactions: dict[str, int] = {}
            for message in messages:
                screened = screen_text(message["content"], redact=True)
                message["content"] = screened.text  # the PII value never reaches the tokenizer
                level = max(level, screened.level)
                for kind, count in screened.redactions.items():
                    redactions[kind] = redactions.get(kind, 0) + count
            if level > ceiling:
                raise SFTDataError(f"{where}: row is {level} (marking or classification field), above "
                                   f"data_max_classification {ceiling}; remove the row or raise the ceiling")
            yield Conversation(where, messages, level, redactions)


def read_sft_files(paths: list[Path], ceiling: Level) -> tuple[list[Conversation], list[dict[str, Any]]]:
    """All conversations of all files plus one manifest entry per file (sha256, rows, classification, redactions)."""
    from sovforge.artifacts import file_sha256

    if not paths:
        raise SFTDataError("no SFT data given (--data FILE.jsonl / adapt.sft_data)")
    conversations, files = [], []
    for path in map(Path, paths):
        rows = list(iter_conversations(path, ceiling))
        if not rows:
            raise SFTDataError(f"{path}: no rows")
        redactions: dict[str, int] = {}
        for row in rows:
            for kind, count in row.redactions.items():
                redactions[kind] = redactions.get(kind, 0) + count
        files.append({"path": str(path.resolve()), "sha256": file_sha256(path), "rows": len(rows),
                      "classification": str(max(r.level for r in rows)), "redactions": redactions})
        conversations.extend(rows)
    return conversations, files


# ---------------------------------------------------------------- 2. chat template → ids + assistant mask

def check_chat_template(tokenizer: Any, base_dir: Path) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise SFTDataError(f"{base_dir}: the tokenizer has no chat template, and SFT renders rows with it; use a "
                           "chat/instruct checkpoint or add chat_template.jinja to the model directory")


def supervised_ids(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """Token ids of the rendered conversation and a 0/1 mask that is 1 exactly on assistant-reply tokens."""
    if isinstance(tokenizer.chat_template, str) and _GENERATION_MARK.search(tokenizer.chat_template):
        encoded = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                                return_assistant_tokens_mask=True, tokenizer_kwargs={"verbose": False})
        ids, mask = list(encoded["input_ids"]), list(encoded["assistant_masks"])
    else:
        # No generation markers (most Qwen2/Llama templates): an assistant reply is the text between the rendered
        # prompt up to it (with the generation prompt) and the rendered conversation up to and including it.
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        spans = []
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            prompt = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
            upto = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
            if not (upto.startswith(prompt) and text.startswith(upto)):
                raise SFTDataError("the chat template renders a conversation differently from its prefixes; add "
                                   "{% generation %} markers around assistant content to the template")
            # The turn separator after the reply (Qwen2: "<|im_end|>\n") is not learnt: trim trailing whitespace.
            spans.append((len(prompt), len(prompt) + len(upto[len(prompt):].rstrip())))
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        ids = list(encoded["input_ids"])
        mask = [int(any(a <= start < b for a, b in spans)) for start, _ in encoded["offset_mapping"]]
    bos = tokenizer.bos_token_id
    # A tokenizer that starts every plain encoding with BOS (the model saw BOS first in pre-training) gets one here
    # too; chat templates that write BOS themselves already have it.
    if bos is not None and tokenizer("a")["input_ids"][:1] == [bos] and ids[:1] != [bos]:
        ids, mask = [bos, *ids], [0, *mask]
    return ids, mask


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]


def encode(tokenizer: Any, conversations: list[Conversation], seq_len: int) -> tuple[list[Example], dict[str, int]]:
    """Examples truncated to seq_len; one whose replies fall entirely past seq_len is dropped (counted)."""
    examples, counts = [], {"truncated": 0, "dropped_too_long": 0}
    for conversation in conversations:
        ids, mask = supervised_ids(tokenizer, conversation.messages)
        if len(ids) > seq_len:
            counts["truncated"] += 1
            ids, mask = ids[:seq_len], mask[:seq_len]
        if not any(mask[1:]):  # position 0 is never predicted
            counts["dropped_too_long"] += 1
            continue
        examples.append(Example(ids, [t if m else IGNORE for t, m in zip(ids, mask)]))
    return examples, counts


def held_out(conversation: Conversation, share: float) -> bool:
    """Validation membership from a hash of the row's content: stable across runs and file order."""
    digest = hashlib.sha256(json.dumps(conversation.messages, ensure_ascii=False).encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < share


# ---------------------------------------------------------------- 3. batches (padded or packed)

def padded_batches(examples: list[Example], batch_size: int, pad_id: int) -> list[dict[str, Any]]:
    """Right-padded batches of similar-length examples (sorted by length, so little padding; train() shuffles)."""
    import torch

    ordered = sorted(examples, key=lambda e: len(e.input_ids))
    batches = []
    for start in range(0, len(ordered), batch_size):
        group = ordered[start:start + batch_size]
        width = max(len(e.input_ids) for e in group)
        ids = torch.full((len(group), width), pad_id, dtype=torch.long)  # (B, T)
        labels = torch.full((len(group), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for row, example in enumerate(group):
            n = len(example.input_ids)
            ids[row, :n] = torch.tensor(example.input_ids)
            labels[row, :n] = torch.tensor(example.labels)
            mask[row, :n] = 1
        batches.append({"input_ids": ids, "labels": labels, "attention_mask": mask})
    return batches


def pack(examples: list[Example], seq_len: int) -> list[list[Example]]:
    """First-fit-decreasing bins of at most seq_len tokens (deterministic: ties keep input order)."""
    bins: list[list[Example]] = []
    room: list[int] = []
    for example in sorted(examples, key=lambda e: -len(e.input_ids)):
        n = len(example.input_ids)
        for index in range(max(0, len(bins) - 64), len(bins)):  # look back a bounded number of open bins
            if room[index] >= n:
                bins[index].append(example)
                room[index] -= n
                break
        else:
            bins.append([example])
            room.append(seq_len - n)
    return bins


def packed_batches(examples: list[Example], seq_len: int, batch_size: int, pad_id: int) -> list[dict[str, Any]]:
    """Rows of several examples each; position_ids restart per example and there is no attention_mask, so
    transformers builds a block-diagonal causal mask from the position resets (no cross-example attention).
    Padding at a row's end is one more "sequence" of its own, with labels -100."""
    import torch

    rows = pack(examples, seq_len)
    batches = []
    for start in range(0, len(rows), batch_size):
        group = rows[start:start + batch_size]
        width = max(sum(len(e.input_ids) for e in row) for row in group)
        ids = torch.full((len(group), width), pad_id, dtype=torch.long)  # (B, T)
        labels = torch.full((len(group), width), IGNORE, dtype=torch.long)
        positions = torch.zeros((len(group), width), dtype=torch.long)
        for r, row in enumerate(group):
            at = 0
            for example in row:
                n = len(example.input_ids)
                ids[r, at:at + n] = torch.tensor(example.input_ids)
                labels[r, at:at + n] = torch.tensor(example.labels)
                positions[r, at:at + n] = torch.arange(n)
                at += n
            positions[r, at:] = torch.arange(width - at)
        batches.append({"input_ids": ids, "labels": labels, "position_ids": positions})
    return batches


# ---------------------------------------------------------------- 4. the run

def run_sft(base_path: str | Path, data_paths: list[Path], cfg: AdaptConfig, out: str | Path,
            corpus_path: str | Path | None = None) -> Path:
    """Validate base and data, train, write the adapter/model artifact; returns its directory."""
    from sovforge.artifacts import open_input

    base = check_base(base_path, cfg.seq_len)
    check_chat_template(base.tokenizer, base.dir)
    method, warnings = resolve_method(cfg)
    conversations, data_files = read_sft_files(list(data_paths), parse_level(cfg.data_max_classification))
    corpus = open_input(corpus_path, kind="corpus") if corpus_path else None
    validation = [c for c in conversations if held_out(c, cfg.sft_val_share)]
    training = [c for c in conversations if not held_out(c, cfg.sft_val_share)]
    if not training:
        raise SFTDataError(f"all {len(conversations)} rows fell into validation; lower sft_val_share")
    tokenizer = base.tokenizer
    train_examples, counts = encode(tokenizer, training, cfg.seq_len)
    val_examples, _ = encode(tokenizer, validation, cfg.seq_len)
    if not train_examples:
        raise SFTDataError(f"every training row is longer than seq_len {cfg.seq_len} before its first reply")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def batches(examples: list[Example]) -> list[dict[str, Any]]:
        if cfg.sft_packing:
            return packed_batches(examples, cfg.seq_len, cfg.batch_size, pad_id)
        return padded_batches(examples, cfg.batch_size, pad_id)

    train_batches = batches(train_examples)
    val = batches(val_examples) if val_examples else None
    model = load_for_training(base.dir, cfg, method)
    device = next(model.parameters()).device
    before = evaluate_loss(model, val, device=device) if val else {}
    key = fingerprint({"mode": "sft", "cfg": cfg.model_dump(mode="json"), "base": base.artifact.id,
                       "data": [f["sha256"] for f in data_files], "corpus": corpus.id if corpus else None})
    work = run_dir(out, key)
    result = train(model, train_batches, cfg.train, out_dir=work, eval_batches=val)
    after = evaluate_loss(model, val, device=device) if val else {}
    supervised = sum(sum(label != IGNORE for label in e.labels) for e in train_examples)
    stats = {"method_used": method, "warnings": warnings, "data": data_files, "train_rows": len(train_examples),
             "val_rows": len(val_examples), "supervised_tokens": supervised,
             "sequence_tokens": sum(len(e.input_ids) for e in train_examples), "train_batches": len(train_batches),
             "packing": cfg.sft_packing, **counts, "before": before, "after": after}
    data_level = max(parse_level(f["classification"]) for f in data_files)
    return write_result(out, method=method, model=model, tokenizer=tokenizer, result=result, work=work,
                        inputs=[base.artifact, *([corpus] if corpus else [])],
                        config={**cfg.model_dump(mode="json"), "mode": "sft", "sft_data": [f["path"] for f in
                                data_files], "base_model_path": str(base.dir.resolve())},
                        stats=stats, classification=data_level)
