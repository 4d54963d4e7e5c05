"""Patches under interruption, on the real files of a released vLLM wheel (0.17.1, affected).

`servectl patch apply` / `revert` runs in a subprocess that stops itself (SIGSTOP) after its
Nth durable step (SERVECTL_TEST_PATCH_PAUSE_AT: a temp file written, a rename done); the test
waits until it is stopped, SIGKILLs it, and then `check` / `revert` / `apply` must leave every
file released or fully patched, byte for byte, for every N until the run completes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from patch_sources import AFFECTED, extracted, site_packages
from servectl.vllmenv import patches
from servectl.vllmenv.pyenv import from_site_packages

CONFIGS = ["vllm/transformers_utils/configs/qwen3_5.py", "vllm/transformers_utils/configs/qwen3_5_moe.py"]
MANIFEST = ".servectl-patches.json"


def digest(site: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {
        str(p.relative_to(site)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(site.rglob("*"))
        if p.is_file() and p.name not in skip
    }


@pytest.fixture()
def site(tmp_path):
    extracted(AFFECTED)
    return site_packages(AFFECTED, tmp_path)


@pytest.fixture()
def references(site, cli):
    """(released tree, patched tree without the manifest), from one clean apply and revert."""
    released = digest(site)
    assert cli("patch", "apply", "--site-packages", str(site)).exit_code == 0
    patched = digest(site, skip=(MANIFEST,))
    assert cli("patch", "revert", "--site-packages", str(site)).exit_code == 0
    assert digest(site) == released
    return released, patched


def killed_at(cmd: str, site: Path, step: int) -> bool:
    """Run `servectl patch CMD` until it stops after `step`, then SIGKILL it. False: it finished first."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "servectl", "patch", cmd, "--site-packages", str(site)],
        env={**os.environ, patches.PAUSE_ENV: str(step)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    ps = psutil.Process(proc.pid)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if ps.status() == psutil.STATUS_STOPPED:
                proc.kill()
                proc.communicate()
                return True
        except psutil.NoSuchProcess:
            break
        time.sleep(0.01)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    return False


def assert_each_file_whole(site: Path, released: dict, patched: dict) -> str:
    """Every config is byte for byte the released or the patched one; 'released' / 'patched' / 'mixed'."""
    states = []
    for c in CONFIGS:
        now = hashlib.sha256((site / c).read_bytes()).hexdigest()
        assert now in (released[c], patched[c]), f"{c} is neither released nor patched"
        states.append("released" if now == released[c] else "patched")
    return states[0] if len(set(states)) == 1 else "mixed"


def check_json(cli, site: Path) -> dict:
    res = cli("patch", "check", "--site-packages", str(site), "--json")
    assert res.exit_code in (0, 1) and "Traceback" not in res.output
    (sel,) = [p for p in json.loads(res.stdout)["patches"] if p["id"] == "rope-validation-set"]
    return sel


def recover_both_ways(cli, site: Path, step: int, released: dict, patched: dict) -> None:
    """From the state a kill left: `revert` gives the released tree back (no manifest, no temp file);
    on a copy of the same state, `apply` gives the patched tree, and its `revert` the released one."""
    copy = site.parent / f"{site.name}-step{step}"
    shutil.copytree(site, copy)
    res = cli("patch", "revert", "--site-packages", str(site))
    assert res.exit_code == 0, res.output
    assert digest(site) == released, f"revert after step {step}"
    res = cli("patch", "apply", "--site-packages", str(copy))
    assert res.exit_code == 0, res.output
    assert digest(copy, skip=(MANIFEST,)) == patched, f"apply after step {step}"
    sel = check_json(cli, copy)
    assert sel["status"] == "already-applied" and sel["interrupted"] is None
    assert cli("patch", "revert", "--site-packages", str(copy)).exit_code == 0 and digest(copy) == released
    shutil.rmtree(copy)


def test_apply_killed_at_every_step(cli, site, references):
    released, patched = references
    seen, step = set(), 0
    while True:
        step += 1
        if not killed_at("apply", site, step):
            break
        whole = assert_each_file_whole(site, released, patched)
        seen.add(whole)
        sel = check_json(cli, site)
        if whole == "mixed":  # check names the half-done state instead of refusing it
            assert sel["status"] == "applicable" and sel["interrupted"] == "apply" and len(sel["pending_files"]) == 1
        recover_both_ways(cli, site, step, released, patched)
    # the last run was not interrupted: it applied
    assert digest(site, skip=(MANIFEST,)) == patched
    assert cli("patch", "revert", "--site-packages", str(site)).exit_code == 0 and digest(site) == released
    # intent (temp, rename), two files (temp, rename each), final record (temp, rename)
    assert step - 1 == 8 and seen == {"released", "mixed", "patched"}


def test_revert_killed_at_every_step(cli, site, references):
    released, patched = references
    seen, step = set(), 0
    while True:
        step += 1
        assert cli("patch", "apply", "--site-packages", str(site)).exit_code == 0
        if not killed_at("revert", site, step):
            break
        seen.add(assert_each_file_whole(site, released, patched))
        sel = check_json(cli, site)
        assert sel["interrupted"] in ("revert", None)  # None: killed after the record was removed
        recover_both_ways(cli, site, step, released, patched)
    assert digest(site) == released
    # intent (temp, rename), two files (temp, rename each), record removed
    assert step - 1 == 7 and seen == {"released", "mixed", "patched"}


def test_keyboard_interrupt_between_files_rolls_back(site, references, monkeypatch):
    released, patched = references
    target = from_site_packages(site)
    real = patches.write_atomic
    calls = []

    def interrupted(path, data, *a, **kw):
        calls.append(Path(path).name)
        if Path(path).name == "qwen3_5_moe.py" and len([c for c in calls if c.endswith(".py")]) == 2:
            raise KeyboardInterrupt
        return real(path, data, *a, **kw)

    monkeypatch.setattr(patches, "write_atomic", interrupted)
    with pytest.raises(KeyboardInterrupt):
        patches.apply(target)
    assert digest(site) == released  # the first file restored, the intent record gone

    monkeypatch.setattr(patches, "write_atomic", real)
    patches.apply(target)
    with_manifest = digest(site)
    calls.clear()
    monkeypatch.setattr(patches, "write_atomic", interrupted)
    with pytest.raises(KeyboardInterrupt):
        patches.revert(target)
    assert digest(site) == with_manifest  # files patched again, the record back to "applied"
    assert json.loads((site / MANIFEST).read_text())["patches"]["rope-validation-set"]["state"] == "applied"


def test_a_second_apply_waits_for_the_first_and_completes_what_its_kill_left(cli, site, references):
    """Two applies on one environment: the second waits on the first's lock (an flock on the
    site-packages folder); the first is SIGKILLed between the two files; the second then finishes."""
    import fcntl

    released, patched = references
    first = subprocess.Popen(
        [sys.executable, "-m", "servectl", "patch", "apply", "--site-packages", str(site)],
        env={**os.environ, patches.PAUSE_ENV: "4"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    second = None
    try:
        ps = psutil.Process(first.pid)
        deadline = time.monotonic() + 120
        while ps.status() != psutil.STATUS_STOPPED and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ps.status() == psutil.STATUS_STOPPED
        assert assert_each_file_whole(site, released, patched) == "mixed"  # step 4: the first file renamed
        fd = os.open(site, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with pytest.raises(BlockingIOError):  # the stopped apply holds the environment's lock
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        second = subprocess.Popen(
            [sys.executable, "-m", "servectl", "patch", "apply", "--site-packages", str(site), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        first.kill()
        first.communicate()
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
        (outcome,) = [o for o in json.loads(out)["patches"] if o["id"] == "rope-validation-set"]
        assert outcome["action"] == "applied" and outcome["verified"] is True
        assert digest(site, skip=(MANIFEST,)) == patched
        assert check_json(cli, site)["status"] == "already-applied" and check_json(cli, site)["interrupted"] is None
        assert cli("patch", "revert", "--site-packages", str(site)).exit_code == 0 and digest(site) == released
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
