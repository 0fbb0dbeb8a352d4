"""Slow ingest checks (minutes): `.venv/bin/python -m pytest -q -p no:cacheprovider -m slow tests/ingest`.

- a 200 MB text file streamed through the whole pipeline in parts, in bounded memory (peak RSS of a child process);
- the same documents with `--executor ray` (a local Ray cluster) as with the local executor.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sovforge.artifacts import load_artifact
from sovforge.ingest.corpus import iter_documents, iter_quarantine
from tests.ingest.helpers import STATUTE_A, STATUTE_B

pytestmark = pytest.mark.slow

STREAM = """
import json, resource, sys
from pathlib import Path
from sovforge.ingest.config import IngestConfig
from sovforge.ingest.pipeline import run_ingest
cfg = IngestConfig(inputs=[Path(sys.argv[1])], max_file_mb=300, max_document_chars=1_000_000, dedup_near=False,
                   quarantine_text=False, progress=False)
run_ingest(cfg, Path(sys.argv[2]))
print(json.dumps({"max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def test_200_mb_text_streams_in_parts_with_bounded_memory(tmp_path: Path):
    import random

    rng = random.Random(0)
    words = (STATUTE_A + " " + STATUTE_B).split()
    src = tmp_path / "in"
    src.mkdir()
    with open(src / "huge.txt", "w", encoding="utf-8") as fh:
        written = chars = 0
        while written < 200 << 20:
            paragraph = " ".join(rng.choice(words) for _ in range(120)) + "\n\n"
            fh.write(paragraph)
            written += len(paragraph.encode())
            chars += len(paragraph)
    result = subprocess.run([sys.executable, "-c", STREAM, str(src), str(tmp_path / "corpus")],
                            capture_output=True, text=True, timeout=3000)
    assert result.returncode == 0, result.stderr[-3000:]
    rss = json.loads(result.stdout.strip().splitlines()[-1])["max_rss_mb"]
    documents = list(iter_documents(tmp_path / "corpus")) + list(iter_quarantine(tmp_path / "corpus"))
    assert len(documents) >= chars // 1_000_000  # ~85M characters → parts of at most 1M characters
    assert all(len(d.get("text", "")) <= 1_000_000 for d in documents)
    print(f"{written >> 20} MB, {chars} characters → {len(documents)} documents, peak RSS {rss:.0f} MB")
    assert rss < 1500, f"peak RSS {rss:.0f} MB for a 200 MB file"


def test_ray_executor_gives_the_same_documents(tmp_path: Path, demo_docs):
    pytest.importorskip("ray")
    from sovforge.ingest.pipeline import run_ingest
    from tests.ingest.conftest import demo_config

    local = run_ingest(demo_config(demo_docs[0]), tmp_path / "local")
    ray = run_ingest(demo_config(demo_docs[0], executor="ray", workers=2), tmp_path / "ray")
    view = lambda corpus: {d["id"]: (d["text"], d["split"]) for d in iter_documents(corpus)}  # noqa: E731
    assert view(ray) == view(local)
    assert load_artifact(ray).stats["throughput"]["executor"] == "ray"
