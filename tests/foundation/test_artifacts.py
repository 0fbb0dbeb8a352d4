"""Lineage: signed manifests detect any single-byte edit, deleted/added file, swapped signature, bad inputs."""

import json
import shutil
from pathlib import Path

import pytest

from sovforge.artifacts import (
    LineageError, build_artifact, lineage_tree, load_artifact, open_input, verify,
)
from sovforge.classification import Level


def make(out: Path, kind="corpus", inputs=(), classification=None, payload=b"hello") -> Path:
    with build_artifact(out, kind=kind) as staging:
        (staging.path / "data").mkdir()
        (staging.path / "data" / "a.bin").write_bytes(payload)
        (staging.path / "b.txt").write_text("second file", encoding="utf-8")
        staging.finish(inputs=list(inputs), config={"x": 1}, classification=classification, stats={"n": 2})
    return out


def test_fresh_artifact_verifies_and_manifest_follows_contract(tmp_path):
    path = make(tmp_path / "a")
    manifest = json.loads((path / "manifest.json").read_text())
    for key in ("kind", "id", "created", "inputs", "code", "config", "classification", "stats", "signature"):
        assert key in manifest
    assert manifest["signature"]["alg"] == "ed25519"
    assert len(manifest["id"]) == 64
    assert verify(path).ok


def test_id_names_content_not_place(tmp_path):
    assert load_artifact(make(tmp_path / "a")).id == load_artifact(make(tmp_path / "b")).id
    assert load_artifact(make(tmp_path / "c", payload=b"hellp")).id != load_artifact(tmp_path / "a").id


def test_single_byte_edit_is_detected_and_named(tmp_path):
    path = make(tmp_path / "a")
    target = path / "data" / "a.bin"
    data = bytearray(target.read_bytes())
    data[0] ^= 1
    target.write_bytes(bytes(data))
    report = verify(path)
    assert not report.ok
    assert any("data/a.bin" in p and "changed" in p for p in report.problems)


def test_deleted_and_added_files_are_detected(tmp_path):
    path = make(tmp_path / "a")
    (path / "b.txt").unlink()
    (path / "extra.txt").write_text("smuggled")
    problems = " ".join(verify(path).problems)
    assert "b.txt is missing" in problems and "extra.txt was added" in problems


def test_manifest_edit_and_swapped_signature_are_detected(tmp_path):
    a, b = make(tmp_path / "a"), make(tmp_path / "b", payload=b"other")
    manifest = json.loads((a / "manifest.json").read_text())
    manifest["classification"] = "UNCLASSIFIED"
    manifest["stats"]["n"] = 3
    (a / "manifest.json").write_text(json.dumps(manifest))
    assert any("signature does not match" in p for p in verify(a).problems)

    c = make(tmp_path / "c")
    other_sig = json.loads((b / "manifest.json").read_text())["signature"]
    manifest = json.loads((c / "manifest.json").read_text())
    manifest["signature"] = other_sig
    (c / "manifest.json").write_text(json.dumps(manifest))
    assert not verify(c).ok


def test_unknown_signing_key_is_refused(tmp_path, monkeypatch):
    path = make(tmp_path / "a")
    monkeypatch.setenv("SOVFORGE_HOME", str(tmp_path / "elsewhere"))  # another installation: different key
    assert any("unknown key" in p for p in verify(path).problems)


def test_classification_inherits_max_of_inputs_and_walk_checks_inputs(tmp_path):
    secret = make(tmp_path / "secret", classification="Ⅱ급비밀")
    plain = make(tmp_path / "plain", payload=b"plain")
    child = make(tmp_path / "child", kind="model", inputs=[open_input(secret), open_input(plain)], payload=b"m")
    assert load_artifact(child).classification is Level.SECRET
    assert verify(child).ok
    tree = "\n".join(lineage_tree(child))
    assert "[SECRET]" in tree and "corpus" in tree
    (secret / "b.txt").write_text("tampered input")
    report = verify(child)
    assert not report.ok and any(str(secret) in p and "b.txt" in p for p in report.problems)


def test_an_input_replaced_by_its_child_is_named_not_looped(tmp_path):
    """A parent directory overwritten by its own child (same path, new content) once sent verify into endless
    recursion; it must report the id mismatch and stop."""
    parent = make(tmp_path / "m", kind="model", payload=b"parent")
    staged = make(tmp_path / "child", kind="model", inputs=[open_input(parent)], payload=b"child")
    shutil.rmtree(parent)
    shutil.move(str(staged), str(parent))  # the child now lives where its recorded input was
    report = verify(parent)
    assert not report.ok
    assert any("but the child recorded" in p for p in report.problems), report.problems


def test_failed_stage_leaves_no_partial_artifact(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(RuntimeError):
        with build_artifact(out, kind="model") as staging:
            (staging.path / "weights").write_bytes(b"half")
            raise RuntimeError("stage crashed")
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if "staging" in p.name]


def test_signing_key_is_private(sovforge_home):
    from sovforge.artifacts import signing_key

    signing_key()
    key = Path(sovforge_home) / "keys" / "signing.ed25519.pem"
    assert key.stat().st_mode & 0o777 == 0o600


def test_not_an_artifact_is_a_clear_error(tmp_path):
    with pytest.raises(LineageError, match="not an artifact"):
        load_artifact(tmp_path)
    report = verify(tmp_path / "missing")
    assert not report.ok and "no such artifact" in report.problems[0]


def test_external_checkpoint_is_usable_as_input(tiny_model, tmp_path):
    plain = tmp_path / "plain-hf"
    shutil.copytree(tiny_model, plain)
    (plain / "manifest.json").unlink()
    external = open_input(plain, kind="model")
    assert external.manifest["external"] and external.classification is Level.UNCLASSIFIED
    child = make(tmp_path / "child", kind="model", inputs=[external])
    assert verify(child).ok
