"""Fixtures of the adapt tests: corpus artifacts in the ingest layout (documents/, optional packed/), SFT files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

DOMAIN = ("제{i}조(군사기밀의 보호) 군사기밀을 취급하는 사람은 보안 규정을 지켜야 한다. "
          "The unit commander shall protect classified information in section {i}. ")


def write_corpus(path: Path, texts: dict[str, list[str]], classification: str = "UNCLASSIFIED",
                 packed_with: Path | None = None, title: str | None = None) -> Path:
    """A corpus artifact as `sovforge ingest` lays it out; `packed_with` = a model dir whose tokenizer packs it."""
    import numpy as np

    from sovforge.ingest.corpus import tokenizer_sha256
    from tests.conftest import write_corpus_artifact

    def pack(staging: Path) -> None:
        from sovforge.model.loading import load_tokenizer

        tokenizer = load_tokenizer(packed_with)
        (staging / "packed").mkdir()
        counts = {}
        for split, items in texts.items():
            ids = [t for text in items for t in tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]]
            np.save(staging / "packed" / f"{split}.npy", np.asarray(ids, dtype=np.uint16))
            counts[split] = len(ids)
        (staging / "packed" / "meta.json").write_text(json.dumps({
            "tokenizer_sha256": tokenizer_sha256(packed_with / "tokenizer.json"), "tokenizer": str(packed_with),
            "dtype": "uint16", "eos_id": tokenizer.eos_token_id, "tokens": counts}))

    rows = [{"id": f"{split}{n}", "text": text, "source": f"s{n}.md", "split": split,
             **({"title": title} if title else {})}
            for split, items in texts.items() for n, text in enumerate(items)]
    return write_corpus_artifact(path, rows, classification=classification,
                                 add_files=pack if packed_with is not None else None)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Hidden-64 matmuls gain nothing from threads, and on a shared 2-core box 2 threads wait on each other
    (a 2-step CPT run: 7.3 s with 2 threads under load vs 0.4 s with 1). Restored after each test."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def make_corpus() -> Callable[..., Path]:
    return write_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """12 training and 3 validation documents of repetitive domain text, RESTRICTED (to test inheritance)."""
    root = tmp_path_factory.mktemp("corpus")
    return write_corpus(root / "c", {"train": [DOMAIN.format(i=i) * 3 for i in range(12)],
                                    "validation": [DOMAIN.format(i=i) * 3 for i in range(40, 43)]},
                        classification="RESTRICTED")


SFT_ROWS = [
    {"messages": [{"role": "system", "content": "국방 행정 도우미입니다."},
                  {"role": "user", "content": f"제{i}조의 요지는?"},
                  {"role": "assistant", "content": f"제{i}조는 군사기밀 보호를 규정한다."}]}
    for i in range(1, 13)
] + [
    {"instruction": f"Summarise paragraph 1-{i} of FM 6-22.", "input": "",
     "output": f"Paragraph 1-{i}: leaders develop subordinates."}
    for i in range(1, 13)
]


@pytest.fixture(scope="session")
def sft_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sft") / "rows.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in SFT_ROWS), encoding="utf-8")
    return path
