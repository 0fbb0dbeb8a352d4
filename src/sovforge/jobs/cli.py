"""`sovforge jobs submit|status|logs|cancel|list|wait|render|queues`: run stages on the GPU service's engines.

    sovforge jobs submit examples/demo.yaml --stage base                      # local subprocess (default)
    sovforge jobs submit RECIPE --stage adapt --engine ray --gpus 1 --tenant army-ai
    sovforge jobs submit --engine slurm --gpus 8 --nodes 2 -- adapt cpt --base B --corpus C --out O
    sovforge jobs render RECIPE --stage adapt --engine kueue --gpus 8 --nodes 2   # manifests, nothing submitted

Tenants and engines come from `--tenants` (default $SOVFORGE_TENANTS, else $SOVFORGE_HOME/tenants.yaml; see
examples/tenants.yaml). A refused job prints the reason and exits 1 with nothing submitted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

_DB = typer.Option("--db", help="Audit store SQLAlchemy URL (default sqlite under $SOVFORGE_HOME/serve), as for "
                                "`sovforge audit`.")
_PREFIX = typer.Option("--table-prefix", help="Audit store table prefix.")
_JOB = typer.Argument(help="Job id (a unique prefix is enough).")
_STAGE = typer.Option(help="Run only this stage of the recipe (default: the whole recipe).")
_ENGINE = typer.Option(help="local, ray, slurm or kueue.")
_TENANT = typer.Option(help="Tenant charged (default: the only one in the tenants file).")
_TENANTS = typer.Option(help="tenants.yaml (default $SOVFORGE_TENANTS, else $SOVFORGE_HOME/tenants.yaml).")
_AS = typer.Option("--as", help="Submitter recorded in the audit log (default $USER).")
_GPUS = typer.Option(help="GPUs per node.")
_NODES = typer.Option(help="Nodes (multi-node: adapt only).")
_CPUS = typer.Option(help="CPU cores per node (also the job's thread count).")
_MEMORY = typer.Option(help="Host memory per node, GiB.")
_TIME = typer.Option("--time", help="Wall-clock limit [D-]HH:MM:SS.")
_PARTITION = typer.Option(help="Slurm partition (default: the engine's).")
_ENV = typer.Option(help="Extra job environment KEY=VALUE (repeatable).")
_LAUNCH = typer.Option(help="accelerate config (FSDP/DeepSpeed) for a multi-GPU adapt.")
_CWD = typer.Option(help="Directory the job runs in (default: the current one; shared with the workers).")


def _tenants_path(given: Optional[Path]) -> Path:
    from sovforge.artifacts import sovforge_home

    if given is not None:
        return given
    if os.environ.get("SOVFORGE_TENANTS"):
        return Path(os.environ["SOVFORGE_TENANTS"])
    return sovforge_home() / "tenants.yaml"


def _submitter(as_user: Optional[str]) -> str:
    import getpass

    return as_user or os.environ.get("USER") or getpass.getuser()


def _print_job(job, as_json: bool = False) -> None:
    from sovforge.cli import console

    if as_json:
        typer.echo(job.model_dump_json(indent=2))
        return
    acc = job.accounting or {}
    typer.echo(f"{job.id}\t{job.state}")
    console.print(f"  engine {job.spec.engine} ({job.engine_job_id}), tenant {job.spec.tenant}, "
                  f"by {job.spec.submitter}, {job.spec.stage or ' '.join(job.spec.command[:2]) or 'recipe'}")
    if job.exit_code is not None:
        console.print(f"  exit code {job.exit_code}")
    if acc.get("wall_s") is not None:
        console.print(f"  wall {acc['wall_s']:.1f} s, {acc['gpus']} GPU(s), {acc['gpu_seconds']:.1f} GPU-seconds")
    for out in job.outputs:
        console.print(f"  → {out['kind']} {out['id'][:12]} [{out['classification']}] {out['path']}"
                      + (" (reused, unchanged)" if out.get("reused") else ""))
    if job.accounting_artifact:
        console.print(f"  accounting: {job.accounting_artifact}")
    if job.state == "FAILED" and job.message:
        lines = "\n".join(f"    {line}" for line in job.message.splitlines())
        console.print(f"[bold red]  failed:[/bold red]\n{lines}")


def register(app: typer.Typer) -> None:
    jobs_app = typer.Typer(help="Submit stages to Ray / Slurm / Kueue (or a local subprocess), with tenants, quotas "
                                "and accounting.", no_args_is_help=True)
    app.add_typer(jobs_app, name="jobs")

    def build_spec(work, stage, engine, tenant, tenants, as_user, gpus, nodes, cpus, memory_gb, time_limit,
                   partition, env, launch_config, cwd):
        from pydantic import ValidationError

        from sovforge.cli import fail
        from sovforge.jobs.config import ENGINES, JobSpec, Resources, TenantsError, load_tenants

        if engine not in ENGINES:
            raise fail(f"unknown engine {engine!r}; engines are {', '.join(ENGINES)}")
        if not work:
            raise fail("give a recipe (RECIPE.yaml [--stage STAGE]) or a sovforge command after `--`")
        try:
            tenants_file = load_tenants(_tenants_path(tenants))
        except TenantsError as exc:
            raise fail(str(exc)) from None
        if tenant is None:
            if len(tenants_file.tenants) != 1:
                raise fail(f"--tenant is required; tenants are {', '.join(sorted(tenants_file.tenants))}")
            tenant = next(iter(tenants_file.tenants))
        is_recipe = len(work) == 1 and work[0].endswith((".yaml", ".yml"))
        env_vars = {}
        for item in env or []:
            if "=" not in item:
                raise fail(f"--env {item!r}: expected KEY=VALUE")
            key, value = item.split("=", 1)
            env_vars[key] = value
        base = (cwd or Path.cwd()).resolve()
        try:
            spec = JobSpec(
                engine=engine, tenant=tenant, submitter=_submitter(as_user), cwd=base,
                recipe=(base / work[0]).resolve() if is_recipe else None,  # an absolute work[0] stays itself
                stage=stage, command=[] if is_recipe else list(work), env=env_vars, launch_config=launch_config,
                resources=Resources(gpus=gpus, nodes=nodes, cpus=cpus, memory_gb=memory_gb, time_limit=time_limit,
                                    partition=partition))
        except ValidationError as exc:
            err = exc.errors()[0]
            raise fail(f"{'.'.join(map(str, err['loc'])) or 'job'}: {err['msg']}") from None
        if spec.recipe is not None and not spec.recipe.is_file():
            raise fail(f"{spec.recipe}: no such recipe file")
        return spec, tenants_file


    @jobs_app.command("submit", context_settings={"allow_interspersed_args": True})
    def submit_cmd(
        work: Annotated[Optional[list[str]], typer.Argument(
            help="RECIPE.yaml, or after `--` a sovforge verb with its arguments.")] = None,
        stage: Annotated[Optional[str], _STAGE] = None,
        engine: Annotated[str, _ENGINE] = "local",
        tenant: Annotated[Optional[str], _TENANT] = None,
        tenants: Annotated[Optional[Path], _TENANTS] = None,
        as_user: Annotated[Optional[str], _AS] = None,
        gpus: Annotated[int, _GPUS] = 0,
        nodes: Annotated[int, _NODES] = 1,
        cpus: Annotated[int, _CPUS] = 2,
        memory_gb: Annotated[float, _MEMORY] = 8.0,
        time_limit: Annotated[str, _TIME] = "04:00:00",
        partition: Annotated[Optional[str], _PARTITION] = None,
        env: Annotated[Optional[list[str]], _ENV] = None,
        launch_config: Annotated[Optional[Path], _LAUNCH] = None,
        cwd: Annotated[Optional[Path], _CWD] = None,
        address: Annotated[Optional[str], typer.Option(help="Ray dashboard URL (overrides the tenants file).")] = None,
        kubeconfig: Annotated[Optional[Path], typer.Option(help="Kubeconfig for the kueue engine.")] = None,
        wait_done: Annotated[bool, typer.Option(
            "--wait", help="Wait for the job to finish; exit 1 if it fails.")] = False,
        timeout: Annotated[Optional[float], typer.Option(help="With --wait: give up after this many seconds.")] = None,
        db: Annotated[Optional[str], _DB] = None,
        table_prefix: Annotated[str, _PREFIX] = "sf_",
    ) -> None:
        """Check the tenant's quota and clearance, then submit a recipe, one stage, or a verb to an engine."""
        from sovforge.cli import console, fail
        from sovforge.config import RecipeError
        from sovforge.jobs import service
        from sovforge.jobs.policy import Refused

        spec, tenants_file = build_spec(work, stage, engine, tenant, tenants, as_user, gpus, nodes, cpus, memory_gb,
                                        time_limit, partition, env, launch_config, cwd)
        overrides = {k: v for k, v in {"address": address, "kubeconfig": str(kubeconfig) if kubeconfig else None}
                     .items() if v is not None}
        try:
            job = service.submit(spec, tenants_file, db=db, prefix=table_prefix, settings=overrides)
        except Refused as exc:
            raise fail(f"refused, nothing submitted: {exc}") from None
        except (service.JobsError, RecipeError, ValueError) as exc:
            raise fail(str(exc)) from None
        console.print(f"[green]submitted[/green] {job.id} to {spec.engine} as {job.engine_job_id} "
                      f"(tenant {spec.tenant}, {spec.resources.total_gpus} GPU(s))")
        if not wait_done:
            typer.echo(job.id)
            return
        try:
            job = service.wait(job, timeout)
        except service.JobsError as exc:
            raise fail(str(exc)) from None
        _print_job(job)
        raise typer.Exit(0 if job.state == "SUCCEEDED" else 1)

    @jobs_app.command("status")
    def status_cmd(job_id: Annotated[str, _JOB],
                   as_json: Annotated[bool, typer.Option(
                       "--json", help="Print the whole record as JSON.")] = False) -> None:
        """The job's state (asked from its engine), exit code, GPU-seconds, outputs; the log tail if it failed."""
        from sovforge.cli import fail
        from sovforge.jobs import service
        from sovforge.jobs.engine import EngineError

        try:
            job = service.refresh(service.find(job_id))
        except (service.JobsError, EngineError) as exc:
            raise fail(str(exc)) from None
        _print_job(job, as_json)

    @jobs_app.command("logs")
    def logs_cmd(job_id: Annotated[str, _JOB],
                 follow: Annotated[bool, typer.Option(
                     "--follow", "-f", help="Keep streaming until the job ends.")] = False) -> None:
        """The job's output (from the engine, or the job's log file)."""
        import sys

        from sovforge.cli import fail
        from sovforge.jobs import service
        from sovforge.jobs.engine import EngineError

        try:
            for text in service.logs(service.find(job_id), follow=follow):
                sys.stdout.write(text)
                sys.stdout.flush()
        except (service.JobsError, EngineError) as exc:
            raise fail(str(exc)) from None

    @jobs_app.command("cancel")
    def cancel_cmd(job_id: Annotated[str, _JOB]) -> None:
        """Stop the job through its engine; it is accounted and audited as cancelled."""
        from sovforge.cli import fail
        from sovforge.jobs import service
        from sovforge.jobs.engine import EngineError

        try:
            job = service.cancel(service.find(job_id))
        except (service.JobsError, EngineError) as exc:
            raise fail(str(exc)) from None
        _print_job(job)

    @jobs_app.command("wait")
    def wait_cmd(job_id: Annotated[str, _JOB],
                 timeout: Annotated[Optional[float], typer.Option(
                     help="Give up after this many seconds.")] = None) -> None:
        """Wait until the job ends; exit 1 unless it succeeded."""
        from sovforge.cli import fail
        from sovforge.jobs import service
        from sovforge.jobs.engine import EngineError

        try:
            job = service.wait(service.find(job_id), timeout)
        except (service.JobsError, EngineError) as exc:
            raise fail(str(exc)) from None
        _print_job(job)
        raise typer.Exit(0 if job.state == "SUCCEEDED" else 1)

    @jobs_app.command("list")
    def list_cmd(tenant: Annotated[Optional[str], typer.Option(help="Only this tenant's jobs.")] = None) -> None:
        """Every job recorded here, oldest first (unfinished ones are asked from their engines)."""
        import contextlib

        from sovforge.jobs import service
        from sovforge.jobs.engine import EngineError
        from sovforge.jobs.records import all_records

        for job in all_records():
            if tenant and job.spec.tenant != tenant:
                continue
            with contextlib.suppress(EngineError, service.JobsError):
                job = service.refresh(job)
            acc = job.accounting or {}
            typer.echo("\t".join([job.id, job.state, job.spec.engine, job.spec.tenant, job.spec.submitter,
                                  job.spec.stage or " ".join(job.spec.command[:2]) or "recipe",
                                  f"{acc['gpu_seconds']:.1f}" if acc.get("gpu_seconds") is not None else "-"]))

    @jobs_app.command("render")
    def render_cmd(
        work: Annotated[Optional[list[str]], typer.Argument(help="RECIPE.yaml, or after `--` a sovforge verb.")] = None,
        stage: Annotated[Optional[str], _STAGE] = None,
        engine: Annotated[str, typer.Option(help="slurm or kueue.")] = "slurm",
        tenant: Annotated[Optional[str], _TENANT] = None,
        tenants: Annotated[Optional[Path], _TENANTS] = None,
        as_user: Annotated[Optional[str], _AS] = None,
        gpus: Annotated[int, _GPUS] = 0,
        nodes: Annotated[int, _NODES] = 1,
        cpus: Annotated[int, _CPUS] = 2,
        memory_gb: Annotated[float, _MEMORY] = 8.0,
        time_limit: Annotated[str, _TIME] = "04:00:00",
        partition: Annotated[Optional[str], _PARTITION] = None,
        env: Annotated[Optional[list[str]], _ENV] = None,
        launch_config: Annotated[Optional[Path], _LAUNCH] = None,
        cwd: Annotated[Optional[Path], _CWD] = None,
        out: Annotated[Optional[Path], typer.Option(help="Write the script/manifests here (default stdout).")] = None,
    ) -> None:
        """Print the sbatch script or the Kueue manifests a submission would create; nothing is submitted."""
        from sovforge.cli import fail
        from sovforge.config import RecipeError
        from sovforge.jobs import policy, service
        from sovforge.jobs.engine import EngineError
        from sovforge.jobs.records import JobRecord, new_job_id, utc_now

        if engine not in ("slurm", "kueue"):
            raise fail(f"render: --engine must be slurm or kueue, not {engine!r}")
        spec, tenants_file = build_spec(work, stage, engine, tenant, tenants, as_user, gpus, nodes, cpus, memory_gb,
                                        time_limit, partition, env, launch_config, cwd)
        the_tenant = tenants_file.tenants.get(spec.tenant)
        if the_tenant is None:
            raise fail(f"unknown tenant {spec.tenant!r}")
        try:
            inputs, level, reasons = service.plan(spec)
        except (RecipeError, ValueError) as exc:
            raise fail(str(exc)) from None
        reason = policy.check(spec, spec.tenant, the_tenant, level, reasons, held_gpus=0)
        if reason is not None:
            raise fail(f"refused: {reason}")
        settings = getattr(tenants_file.engines, engine).model_dump(mode="json")
        job = JobRecord(id=new_job_id(), spec=spec, submitted=utc_now(), updated=utc_now(),
                        inputs=[a.ref() for a in inputs], data_classification=str(level))
        try:
            if engine == "slurm":
                from sovforge.jobs.slurm import render_sbatch

                text = render_sbatch(job, the_tenant, settings)
            else:
                from sovforge.jobs.kueue import dump_manifests, render_manifests, validate_manifest

                objects = render_manifests(job, the_tenant, settings)
                for obj in objects:
                    validate_manifest(obj)
                text = dump_manifests(objects)
        except (EngineError, ValueError) as exc:
            raise fail(str(exc)) from None
        if out is None:
            typer.echo(text, nl=False)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")
            typer.echo(str(out))

    @jobs_app.command("queues")
    def queues_cmd(tenants: Annotated[Optional[Path], _TENANTS] = None,
                   flavor: Annotated[str, typer.Option(
                       help="Kueue ResourceFlavor name of the GPU nodes.")] = "gpu") -> None:
        """Print the Kueue ResourceFlavor / ClusterQueue / LocalQueue objects matching the tenants file."""
        from sovforge.cli import fail
        from sovforge.jobs.config import TenantsError, load_tenants
        from sovforge.jobs.kueue import dump_manifests, render_queues

        try:
            tenants_file = load_tenants(_tenants_path(tenants))
        except TenantsError as exc:
            raise fail(str(exc)) from None
        typer.echo(dump_manifests(render_queues(tenants_file, flavor=flavor)), nl=False)
