"""scripts/demo-serve and what it picks from the demo's artifacts (promoted model, report, index, fallbacks), and the
promotion contract with evaluate's report (`stats.promoted`, `stats.candidate`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sovforge.artifacts import build_artifact, open_input

REPO = Path(__file__).resolve().parents[2]


def _report(path: Path, model: Path, promoted: bool | None, failed: list[str] = ()) -> Path:
    """A report artifact shaped like evaluate's (runner.evaluate_models)."""
    candidate = open_input(model)
    with build_artifact(path, kind="report") as staging:
        (staging.path / "results.json").write_text("{}")
        staging.finish(inputs=[candidate], config={}, stats={"promoted": promoted, "candidate": candidate.id,
                                                             "reference": None, "failed_rules": list(failed)})
    return path


def _workdir(tmp_path: Path, tiny_model: Path, rag_index: Path | None, promoted: bool | None) -> Path:
    work = tmp_path / "demo"
    work.mkdir()
    (work / "base").symlink_to(tiny_model, target_is_directory=True)
    if promoted is not None:
        _report(work / "evaluate", tiny_model, promoted, [] if promoted else ["domain_ppl: 41.0 > 1.05 x 30.0"])
    if rag_index is not None:
        (work / "rag").symlink_to(rag_index, target_is_directory=True)
    return work


def test_finds_promoted_model_report_and_index(tmp_path, tiny_model, rag_index):
    from sovforge.serve.demo import find_demo_artifacts

    found = find_demo_artifacts(_workdir(tmp_path, tiny_model, rag_index, promoted=True))
    assert found["model"].name == "base" and found["report"].name == "evaluate" and found["index"].name == "rag"
    assert found["force"] is False and found["notes"] == [] and found["clearance"] == "UNCLASSIFIED"


@pytest.mark.parametrize("promoted", [False, None])
def test_falls_back_with_a_clear_note(tmp_path, tiny_model, promoted):
    from sovforge.serve.demo import find_demo_artifacts

    found = find_demo_artifacts(_workdir(tmp_path, tiny_model, None, promoted=promoted))
    assert found["force"] is True and found["index"] is None
    assert any("--force-unpromoted" in n for n in found["notes"]) and any("no retrieval index" in n
                                                                          for n in found["notes"])
    if promoted is False:
        assert any("domain_ppl" in n for n in found["notes"])


def test_no_model_is_a_clear_error(tmp_path):
    from sovforge.serve.demo import find_demo_artifacts

    with pytest.raises(SystemExit, match="no model artifact"):
        find_demo_artifacts(tmp_path)


def test_script_prints_how_to_reach_the_server(tmp_path, tiny_model, rag_index):
    work = _workdir(tmp_path, tiny_model, rag_index, promoted=True)
    env = {**os.environ, "SOVFORGE_DEMO_WORKDIR": str(work), "SOVFORGE_HOME": str(tmp_path / "home"),
           "SOVFORGE_DEMO_DRY_RUN": "1", "SOVFORGE_VENV": str(Path(sys.executable).parent.parent)}
    out = subprocess.run(["bash", str(REPO / "scripts" / "demo-serve")], env=env, capture_output=True, text=True,
                         timeout=180, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert "chat page   http://127.0.0.1:" in text and "demo key    sf-" in text
    run = next(line for line in text.splitlines() if line.startswith("would run: "))
    assert "--host 127.0.0.1" in run and f"--report {work / 'evaluate'}" in run and f"--index {work / 'rag'}" in run
    assert "--force-unpromoted" not in run


def test_promotion_contract_with_evaluate(tmp_path, tiny_model, tiny_qwen2):
    from sovforge.serve.app import PromotionError, check_promotion

    model_id = open_input(tiny_model).id
    assert check_promotion(model_id, _report(tmp_path / "ok", tiny_model, True), False) == "promoted"
    failed = _report(tmp_path / "failed", tiny_model, False, ["canary_extractions: 1 > 0"])
    with pytest.raises(PromotionError, match="did not promote.*canary_extractions"):
        check_promotion(model_id, failed, False)
    assert check_promotion(model_id, failed, True).startswith("forced: ")
    other = _report(tmp_path / "other", tiny_qwen2, True)
    with pytest.raises(PromotionError, match="not this model"):
        check_promotion(model_id, other, False)
