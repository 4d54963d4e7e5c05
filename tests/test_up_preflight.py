"""`servectl up` runs pre-flight against the real vLLM environment before starting anything."""

import shutil
from pathlib import Path

import yaml

from conftest import free_port


def test_up_refuses_a_vllm_older_than_the_recipe_needs(tmp_path, monkeypatch, cli, vllm_python):
    catalog_dir = tmp_path / "profiles"
    shutil.copytree(
        Path(__file__).parent.parent / "profiles", catalog_dir, ignore=shutil.ignore_patterns("__pycache__", "__init__.py")
    )
    models = yaml.safe_load((catalog_dir / "models.yaml").read_text())
    for m in models["models"]:
        if m["name"] == "tiny-cpu":
            m["min_vllm"] = ">=99.0"
    (catalog_dir / "models.yaml").write_text(yaml.safe_dump(models, sort_keys=False))
    monkeypatch.setenv("SERVECTL_PROFILES_DIR", str(catalog_dir))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))

    # No environment fits: up names the one it looked at, why not, and the command that makes one.
    result = cli("up", "tiny-cpu", "--gpu", "cpu", "--port", str(free_port()), "--model-path", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert "vllm-0.32.0-cpu: tiny-cpu needs vLLM >=99.0" in result.stderr
    assert "`servectl bootstrap --cpu --recipe tiny-cpu`" in result.stderr
    # The environment named by hand is not chosen: pre-flight refuses its release before anything starts.
    from vllm_env import default_venv

    python = default_venv() / "bin" / "python"
    result = cli(
        "up", "tiny-cpu", "--gpu", "cpu", "--port", str(free_port()), "--model-path", str(tmp_path), "--python", str(python)
    )
    assert result.exit_code == 1, result.output
    assert "pre-flight" in result.stderr and "99.0" in result.stderr
    assert not (tmp_path / "state" / "servectl" / "logs").exists() or not any(
        (tmp_path / "state" / "servectl" / "logs").iterdir()
    )
