"""Shared fixtures: an isolated $SOVFORGE_HOME, the offline guard on, a tiny local base model, sample text.

Models in tests are built here (2 layers, hidden 64) — nothing is downloaded, ever.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_CORPUS = REPO.parent / "shared" / "corpus"

CORPUS_ROW_DEFAULTS = {"sha256": "0" * 64, "lang": "ko", "classification": "UNCLASSIFIED", "redactions": [],
                       "split": "train"}


def write_corpus_artifact(path: Path, rows: list[dict[str, Any]], *, classification: Any = None,
                          stats: dict | None = None, config: dict | None = None,
                          add_files: Callable[[Path], None] | None = None) -> Path:
    """A signed corpus artifact in the layout `sovforge ingest` writes (documents/part-0.jsonl, DESIGN.md §3).

    Each row needs `id` and `text`; the other contract fields default to an unclassified Korean training
    document with source `ID.md`. The artifact's level is `classification`, else the highest row level. `add_files(staging)`
    writes more files (e.g. packed tokens) before signing."""
    from sovforge.artifacts import build_artifact
    from sovforge.classification import parse_level

    full = [{**CORPUS_ROW_DEFAULTS, "source": f"{row['id']}.md", **row} for row in rows]
    level = classification or max(parse_level(row["classification"]) for row in full)
    with build_artifact(path, kind="corpus") as staging:
        (staging.path / "documents").mkdir()
        with open(staging.path / "documents" / "part-0.jsonl", "w", encoding="utf-8") as handle:
            for row in full:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        if add_files is not None:
            add_files(staging.path)
        staging.finish(inputs=[], config=config or {}, classification=level,
                       stats=stats if stats is not None else {"documents": len(full)})
    return path


SAMPLE_TEXT = [
    "제1조(목적) 이 법은 군인의 인사관리에 관한 기본 사항을 규정함을 목적으로 한다.",
    "제2조(적용 범위) 이 법은 현역 군인과 사관생도에게 적용한다. 국방부장관은 필요한 사항을 정한다.",
    "제3조(계급) 장교는 원수, 대장, 중장, 소장, 준장, 대령, 중령, 소령, 대위, 중위 및 소위로 구분한다.",
    "3-35. Leaders develop subordinates through counseling, coaching and mentoring in garrison and in the field.",
    "1-12. The Army profession is built on trust between soldiers, leaders and the American people.",
    "The unit conducts weapons qualification training on Tuesday; all personnel report to Range 7 at 0700.",
    "정비일지: 차량 K-311 엔진오일 교환 완료. 다음 점검은 500km 주행 후 실시한다.",
    "훈련 공지: 전 부대원은 금요일 09시까지 연병장에 집합하여 체력검정을 실시한다.",
] * 6


@pytest.fixture(scope="session", autouse=True)
def sovforge_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keys and the artifact registry of the test session live in a temp dir, never in ~/.sovforge."""
    home = tmp_path_factory.mktemp("sovforge-home")
    os.environ["SOVFORGE_HOME"] = str(home)
    return home


@pytest.fixture(scope="session", autouse=True)
def offline_guard():
    """Every test runs with the air-gap guard on: a test that tries the internet fails loudly."""
    from sovforge.offline import enforce_offline, release_guard

    enforce_offline()
    yield
    release_guard()


@pytest.fixture(scope="session")
def sample_text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sample-text")
    (root / "sample.txt").write_text("\n".join(SAMPLE_TEXT) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, sample_text_dir: Path) -> Path:
    """A 2-layer, hidden-64 Llama base artifact with its own BPE tokenizer, pre-trained a few steps."""
    from sovforge.model.base import init_base
    from sovforge.model.config import BaseConfig

    out = tmp_path_factory.mktemp("models") / "tiny-base"
    cfg = BaseConfig(text=[sample_text_dir], preset="tiny", vocab_size=512, pretrain_steps=3, seq_len=32,
                     batch_size=4, max_position_embeddings=256)
    return init_base(cfg, out)


@pytest.fixture(scope="session")
def shared_corpus() -> Path:
    """../shared/corpus (FM 6-22 HTML, Korean defence statutes); skipped where the checkout has none."""
    if not SHARED_CORPUS.is_dir():
        pytest.skip(f"shared corpus not found at {SHARED_CORPUS}")
    return SHARED_CORPUS


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """A plain local Qwen2-architecture checkpoint (no manifest), like A.X 4.0 Light but 2 layers / hidden 64."""
    import shutil

    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from sovforge.model.loading import load_tokenizer

    tokenizer = load_tokenizer(tiny_model)
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    out = tmp_path_factory.mktemp("models") / "tiny-qwen2"
    Qwen2ForCausalLM(config).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    for extra in ("manifest.json",):
        if (out / extra).exists():
            (out / extra).unlink()
    shutil.rmtree(out / "__pycache__", ignore_errors=True)
    return out
