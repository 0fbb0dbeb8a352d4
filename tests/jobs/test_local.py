"""The local engine end to end: a stage as a job gives the same artifact as running it in-process, is accounted
(signed `job` artifact + audit log), and a job that dies or is cancelled leaves no artifact behind.

    .venv/bin/python -m pytest -q -p no:cacheprovider tests/jobs/test_local.py
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sovforge.artifacts import load_artifact, verify
from sovforge.cli import app
from sovforge.config import load_recipe
from sovforge.jobs import service
from sovforge.jobs.config import JobSpec, Resources, load_tenants
from sovforge.jobs.records import jobs_root, read_json
from sovforge.pipeline import run_recipe
from tests.jobs.conftest import free_port, tiny_recipe, write_tenants


def _audit(db: str) -> list[dict]:
    from sovforge.serve.store import Store

    store = Store(db)
    try:
        assert store.verify() == [], "audit chain broken"
        return list(store.records())
    finally:
        store.engine.dispose()


def _adapt(base: Path, corpus: Path, out: Path, steps: int) -> list[str]:
    return ["adapt", "cpt", "--base", str(base), "--corpus", str(corpus), "--out", str(out), "--method", "full",
            "--seq-len", "32", "--batch-size", "4", "--max-steps", str(steps)]


def test_stage_job_equals_in_process_run_and_is_accounted(tmp_path, docs_dir, audit_db):
    tenants = load_tenants(write_tenants(tmp_path / "t.yaml", {"echo": {"gpu_quota": 0}}))
    recipe = tiny_recipe(tmp_path / "job.yaml", docs_dir, tmp_path / "as-job")
    job = service.submit(JobSpec(tenant="echo", submitter="erin", recipe=recipe, stage="base", cwd=tmp_path),
                         tenants, db=audit_db)
    assert (job.dir / "recipe.yaml").read_bytes() == recipe.read_bytes()  # the job runs a snapshot
    in_process = run_recipe(load_recipe(tiny_recipe(tmp_path / "here.yaml", docs_dir, tmp_path / "in-process")))
    job = service.wait(job, timeout_s=300, poll_s=0.5)
    assert job.state == "SUCCEEDED", job.message
    [output] = job.outputs
    assert output["id"] == load_artifact(in_process["base"]).id  # same content hash as the in-process run
    assert Path(output["path"]) == tmp_path / "as-job" / "base" and not output["reused"]

    accounting = load_artifact(job.accounting_artifact, kind="job")
    assert output["id"] in accounting.manifest["inputs"]
    facts = read_json(Path(job.accounting_artifact) / "accounting.json")
    assert facts["engine"] == "local" and facts["tenant"] == "echo" and facts["submitter"] == "erin"
    assert facts["wall_s"] > 0 and facts["gpus"] == 0 and facts["gpu_seconds"] == 0 and facts["exit_code"] == 0
    report = verify(job.accounting_artifact)  # walks into the produced model too
    assert report.ok, report.problems
    assert any(output["id"][:12] in line for line in report.checked)

    records = [r for r in _audit(audit_db) if r["guard"].get("job_id") == job.id]
    assert [(r["route"], r["status"], r["who"], r["model"]) for r in records] == [
        ("jobs submit", 202, "erin", "base"), ("jobs finish", 0, "erin", "base")]
    assert records[1]["guard"]["outputs"] == [output["id"]] and records[1]["guard"]["accounting_id"] == accounting.id

    runner = CliRunner()
    status = runner.invoke(app, ["jobs", "status", job.id[:17]])  # a unique prefix is enough
    assert status.exit_code == 0 and f"{job.id}\tSUCCEEDED" in status.output and output["id"][:12] in status.output
    logs = runner.invoke(app, ["jobs", "logs", job.id]).output
    assert f"model {output['id'][:12]} [UNCLASSIFIED]" in logs  # the stage's own report line, via the job log
    assert job.id in runner.invoke(app, ["jobs", "list", "--tenant", "echo"]).output
    # Asking again neither re-accounts nor re-audits.
    again = service.refresh(service.find(job.id))
    assert again.accounting_artifact == job.accounting_artifact
    assert len([r for r in _audit(audit_db) if r["guard"].get("job_id") == job.id]) == 2


def test_job_that_dies_midway_fails_with_its_log_tail_and_no_artifact(tmp_path, tiny_model, corpus, audit_db):
    tenants = write_tenants(tmp_path / "t.yaml", {"foxtrot": {"gpu_quota": 0}})
    out = tmp_path / "adapted"
    runner = CliRunner()
    # The trainer's own test hook SIGKILLs the stage process after step 2: a real death mid-training.
    result = runner.invoke(app, ["jobs", "submit", "--tenants", str(tenants), "--wait", "--timeout", "300",
                                 "--env", "SOVFORGE_TEST_KILL_AFTER_STEP=2", "--db", audit_db,
                                 "--", *_adapt(tiny_model, corpus, out, steps=50)])
    assert result.exit_code == 1, result.output
    assert "FAILED" in result.output and "exit code 137" in result.output
    assert "killed by signal 9" in result.output  # the log tail follows in the failure message
    job = service.find(sorted(p.name for p in jobs_root().iterdir() if (p / "job.json").exists()
                              and read_json(p / "job.json")["spec"]["tenant"] == "foxtrot")[-1])
    assert job.state == "FAILED" and job.exit_code == 137 and job.outputs == []
    assert not out.exists()  # nothing promoted
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.staging")]
    facts = read_json(Path(job.accounting_artifact) / "accounting.json")
    assert facts["state"] == "FAILED" and facts["outputs"] == [] and facts["wall_s"] > 0
    assert load_artifact(corpus).id in facts["inputs"] and load_artifact(tiny_model).id in facts["inputs"]
    finish = [r for r in _audit(audit_db) if r["route"] == "jobs finish" and r["guard"]["job_id"] == job.id]
    assert finish[0]["status"] == 137 and finish[0]["guard"]["state"] == "FAILED"


def test_cancel_stops_a_running_job(tmp_path, tiny_model, corpus, audit_db):
    tenants = load_tenants(write_tenants(tmp_path / "t.yaml", {"golf": {"gpu_quota": 0}}))
    out = tmp_path / "long"
    job = service.submit(JobSpec(tenant="golf", submitter="g", cwd=tmp_path,
                                 command=_adapt(tiny_model, corpus, out, steps=100000)), tenants, db=audit_db)
    deadline = time.monotonic() + 120
    while service.refresh(job).state != "RUNNING" or not (out.parent / f".{out.name}.run").exists():
        assert time.monotonic() < deadline, "job never started training"
        time.sleep(0.5)
    job = service.cancel(service.find(job.id))
    assert job.state == "CANCELLED" and not out.exists()
    routes = [(r["route"], r["status"]) for r in _audit(audit_db) if r["guard"].get("job_id") == job.id]
    assert routes[0] == ("jobs submit", 202) and ("jobs cancel", 499) in routes and routes[-1][0] == "jobs finish"
    with pytest.raises(service.JobsError, match="already CANCELLED"):
        service.cancel(job)


def test_unreachable_ray_is_a_fast_clear_error_and_leaves_nothing(tmp_path, docs_dir, audit_db):
    recipe = tiny_recipe(tmp_path / "r.yaml", docs_dir, tmp_path / "w")
    before = {p.name for p in jobs_root().iterdir()}
    for address, expected in ((f"http://127.0.0.1:{free_port()}", "Connection refused"),
                              # Not loopback: the offline guard refuses it at once, naming the way out.
                              ("http://10.255.255.1:8265", "--allow-network")):
        tenants = load_tenants(write_tenants(tmp_path / "t.yaml", {"hotel": {"gpu_quota": 1}},
                                             {"ray": {"address": address, "connect_timeout_s": 2}}))
        started = time.monotonic()
        with pytest.raises(service.JobsError) as err:
            service.submit(JobSpec(engine="ray", tenant="hotel", submitter="h", recipe=recipe, stage="base",
                                   cwd=tmp_path, resources=Resources(gpus=0)), tenants, db=audit_db)
        assert time.monotonic() - started < 5
        assert f"Ray dashboard at {address} is unreachable" in str(err.value) and expected in str(err.value)
    assert {p.name for p in jobs_root().iterdir()} == before
    assert not [r for r in _audit(audit_db) if r["route"] == "jobs submit"]
