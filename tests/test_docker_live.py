"""`servectl up --runtime docker` against a real Docker engine and a real vLLM CPU image.

scripts/docker-cpu-image starts the engine when none answers and builds the image once (a Debian
root filesystem from debootstrap, vLLM's CPU build installed into it; minutes the first time,
reused by tag after). The tests then run the whole loop as a user would: start (phases and the KV
cache figure read from the container's log), check, logs, down, nothing left; a foreground `up`
killed with SIGKILL takes its container with it; the image checks refuse a missing image and a
release with known bugs unless the image carries servectl's patch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import free_port
from waits import START_S, STOP_S, wait_for

pytestmark = [pytest.mark.server, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent
IMAGE = "servectl/vllm-cpu:0.32.0"  # the cpu profile's image (profiles/gpus.yaml)
# container names of this run: two suites on one engine must never remove each other's containers by name
LIVE, FOREGROUND = f"dk-live-{os.getpid()}", f"dk-fg-{os.getpid()}"


@pytest.fixture(scope="module")
def engine():
    """A Docker engine with the vLLM CPU image; stops the engine afterwards if this fixture started it."""
    was_running = subprocess.run(["docker", "info"], capture_output=True).returncode == 0 if _has("docker") else False
    proc = subprocess.run([str(ROOT / "scripts" / "docker-cpu-image")], capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == IMAGE
    yield
    if not was_running:
        subprocess.run([str(ROOT / "scripts" / "docker-cpu-image"), "--stop"], capture_output=True, timeout=STOP_S)


def _has(tool: str) -> bool:
    import shutil

    return shutil.which(tool) is not None


@pytest.fixture()
def env(tmp_path):
    return {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}


def sc(env, *args, timeout=START_S):
    return subprocess.run([sys.executable, "-m", "servectl", *args], env=env, capture_output=True, text=True, timeout=timeout)


def containers(name: str) -> list[str]:
    out = subprocess.run(["docker", "ps", "-a", "-q", "--filter", f"name=^{name}$"], capture_output=True, text=True)
    return out.stdout.split()


def followers(container_id: str) -> list[int]:
    import psutil

    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = p.info["cmdline"] or []
        if "servectl.launch.docker_follow" in cmd and container_id in cmd:
            found.append(p.info["pid"])
    return found


def test_up_docker_start_check_logs_down_leaves_nothing(engine, env):
    port = free_port()
    res = sc(
        env,
        "up",
        "tiny-cpu",
        "--gpu",
        "cpu",
        "--runtime",
        "docker",
        "--name",
        LIVE,
        "--port",
        str(port),
        "--detach",
        "--no-check",
        "--json",
    )
    try:
        assert res.returncode == 0, res.stderr[-3000:]
        data = json.loads(res.stdout)
        assert data["runtime"] == "docker" and data["container_id"]
        # phases and the KV cache figure come from the container's own log, streamed into the log file
        assert {"weights", "kv_cache", "ready"} <= set(data["phases"]), data["phases"]
        assert data["kv_cache_tokens_reported"] and data["kv_cache_tokens_reported"] > 0
        log = sc(env, "logs", LIVE).stdout
        assert "KV cache size" in log and "Starting vLLM" in log
        check = sc(env, "check", f"http://127.0.0.1:{port}", "--json", "--timeout", "600")
        assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-2000:]
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=STOP_S).status_code == 200
    finally:
        down = sc(env, "down", LIVE)
    assert down.returncode == 0, down.stderr
    assert containers(LIVE) == []
    assert followers(data["container_id"]) == []
    assert json.loads(sc(env, "status", "--json").stdout)["deployments"] == []


def test_sigkill_of_a_foreground_docker_up_stops_its_container(engine, env):
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "servectl",
            "up",
            "tiny-cpu",
            "--gpu",
            "cpu",
            "--runtime",
            "docker",
            "--name",
            FOREGROUND,
            "--port",
            str(port),
            "--no-check",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        assert containers(FOREGROUND)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=STOP_S)
        assert wait_for(lambda: containers(FOREGROUND) == [], every=0.5), containers(FOREGROUND)
    finally:
        if proc.poll() is None:
            proc.kill()
        for cid in containers(FOREGROUND):
            subprocess.run(["docker", "rm", "-f", cid], capture_output=True)


def _image_check(image: str, force: bool = False):
    """The checks `up --runtime docker` runs on an image, for the tiny recipe's own launch on the cpu profile."""
    from servectl.catalog.load import load_catalog
    from servectl.launch import runners
    from servectl.launch.checks import image_ready
    from servectl.launch.events import ignore
    from servectl.spec.resolve import Request, resolve
    from servectl.spec.models import LaunchOptions

    cat = load_catalog()
    recipe, profile = cat.model("tiny-cpu"), cat.gpu("cpu")
    spec = resolve(Request(recipe, profile, [], options=LaunchOptions(image=image)))
    image_ready(runners.DockerRunner(), recipe, profile, spec, force, ignore)


def _patches_the_launch_needs(release: str) -> list[str]:
    """What servectl's known-bug catalog says the tiny recipe's launch needs on `release` (what `patch list` shows)."""
    from servectl.catalog.load import load_catalog
    from servectl.spec.known_bug_guards import patches_for_spec
    from servectl.spec.models import LaunchOptions
    from servectl.spec.resolve import Request, resolve

    cat = load_catalog()
    spec = resolve(Request(cat.model("tiny-cpu"), cat.gpu("cpu"), [], options=LaunchOptions(image=IMAGE)))
    return [p.id for p in patches_for_spec(spec, release)]


def _labelled(base: str, tag: str, patches: list[str], tmp_path: Path) -> str:
    """`base` rebuilt with servectl's patch label naming `patches` (what render --format dockerfile writes)."""
    (tmp_path / "Dockerfile").write_text(f'FROM {base}\nLABEL io.servectl.patches="{",".join(patches)}"\n')
    subprocess.run(["docker", "build", "-q", "-t", tag, str(tmp_path)], check=True, capture_output=True, timeout=600)
    return tag


def test_image_checks_refuse_a_missing_image_and_unpatched_known_bugs(engine, tmp_path):
    from servectl.errors import CheckFailed

    with pytest.raises(CheckFailed, match="is not on this machine"):
        _image_check(f"servectl/no-such-image-{os.getpid()}:1")
    # The real image tagged as a release whose known bugs the tiny recipe's launch meets (the tiny model is a
    # hybrid of linear and full attention: the hybrid KV-group bug of 0.17-0.18 among them).
    needed = _patches_the_launch_needs("0.17.1")
    assert "hybrid-kv-groups-max-len" in needed, needed
    assert _patches_the_launch_needs("0.32.0") == []  # the image's own release needs none
    repo = f"servectl/vllm-test-{os.getpid()}"  # tags of this run only: two suites share one engine
    affected, partly, patched = f"{repo}:v0.17.1", f"{repo}:v0.17.1-partly", f"{repo}:v0.17.1-patched"
    subprocess.run(["docker", "tag", IMAGE, affected], check=True)
    try:
        with pytest.raises(CheckFailed, match="known bugs unpatched for tiny-cpu") as refused:
            _image_check(affected)
        assert all(pid in str(refused.value) for pid in needed), (needed, str(refused.value))
        _labelled(affected, partly, needed[:-1], tmp_path)
        with pytest.raises(CheckFailed) as refused:
            _image_check(partly)
        assert str(refused.value).endswith(f"unpatched for tiny-cpu: {needed[-1]}"), str(refused.value)
        _image_check(_labelled(affected, patched, needed, tmp_path))  # every patch the launch needs: it passes
        _image_check(affected, force=True)  # --force runs it anyway (with a warning)
        _image_check(IMAGE)  # a release without those bugs passes as it is
    finally:
        subprocess.run(["docker", "rmi", patched, partly, affected], capture_output=True)
