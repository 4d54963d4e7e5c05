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

# Loads each config module from the extracted release (its only import is transformers) and builds its text config
# with Qwen3.5's mrope rope parameters; one interpreter for every (module, class) pair (importing transformers costs
# seconds). Prints one line per pair.
BUILD = r"""
import importlib.util, sys, transformers
rope = {"rope_type": "default", "rope_theta": 10000000, "mrope_section": [11, 11, 10], "mrope_interleaved": True}
for path, name in zip(sys.argv[1::2], sys.argv[2::2]):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    try:
        getattr(mod, name)(rope_parameters=rope)
    except TypeError as exc:
        print(name, "TypeError:", exc)
    else:
        print(name, "built with transformers", transformers.__version__)
"""


@pytest.fixture(scope="session")
def tf_python() -> Path:
    venv = cache_dir() / "venvs" / f"rope-tf-{TRANSFORMERS}"
    py = venv / "bin" / "python"
    ok = venv / ".complete"
    if not ok.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        proc = subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"transformers=={TRANSFORMERS}"],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            pytest.skip(
                f"package registry unreachable, cannot install transformers=={TRANSFORMERS}: "
                f"{proc.stderr.strip().splitlines()[-1:]}"
            )
        ok.write_text("ok\n")
    return py


@pytest.mark.slow
def test_real_typeerror_before_and_none_after(tf_python, tmp_path):
    extracted(AFFECTED)
    site = site_packages(AFFECTED, tmp_path)
    script = tmp_path / "build.py"
    script.write_text(BUILD)
    cases = [("qwen3_5", "Qwen3_5TextConfig"), ("qwen3_5_moe", "Qwen3_5MoeTextConfig")]

    def run() -> dict[str, str]:
        args = [str(x) for module, cls in cases for x in (site / "vllm/transformers_utils/configs" / f"{module}.py", cls)]
        proc = subprocess.run([str(tf_python), str(script), *args], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return dict(line.split(" ", 1) for line in proc.stdout.splitlines())

    before = run()
    for _, cls in cases:
        assert "TypeError: unsupported operand type(s) for |: 'list' and 'set'" in before[cls], before

    (out,) = [o for o in patches.apply(from_site_packages(site)) if o.id == "rope-validation-set"]
    assert out.action == "applied" and out.verified

    after = run()
    assert after == {cls: f"built with transformers {TRANSFORMERS}" for _, cls in cases}, after
