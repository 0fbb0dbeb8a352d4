"""Ingest test fixtures: sample documents with planted truth, and corpora built from them once per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sovforge.ingest.config import IngestConfig


@pytest.fixture(scope="session")
def demo_docs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """`sovforge demo --make-docs` output: txt/md/html/docx/pdf/hwpx with PII, banners and near-duplicates."""
    from sovforge.demo.docs import make_documents, truth_path

    docs = tmp_path_factory.mktemp("demo") / "docs"
    make_documents(docs, count=30, seed=1)
    return docs, json.loads(truth_path(docs).read_text(encoding="utf-8"))


def demo_config(docs: Path, **overrides) -> IngestConfig:
    return IngestConfig(inputs=[docs], val_share=0.1, canaries=2, canary_repeats=2, progress=False, **overrides)


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory: pytest.TempPathFactory, demo_docs, tiny_model: Path) -> Path:
    from sovforge.ingest.pipeline import run_ingest

    return run_ingest(demo_config(demo_docs[0], tokenizer=tiny_model), tmp_path_factory.mktemp("corpora") / "demo")


@pytest.fixture(scope="session")
def shared_out(tmp_path_factory: pytest.TempPathFactory, shared_corpus: Path) -> Path:
    from sovforge.ingest.pipeline import run_ingest

    return run_ingest(IngestConfig(inputs=[shared_corpus], progress=False),
                      tmp_path_factory.mktemp("corpora") / "shared")
