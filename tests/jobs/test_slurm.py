"""The slurm engine against a real single-host Slurm (slurm-wlm 22.05 from Debian, see conftest.py):
`sbatch --test-only` judges the 2-node x 8-GPU adapt script, small jobs really run, fail and are cancelled,
and slurmrestd with a JWT takes the same job descriptor.

    .venv/bin/python -m pytest -q -p no:cacheprovider tests/jobs/test_slurm.py      (root; skipped otherwise)
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from sovforge.artifacts import load_artifact
from sovforge.jobs import service
from sovforge.jobs.config import JobSpec, Resources, load_tenants
from sovforge.jobs.records import JobRecord, utc_now
from sovforge.jobs.slurm import render_sbatch
from tests.jobs.conftest import REPO, tiny_recipe, write_tenants

TENANT = {"gpu_quota": 32, "max_classification": "RESTRICTED", "slurm_account": "army_ai"}


def _tenants(tmp_path: Path, **slurm) -> object:
    return load_tenants(write_tenants(tmp_path / "t.yaml", {"army": TENANT}, {"slurm": {"partition": "gpu", **slurm}}))


def _script(tmp_path: Path, nodes: int, gpus: int) -> Path:
    spec = JobSpec(engine="slurm", tenant="army", submitter="alice", recipe=REPO / "examples/jobs/ax-adapt.yaml",
                   stage="adapt", cwd=tmp_path,
                   resources=Resources(gpus=gpus, nodes=nodes, cpus=32, memory_gb=256, time_limit="12:00:00"))
    job = JobRecord(id="20260101-000000-000000", spec=spec, submitted=utc_now(), updated=utc_now())
    tenants = _tenants(tmp_path)
    path = tmp_path / f"adapt-{nodes}x{gpus}.sbatch"
    path.write_text(render_sbatch(job, tenants.tenants["army"], tenants.engines.slurm.model_dump(mode="json")))
    return path


def _test_only(script: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["sbatch", "--test-only", str(script)], capture_output=True, text=True, timeout=60)


def test_sbatch_test_only_accepts_two_nodes_of_eight_gpus_and_refuses_more(slurm_cluster, tmp_path):
    ok = _test_only(_script(tmp_path, nodes=2, gpus=8))
    assert ok.returncode == 0 and "to start at" in ok.stderr and "nodes gpu[01-02]" in ok.stderr, ok.stderr
    for nodes, gpus in ((3, 8), (2, 9)):  # the cluster has 2 nodes of 8 GPUs: the check can say no
        too_much = _test_only(_script(tmp_path, nodes=nodes, gpus=gpus))
        assert too_much.returncode != 0 and "Requested node configuration is not available" in too_much.stderr
    shipped = _test_only(REPO / "examples" / "jobs" / "ax-adapt-2x8.sbatch")  # the one shown in docs/jobs.md
    assert shipped.returncode == 0, shipped.stderr


def test_jobs_run_fail_and_cancel_under_slurm(slurm_cluster, tmp_path, docs_dir, corpus, audit_db):
    tenants = _tenants(tmp_path)
    ok = service.submit(JobSpec(engine="slurm", tenant="army", submitter="alice", cwd=tmp_path,
                                command=["--version"], resources=Resources(cpus=1, memory_gb=1)), tenants, db=audit_db)
    bad = service.submit(JobSpec(engine="slurm", tenant="army", submitter="alice", cwd=tmp_path,
                                 command=["adapt", "cpt", "--base", str(tmp_path / "no-such-model"), "--corpus",
                                          str(corpus), "--out", str(tmp_path / "x")],
                                 resources=Resources(cpus=1, memory_gb=1)), tenants, db=audit_db)
    assert ok.engine_job_id.isdigit() and (ok.dir / "job.sbatch").is_file()
    ok, bad = service.wait(ok, 120, 0.5), service.wait(bad, 120, 0.5)
    assert ok.state == "SUCCEEDED" and ok.exit_code == 0
    assert "sovforge 0.1.0" in "".join(service.logs(ok))
    assert ok.accounting["wall_s"] > 0 and ok.accounting["engine_job_id"] == ok.engine_job_id
    assert bad.state == "FAILED" and bad.exit_code == 1
    assert "no-such-model" in bad.message  # the failing stage's own error line, from the log tail
    assert (bad.dir / f"slurm-{bad.engine_job_id}.out").is_file()  # Slurm's copy of the output, beside ours

    long = service.submit(JobSpec(engine="slurm", tenant="army", submitter="alice", cwd=tmp_path,
                                  # Endless pre-training: a CPU job that holds 2 (placeholder) GPUs until cancelled.
                                  command=["base", "init", "--text", str(docs_dir), "--out", str(tmp_path / "long"),
                                           "--vocab-size", "400", "--seq-len", "32", "--batch-size", "4",
                                           "--pretrain-steps", "1000000", "--max-position-embeddings", "128"],
                                  resources=Resources(cpus=1, memory_gb=2, gpus=2)), tenants, db=audit_db)
    deadline = time.monotonic() + 120
    while service.refresh(long).state != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    # The 2 (placeholder) GPUs it holds count against the quota while it runs.
    assert service.held_gpus("army") == 2
    long = service.cancel(service.find(long.id))
    assert long.state == "CANCELLED" and not (tmp_path / "long").exists()
    assert service.held_gpus("army") == 0


@pytest.mark.slow
def test_stage_under_slurm_matches_local(slurm_cluster, tmp_path, docs_dir, audit_db):
    tenants = _tenants(tmp_path)
    runs = {}
    for engine in ("slurm", "local"):
        recipe = tiny_recipe(tmp_path / f"{engine}.yaml", docs_dir, tmp_path / engine)
        job = service.submit(JobSpec(engine=engine, tenant="army", submitter="alice", recipe=recipe, stage="base",
                                     cwd=tmp_path), tenants, db=audit_db)
        runs[engine] = service.wait(job, 600, 1)
        assert runs[engine].state == "SUCCEEDED", runs[engine].message
    assert runs["slurm"].outputs[0]["id"] == runs["local"].outputs[0]["id"]
    assert load_artifact(runs["slurm"].accounting_artifact, kind="job").manifest["inputs"] == \
        [runs["slurm"].outputs[0]["id"]]


def test_slurmrestd_with_jwt(slurm_cluster, tmp_path, audit_db):
    """slurmrestd ignores #SBATCH lines: the descriptor must carry nodes, GPUs, account, time — check Slurm saw them.

    slurmrestd refuses root's token, so the job is submitted as `nobody`; it cannot start our Python from /root,
    which does not matter here: a first job holds both nodes, so this one stays PENDING until it is cancelled.
    """
    if not slurm_cluster.restd_url:
        pytest.skip("slurmrestd (with auth/jwt) is not installed")
    blocker = subprocess.run(["sbatch", "--parsable", "--nodes=2", "--gres=gpu:8", "--wrap", "sleep 120"],
                             capture_output=True, text=True, check=True).stdout.strip()
    try:
        jwt_file = tmp_path / "jwt"
        jwt_file.write_text(slurm_cluster.token("nobody"))
        tenants = _tenants(tmp_path, restd_url=slurm_cluster.restd_url, jwt_file=str(jwt_file), restd_user="nobody")
        job = service.submit(JobSpec(engine="slurm", tenant="army", submitter="alice", cwd=tmp_path,
                                     command=["--version"],
                                     resources=Resources(nodes=1, gpus=8, cpus=4, memory_gb=2, time_limit="00:30:00")),
                             tenants, db=audit_db)
        shown = subprocess.run(["scontrol", "show", "job", "-o", job.engine_job_id], capture_output=True, text=True,
                               check=True).stdout
        fields = dict(item.split("=", 1) for item in shown.split() if "=" in item)
        assert fields["JobName"] == f"sovforge---version-{job.id}" and fields["Account"] == "army_ai"
        assert fields["TresPerNode"] == "gres:gpu:8" and fields["TimeLimit"] == "00:30:00"
        assert fields["UserId"].startswith("nobody") and fields["Partition"] == "gpu"
        status = service.refresh(job)
        assert status.state == "PENDING" and status.message.split(":")[0] == "pending"  # Resources or Priority
        job = service.cancel(job)
        assert job.state == "CANCELLED"
        # A bad token is a clear error, not a hang.
        jwt_file.write_text("not-a-token")
        with pytest.raises(service.JobsError, match="slurmrestd"):
            service.submit(JobSpec(engine="slurm", tenant="army", submitter="a", cwd=tmp_path, command=["--version"]),
                           tenants, db=audit_db)
    finally:
        subprocess.run(["scancel", blocker], check=False)
