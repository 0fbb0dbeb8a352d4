"""Tenants, quotas, clearance: a refused job names its reason and nothing reaches an engine.

    .venv/bin/python -m pytest -q -p no:cacheprovider tests/jobs/test_policy.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sovforge.cli import app
from sovforge.jobs import service
from sovforge.jobs.config import JobSpec, Resources, TenantsError, load_tenants
from sovforge.jobs.policy import Refused
from sovforge.jobs.records import JobRecord, jobs_root, save, utc_now

from tests.jobs.conftest import REPO, free_port, tiny_recipe, verified_audit_records, write_tenants

TENANTS = {
    "alpha": {"gpu_quota": 4, "max_classification": "UNCLASSIFIED", "users": ["alice"], "slurm_account": "alpha",
              "kueue_queue": "alpha", "k8s_namespace": "team-alpha"},
    "bravo": {"gpu_quota": 2, "max_classification": "RESTRICTED"},
}


def _job_dirs() -> set[str]:
    return {p.name for p in jobs_root().iterdir()}


def test_shipped_tenants_file_validates_and_typos_name_their_path(tmp_path: Path):
    shipped = load_tenants(REPO / "examples" / "tenants.yaml")
    assert shipped.tenants["army-ai"].gpu_quota == 16 and shipped.tenants["army-ai"].max_classification == "RESTRICTED"
    assert shipped.tenants["secure-lab"].max_classification == "SECRET"  # Ⅱ급비밀 spelled in the file's comment
    bad = write_tenants(tmp_path / "bad.yaml", {"x": {"gpu_qouta": 1}})
    with pytest.raises(TenantsError, match=r"tenants\.x\.gpu_qouta: unknown key"):
        load_tenants(bad)
    with pytest.raises(TenantsError, match="unknown classification"):
        load_tenants(write_tenants(tmp_path / "lvl.yaml", {"x": {"gpu_quota": 1, "max_classification": "ULTRA"}}))
    with pytest.raises(TenantsError, match="no such tenants file"):
        load_tenants(tmp_path / "missing.yaml")


def _spec(tmp_path: Path, docs_dir: Path, tenant: str, engine: str = "ray", user: str = "alice", **res) -> JobSpec:
    recipe = tiny_recipe(tmp_path / "r.yaml", docs_dir, tmp_path / "w")
    return JobSpec(engine=engine, tenant=tenant, submitter=user, recipe=recipe, stage="base", cwd=tmp_path,
                   resources=Resources(**res))


def test_over_quota_over_clearance_and_non_member_are_refused_before_any_engine(tmp_path, docs_dir, audit_db):
    tenants = load_tenants(write_tenants(tmp_path / "t.yaml", TENANTS,
                                         # Nothing listens there: had anything reached Ray, we would see that error.
                                         {"ray": {"address": f"http://127.0.0.1:{free_port()}"}}))
    before = _job_dirs()
    cases = [
        (_spec(tmp_path, docs_dir, "alpha", gpus=8), "8 GPUs requested, but tenant alpha's quota is 4 GPUs"),
        (_spec(tmp_path, docs_dir, "alpha", gpus=1, user="mallory"), "mallory is not a member of tenant alpha"),
        (_spec(tmp_path, docs_dir, "nobody"), "unknown tenant 'nobody'"),
        (_spec(tmp_path, docs_dir, "alpha", nodes=2, gpus=1), "only the adapt stage runs across nodes"),
    ]
    secret = tiny_recipe(tmp_path / "s.yaml", docs_dir, tmp_path / "ws", max_classification="SECRET")
    cases.append((JobSpec(engine="ray", tenant="bravo", submitter="bob", recipe=secret, stage="base", cwd=tmp_path),
                  "tenant bravo is cleared for RESTRICTED data, but this job may process SECRET data "
                  "(recipe max_classification SECRET)"))
    for spec, reason in cases:
        with pytest.raises(Refused) as refused:
            service.submit(spec, tenants, db=audit_db)
        assert reason in str(refused.value)
    assert _job_dirs() == before  # nothing submitted, no job record
    refusals = [r for r in verified_audit_records(audit_db) if r["route"] == "jobs refused"]
    assert len(refusals) == 4  # the unknown tenant has no tenant to log against; the others are logged
    assert {r["status"] for r in refusals} == {403} and refusals[0]["who"] == "alice"
    assert "quota is 4" in refusals[0]["guard"]["reason"]


def test_clearance_counts_the_input_artifacts(tmp_path, restricted_corpus, audit_db):
    """A verb job reading a RESTRICTED corpus is refused for an UNCLASSIFIED tenant, naming the corpus."""
    tenants = load_tenants(write_tenants(tmp_path / "t.yaml", {"charlie": {"gpu_quota": 1}}))
    spec = JobSpec(tenant="charlie", submitter="c", cwd=tmp_path,
                   command=["adapt", "cpt", "--base", str(tmp_path / "base"), "--corpus", str(restricted_corpus),
                            "--out", str(tmp_path / "out")])
    with pytest.raises(Refused, match=r"may process RESTRICTED data \(input corpus [0-9a-f]{12} .* is RESTRICTED\)"):
        service.submit(spec, tenants, db=audit_db)
    assert not (tmp_path / "out").exists()


def test_running_plus_requested_over_quota(tmp_path, docs_dir, audit_db):
    """GPUs held by the tenant's unfinished jobs count: a live job holding 2 of 2 GPUs blocks the next one."""
    tenants = load_tenants(write_tenants(tmp_path / "t.yaml", {"delta": {"gpu_quota": 2}}))
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        from sovforge.jobs.local import _proc_start_ticks
        from sovforge.jobs.runner import write_json

        running = JobRecord(id=f"held-{os.getpid()}-{time.time_ns()}", submitted=utc_now(), updated=utc_now(),
                            spec=JobSpec(tenant="delta", submitter="d", cwd=tmp_path, command=["--version"],
                                         resources=Resources(gpus=2)), engine_job_id=str(holder.pid), state="RUNNING",
                            audit_db=audit_db)
        running.dir.mkdir(parents=True)
        save(running)
        write_json(running.dir / "local.json", {"pid": holder.pid, "start_ticks": _proc_start_ticks(holder.pid)})
        write_json(running.dir / "status.json", {"started": utc_now()})
        assert service.held_gpus("delta") == 2
        with pytest.raises(Refused, match="already holds 2 of its 2 GPUs"):
            service.submit(_spec(tmp_path, docs_dir, "delta", engine="local", gpus=1), tenants, db=audit_db)
    finally:
        holder.kill()
        holder.wait()
    # Once that job has ended it no longer holds anything (it died without a result: FAILED, accounted).
    assert service.held_gpus("delta") == 0


def test_cli_unknown_engine_and_refusal_are_one_clear_line(tmp_path, docs_dir):
    tenants = write_tenants(tmp_path / "t.yaml", TENANTS)
    recipe = tiny_recipe(tmp_path / "r.yaml", docs_dir, tmp_path / "w")
    runner = CliRunner()
    result = runner.invoke(app, ["jobs", "submit", str(recipe), "--engine", "spark", "--tenants", str(tenants)])
    assert result.exit_code == 1 and "unknown engine 'spark'; engines are local, ray, slurm, kueue" in result.output
    result = runner.invoke(app, ["jobs", "submit", str(recipe), "--stage", "base", "--tenants", str(tenants),
                                 "--tenant", "alpha", "--as", "alice", "--gpus", "5",
                                 "--db", f"sqlite:///{tmp_path / 'a.db'}"])
    assert result.exit_code == 1
    assert "refused, nothing submitted: 5 GPUs requested, but tenant alpha's quota is 4 GPUs" in result.output
    result = runner.invoke(app, ["jobs", "submit", str(recipe), "--stage", "adapt", "--tenants", str(tenants),
                                 "--tenant", "bravo", "--db", f"sqlite:///{tmp_path / 'a.db'}"])
    assert result.exit_code == 1 and "the recipe runs ['base'], not adapt" in result.output
    result = runner.invoke(app, ["jobs", "submit", str(recipe), "--tenants", str(tmp_path / "none.yaml")])
    assert result.exit_code == 1 and "no such tenants file" in result.output
