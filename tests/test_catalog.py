"""The catalog: shipped as package data in the wheel, schema errors with file:line:field, "did you mean"."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import asdict
from pathlib import Path

import pytest
from pydantic import ValidationError

from servectl.catalog.base import validate
from servectl.catalog.load import load_catalog
from servectl.catalog.gpu import GpuProfile

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "profiles"


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """servectl built as a wheel (from a copy of the tree) and installed into a fresh venv.

    The venv borrows the test environment's dependencies through a .pth line (a path added that way
    does not run the editable install's hooks), so only the wheel provides `servectl`."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "servectl", "profiles", "patches"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(src)],
        check=True,
        capture_output=True,
    )
    wheel = next((tmp / "dist").glob("servectl-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)  # this pip installs into it
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
    )
    site = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def test_wheel_ships_the_catalog_and_runs_from_another_directory(installed_wheel, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SERVECTL_PROFILES_DIR"}
    where = subprocess.run(
        [str(installed_wheel / "bin" / "python"), "-c", "import servectl; print(servectl.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(installed_wheel) in where, "servectl must come from the wheel, not the source tree"
    proc = subprocess.run(
        [str(installed_wheel / "bin" / "servectl"), "profiles", "list", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    names = [p["name"] for p in json.loads(proc.stdout)]
    assert names == ["rtx-5090", "rtx-pro-6000-blackwell", "dgx-spark", "rocm-4gpu", "cpu"]
    models = subprocess.run(
        [str(installed_wheel / "bin" / "servectl"), "models", "list", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert {m["name"] for m in json.loads(models.stdout)} >= {"qwen3.5-35b-a3b-nvfp4", "tiny-cpu"}


def test_profiles_carry_the_reference_facts(catalog):
    g = catalog.gpus
    assert g["rtx-5090"].compute_capability == "12.0" and g["dgx-spark"].compute_capability == "12.1"
    assert g["dgx-spark"].unified_memory and g["rocm-4gpu"].count == 4
    assert g["rocm-4gpu"].container.devices == ["/dev/kfd", "/dev/dri"] and g["rocm-4gpu"].container.group_add == ["video"]
    assert g["rtx-5090"].container.runtime == "nvidia" and g["rtx-5090"].container.gpus == "all"
    presets = {k: p.gpu_memory_utilization for k, p in g["rtx-5090"].presets.items()}
    assert presets == {"desktop-conservative": 0.885, "desktop": 0.905, "desktop-aggressive": 0.926, "headless": 0.956}
    assert "cpu" in g and g["cpu"].vendor == "cpu"


def test_recipes_carry_architecture_numbers(catalog):
    arch = catalog.model("qwen3.5-35b-a3b-nvfp4").architecture
    assert (arch.num_layers, arch.full_attention_layers, arch.linear_attention_layers) == (40, 10, 30)
    assert (arch.num_experts, arch.experts_per_token, arch.vocab_size) == (256, 8, 248320)
    assert catalog.model("qwen3.5-35b-a3b-gptq-8bit").required_dtype == "float16"


def test_schema_forbids_unknown_fields():
    data = asdict(load_catalog().gpu("rtx-5090"))
    assert validate(GpuProfile, data) == load_catalog().gpu("rtx-5090")  # a profile's fields round-trip
    data["memory_gb"] = 32
    with pytest.raises(ValidationError, match="memory_gb"):
        validate(GpuProfile, data)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("name", "RTX 5090", "does not match"),
        ("count", 0, "greater than or equal to 1"),
        ("compute_capability", "sm_120", "does not match"),
        ("default_preset", "gaming", "not one of the presets"),
        ("vendor", "intel", "'nvidia', 'amd' or 'cpu'"),
    ],
)
def test_schema_refuses_bad_values(field, value, message):
    data = {**asdict(load_catalog().gpu("rtx-5090")), field: value}
    with pytest.raises(ValidationError, match=message):
        validate(GpuProfile, data)


def _broken_copy(tmp_path: Path, filename: str, old: str, new: str) -> Path:
    for f in SHIPPED.glob("*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    text = (tmp_path / filename).read_text()
    assert old in text
    (tmp_path / filename).write_text(text.replace(old, new, 1))
    return tmp_path


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if needle in ln)


@pytest.mark.parametrize(
    "filename,old,new,needle,field",
    [
        ("gpus.yaml", "memory_gib: 32\n", "memory_gib: -32\n", "memory_gib: -32", "gpus.0.memory_gib"),
        (
            "gpus.yaml",
            "    usable_memory_gib: 94.97",
            "    usable_memory_gb: 94.97",
            "usable_memory_gb",
            "gpus.1.usable_memory_gb",
        ),
        ("models.yaml", "weights_gib: 20.6", "weights_gib: lots", "weights_gib: lots", "models.2.weights_gib"),
    ],
)
def test_malformed_profile_gives_file_line_field(cli, monkeypatch, tmp_path, filename, old, new, needle, field):
    folder = _broken_copy(tmp_path, filename, old, new)
    monkeypatch.setenv("SERVECTL_PROFILES_DIR", str(folder))
    result = cli("profiles", "list")
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert f"{folder / filename}:{_line_of(folder / filename, needle)}: field {field}" in line


def test_broken_yaml_syntax_gives_file_and_line(cli, monkeypatch, tmp_path):
    folder = _broken_copy(tmp_path, "models.yaml", "    repo: ig1/Qwen3.5-35B-A3B-NVFP4", "    repo: [ig1/Qwen3.5")
    monkeypatch.setenv("SERVECTL_PROFILES_DIR", str(folder))
    result = cli("models", "list", "--json")
    assert result.exit_code == 2 and "not valid YAML" in result.stderr
    assert f"{folder / 'models.yaml'}:" in result.stderr and result.stderr.strip().count("\n") == 0


def test_recipe_naming_a_missing_profile_is_caught(cli, monkeypatch, tmp_path):
    folder = _broken_copy(
        tmp_path,
        "models.yaml",
        '      dgx-spark:\n        args: [--max-model-len, "262144"]\n        notes: [Decode',
        '      dgx-sprak:\n        args: [--max-model-len, "262144"]\n        notes: [Decode',
    )
    monkeypatch.setenv("SERVECTL_PROFILES_DIR", str(folder))
    result = cli("models", "list")
    assert result.exit_code == 2 and "'dgx-sprak'" in result.stderr and "did you mean 'dgx-spark'" in result.stderr


@pytest.mark.parametrize(
    "args,expected",
    [
        (
            ["render", "qwen3.5-35b-a3b-nvfp", "--gpu", "rtx-5090"],
            "unknown model 'qwen3.5-35b-a3b-nvfp': did you mean 'qwen3.5-35b-a3b-nvfp4'",
        ),
        (["render", "qwen3.5-35b-a3b-nvfp4", "--gpu", "rtx5090"], "unknown profile 'rtx5090': did you mean 'rtx-5090'"),
        (["models", "show", "tiny_cpu"], "did you mean 'tiny-cpu'"),
        (["profiles", "show", "dgx_spark"], "did you mean 'dgx-spark'"),
    ],
)
def test_unknown_names_exit_2_with_did_you_mean(cli, args, expected):
    result = cli(*args)
    assert result.exit_code == 2 and result.stdout == ""
    assert expected in result.stderr and result.stderr.strip().count("\n") == 0


_LOAD = (
    "import sys, json\nfrom servectl.catalog.load import load_catalog\n"
    "cat = load_catalog()\n"
    "print(json.dumps({'pydantic': 'pydantic' in sys.modules, 'title': cat.gpu('rtx-5090').title}))"
)


def _load_in_child(env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", _LOAD], capture_output=True, text=True, timeout=120, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_validated_catalog_is_cached_and_keyed_by_its_text(tmp_path):
    """The first load validates with pydantic and caches; later loads only unpickle (no pydantic); an edited
    file or a damaged cache entry is validated again."""
    folder = tmp_path / "profiles"
    folder.mkdir()
    for f in SHIPPED.glob("*.yaml"):
        shutil.copy(f, folder / f.name)
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "SERVECTL_PROFILES_DIR": str(folder)}
    first, second = _load_in_child(env), _load_in_child(env)
    assert first["pydantic"] and not second["pydantic"]
    assert first["title"] == second["title"]
    entries = list((tmp_path / "cache" / "servectl" / "catalog").iterdir())
    assert len(entries) == 1
    gpus = folder / "gpus.yaml"
    gpus.write_text(gpus.read_text().replace(first["title"], "Edited title", 1))
    edited = _load_in_child(env)
    assert edited == {"pydantic": True, "title": "Edited title"}
    for entry in (tmp_path / "cache" / "servectl" / "catalog").iterdir():
        entry.write_bytes(b"not a pickle")
    assert _load_in_child(env) == {"pydantic": True, "title": "Edited title"}
    assert _load_in_child(env) == {"pydantic": False, "title": "Edited title"}
