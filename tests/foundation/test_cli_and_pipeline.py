"""CLI surface, `sovforge run` caching and `--from`, preflight, sample documents."""

import json
import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from sovforge.cli import app

runner = CliRunner()
VERBS = ["ingest", "adapt", "compress", "evaluate", "serve", "run", "keys", "audit", "lineage", "preflight", "base",
         "demo"]


def test_every_verb_is_in_the_table_and_has_help():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for verb in VERBS:
        assert verb in result.output
        sub = runner.invoke(app, [verb, "--help"])
        assert sub.exit_code == 0, (verb, sub.output)


def test_help_shows_defaults():
    result = runner.invoke(app, ["base", "init", "--help"], terminal_width=200)
    assert "default: tiny" in result.output and "default: 4096" in result.output


def test_cli_entry_point_runs_offline():
    out = subprocess.run([sys.executable, "-m", "sovforge.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "sovforge" in out.stdout


def recipe(tmp_path: Path, text_dir: Path, steps: int = 1) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({
        "name": "t", "workdir": str(tmp_path / "work"),
        "base": {"text": [str(text_dir)], "preset": "tiny", "vocab_size": 400, "pretrain_steps": steps,
                 "seq_len": 16, "batch_size": 2},
    }), encoding="utf-8")
    return path


def test_run_caches_unchanged_stages_and_from_reruns(tmp_path, sample_text_dir):
    path = recipe(tmp_path, sample_text_dir)
    first = runner.invoke(app, ["run", str(path)])
    assert first.exit_code == 0, first.output
    state = json.loads((tmp_path / "work" / "state.json").read_text())
    artifact_id = state["base"]["id"]
    second = runner.invoke(app, ["run", str(path)])
    assert second.exit_code == 0 and "unchanged, reusing" in second.output
    third = runner.invoke(app, ["run", str(path), "--from", "base"])
    assert third.exit_code == 0 and "unchanged, reusing" not in third.output
    assert json.loads((tmp_path / "work" / "state.json").read_text())["base"]["id"] == artifact_id  # deterministic
    changed = recipe(tmp_path, sample_text_dir, steps=2)
    fourth = runner.invoke(app, ["run", str(changed)])
    assert fourth.exit_code == 0 and "unchanged, reusing" not in fourth.output


def test_run_rejects_bad_recipes_clearly(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nbase:\n  presett: tiny\n", encoding="utf-8")
    result = runner.invoke(app, ["run", str(bad)])
    assert result.exit_code == 1 and "base.presett: unknown key" in result.output
    result = runner.invoke(app, ["run", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1 and "no such recipe" in result.output


def test_preflight_fails_closed_listing_missing_paths(tmp_path, sample_text_dir):
    good = recipe(tmp_path, sample_text_dir)
    result = runner.invoke(app, ["preflight", str(good)])
    assert result.exit_code == 0, result.output
    missing = tmp_path / "missing.yaml"
    missing.write_text(yaml.safe_dump({"name": "m", "base": {"path": str(tmp_path / "no-model")}}), encoding="utf-8")
    result = runner.invoke(app, ["preflight", str(missing)])
    assert result.exit_code == 1
    assert "MISSING" in result.output and "no-model" in result.output


def test_lineage_cli_exit_codes(tmp_path, tiny_model):
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(tiny_model, copy)
    assert runner.invoke(app, ["lineage", "verify", str(copy)]).exit_code == 0
    with open(copy / "tokenizer.json", "r+b") as fh:
        fh.seek(10)
        byte = fh.read(1)
        fh.seek(10)
        fh.write(bytes([byte[0] ^ 1]))
    result = runner.invoke(app, ["lineage", "verify", str(copy)])
    assert result.exit_code == 1 and "tokenizer.json" in result.output
    show = runner.invoke(app, ["lineage", "show", str(tiny_model)])
    assert show.exit_code == 0 and "[UNCLASSIFIED]" in show.output


def test_sample_documents_are_seeded_and_varied(tmp_path):
    from sovforge.demo.docs import make_documents, truth_path

    truth = make_documents(tmp_path / "a", count=20, seed=3)
    again = make_documents(tmp_path / "b", count=20, seed=3)
    assert truth == again
    for name in truth:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    formats = {v["format"] for v in truth.values()}
    assert {"txt", "md", "html", "docx", "hwpx"} <= formats
    assert {"SECRET", "RESTRICTED"} <= {v["classification"] for v in truth.values()}
    assert any(v["near_duplicate_of"] for v in truth.values())
    assert any("kr_rrn" in v["pii"] for v in truth.values())
    assert truth_path(tmp_path / "a").exists() and not (tmp_path / "a" / "truth.json").exists()


def test_planted_rrns_have_valid_checksums():
    import random
    import re

    from sovforge.demo.docs import card, rrn

    rng = random.Random(0)
    for _ in range(50):
        value = rrn(rng).replace("-", "")
        weights = [2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5]
        assert (11 - sum(int(d) * w for d, w in zip(value, weights)) % 11) % 10 == int(value[-1])
        digits = [int(d) for d in re.sub(r"\D", "", card(rng))]
        total = sum(d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(reversed(digits)))
        assert total % 10 == 0


def test_any_local_hf_checkpoint_can_be_the_base(tmp_path, tiny_qwen2):
    from sovforge.artifacts import load_artifact, open_input, verify
    from sovforge.model.loading import load_model

    path = tmp_path / "qwen.yaml"
    path.write_text(yaml.safe_dump({"name": "q", "workdir": str(tmp_path / "work"), "max_classification": "RESTRICTED",
                                    "base": {"path": str(tiny_qwen2), "classification": "대외비"}}))
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    state = json.loads((tmp_path / "work" / "state.json").read_text())
    adopted = Path(state["base"]["artifact"])
    assert adopted == tmp_path / "work" / "base"
    artifact = load_artifact(adopted)
    assert str(artifact.classification) == "RESTRICTED" and artifact.manifest["inputs"] == [open_input(tiny_qwen2).id]
    assert load_model(adopted).config.model_type == "qwen2"
    assert verify(adopted).ok
    again = runner.invoke(app, ["run", str(path)])
    assert "unchanged, reusing" in again.output
    # The recipe's ceiling is enforced: the same base under an UNCLASSIFIED recipe is refused.
    path.write_text(path.read_text().replace("max_classification: RESTRICTED", "max_classification: UNCLASSIFIED"))
    refused = runner.invoke(app, ["run", str(path), "--from", "base"])
    assert refused.exit_code == 1 and "above the recipe's max_classification" in refused.output
    assert not (tmp_path / "work" / "base").exists()
