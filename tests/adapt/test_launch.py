"""Scale-out: shipped accelerate configs are valid, `--print-launch` parses, and a real 2-process gloo DDP run.

    .venv/bin/python -m pytest -q -p no:cacheprovider tests/adapt/test_launch.py
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
ENV_VALUES = {"$NODE_RANK": "1", "$MASTER_ADDR": "10.0.0.1"}


def _launch_args(command: str) -> list[str]:
    for name, value in ENV_VALUES.items():
        command = command.replace(name, value)
    tokens = shlex.split(command)
    assert tokens[:2] == ["accelerate", "launch"], command
    return tokens[2:]


@pytest.mark.parametrize("path, kind", [("examples/accelerate/fsdp.yaml", "FSDP"),
                                        ("examples/accelerate/deepspeed-zero3.yaml", "DEEPSPEED")])
def test_shipped_configs_are_valid_accelerate_configs(path: str, kind: str, monkeypatch):
    """Each YAML loads as accelerate's ClusterConfig and yields the plugin accelerate itself would build from it."""
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    config = load_config_from_file(str(REPO / path))
    assert isinstance(config, ClusterConfig) and config.distributed_type.name == kind
    args = launch_command_parser().parse_args(["--config_file", str(REPO / path), "--num_processes", "16",
                                              "--num_machines", "2", "--machine_rank", "0", "--main_process_ip",
                                              "10.0.0.1", "--main_process_port", "29500", "-m", "sovforge.cli"])
    args, defaults, _ = _validate_launch_command(args)
    if kind == "FSDP":
        from accelerate.utils import FullyShardedDataParallelPlugin

        for key, value in prepare_multi_gpu_env(args).items():
            monkeypatch.setenv(key, value)
        plugin = FullyShardedDataParallelPlugin()
        assert plugin.fsdp_version == 2 and plugin.state_dict_type.name == "FULL_STATE_DICT"
        assert plugin.transformer_cls_names_to_wrap == ["LlamaDecoderLayer", "Qwen2DecoderLayer"]
    else:
        from accelerate.utils import DeepSpeedPlugin

        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        _, env = prepare_deepspeed_cmd_env(args)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        plugin = DeepSpeedPlugin()
        assert plugin.zero_stage == 3 and plugin.deepspeed_config["gradient_accumulation_steps"] == 1


@pytest.mark.parametrize("flavour", ["fsdp", "deepspeed", "ddp"])
def test_print_launch_parses_with_accelerates_own_parser(flavour: str):
    from accelerate.commands.launch import launch_command_parser

    from sovforge.cli import app

    result = CliRunner().invoke(app, ["adapt", "sft", "--base", "runs/base", "--data", "a.jsonl", "--data", "b c.jsonl",
                                      "--out", "runs/sft", "--max-steps", "500", "--packing", "--print-launch",
                                      flavour, "--num-machines", "2"])
    assert result.exit_code == 0, result.output
    args = launch_command_parser().parse_args(_launch_args(result.output.strip()))
    assert args.num_processes == 16 and args.num_machines == 2 and args.machine_rank == 1
    assert args.module and args.training_script == "sovforge.cli"
    assert args.config_file == (None if flavour == "ddp" else f"examples/accelerate/"
                                f"{'fsdp' if flavour == 'fsdp' else 'deepspeed-zero3'}.yaml")
    script = args.training_script_args
    assert script[:2] == ["adapt", "sft"] and "--print-launch" not in script
    assert script[script.index("--max-steps") + 1] == "500" and "--packing" in script
    assert [script[i + 1] for i, a in enumerate(script) if a == "--data"] == ["a.jsonl", "b c.jsonl"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_ddp_cpt_on_cpu(tiny_model: Path, corpus: Path, tmp_path: Path, sovforge_home: Path):
    """`--print-launch ddp` run for real with 2 processes (gloo on CPU): data sharded, one artifact from rank 0."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from sovforge.artifacts import load_artifact, verify
    from sovforge.cli import app

    out = tmp_path / "ddp"
    printed = CliRunner().invoke(app, ["adapt", "cpt", "--base", str(tiny_model), "--corpus", str(corpus), "--out",
                                       str(out), "--seq-len", "32", "--batch-size", "2", "--max-steps", "4",
                                       "--lora-r", "4", "--lora-alpha", "8", "--learning-rate", "0.005",
                                       "--checkpoint-every", "2", "--print-launch", "ddp", "--num-processes", "2"])
    assert printed.exit_code == 0, printed.output
    args = _launch_args(printed.output.strip())
    # Loopback rendezvous on a free port (other test runs may share this machine); fp32 on CPU.
    args = ["--main_process_port", str(_free_port()), "--mixed_precision", "no", "--dynamo_backend", "no", *args]
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    env = {**os.environ, "SOVFORGE_HOME": str(sovforge_home), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([accelerate, "launch", *args], env=env, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    art = load_artifact(out, kind="adapter")
    assert art.stats["processes"] == 2
    assert art.stats["tokens"] == 4 * 2 * 2 * 32  # steps x ranks x batch x seq: each rank trained its own shard
    assert verify(out).ok and art.manifest["inputs"] == [load_artifact(tiny_model).id, load_artifact(corpus).id]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers  # no staging directory of a second writer, run directory removed
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4]  # written once, by rank 0
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    PeftModel.from_pretrained(base, str(out))


@pytest.mark.slow
def test_recipe_stage_under_two_process_launch(tiny_model: Path, tmp_path: Path, sovforge_home: Path):
    """`accelerate launch ... -m sovforge.cli run RECIPE --only adapt` — what the sbatch/Kueue jobs run: rank 0 writes
    the artifact and state.json, rank 1 waits for it at the pipeline's barrier instead of failing to open it."""
    import yaml

    from sovforge.artifacts import load_artifact, verify
    from sovforge.cli import app

    work, docs = tmp_path / "work", tmp_path / "docs"
    made = CliRunner().invoke(app, ["demo", "--make-docs", str(docs), "--count", "16", "--seed", "0"])
    assert made.exit_code == 0, made.output
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "ddp", "workdir": str(work),
        "base": {"path": str(tiny_model)},
        "ingest": {"inputs": [str(docs)], "val_share": 0.2, "progress": False},
        "adapt": {"mode": "cpt", "method": "lora", "seq_len": 32, "batch_size": 2, "lora_r": 4, "lora_alpha": 8,
                  "train": {"max_steps": 2, "progress": False}},
    }), encoding="utf-8")
    first = CliRunner().invoke(app, ["run", str(recipe), "--only", "base", "--only", "ingest"])
    assert first.exit_code == 0, first.output
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    env = {**os.environ, "SOVFORGE_HOME": str(sovforge_home), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--main_process_port", str(_free_port()), "--mixed_precision", "no", "--dynamo_backend",
                           "no", "-m", "sovforge.cli", "run", str(recipe), "--only", "adapt"],
                          env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    art = load_artifact(work / "adapt", kind="adapter")
    assert art.stats["processes"] == 2 and verify(work / "adapt").ok
    state = json.loads((work / "state.json").read_text())
    assert state["adapt"]["id"] == art.id
