"""The `kueue` engine: a `batch/v1` Job created suspended in the tenant's namespace; Kueue admits it from the
tenant's LocalQueue (`kueue.x-k8s.io/queue-name`) when the ClusterQueue's GPU quota allows.

    sovforge jobs submit RECIPE --stage adapt --engine kueue --gpus 8 --nodes 2 --kubeconfig ~/.kube/config
    sovforge jobs render RECIPE --stage adapt --engine kueue --gpus 8 --nodes 2     # manifests only

What is rendered (`render_manifests`), all checked against the official `kubernetes` client's models
(`validate_manifest`):

* a ConfigMap holding the recipe snapshot (mounted read-only at /etc/sovforge/job), for recipe jobs;
* the Job: `suspend: true`, `backoffLimit: 0`, `activeDeadlineSeconds` = the time limit, one container running
  the shared runner command in the image that holds this installation, GPUs as `nvidia.com/gpu` requests and
  limits, the artifact PVC mounted at `mount_path` (also the working directory: recipe paths mean the same);
* for a multi-node adapt: an Indexed Job (completions = parallelism = nodes; pod hostnames `<job>-<index>`) plus
  a headless Service so pod 0 is reachable as `<job>-0.<service>` for `accelerate launch`'s rendezvous, each
  pod's rank being $JOB_COMPLETION_INDEX. Chosen over JobSet / Kubeflow TrainJob because it is plain batch/v1
  (Kueue admits it all-or-nothing, no extra operator or CRD to install in an air-gapped cluster).

Submitting needs a kubeconfig and the `kubernetes` client (`pip install 'sovforge[dist]'`); the API server is
usually not on loopback, so the CLI needs `--allow-network` for it. `render_queues` turns tenants.yaml into the
Kueue ResourceFlavor / ClusterQueue / LocalQueue objects an administrator applies once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from sovforge.jobs.config import Tenant, TenantsFile, time_limit_seconds
from sovforge.jobs.engine import (EngineError, EngineStatus, Executor, Shell, job_env, launch_argv,
                                  needs_launcher, runner_argv, shell_join, work_argv)
from sovforge.jobs.records import JobRecord

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
RECIPE_MOUNT = "/etc/sovforge/job"
GPU = "nvidia.com/gpu"


def k8s_name(job: JobRecord) -> str:
    what = job.spec.stage or (job.spec.command[0] if job.spec.command else "recipe")
    return f"sovforge-{what}-{job.id}"[:63].rstrip("-")


def render_manifests(job: JobRecord, tenant: Tenant, settings: dict[str, Any],
                     recipe_text: str | None = None) -> list[dict[str, Any]]:
    """The Kubernetes objects of one job, in the order they are created (Job first: the others are its children)."""
    if not tenant.kueue_queue or not tenant.k8s_namespace:
        raise EngineError(f"tenant {job.spec.tenant} needs kueue_queue and k8s_namespace in the tenants file")
    spec, res = job.spec, job.spec.resources
    name, namespace = k8s_name(job), tenant.k8s_namespace
    mount = settings.get("mount_path") or "/srv/sovforge"
    home = settings.get("sovforge_home") or "/srv/sovforge/.sovforge"
    python = settings.get("python") or "python"
    port = int(settings.get("main_process_port") or 29500)
    job_dir = f"{home}/jobs/{job.id}"
    multi_node = needs_launcher(spec) and res.nodes > 1
    work = work_argv(spec, python, f"{RECIPE_MOUNT}/recipe.yaml")
    if multi_node:
        job.argv = launch_argv(spec, python, work, machine_rank=Shell('"$JOB_COMPLETION_INDEX"'),
                               main_process_ip=f"{name}-0.{name}", main_process_port=port)
    else:
        job.argv = launch_argv(spec, python, work) if needs_launcher(spec) else work
    labels = {QUEUE_LABEL: tenant.kueue_queue, "app.kubernetes.io/name": "sovforge",
              "sovforge.io/job-id": job.id, "sovforge.io/tenant": _label_value(spec.tenant)}
    if settings.get("priority_class"):
        labels[PRIORITY_LABEL] = settings["priority_class"]
    quantity = {"cpu": str(res.cpus), "memory": f"{int(res.memory_gb * 1024)}Mi"}
    if res.gpus:
        quantity[GPU] = str(res.gpus)
    env = [{"name": k, "value": v} for k, v in sorted(job_env(job, home=home).items())]
    volumes: list[dict[str, Any]] = [
        {"name": "artifacts", "persistentVolumeClaim": {"claimName": settings.get("pvc") or "sovforge-artifacts"}},
        # NCCL and the DataLoader need more than the container runtime's 64 MiB /dev/shm.
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
    ]
    mounts: list[dict[str, Any]] = [{"name": "artifacts", "mountPath": mount},
                                    {"name": "dshm", "mountPath": "/dev/shm"}]
    objects: list[dict[str, Any]] = []
    if spec.recipe is not None:
        volumes.append({"name": "recipe", "configMap": {"name": f"{name}-recipe"}})
        mounts.append({"name": "recipe", "mountPath": RECIPE_MOUNT, "readOnly": True})
    container = {
        "name": "sovforge", "image": settings.get("image") or "registry.local/sovforge:0.1.0",
        "imagePullPolicy": settings.get("image_pull_policy") or "IfNotPresent", "workingDir": mount,
        "command": ["bash", "-c", f"exec {shell_join(runner_argv(python, job_dir, job.argv))}"],
        "env": env, "resources": {"requests": dict(quantity), "limits": dict(quantity)}, "volumeMounts": mounts,
    }
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container], "volumes": volumes}
    job_spec: dict[str, Any] = {
        "suspend": True,  # Kueue un-suspends it when the tenant's ClusterQueue admits the workload
        "backoffLimit": 0,  # a failed stage is a failed job; sovforge never retries behind the user's back
        "activeDeadlineSeconds": time_limit_seconds(res.time_limit),
        "ttlSecondsAfterFinished": 7 * 24 * 3600,
        "template": {"metadata": {"labels": {"sovforge.io/job-id": job.id}}, "spec": pod_spec},
    }
    if multi_node:
        pod_spec["subdomain"] = name
        job_spec.update(completionMode="Indexed", completions=res.nodes, parallelism=res.nodes)
    objects.append({"apiVersion": "batch/v1", "kind": "Job", "metadata": {
        "name": name, "namespace": namespace, "labels": labels,
        "annotations": {"sovforge.io/submitter": spec.submitter, "sovforge.io/work": " ".join(work[3:])}},
        "spec": job_spec})
    if spec.recipe is not None:
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": f"{name}-recipe", "namespace": namespace, "labels": {"sovforge.io/job-id": job.id}},
            "data": {"recipe.yaml": recipe_text if recipe_text is not None else Path(spec.recipe).read_text()}})
    if multi_node:
        objects.append({"apiVersion": "v1", "kind": "Service", "metadata": {
            "name": name, "namespace": namespace, "labels": {"sovforge.io/job-id": job.id}},
            "spec": {"clusterIP": "None", "selector": {"sovforge.io/job-id": job.id},
                     "ports": [{"name": "rendezvous", "port": port, "targetPort": port}]}})
    return objects


def dump_manifests(objects: list[dict[str, Any]]) -> str:
    """Multi-document YAML, multi-line strings (the recipe) as literal blocks so they stay readable."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump_all(objects, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=120)


def _label_value(value: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in value)[:63]
    return cleaned.strip("-_.") or "tenant"


def validate_manifest(doc: dict[str, Any]) -> Any:
    """Parse `doc` into the official client model (V1Job, V1Service, V1ConfigMap) and back.

    A wrong type or a missing required field fails the parse; a misspelled key is silently dropped by the
    parse, so the round trip must give back exactly `doc`. Returns the model object.
    """
    from kubernetes import client

    model = getattr(client, f"V1{doc.get('kind')}", None)
    if model is None or doc.get("apiVersion") not in ("v1", "batch/v1"):
        raise ValueError(f"no core model for {doc.get('apiVersion')}/{doc.get('kind')}")
    api = client.ApiClient()
    if hasattr(model, "from_dict"):
        obj = model.from_dict(doc)
    else:  # older, non-pydantic clients
        obj = api._ApiClient__deserialize(doc, model)  # noqa: SLF001
    back = api.sanitize_for_serialization(obj)
    if back != doc:
        raise ValueError(f"{doc['kind']} {doc['metadata'].get('name')}: fields the API does not know: "
                         f"{sorted(_differences(doc, back))}")
    return obj


def _differences(a: Any, b: Any, path: str = "") -> Iterator[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in set(a) | set(b):
            yield from _differences(a.get(key), b.get(key), f"{path}.{key}" if path else key)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _differences(x, y, f"{path}[{i}]")
    elif a != b:
        yield path


def render_queues(tenants: TenantsFile, flavor: str = "gpu", cpu_quota: int = 1024,
                  memory_quota: str = "8Ti") -> list[dict[str, Any]]:
    """Kueue objects mirroring tenants.yaml: one ResourceFlavor, per tenant a ClusterQueue whose nominal
    `nvidia.com/gpu` quota is the tenant's gpu_quota, and the LocalQueue jobs are labelled with."""
    objects: list[dict[str, Any]] = [{"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "ResourceFlavor",
                                      "metadata": {"name": flavor}}]
    for name, tenant in sorted(tenants.tenants.items()):
        if not tenant.kueue_queue or not tenant.k8s_namespace:
            continue
        cluster_queue = f"{_label_value(name)}-cq"
        objects.append({"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "ClusterQueue",
                        "metadata": {"name": cluster_queue},
                        "spec": {"namespaceSelector": {}, "resourceGroups": [{
                            "coveredResources": ["cpu", "memory", GPU],
                            "flavors": [{"name": flavor, "resources": [
                                {"name": "cpu", "nominalQuota": cpu_quota},
                                {"name": "memory", "nominalQuota": memory_quota},
                                {"name": GPU, "nominalQuota": tenant.gpu_quota}]}]}]}})
        objects.append({"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "LocalQueue",
                        "metadata": {"name": tenant.kueue_queue, "namespace": tenant.k8s_namespace},
                        "spec": {"clusterQueue": cluster_queue}})
    return objects


class KueueExecutor(Executor):
    name: ClassVar[str] = "kueue"

    def _apis(self) -> tuple[Any, Any]:
        kubeconfig = self.settings.get("kubeconfig")
        if not kubeconfig:
            raise EngineError("the kueue engine needs a kubeconfig to submit (engines.kueue.kubeconfig or "
                              "--kubeconfig); `sovforge jobs render --engine kueue` writes the manifests instead")
        if not Path(kubeconfig).expanduser().is_file():
            raise EngineError(f"kubeconfig {kubeconfig} does not exist")
        try:
            from kubernetes import client, config
        except ImportError:
            raise EngineError("the kueue engine needs the kubernetes client: pip install 'sovforge[dist]'") from None
        try:
            api_client = config.new_client_from_config(config_file=str(Path(kubeconfig).expanduser()),
                                                       context=self.settings.get("context"))
        except Exception as exc:  # ConfigException and friends: one clear line
            raise EngineError(f"kubeconfig {kubeconfig}: {exc}") from None
        return client.BatchV1Api(api_client), client.CoreV1Api(api_client)

    def submit(self, job: JobRecord, tenant: Tenant) -> str:
        recipe_text = (job.dir / "recipe.yaml").read_text() if job.spec.recipe is not None else None
        objects = render_manifests(job, tenant, self.settings, recipe_text)
        (job.dir / "manifests.yaml").write_text(dump_manifests(objects), encoding="utf-8")
        for obj in objects:
            validate_manifest(obj)
        batch, core = self._apis()
        namespace = tenant.k8s_namespace
        try:
            created = batch.create_namespaced_job(namespace, objects[0])
            owner = [{"apiVersion": "batch/v1", "kind": "Job", "name": created.metadata.name,
                      "uid": created.metadata.uid, "controller": False}]
            for obj in objects[1:]:  # children of the Job: deleted with it
                obj["metadata"]["ownerReferences"] = owner
                if obj["kind"] == "ConfigMap":
                    core.create_namespaced_config_map(namespace, obj)
                else:
                    core.create_namespaced_service(namespace, obj)
        except Exception as exc:  # ApiException / connection errors → one line
            raise EngineError(f"Kubernetes refused the job: {getattr(exc, 'reason', None) or exc}") from None
        return f"{namespace}/{created.metadata.name}"

    def status(self, job: JobRecord) -> EngineStatus:
        namespace, name = str(job.engine_job_id).split("/", 1)
        batch, _ = self._apis()
        try:
            found = batch.read_namespaced_job_status(name, namespace)
        except Exception as exc:
            reason = getattr(exc, "reason", exc)
            raise EngineError(f"Kubernetes: cannot read job {job.engine_job_id}: {reason}") from None
        st = found.status
        started = _iso(st.start_time) if st else None
        conditions = {c.type: c for c in (st.conditions or [])} if st else {}
        if "Complete" in conditions and conditions["Complete"].status == "True":
            return EngineStatus("SUCCEEDED", 0, "", started, _iso(st.completion_time))
        if "Failed" in conditions and conditions["Failed"].status == "True":
            cond = conditions["Failed"]
            return EngineStatus("FAILED", None, f"{cond.reason}: {cond.message}", started,
                                _iso(cond.last_transition_time))
        if found.spec.suspend:
            return EngineStatus("PENDING", message="waiting for Kueue to admit it")
        return EngineStatus("RUNNING" if st and st.active else "PENDING", started=started)

    def logs(self, job: JobRecord, follow: bool = False) -> Iterator[str]:
        namespace, name = str(job.engine_job_id).split("/", 1)
        _, core = self._apis()
        pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
        if not pods:
            yield "(no pod yet: the job is waiting for admission)\n"
            return
        pod = sorted(pods, key=lambda p: p.metadata.name)[0]
        if follow:
            stream = core.read_namespaced_pod_log(pod.metadata.name, namespace, follow=True, _preload_content=False)
            for chunk in stream.stream():
                yield chunk.decode("utf-8", errors="replace")
        else:
            yield core.read_namespaced_pod_log(pod.metadata.name, namespace)

    def cancel(self, job: JobRecord) -> None:
        namespace, name = str(job.engine_job_id).split("/", 1)
        batch, _ = self._apis()
        try:
            batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
        except Exception as exc:
            reason = getattr(exc, "reason", exc)
            raise EngineError(f"Kubernetes: cannot delete job {job.engine_job_id}: {reason}") from None


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds")
    return str(value)
