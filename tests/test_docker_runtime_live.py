"""`up --runtime docker` on GPU profiles and rendered Compose files, against the real Docker engine here.

- GPU access: the real engine has no NVIDIA runtime and this host no /dev/kfd: `up` says so, with the fix,
  before anything starts; the same check passes once the runtime is registered as the NVIDIA Container Toolkit
  registers it (or a CDI spec names nvidia.com/gpu).
- A missing image is pulled through the SDK's stream with progress: from a real registry (Debian's
  docker-registry, the distribution registry) on a free local port, serving an image this test pushes.
- servectl's own image (docker/Dockerfile.servectl, scripts/docker-servectl-image) runs the preset proxy in
  front of the vLLM CPU server, both from one `servectl render --format compose --with-proxy` file, started
  with the real Docker Compose v2 binary.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from conftest import free_port
from waits import START_S, STOP_S

pytestmark = [pytest.mark.server, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent
CPU_IMAGE = "servectl/vllm-cpu:0.32.0"


@pytest.fixture(scope="module")
def engine():
    """The Docker engine with the vLLM CPU image (scripts/docker-cpu-image); stopped afterwards only if started here."""
    was_running = shutil.which("docker") is not None and subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    proc = subprocess.run([str(ROOT / "scripts" / "docker-cpu-image")], capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == CPU_IMAGE
    yield
    if not was_running:
        subprocess.run([str(ROOT / "scripts" / "docker-cpu-image"), "--stop"], capture_output=True, timeout=STOP_S)


def sc(env, *args, timeout=START_S):
    return subprocess.run([sys.executable, "-m", "servectl", *args], env=env, capture_output=True, text=True, timeout=timeout)


def _spec(profile: str):
    from servectl.catalog.load import load_catalog
    from servectl.spec.resolve import Request, resolve

    cat = load_catalog()
    return resolve(Request(cat.model("tiny-cpu"), cat.gpu(profile), force=True))


def test_gpu_access_is_checked_against_the_real_engine(engine, tmp_path):
    from servectl.launch import runners
    from servectl.launch.docker_images import gpu_access_problem
    from servectl.render.container import container_run

    info = runners.DockerRunner().client.info()
    nvidia, rocm = container_run(_spec("rtx-5090")), container_run(_spec("rocm-4gpu"))
    what, fix = gpu_access_problem(info, nvidia)
    assert "no `nvidia` runtime" in what and "nvidia-ctk runtime configure" in fix
    # the toolkit's registration (daemon.json "runtimes": {"nvidia": {"path": "nvidia-container-runtime"}})
    registered = {**info, "Runtimes": {**info["Runtimes"], "nvidia": {"path": "nvidia-container-runtime"}}}
    assert gpu_access_problem(registered, nvidia) is None
    # --gpus without the runtime flag: a CDI spec for nvidia.com/gpu in the engine's CDI dirs is enough
    gpus_only = replace(nvidia, runtime=None)
    assert "CDI" in gpu_access_problem(info, gpus_only)[0]
    (tmp_path / "nvidia.yaml").write_text("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n- name: all\n")
    assert gpu_access_problem({**info, "CDISpecDirs": [str(tmp_path)]}, gpus_only) is None
    exists = os.path.exists("/dev/kfd")
    assert (gpu_access_problem(info, rocm) is None) == exists
    if not exists:
        assert "/dev/kfd" in gpu_access_problem(info, rocm)[0] and "amdgpu" in gpu_access_problem(info, rocm)[1]


def test_up_on_a_gpu_profile_says_how_to_reach_the_gpu(engine, tmp_path):
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    res = sc(
        env,
        "up",
        "tiny-cpu",
        "--gpu",
        "rtx-5090",
        "--runtime",
        "docker",
        "--force",
        "--name",
        "gpu-check",
        "--port",
        str(free_port()),
        "--no-check",
    )
    assert res.returncode == 1, res.stderr[-2000:]
    assert "no `nvidia` runtime" in res.stderr and "nvidia-ctk runtime configure" in res.stderr
    assert subprocess.run(["docker", "ps", "-aq", "--filter", "name=^gpu-check$"], capture_output=True, text=True).stdout == ""
    assert json.loads(sc(env, "status", "--json").stdout)["deployments"] == []


@pytest.fixture()
def registry(tmp_path):
    """A real registry (Debian's docker-registry) on a free port of 127.0.0.1; stopped by its PID."""
    exe = shutil.which("docker-registry")
    assert exe, "scripts/test installs docker-registry (apt)"
    port = free_port()
    (tmp_path / "registry.yml").write_text(
        f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'store'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen(
        [exe, "serve", str(tmp_path / "registry.yml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + STOP_S
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=STOP_S)


def test_a_missing_image_is_pulled_with_progress(engine, registry, tmp_path):
    from servectl.errors import CheckFailed
    from servectl.launch import runners

    # a small image of our own: one 6 MiB layer
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "rootfs" / "blob").write_bytes(os.urandom(6 << 20))
    tag = f"{registry}/servectl-pull-test:{os.getpid()}"
    tar = subprocess.Popen(["tar", "-C", str(tmp_path / "rootfs"), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(
        ["docker", "import", "--change", "LABEL io.servectl.test=pulled", "-", tag],
        stdin=tar.stdout,
        check=True,
        capture_output=True,
    )
    tar.wait()
    try:
        subprocess.run(["docker", "push", tag], check=True, capture_output=True, timeout=300)
        subprocess.run(["docker", "rmi", tag], check=True, capture_output=True)
        seen = []
        labels = runners.DockerRunner().image_labels(tag, on_progress=lambda p: seen.append((p.current, p.total, len(p.layers))))
        assert labels.get("io.servectl.test") == "pulled"
        assert seen and seen[-1][2] == 1 and seen[-1][0] == seen[-1][1] > 0  # one layer, fully counted
        assert any(0 < cur < total for cur, total, _ in seen) or seen[-1][1] < 8 << 20  # progress inside the layer
        with pytest.raises(CheckFailed, match="pulling it failed"):
            runners.DockerRunner().image_labels(f"{registry}/servectl-no-such-image:1")
    finally:
        subprocess.run(["docker", "rmi", tag], capture_output=True)


def test_rendered_compose_runs_the_proxy_image_in_front_of_the_cpu_server(engine, tmp_path):
    from servectl.verify.validate import compose_binary

    tag = f"servectl:test-{os.getpid()}"
    built = subprocess.run(
        [str(ROOT / "scripts" / "docker-servectl-image"), "--base", CPU_IMAGE, "--tag", tag],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    assert built.stdout.strip() == tag  # stdout is the tag only
    lint = subprocess.run(
        [str(Path(sys.executable).parent / "hadolint"), str(ROOT / "docker" / "Dockerfile.servectl")],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout
    name, port, proxy_port = f"compose-{os.getpid()}", free_port(), free_port()
    out = tmp_path / "deploy"
    res = sc(
        os.environ.copy(),
        "render",
        "tiny-cpu",
        "--gpu",
        "cpu",
        "--format",
        "compose",
        "--with-proxy",
        "--name",
        name,
        "--port",
        str(port),
        "--proxy-port",
        str(proxy_port),
        "--proxy-image",
        tag,
        "--cache-dir",
        str(tmp_path / "cache"),
        "-o",
        str(out),
        "--validate",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    compose = [compose_binary(), "-f", str(out / "docker-compose.yaml"), "-p", name]
    try:
        up = subprocess.run([*compose, "up", "-d"], capture_output=True, text=True, timeout=START_S)  # waits for vllm healthy
        assert up.returncode == 0, up.stderr[-3000:]
        base = f"http://127.0.0.1:{proxy_port}"
        deadline = time.monotonic() + START_S
        while True:
            try:
                models = httpx.get(f"{base}/v1/models", timeout=60)
                if models.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, subprocess.run([*compose, "logs"], capture_output=True, text=True).stdout[-3000:]
            time.sleep(1)
        ids = {m["id"] for m in models.json()["data"]}
        assert {"tiny-cpu", "tiny-cpu-instruct-general"} <= ids, ids
        chat = httpx.post(
            f"{base}/v1/chat/completions",
            timeout=STOP_S,
            json={
                "model": "tiny-cpu-instruct-general",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "Who are you?"}],
            },
        )
        assert chat.status_code == 200, chat.text
        assert chat.json()["choices"][0]["message"]["content"] is not None
    finally:
        subprocess.run([*compose, "down", "--timeout", "10"], capture_output=True, timeout=300)
        subprocess.run(["docker", "rmi", tag], capture_output=True)
