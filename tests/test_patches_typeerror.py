"""The real failure and the real fix: vLLM 0.17.1's Qwen3.5 config under transformers 5.2.0.

transformers 5.2.0's `convert_rope_params_to_dict` does `ignore_keys_at_rope_validation |
{"partial_rotary_factor"}` on the raw value (5.3.0 coerces it with set() first), so the list
in vLLM 0.17.1 raises TypeError; after `servectl patch apply` the same construction succeeds.
transformers imports its configuration code without torch, so a small cached venv suffices.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from patch_sources import AFFECTED, extracted, site_packages
from servectl.vllmenv import patches
from servectl.paths import cache_dir
from servectl.vllmenv.pyenv import from_site_packages

TRANSFORMERS = "5.2.0"

# Loads the single config module from the extracted release (its only import is transformers)
# and builds the text config with Qwen3.5's mrope rope parameters.
BUILD = r"""
import importlib.util, sys, transformers
spec = importlib.util.spec_from_file_location("qwen3_5_cfg", sys.argv[1])
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
cls = getattr(mod, sys.argv[2])
rope = {"rope_type": "default", "rope_theta": 10000000, "mrope_section": [11, 11, 10], "mrope_interleaved": True}
try:
    cls(rope_parameters=rope)
except TypeError as exc:
    print("TypeError:", exc); sys.exit(3)
print("built with transformers", transformers.__version__)
"""


@pytest.fixture(scope="session")
def tf_python() -> Path:
    venv = cache_dir() / "venvs" / f"rope-tf-{TRANSFORMERS}"
    py = venv / "bin" / "python"
    ok = venv / ".complete"
    if not ok.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        proc = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                               f"transformers=={TRANSFORMERS}"], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"package registry unreachable, cannot install transformers=={TRANSFORMERS}: "
                        f"{proc.stderr.strip().splitlines()[-1:]}")
        ok.write_text("ok\n")
    return py


@pytest.mark.slow
def test_real_typeerror_before_and_none_after(tf_python, tmp_path):
    extracted(AFFECTED)
    site = site_packages(AFFECTED, tmp_path)
    script = tmp_path / "build.py"
    script.write_text(BUILD)
    cases = [("qwen3_5", "Qwen3_5TextConfig"), ("qwen3_5_moe", "Qwen3_5MoeTextConfig")]

    def run(module, cls):
        path = site / "vllm/transformers_utils/configs" / f"{module}.py"
        return subprocess.run([str(tf_python), str(script), str(path), cls], capture_output=True, text=True)

    for module, cls in cases:
        before = run(module, cls)
        assert before.returncode == 3, before.stdout + before.stderr
        assert "unsupported operand type(s) for |: 'list' and 'set'" in before.stdout

    (out,) = [o for o in patches.apply(from_site_packages(site)) if o.id == "rope-validation-set"]
    assert out.action == "applied" and out.verified

    for module, cls in cases:
        after = run(module, cls)
        assert after.returncode == 0, after.stdout + after.stderr
        assert f"built with transformers {TRANSFORMERS}" in after.stdout

    # and the original comes back with the error
    patches.revert(from_site_packages(site))
    assert run(*cases[0]).returncode == 3
