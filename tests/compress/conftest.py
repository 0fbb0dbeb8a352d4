"""Fixtures of the compress tests: a corpus artifact cut from the shared Korean defence statutes."""

from __future__ import annotations

from pathlib import Path

import pytest

from compress_helpers import statute_chunks, write_corpus


@pytest.fixture(scope="session")
def statute_corpus(tmp_path_factory, shared_corpus: Path) -> Path:
    """A RESTRICTED corpus of 3 statutes' articles (so classification inheritance is visible)."""
    docs = statute_chunks(shared_corpus, limit_files=3)
    return write_corpus(tmp_path_factory.mktemp("corpus") / "statutes", docs, classification="RESTRICTED")
