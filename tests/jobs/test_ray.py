"""The ray engine against a real local Ray head (127.0.0.1, Job Submission API, token auth): the demo's base,
ingest and adapt stages run as Ray jobs give the same artifacts (same content ids) as run locally; a job that dies
or is cancelled is accounted and leaves no artifact; a wrong token is a clear error.

    .venv/bin/python -m pytest -q -p no:cacheprovider -m slow tests/jobs/test_ray.py     (~2-4 min on 2 CPUs)
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sovforge.artifacts import load_artifact, verify
from sovforge.cli import app
from sovforge.config import load_recipe
from sovforge.jobs import service
from sovforge.jobs.config import JobSpec, Resources, load_tenants
from sovforge.pipeline import run_recipe
from tests.jobs.conftest import tiny_recipe, verified_audit_records, write_tenants

pytestmark = pytest.mark.slow


def _adapt(base: Path, corpus: Path, out: Path, steps: int = 4) -> list[str]:
    return ["adapt", "cpt", "--base", str(base), "--corpus", str(corpus), "--out", str(out), "--method", "full",
            "--seq-len", "32", "--batch-size", "4", "--max-steps", str(steps)]


@pytest.fixture
def tenants_file(tmp_path: Path, ray_head) -> Path:
    return write_tenants(tmp_path / "t.yaml", {"army": {"gpu_quota": 8, "ray_namespace": "army-ns",
                                                 "max_classification": "RESTRICTED"}},
                         {"ray": {"address": ray_head.address, "auth_token_file": str(ray_head.token_file)}})


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and p.name != "manifest.json"}


def _demo_recipe(path: Path, docs: Path, workdir: Path) -> Path:
    """The demo's stages, small: tiny base on the demo documents, ingest them, a 3-step full-weight adapt."""
    recipe = {"name": "demo-on-ray", "workdir": str(workdir), "max_classification": "RESTRICTED",
              "base": {"text": [str(docs)], "preset": "tiny", "vocab_size": 400, "pretrain_steps": 1, "seq_len": 32,
                       "batch_size": 4, "max_position_embeddings": 128},
              "ingest": {"inputs": [str(docs)], "max_classification": "RESTRICTED"},
              "adapt": {"method": "full", "seq_len": 32, "batch_size": 4, "train": {"max_steps": 3, "progress": False}}}
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def demo_docs(tmp_path_factory) -> Path:
    docs = tmp_path_factory.mktemp("demo") / "docs"
    result = CliRunner().invoke(app, ["demo", "--make-docs", str(docs), "--count", "16", "--seed", "0"])
    assert result.exit_code == 0, result.output
    return docs


def test_demo_stages_as_ray_jobs_match_local_runs(tmp_path, demo_docs, tenants_file, audit_db):
    """base, ingest, adapt submitted one by one with `sovforge jobs submit --engine ray` vs `sovforge run` here."""
    recipe = _demo_recipe(tmp_path / "ray.yaml", demo_docs, tmp_path / "on-ray")
    for stage in ("base", "ingest", "adapt"):
        result = CliRunner().invoke(app, ["jobs", "submit", str(recipe), "--stage", stage, "--engine", "ray",
                                          "--tenants", str(tenants_file), "--as", "alice", "--wait",
                                          "--timeout", "600", "--db", audit_db])
        assert result.exit_code == 0, result.output
        assert "→ " in result.output and "SUCCEEDED" in result.output
    local = run_recipe(load_recipe(_demo_recipe(tmp_path / "local.yaml", demo_docs, tmp_path / "local")))
    on_ray = {stage: load_artifact(tmp_path / "on-ray" / stage) for stage in ("base", "ingest", "adapt")}
    here = {stage: load_artifact(path) for stage, path in local.items()}
    assert on_ray["base"].id == here["base"].id  # identical manifest ids
    assert verify(on_ray["adapt"].path).ok  # signed with this installation's key by the Ray worker; lineage walks
    assert on_ray["adapt"].classification == here["adapt"].classification
    # ingest and adapt: every file identical, so the same content ids (timings live in the manifests only).
    differing = {stage: sorted(f for f, data in _files(on_ray[stage].path).items()
                               if _files(here[stage].path).get(f) != data) for stage in ("ingest", "adapt")}
    assert set(_files(on_ray["ingest"].path)) == set(_files(here["ingest"].path))
    assert differing["ingest"] == [] and on_ray["ingest"].id == here["ingest"].id, differing
    assert differing["adapt"] == [] and on_ray["adapt"].id == here["adapt"].id, differing
    assert any(f.startswith("documents/") for f in _files(on_ray["ingest"].path))  # ...so the corpus text is equal

    # Each stage job was accounted: GPU-seconds, wall time, inputs → output, in the audit log too.
    finishes = [r for r in verified_audit_records(audit_db) if r["route"] == "jobs finish"]
    assert [r["model"] for r in finishes] == ["base", "ingest", "adapt"]
    assert finishes[-1]["guard"]["outputs"] == [on_ray["adapt"].id]
    assert set(finishes[-1]["guard"]["inputs"]) == {on_ray["base"].id, on_ray["ingest"].id}


def test_a_verb_job_streams_its_log(tmp_path, tiny_model, corpus, tenants_file, audit_db):
    job = service.submit(JobSpec(engine="ray", tenant="army", submitter="alice", cwd=tmp_path,
                                 command=_adapt(tiny_model, corpus, tmp_path / "adapt-ray")),
                         load_tenants(tenants_file), db=audit_db)
    assert job.engine_job_id == job.id  # Ray's submission id is ours
    streamed = "".join(service.logs(job, follow=True))  # Ray's log stream, until the job ends
    job = service.wait(job, 600, 1)
    assert job.state == "SUCCEEDED", job.message
    assert str(tmp_path / "adapt-ray") in streamed  # the verb prints its output path last
    assert job.accounting["engine"] == "ray" and job.accounting["outputs"] == [load_artifact(tmp_path / "adapt-ray").id]


def test_adapt_artifact_ids_match(tmp_path, tiny_model, corpus):
    ids = []
    for name in ("a", "b"):
        result = CliRunner().invoke(app, _adapt(tiny_model, corpus, tmp_path / name, steps=2))
        if result.exit_code != 0:  # not the expected failure: let it fail the test
            raise RuntimeError(result.output)
        ids.append(load_artifact(tmp_path / name).id)
    assert ids[0] == ids[1]


def test_ingest_artifact_ids_match_across_workdirs(tmp_path, demo_docs, tiny_model):
    import shutil

    ids = []
    for name in ("a", "b"):
        base = shutil.copytree(tiny_model, tmp_path / name / "base")  # the same base model, another workdir
        result = CliRunner().invoke(app, ["ingest", str(demo_docs), "--out", str(tmp_path / name / "ingest"),
                                          "--max-classification", "RESTRICTED", "--tokenizer", str(base)])
        if result.exit_code != 0:  # not the expected failure: let it fail the test
            raise RuntimeError(result.output)
        ids.append(load_artifact(tmp_path / name / "ingest").id)
    assert ids[0] == ids[1]


def test_wrong_or_missing_token_is_a_clear_error(tmp_path, ray_head, docs_dir, audit_db):
    """The test head uses Ray token authentication: a wrong token is refused with a line that says what to set."""
    wrong = tmp_path / "wrong"
    wrong.write_text("0" * 64)
    recipe = tiny_recipe(tmp_path / "r.yaml", docs_dir, tmp_path / "w")
    for token_file, expected in ((wrong, "Authentication failed"), (tmp_path / "missing", "does not exist")):
        tenants = load_tenants(write_tenants(tmp_path / "t2.yaml", {"army": {"gpu_quota": 1}}, {
            "ray": {"address": ray_head.address, "auth_token_file": str(token_file)}}))
        with pytest.raises(service.JobsError, match=expected):
            service.submit(JobSpec(engine="ray", tenant="army", submitter="a", recipe=recipe, stage="base",
                                   cwd=tmp_path), tenants, db=audit_db)


def test_ray_job_that_dies_and_one_cancelled(tmp_path, tiny_model, corpus, tenants_file, audit_db):
    tenants = load_tenants(tenants_file)
    dies = service.submit(JobSpec(engine="ray", tenant="army", submitter="bob", cwd=tmp_path,
                                  env={"SOVFORGE_TEST_KILL_AFTER_STEP": "2"},
                                  command=_adapt(tiny_model, corpus, tmp_path / "dies", steps=50)),
                          tenants, db=audit_db)
    dies = service.wait(dies, 600, 1)
    assert dies.state == "FAILED" and dies.exit_code == 137 and "killed by signal 9" in dies.message
    assert not (tmp_path / "dies").exists() and dies.accounting["outputs"] == []

    long = service.submit(JobSpec(engine="ray", tenant="army", submitter="bob", cwd=tmp_path,
                                  resources=Resources(cpus=1),
                                  command=_adapt(tiny_model, corpus, tmp_path / "long", steps=100000)),
                          tenants, db=audit_db)
    deadline = time.monotonic() + 300
    while not (tmp_path / ".long.run").exists():
        assert time.monotonic() < deadline, "the long job never started training"
        time.sleep(1)
    long = service.cancel(service.find(long.id), timeout_s=60)
    assert long.state == "CANCELLED" and not (tmp_path / "long").exists()
    assert long.accounting["state"] == "CANCELLED"
