"""Generated sbatch scripts and Kueue manifests for a 2-node x 8-GPU adapt: the text, and what Slurm/Kubernetes say.

    .venv/bin/python -m pytest -q -p no:cacheprovider tests/jobs/test_render.py
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sovforge.cli import app
from sovforge.jobs.config import JobSpec, Resources, load_tenants
from sovforge.jobs.kueue import QUEUE_LABEL, render_manifests, render_queues, validate_manifest
from sovforge.jobs.records import JobRecord, utc_now
from sovforge.jobs.slurm import render_sbatch, restd_descriptor
from tests.jobs.conftest import REPO

EXAMPLES = REPO / "examples" / "jobs"
TENANTS = load_tenants(REPO / "examples" / "tenants.yaml")
ARMY = TENANTS.tenants["army-ai"]


def _job(nodes: int = 2, gpus: int = 8, stage: str = "adapt", **spec) -> JobRecord:
    spec = JobSpec(engine="slurm", tenant="army-ai", submitter="alice", recipe=EXAMPLES / "ax-adapt.yaml",
                   stage=stage, cwd=Path("/shared/projects/ax"),
                   resources=Resources(gpus=gpus, nodes=nodes, cpus=32, memory_gb=512, time_limit="12:00:00"), **spec)
    return JobRecord(id="20260101-000000-abcdef", spec=spec, submitted=utc_now(), updated=utc_now())


def _slurm_settings() -> dict:
    return TENANTS.engines.slurm.model_dump(mode="json")


def test_sbatch_for_two_nodes_of_eight_gpus():
    job = _job()
    script = render_sbatch(job, ARMY, _slurm_settings())
    lines = script.splitlines()
    for directive in ("--account=army_ai", "--partition=gpu", "--nodes=2", "--ntasks-per-node=1", "--gres=gpu:8",
                      "--cpus-per-task=32", "--mem=524288M", "--time=12:00:00", "--chdir=/shared/projects/ax",
                      "--job-name=sovforge-adapt-20260101-000000-abcdef"):
        assert f"#SBATCH {directive}" in lines, directive
    assert 'MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"' in lines
    assert "export MASTER_ADDR MASTER_PORT=29500" in lines
    assert "export OMP_NUM_THREADS=32" in lines and "export HF_HUB_OFFLINE=1" in lines
    run = shlex.split(lines[-1])
    assert run[:4] == ["exec", "/opt/sovforge/.venv/bin/python", "-m", "sovforge.jobs.runner"]
    step = run[run.index("--") + 1:]
    assert step[:5] == ["srun", "--nodes=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1", "bash"]
    launch = shlex.split(step[-1])  # what each node's bash runs: one accelerate launcher per node
    assert launch[1:3] == ["-m", "accelerate.commands.launch"] and "--multi_gpu" in launch
    assert launch[launch.index("--num_processes") + 1] == "16" and launch[launch.index("--num_machines") + 1] == "2"
    assert launch[launch.index("--machine_rank") + 1] == "$SLURM_NODEID"  # expanded per node by that bash
    assert launch[launch.index("--main_process_ip") + 1] == "$MASTER_ADDR"
    assert launch[launch.index("--module") + 1:] == ["sovforge.cli", "run", str(job.dir / "recipe.yaml"),
                                                      "--only", "adapt"]
    assert '"$SLURM_NODEID"' in step[-1]  # left unquoted for the node's shell, not expanded on the batch host
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)  # the script parses


def test_single_node_and_cpu_scripts_have_no_rendezvous():
    one = render_sbatch(_job(nodes=1, gpus=4), ARMY, _slurm_settings())
    assert "#SBATCH --gres=gpu:4" in one and "MASTER_ADDR" not in one and "srun" not in one
    assert "--num_processes 4" in one and "--machine_rank" not in one
    cpu = render_sbatch(_job(nodes=1, gpus=0, stage="base"), ARMY, _slurm_settings())
    assert "--gres" not in cpu and "accelerate" not in cpu and cpu.rstrip().endswith("--only base")


def test_restd_descriptor_carries_the_directives():
    descriptor = restd_descriptor(_job(), ARMY, _slurm_settings())
    assert descriptor["nodes"] == [2, 2] and descriptor["gres"] == "gpu:8" and descriptor["account"] == "army_ai"
    assert descriptor["time_limit"] == 720 and descriptor["memory_per_node"] == 524288
    assert descriptor["environment"]["OMP_NUM_THREADS"] == "32" and descriptor["partition"] == "gpu"


def test_kueue_manifests_for_two_nodes_of_eight_gpus_validate_against_the_kubernetes_models():
    job = _job()
    settings = TENANTS.engines.kueue.model_dump(mode="json")
    objects = render_manifests(job, ARMY, settings)
    assert [o["kind"] for o in objects] == ["Job", "ConfigMap", "Service"]
    models = [validate_manifest(o) for o in objects]
    job_model = models[0]
    assert job_model.metadata.labels[QUEUE_LABEL] == "army-ai" and job_model.metadata.namespace == "team-army"
    spec = job_model.spec
    assert spec.suspend is True and spec.completion_mode == "Indexed" and spec.completions == spec.parallelism == 2
    assert spec.active_deadline_seconds == 12 * 3600 and spec.backoff_limit == 0
    pod = spec.template.spec
    container = pod.containers[0]
    assert container.resources.limits["nvidia.com/gpu"] == "8" == container.resources.requests["nvidia.com/gpu"]
    assert pod.subdomain == objects[2]["metadata"]["name"] and objects[2]["spec"]["clusterIP"] == "None"
    assert {v.name: v.persistent_volume_claim.claim_name for v in pod.volumes if v.persistent_volume_claim} == \
        {"artifacts": "sovforge-artifacts"}
    command = container.command[-1]
    assert '--machine_rank "$JOB_COMPLETION_INDEX"' in command
    assert f"--main_process_ip {job_model.metadata.name}-0.{job_model.metadata.name}" in command
    assert "--only adapt" in command and "/etc/sovforge/job/recipe.yaml" in command
    assert yaml.safe_load(objects[1]["data"]["recipe.yaml"])["adapt"]["lora_r"] == 64  # the recipe travels along
    subprocess.run(["bash", "-n", "-c", command], check=True)


def test_validation_can_fail():
    """A misspelled field is dropped by the client's parser, so the round trip catches it; a wrong type fails."""
    objects = render_manifests(_job(nodes=1), ARMY, TENANTS.engines.kueue.model_dump(mode="json"))
    typo = dict(objects[0], spec={**objects[0]["spec"], "suspnd": True})
    with pytest.raises(ValueError, match=r"fields the API does not know: \['spec.suspnd'\]"):
        validate_manifest(typo)
    wrong = dict(objects[0], spec={**objects[0]["spec"], "backoffLimit": "none"})
    with pytest.raises(Exception, match="backoffLimit"):
        validate_manifest(wrong)


def test_queues_mirror_the_tenants_quota():
    objects = render_queues(TENANTS)
    cq = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterQueue"}
    gpu = [r for r in cq["army-ai-cq"]["spec"]["resourceGroups"][0]["flavors"][0]["resources"]
           if r["name"] == "nvidia.com/gpu"]
    assert gpu == [{"name": "nvidia.com/gpu", "nominalQuota": 16}]
    lq = [o for o in objects if o["kind"] == "LocalQueue" and o["metadata"]["namespace"] == "team-army"]
    assert lq[0]["spec"]["clusterQueue"] == "army-ai-cq"


def test_cli_render_and_shipped_examples(tmp_path: Path):
    runner = CliRunner()
    result = runner.invoke(app, ["jobs", "render", str(EXAMPLES / "ax-adapt.yaml"), "--stage", "adapt", "--engine",
                                 "kueue", "--tenants", str(REPO / "examples" / "tenants.yaml"), "--tenant", "army-ai",
                                 "--as", "alice", "--gpus", "8", "--nodes", "2", "--cpus", "32", "--memory-gb", "512",
                                 "--out", str(tmp_path / "k.yaml")])
    assert result.exit_code == 0, result.output
    assert [d["kind"] for d in yaml.safe_load_all((tmp_path / "k.yaml").read_text())] == ["Job", "ConfigMap", "Service"]
    # Rendering applies the same rules as submitting: 32 GPUs are over army-ai's quota of 16.
    result = runner.invoke(app, ["jobs", "render", str(EXAMPLES / "ax-adapt.yaml"), "--stage", "adapt",
                                 "--tenants", str(REPO / "examples" / "tenants.yaml"), "--tenant", "army-ai",
                                 "--as", "alice", "--gpus", "8", "--nodes", "4"])
    assert result.exit_code == 1 and "quota is 16 GPUs" in result.output
    # The examples shown in docs/jobs.md are real renderings: they parse and validate.
    for manifest in EXAMPLES.glob("*.k8s.yaml"):
        docs = list(yaml.safe_load_all(manifest.read_text()))
        kueue_objects = [d for d in docs if d["apiVersion"].startswith("kueue.x-k8s.io")]
        for doc in docs:
            if doc not in kueue_objects:
                validate_manifest(doc)
    scripts = list(EXAMPLES.glob("*.sbatch"))
    assert scripts, "examples/jobs/*.sbatch missing"
    for script in scripts:
        subprocess.run(["bash", "-n", str(script)], check=True)
