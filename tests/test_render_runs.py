"""Renders that run as written on a machine that has what they name: the tiny model's directory mounted, the
systemd unit's `vllm` from the environment that fits, `--validate` with the real tools for every format."""

from __future__ import annotations

import shlex

import yaml

from servectl.catalog.load import load_catalog
from servectl.spec.resolve import Request, resolve
from servectl.verify import validate
from vllm_env import default_venv
from servectl.vllmenv.tinymodel import model_dir


def test_tiny_compose_mounts_the_generated_model(cli, vllm_python):
    result = cli("render", "tiny-cpu", "--gpu", "cpu", "--format", "compose", "--validate")
    assert result.exit_code == 0, result.output
    service = yaml.safe_load(result.stdout)["services"]["vllm"]
    path = str(model_dir())
    assert service["command"][0] == path and f"{path}:{path}:ro" in service["volumes"]
    assert (model_dir() / "config.json").is_file()  # it exists: the render runs as written
    assert "docker compose" in result.stderr


def test_tiny_docker_command_mounts_it_too(cli):
    words = shlex.split(cli("render", "tiny-cpu", "--gpu", "cpu", "--format", "docker").stdout)
    path = str(model_dir())
    assert words[words.index(f"{path}:{path}:ro") - 1] == "-v" and path in words[words.index("servectl/vllm-cpu:0.32.0") + 1 :]


def test_systemd_names_the_bootstrapped_vllm_and_validates(cli, monkeypatch, vllm_python):
    monkeypatch.delenv("SERVECTL_VLLM_PYTHON", raising=False)
    result = cli("render", "tiny-cpu", "--gpu", "cpu", "--format", "systemd", "--validate")
    assert result.exit_code == 0, result.output
    exec_start = next(ln for ln in result.stdout.splitlines() if ln.startswith("ExecStart="))
    assert exec_start.startswith(f"ExecStart={default_venv()}/bin/vllm serve {model_dir()} ")
    assert "systemd-analyze verify" in result.stderr
    # no environment for the profile here: the fixed default, said once
    gpu = cli("render", "qwen3.5-35b-a3b-mxfp4", "--gpu", "rtx-5090", "--format", "systemd")
    assert "ExecStart=/opt/vllm/bin/vllm serve" in gpu.stdout and "no vLLM environment for" in gpu.stderr


def test_validate_runs_the_kubernetes_schemas(cli):
    result = cli("render", "qwen3.5-35b-a3b-gptq-8bit", "--gpu", "rocm-4gpu", "--format", "k8s-lws", "--validate")
    assert result.exit_code == 0, result.output
    assert "Kubernetes 1.33 schemas (kubernetes-validate --strict, the vendored CRD schema)" in result.stderr


def test_each_format_gets_its_tool(cli, monkeypatch):
    """The format's own validator runs (vLLM's parser is left out here: it is exercised above and in the goldens)."""
    monkeypatch.setattr(validate, "parser_environment", lambda spec, python, required: (None, ""))
    cat = load_catalog()
    spec = resolve(Request(cat.model("qwen3.5-35b-a3b-gptq-8bit"), cat.gpu("rocm-4gpu")))
    cases = {
        "k8s": ("replicas: 1", "replicas: one", "Kubernetes 1.33 schemas"),
        "k8s-raycluster": ("kind: RayCluster\nmetadata:\n", "kind: RayCluster\nmetadat:\n", "CRD schema"),
        "ray-nodes": ("\nesac", "\n", "sh -n"),
        "dockerfile": ("FROM ", "WORKDIR app\nFROM ", "hadolint"),
    }
    for fmt, (good, bad, tool) in cases.items():
        args = ["render", "qwen3.5-35b-a3b-gptq-8bit", "--gpu", "rocm-4gpu", "--format", fmt]
        text = cli(*args).stdout
        checked, problems = validate.rendering(fmt, spec, text, None)
        assert problems == [] and any(tool in c for c in checked), (fmt, checked, problems)
        broken = text.replace(good, bad, 1)
        assert broken != text, fmt
        _, problems = validate.rendering(fmt, spec, broken, None)
        assert problems, fmt
    assert validate.shell_syntax("if true; then echo x\n") != []
    assert any("DL3000" in p for p in validate.dockerfile("FROM debian:12\nWORKDIR app\n"))
