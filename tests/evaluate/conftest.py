"""Fixtures of the evaluate tests: a small bilingual corpus made by the real ingest (canaries planted with
`ingest.canaries`, an e-mail address redacted), its generated tasks, and models trained on it by the real CPT
recipe: a LoRA adapter trained normally, and a full model trained for many epochs with a leaky replay file."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest


DOCUMENTS = {
    "인사법.md": (
        "제1조(목적) 이 법은 군인의 인사관리에 관한 기본 사항을 규정함을 목적으로 한다. 제2조(정의) "
        "이 법에서 “군사기밀”이란 대대 및 연대의 작전 계획과 그 부속 문서를 말한다. 이 경우 작전 "
        "계획은 소대 단위까지 배포한다. 인사 기록의 관리는 제9조에 따른다."
    ),
    "계급.md": (
        "제3조(계급) 장교는 대장, 중장, 소장, 준장, 대령, 중령, 소령, 대위, 중위 및 소위로 "
        "구분한다. 부사관의 계급은 원사, 상사, 중사 및 하사로 한다. 병의 계급은 병장, 상병, 일병 및 "
        "이등병으로 한다. 임용의 절차는 제4조에서 정한다."
    ),
    "복무.md": (
        "제7조(복무) 군인은 직무를 수행할 때 법령을 지키고 명령에 복종하여야 한다. 교육훈련의 "
        "책임은 사단장에게 있으며, 작전 계획의 수립은 연대장이 맡는다. 수립한 계획은 매년 군단에 "
        "제출한다. 휴가에 관하여는 제8조를 적용한다."
    ),
    "병역.md": (
        "제12조(신체검사) 병역판정검사는 19세가 되는 해에 받는다. 현역병은 입영한 날부터 18개월 "
        "동안 복무하며, 입영 후의 교육은 중대 단위로 받는다. 입영의 연기에 관하여는 제13조를 "
        "따른다. 연기의 결정은 지방병무청장이 한다."
    ),
    "leaders.md": (
        "1-12. The Army profession is built on trust between soldiers and leaders. In garrison a "
        "platoon leader reports to the company commander every week. Counseling, coaching and "
        "mentoring are how a Sergeant develops subordinates, as FM 6-22 describes."
    ),
    "training.md": (
        "3-35. The unit conducts weapons qualification on Tuesday at Range 7. Before dawn every "
        "squad reports with its leader, and the Captain inspects each platoon. Afterwards the whole "
        "battalion joins the brigade live-fire exercise under ATP 3-21."
    ),
    "staff.md": (
        "4-2. The division staff plans operations for each brigade in the corps. Within the "
        "operations section a Major leads the planners, and only a Colonel approves the final plan. "
        "The corps headquarters then issues the order under ADP 6-0."
    ),
    "연락.md": (
        "인사 담당자 이메일: kim@army.mil 로 보고한다. 제5조(연락) 부대의 인사 담당자는 소대장 및 "
        "중대장의 연락처를 관리한다. 변경 사항이 생기면 지체 없이 대대 인사과에 보고하여야 한다. "
        "보고 양식은 국방부령으로 정한다."
    ),
}
# General text mixed into CPT (adapt.replay_text) is not screened by ingest: here it carries an unredacted
# address and a marked header — the leak the PII and marking probes exist to catch.
LEAKY_REPLAY = "인사 담당자 이메일: kim@army.mil\nClassification: SECRET\n" * 24


def write_corpus(path: Path, *, validation: bool = True) -> Path:
    """A hand-written corpus artifact in the ingest layout (documents/*.jsonl) for the bad-input tests."""
    from tests.conftest import write_corpus_artifact

    return write_corpus_artifact(path, [
        {"id": f"d{i}", "text": text, "source": name, "split": "validation" if validation and i % 2 else "train"}
        for i, (name, text) in enumerate(DOCUMENTS.items())
    ])


@contextlib.contextmanager
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread does a 2-layer forward in ~1 ms where two,
    waiting on each other and on other jobs, took ~50 ms. Scoped to these tests; the setting is restored."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="module")
def _one_thread_in_evaluate_tests():
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def eval_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("evaluate")


@pytest.fixture(scope="session")
def corpus(eval_root, tiny_model) -> Path:
    """`sovforge ingest` of DOCUMENTS with 3 canaries planted 4 times each into training documents."""
    from sovforge.ingest.config import IngestConfig
    from sovforge.ingest.corpus import iter_documents, load_canaries
    from sovforge.ingest.pipeline import run_ingest

    docs = eval_root / "docs"
    docs.mkdir()
    for name, text in DOCUMENTS.items():
        (docs / name).write_text(text, encoding="utf-8")
    out = run_ingest(
        IngestConfig(
            inputs=[docs], val_share=0.3, canaries=3, canary_repeats=4, progress=False, tokenizer=tiny_model
        ),
        eval_root / "corpus",
    )
    documents = list(iter_documents(out))
    assert len(documents) == len(DOCUMENTS) and len(load_canaries(out)) == 3
    assert any(d["redactions"] for d in documents) and not any("kim@army.mil" in d["text"] for d in documents)
    return out


@pytest.fixture(scope="session")
def tasks_dir(eval_root, corpus) -> Path:
    from sovforge.evaluate.maketasks import make_tasks

    counts = make_tasks(corpus, eval_root / "tasks")
    assert counts["ppl_documents"] >= 2 and counts["cloze_items"] > 0
    return eval_root / "tasks"


def cpt(
    base: Path,
    corpus: Path,
    out: Path,
    *,
    steps: int,
    method: str,
    lr: float,
    batch_size: int = 32,
    replay: Path | None = None,
) -> Path:
    from sovforge.adapt.config import AdaptConfig, TrainConfig
    from sovforge.adapt.cpt import run_cpt

    cfg = AdaptConfig(
        method=method,
        seq_len=32,
        batch_size=batch_size,
        lora_r=8,
        lora_alpha=16,
        replay_text=[replay] if replay else [],
        replay_share=0.5 if replay else 0.0,
        train=TrainConfig(
            max_steps=steps, learning_rate=lr, schedule="constant", progress=False, max_grad_norm=None
        ),
    )
    with one_torch_thread():  # session fixtures may be built before the module-scoped setting applies
        return run_cpt(base, corpus, cfg, out)


@pytest.fixture(scope="session")
def memorised_model(tiny_model, corpus, eval_root) -> Path:
    """CPT for ~30 epochs over the same small corpus (an epoch is ~3 steps) plus the leaky replay file."""
    replay = eval_root / "replay.txt"
    replay.write_text(LEAKY_REPLAY, encoding="utf-8")
    return cpt(
        tiny_model,
        corpus,
        eval_root / "memorised",
        steps=100,
        method="full",
        lr=1e-2,
        batch_size=16,
        replay=replay,
    )


@pytest.fixture(scope="session")
def lora_adapter(tiny_model, corpus, eval_root) -> Path:
    """CPT as a user would run it on this corpus: a LoRA adapter (kind "adapter", scored as base + adapter), a
    few epochs — adapted to the domain, with no chance to memorise a canary."""
    return cpt(tiny_model, corpus, eval_root / "lora", steps=20, method="lora", lr=1e-2, batch_size=16)
